"""Atomic file writes and the code version: the two file-system chores every module shares.

A file written here is complete or absent: the data goes to a temporary file in the target's
folder (so that the final rename never crosses a file system), is flushed to disk, and only
then replaces the target with ``os.replace``. A writer that fails, or a process that is
killed, leaves the old file as it was; a failed writer's temporary file is removed.
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import subprocess

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class OutputError(OSError):
    """An output path that cannot be written, or that would replace one of the run's inputs
    (an OSError, so callers that shrug off an unwritable cache still do)."""


def check_output(path: str | os.PathLike, inputs: dict | None = None, flag: str = "output") -> str:
    """Refuse, before anything runs, an output that would overwrite an input or cannot be written.

    Args:
        path: the file the command will write (replace, or append to).
        inputs: {what: path} of the run's inputs and stores (None values are skipped).
        flag: how the message names the output (``--out``).

    Returns:
        ``path`` as a string.

    Raises:
        OutputError: ``path`` is one of ``inputs``, a folder, or in a folder that is missing
            and cannot be created, or that cannot be written.
    """
    from .stores import same_file
    path = os.fspath(path)
    for what, source in (inputs or {}).items():
        if source and same_file(path, os.fspath(source)):
            raise OutputError(f"{flag} {path} is the {what}; it would be overwritten: "
                              f"write to another file")
    if os.path.isdir(path):
        raise OutputError(f"{flag} {path} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.isdir(existing):  # the nearest folder that exists must be writable
        if os.path.exists(existing):
            raise OutputError(f"{flag} {path}: {existing} is not a folder")
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: cannot write in {existing} (permission denied)")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OutputError(f"{flag} {path} is read-only")
    return path


# Why a path cannot be written (as opposed to a writer's own bug): one line for the user.
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR, errno.ENOSPC,
               errno.EDQUOT, errno.ENAMETOOLONG}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; when the block succeeds it replaces ``path``.

    For writers that want a file name (``image.save``, ``frame.to_csv``, ``np.savez``,
    ``model.save_weights``). The temporary name ends with the target's own name, so writers
    that pick the format from the suffix (``.png``, ``.npz``, ``.weights.h5``) see the same
    one. The writer creates the file itself, so it gets the usual permissions.
    A path that cannot be written (a folder, a read-only folder) raises `OutputError`, one
    line, with no temporary file left behind.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot write {path}: cannot create folder {folder} ({e.strerror})") from None
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{os.path.basename(path)}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the name points at it
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutputError) and e.errno in _UNWRITABLE:
            raise OutputError(f"cannot write {path}: {e.strerror}") from None
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text in the default encoding, or bytes) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)


def _git(folder: str, *args: str) -> str:
    try:
        return subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def git_sha(folder: str | os.PathLike = _PACKAGE_DIR) -> str:
    """The short commit of HEAD of the checkout holding ``folder``; '' outside git."""
    return _git(os.fspath(folder), "rev-parse", "--short", "HEAD")


def has_uncommitted_edits(folder: str | os.PathLike = _PACKAGE_DIR) -> bool:
    """Whether files under ``folder`` differ from HEAD (or are untracked)."""
    return bool(_git(os.fspath(folder), "status", "--porcelain", "--", "."))


def code_version() -> str:
    """The package version and the short git commit of the library: ``0.1.0+abc1234``."""
    from . import __version__  # here, not at the top: the package imports modules that import us
    sha = git_sha()
    return f"{__version__}+{sha}" if sha else __version__
