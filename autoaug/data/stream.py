"""Images that stay on disk: a file list read through tf.data, for data larger than memory.

`ImageFiles` stands in for a uint8 ``[N, H, W, C]`` array wherever autoaug takes one
(``len``, ``shape``, indexing with an index array or a slice gives another `ImageFiles`;
``np.asarray`` decodes, for small subsets such as previews). `autoaug.pipeline` reads it
as paths -> shuffle (of the paths) -> parallel decode and resize -> batch -> policy ->
prefetch, so memory holds the paths and a few batches, whatever the number of images.

Each file is decoded by `autoaug.data.folders.decode_image` (Pillow, inside
``tf.numpy_function``), the function the in-memory loader uses: the same seed gives the
same pixels streamed or in memory.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .folders import decode_image


class ImageFiles:
    """Image files decoded on read to uint8 ``[height, width, channels]``."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths, size: tuple[int, int], channels: int, resize: str = "crop"):
        self.paths = np.asarray(paths, dtype=object)
        self.size, self.channels, self.resize = (int(size[0]), int(size[1])), int(channels), resize

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), *self.size, self.channels)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.decode(self.paths[index])
        return ImageFiles(self.paths[index], self.size, self.channels, self.resize)

    def decode(self, path) -> np.ndarray:
        """One image, as the in-memory loader decodes it."""
        if isinstance(path, bytes):
            path = path.decode()
        return decode_image(path, self.size, self.channels, self.resize)

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, np.uint8)
        for i, p in enumerate(self.paths):
            out[i] = self.decode(p)
        return out if dtype is None else out.astype(dtype)

    def fingerprint(self) -> bytes:
        """What identifies these images for tracking: the paths and the decoding."""
        h = hashlib.sha256(repr((self.size, self.channels, self.resize)).encode())
        for p in self.paths:
            h.update(str(p).encode() + b"\0")
        return h.digest()

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files, {self.size[0]}x{self.size[1]}x{self.channels}, {self.resize})"

    # ------------------------------------------------------------------ tf.data
    def path_tensor(self):
        """The paths as a 1-D string array for ``tf.data.Dataset.from_tensor_slices``."""
        return np.array([str(p).encode() for p in self.paths], dtype=object)

    def read(self, path):
        """A graph function: a scalar path tensor -> the uint8 image tensor."""
        import tensorflow as tf

        def decode(p):
            try:
                return self.decode(p)
            except Exception as e:  # a file that became unreadable after the listing
                from .folders import why_unreadable
                raise ValueError(f"cannot decode image {p.decode()} ({why_unreadable(e)}); "
                                 f"replace or delete the file") from None

        image = tf.numpy_function(decode, [path], tf.uint8, stateful=False)
        image.set_shape((*self.size, self.channels))
        return image

    def dataset(self, labels=None):
        """A tf.data.Dataset of the decoded images (with ``labels``, of (image, label)), in order."""
        import tensorflow as tf
        if labels is None:
            ds = tf.data.Dataset.from_tensor_slices(self.path_tensor())
            return ds.map(self.read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = tf.data.Dataset.from_tensor_slices((self.path_tensor(), labels))
        return ds.map(lambda p, y: (self.read(p), y), num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=True)

    def batches(self, batch_size: int):
        """uint8 numpy batches in order (for scoring a held-out fold without holding it)."""
        for b in self.dataset().batch(batch_size).prefetch(2).as_numpy_iterator():
            yield b
