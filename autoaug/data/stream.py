"""Images that stay on disk: a file list read through tf.data, for data larger than memory.

`ImageFiles` stands in for a uint8 ``[N, H, W, C]`` array wherever autoaug takes one
(``len``, ``shape``, indexing with an index array or a slice gives another `ImageFiles`;
``np.asarray`` decodes, for small subsets such as previews). `autoaug.pipeline` reads it
as paths -> shuffle (of the paths) -> parallel decode and resize -> batch -> policy ->
prefetch, so memory holds the paths and a few batches, whatever the number of images.

Each file is decoded by `autoaug.data.folders.decode_image` (Pillow, inside
``tf.numpy_function``), the function the in-memory loader uses: the same seed gives the
same pixels streamed or in memory.

With an on-disk cache (`ImageFiles.cached`, ``data.disk_cache: true``) the files are decoded
once into a memory-mapped ``.npy`` of uint8 rows; the pipeline then shuffles row numbers and
reads rows, and the page cache, not the process, holds what is hot.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .folders import decode_image


class ImageFiles:
    """Image files decoded on read to uint8 ``[height, width, channels]``."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths, size: tuple[int, int], channels: int, resize: str = "crop",
                 store: np.ndarray | None = None, rows=None):
        self.paths = np.asarray(paths, dtype=object)
        self.size, self.channels, self.resize = (int(size[0]), int(size[1])), int(channels), resize
        # decoded rows (a read-only memmap from `cached`) and, per image, its row in it
        self.store = store
        self.rows = None if store is None else np.arange(len(self.paths)) if rows is None else np.asarray(rows)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), *self.size, self.channels)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.decode(self.paths[index]) if self.store is None else np.array(self.store[self.rows[index]])
        return ImageFiles(self.paths[index], self.size, self.channels, self.resize, self.store,
                          None if self.store is None else self.rows[index])

    def decode(self, path) -> np.ndarray:
        """One image, as the in-memory loader decodes it."""
        if isinstance(path, bytes):
            path = path.decode()
        return decode_image(path, self.size, self.channels, self.resize)

    def __array__(self, dtype=None, copy=None):
        if self.store is not None:
            out = np.array(self.store[self.rows])
        else:
            out = np.empty(self.shape, np.uint8)
            for i, p in enumerate(self.paths):
                out[i] = self.decode(p)
        return out if dtype is None else out.astype(dtype)

    def cached(self, path: str) -> "ImageFiles":
        """These images read from ``path``, a ``.npy`` of their decoded rows (see `memmap_rows`),
        decoding every file once, in parallel, unless it already holds them."""
        from ..files import OutputError
        plain = ImageFiles(self.paths, self.size, self.channels, self.resize)

        def decode(out):
            start = 0
            for batch in plain.batches(256):
                out[start:start + len(batch)] = batch
                start += len(batch)
        try:
            store = memmap_rows(path, (len(self), *self.size, self.channels), decode)
        except (OSError, OutputError):
            return plain  # an unwritable cache only costs speed: stream the files
        return ImageFiles(self.paths, self.size, self.channels, self.resize, store)

    def fingerprint(self) -> bytes:
        """What identifies these images for tracking: the paths and the decoding."""
        h = hashlib.sha256(repr((self.size, self.channels, self.resize)).encode())
        for p in self.paths:
            h.update(str(p).encode() + b"\0")
        return h.digest()

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files, {self.size[0]}x{self.size[1]}x{self.channels}, {self.resize})"

    # ------------------------------------------------------------------ tf.data
    def keys(self):
        """What ``tf.data.Dataset.from_tensor_slices`` takes, one per image: its path, or
        its row in the on-disk cache."""
        if self.store is not None:
            return self.rows.astype(np.int64)
        return np.array([str(p).encode() for p in self.paths], dtype=object)

    def read(self, key):
        """A graph function: a scalar key (see `keys`) -> the uint8 image tensor."""
        import tensorflow as tf

        store = self.store

        def decode(k):
            if store is not None:
                return np.array(store[k])
            try:
                return self.decode(k)
            except Exception as e:  # a file that became unreadable after the listing
                from .folders import why_unreadable
                raise ValueError(f"cannot decode image {k.decode()} ({why_unreadable(e)}); "
                                 f"replace or delete the file") from None

        image = tf.numpy_function(decode, [key], tf.uint8, stateful=False)
        image.set_shape((*self.size, self.channels))
        return image

    def dataset(self, labels=None):
        """A tf.data.Dataset of the decoded images (with ``labels``, of (image, label)), in order."""
        import tensorflow as tf
        if labels is None:
            ds = tf.data.Dataset.from_tensor_slices(self.keys())
            return ds.map(self.read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = tf.data.Dataset.from_tensor_slices((self.keys(), labels))
        return ds.map(lambda p, y: (self.read(p), y), num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=True)

    def batches(self, batch_size: int):
        """uint8 numpy batches in order (for scoring a held-out fold without holding it)."""
        for b in self.dataset().batch(batch_size).prefetch(2).as_numpy_iterator():
            yield b


def memmap_rows(path: str, shape: tuple, fill, reuse: bool = True) -> np.ndarray:
    """The uint8 rows of ``shape`` memory-mapped from the ``.npy`` at ``path``. Unless the file
    holds such rows already (and ``reuse``), ``fill(out)`` writes them first into a fresh
    memory-mapped file that replaces ``path`` atomically: a killed write leaves no half file.
    Raises OSError or `OutputError` when the file cannot be written."""
    from ..files import atomic_path
    if reuse:
        try:
            rows = np.load(path, mmap_mode="r")
            if rows.shape == shape and rows.dtype == np.uint8:
                return rows
        except (OSError, ValueError):
            pass  # absent or unreadable: write again
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        fill(out)
        out.flush()
        del out
    return np.load(path, mmap_mode="r")
