"""A quiet command line: TensorFlow's, absl's and CUDA's start-up lines off stderr.

TensorFlow writes its start-up lines (``oneDNN custom operations are on``, ``Could not find
cuda drivers``, ``failed call to cuInit``, ``All log messages before absl::InitializeLog()``)
from C++ while its shared libraries load, before any Python logging setting can reach them;
``TF_CPP_MIN_LOG_LEVEL=3`` stops only some. `silence_tensorflow` therefore sets the
environment and absl's Python logging first, and arranges that the first ``import
tensorflow``, wherever it happens, runs with file descriptor 2 sent to a temporary file,
which is replayed only when the import fails. Commands that never import TensorFlow pay
nothing. MLflow's INFO lines go too. ``autoaug CMD --verbose`` skips all of it.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile


def silence_tensorflow() -> None:
    """Quiet TensorFlow (and MLflow's INFO lines) from here on; call it before they are imported."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # C++ INFO, WARNING and ERROR lines
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # "Creating initial MLflow database tables"
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        from absl import logging as absl_logging  # TensorFlow's Python logger is absl's
        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, and wraps its loader so that the import runs without stderr."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders answer from here on
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # resources, get_code...: the real loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader
        with _stderr_to_file() as captured:
            try:
                self.loader.exec_module(module)
            except BaseException:
                captured.failed = True
                raise
        import logging
        logging.getLogger("tensorflow").setLevel(logging.ERROR)


class _stderr_to_file:
    """File descriptor 2 (what C++ writes to) into a temporary file; replayed on failure."""

    def __enter__(self):
        self.failed = False
        sys.stderr.flush()
        self.file = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        if self.failed:
            self.file.seek(0)
            sys.stderr.write(self.file.read().decode(errors="replace"))
        self.file.close()
        return False


# TensorFlow's runtime errors open with this header, then where the op was defined; the cause
# is the last unindented line, before the "\t [[{{node ...}}]]" markers.
_TF_HEADER = "Graph execution error:"
_TF_DATA_PREFIX = re.compile(r"^Error in user-defined function passed to \S+ transformation with iterator: \S+: ")


def one_line(e: BaseException, limit: int = 500) -> str:
    """The exception's type and the one line of its message that says what went wrong."""
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    if lines and lines[0].strip() == _TF_HEADER:
        causes = [line for line in lines[1:] if not line[0].isspace() and not line.startswith("Detected at node")
                  and line != "<stack traces unavailable>"]
        lines = [_TF_DATA_PREFIX.sub("", causes[-1])] if causes else lines
    return f"{type(e).__name__}: {lines[0][:limit]}" if lines else type(e).__name__
