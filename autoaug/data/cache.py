"""The cache folder: extracted archives, decoded-array caches, and the in-process cache.

The cache folder is ``$AUTOAUG_CACHE`` or ``~/.cache/autoaug`` (option ``cache_dir``).
Everything written there is written atomically, so an interrupted process leaves nothing
that a later one would trust. Within a process, each (source, options) is decoded once.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import threading
import zlib

import numpy as np

from ..files import atomic_path
from .dataset import DataError, Dataset
from .folders import Layout, find_layout

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_CACHE_FORMAT = 2  # bump when the on-disk cache layout changes


def cache_root(override: str | os.PathLike | None = None) -> str:
    """The folder for extracted archives and decoded-array caches."""
    if override is not None:
        return os.path.abspath(os.path.expanduser(os.fspath(override)))
    env = os.environ.get("AUTOAUG_CACHE")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return os.path.join(os.path.expanduser("~"), ".cache", "autoaug")


# --------------------------------------------------------------------------- in-process cache

_MEMORY_CACHE: dict = {}
_MEMORY_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget the datasets decoded in this process (the disk cache is kept)."""
    with _MEMORY_LOCK:
        _MEMORY_CACHE.clear()


def memory_key(kind: str, target: str, options: dict) -> tuple:
    """What identifies one decoded dataset: the source, its stamp on disk, the options."""
    return (kind, target, _stamp(target) if kind in ("folder", "archive", "npz") else None,
            tuple(sorted((k, repr(v)) for k, v in options.items())))


def recall(key: tuple):
    """The dataset decoded before under ``key``, or None."""
    with _MEMORY_LOCK:
        return _MEMORY_CACHE.get(key)


def remember(key: tuple, ds: Dataset) -> None:
    with _MEMORY_LOCK:
        _MEMORY_CACHE[key] = ds


def _stamp(path: str):
    """What tells a changed source from the one decoded before (for the in-process cache)."""
    if os.path.isdir(path):
        try:
            return folder_key(find_layout(path))
        except DataError:
            return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


# --------------------------------------------------------------------------- decoded arrays


def folder_key(layout: Layout) -> str:
    """Hash of the path and the mtimes of the root, split and class folders."""
    h = hashlib.sha1(f"{_CACHE_FORMAT}|{layout.root}".encode())
    for d in layout.folders():
        h.update(f"|{d}:{os.stat(d).st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _decoded_file(layout: Layout, decoding: str, cache_dir: str | None, folder: str, suffix: str) -> str:
    digest = hashlib.sha1(decoding.encode()).hexdigest()[:8]
    return os.path.join(cache_root(cache_dir), folder, f"{layout.name}-{folder_key(layout)}-{digest}{suffix}")


def array_cache_file(layout: Layout, decoding: str, cache_dir: str | None = None) -> str:
    """The .npz of a folder's decoded images; ``decoding`` tells the size, channels, resize."""
    return _decoded_file(layout, decoding, cache_dir, "arrays", ".npz")


def decoded_cache_file(layout: Layout, decoding: str, split: str, cache_dir: str | None = None) -> str:
    """The memory-mapped .npy of one split's decoded images, for streamed data (disk_cache)."""
    return _decoded_file(layout, decoding, cache_dir, "decoded", f"-{split}.npy")


def tfds_cache_file(name: str, decoding: str, cache_dir: str | None = None) -> str:
    """The memory-mapped .npy of one TFDS split's converted images (streamed TFDS data);
    ``decoding`` tells the prepared dataset's folder, the split, size, channels, resize."""
    digest = hashlib.sha1(f"{_CACHE_FORMAT}|{decoding}".encode()).hexdigest()[:12]
    return os.path.join(cache_root(cache_dir), "tfds", f"{name}-{digest}.npy")


def scan_cache_file(layout: Layout, cache_dir: str | None = None) -> str:
    """The JSON listing of a folder's images (sizes, grey or colour, unreadable ones)."""
    return os.path.join(cache_root(cache_dir), "listings", f"{layout.name}-{folder_key(layout)}.json")


def read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None  # absent or unreadable: list again (and overwrite it)


def write_json(path: str, value) -> None:
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                json.dump(value, f)
    except OSError:
        pass  # an unwritable cache only costs speed next time


def read_arrays(path: str, name: str) -> Dataset | None:
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return Dataset(f["x_train"], f["y_train"], f["x_test"], f["y_test"],
                           [str(c) for c in f["class_names"].tolist()], name)
    except Exception:
        return None  # unreadable cache: decode again (and overwrite it)


def write_arrays(path: str, ds: Dataset) -> None:
    try:
        with atomic_path(path) as tmp:
            np.savez(tmp, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test,
                     y_test=ds.y_test, class_names=np.array(ds.class_names), name=np.array(ds.name))
    except OSError:
        pass  # an unwritable cache only costs speed next time


# --------------------------------------------------------------------------- archives


def _archive_stem(path: str) -> str:
    base = os.path.basename(path)
    for suffix in ARCHIVE_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def _extract_tar(path: str, dest: str) -> None:
    """Stream regular files and folders of ``path`` into ``dest``.

    Links, devices and members whose names leave ``dest`` are not extracted (an unsafe
    name is an error). Writing each file directly is several times faster than
    ``TarFile.extractall`` for tens of thousands of small images.
    """
    made = set()
    with tarfile.open(path, "r|*") as tar:
        for m in tar:
            name = os.path.normpath(m.name)
            if os.path.isabs(name) or name == ".." or name.startswith(".." + os.sep):
                raise tarfile.TarError(f"member {m.name!r} would land outside the archive "
                                       f"folder")
            target = os.path.join(dest, name)
            if m.isdir():
                os.makedirs(target, exist_ok=True)
                made.add(target)
            elif m.isfile():
                parent = os.path.dirname(target)
                if parent not in made:
                    os.makedirs(parent, exist_ok=True)
                    made.add(parent)
                src = tar.extractfile(m)
                with open(target, "wb") as f:
                    shutil.copyfileobj(src, f)


def extract_archive(path: str, cache_dir: str | None = None) -> str:
    """Extract ``path`` once into the cache folder and return the extracted folder.

    Extraction goes to a temporary folder that is renamed when complete, so an
    interrupted or failed extraction leaves nothing that a later call would trust.
    """
    st = os.stat(path)
    key = hashlib.sha1(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    root = cache_root(cache_dir)
    final = os.path.join(root, "extracted", f"{_archive_stem(path)}-{key}")
    if os.path.isdir(final):
        return final
    try:
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = tempfile.mkdtemp(dir=os.path.dirname(final), prefix=".tmp-")
    except OSError as e:
        raise DataError(f"cannot write the cache folder {root} ({e.strerror}); set "
                        f"AUTOAUG_CACHE to a writable folder") from None
    try:
        try:
            _extract_tar(path, tmp)
        except OSError as e:
            if e.errno is None:  # gzip.BadGzipFile and friends
                raise DataError(f"{path} is not a readable tar archive ({e}); re-create it "
                                f"with 'tar czf'") from None
            raise DataError(f"cannot extract {path} into {root} ({e.strerror}); free space or "
                            f"set AUTOAUG_CACHE to a writable folder") from None
        except (tarfile.TarError, EOFError, zlib.error, ValueError) as e:
            raise DataError(f"{path} is not a readable tar archive ({e}); re-create it with "
                            f"'tar czf'") from None
        find_layout(tmp, path)  # an archive without images is refused now, before it is kept
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):  # not a concurrent winner: a real failure
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
