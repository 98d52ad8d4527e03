"""SIGINT and SIGTERM: the first raises `Interrupted` wherever the program is, so that it cleans
up on its way out (the running trial ends FAILED "interrupted", every MLflow run is closed); a
second one while it does stops at once.

A signal's exception can be raised inside C code that calls back into Python (TensorFlow's
gradient tape imports modules from C), which hands it on as another error, a ``SystemError``.
`as_interrupt` tells such an error from a real one, so that it still stops the program as the
interrupt it is, instead of failing one trial and going on.
"""
from __future__ import annotations

import contextlib
import os
import signal

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
_pending: int | None = None  # the signal received, once one has been


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised where the program is."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum, frame):
    global _pending
    if _pending is not None:
        os.write(2, b"autoaug: stopped at once\n")
        os._exit(EXIT_SIGNAL.get(signum, 130))
    _pending = signum
    raise Interrupted(signum)


def install() -> dict:
    """SIGINT and SIGTERM -> `_on_signal`; returns the handlers they replace (for `restore`)."""
    global _pending
    _pending = None
    previous = {}
    try:
        for sig in EXIT_SIGNAL:
            previous[sig] = signal.signal(sig, _on_signal)
    except ValueError:  # not the main thread: leave signals alone
        pass
    return previous


def restore(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def pending() -> int | None:
    """The signal that is stopping the program, or None."""
    return _pending


def as_interrupt(e: BaseException) -> KeyboardInterrupt | None:
    """`e` if it is an interrupt; an `Interrupted` if any other error was raised while a signal
    is stopping the program (raise it in its place); None for an error of its own."""
    if isinstance(e, KeyboardInterrupt):
        return e
    return Interrupted(_pending) if _pending is not None else None


@contextlib.contextmanager
def on_interrupt(cleanup):
    """When an interrupt (see `as_interrupt`) leaves the block: ``cleanup()``, then raise it."""
    try:
        yield
    except BaseException as e:
        stop = as_interrupt(e)
        if stop is None:
            raise
        cleanup()
        raise stop
