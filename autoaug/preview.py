"""A PNG grid of augmented samples: row 0 the originals, then one row per augmented copy
(for a schedule: one block of rows per point of training shown)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from .files import atomic_path
from .pipeline import augmented_samples
from .policy import Policy


def grid_image(samples: np.ndarray, scale: int = 3, pad: int = 2) -> Image.Image:
    """[rows, cols, H, W, C] uint8 -> one PIL image with a white gap between cells."""
    rows, cols, h, w, c = samples.shape
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for r in range(rows):
        for k in range(cols):
            cell = samples[r, k]
            if c == 1:
                cell = np.repeat(cell, 3, axis=-1)
            y, x = pad + r * (h + pad), pad + k * (w + pad)
            canvas[y:y + h, x:x + w] = cell
    img = Image.fromarray(canvas)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def write_preview(x: np.ndarray, policy: Policy, path: str, n: int = 8, copies: int = 5,
                  seed: int = 0, y: np.ndarray | None = None, progress=None) -> str:
    """Write the grid atomically to `path` and return the path.

    ``y`` (the labels of `x`) is needed for per-class and label-mixing policies.
    ``progress``: fractions of training; the originals, then `copies` rows for each, with
    the same random draws, so that only the schedule differs between blocks (default: 0).
    """
    pick = np.linspace(0, len(x) - 1, min(n, len(x))).astype(int)  # not all of one class
    labels = None if y is None else np.asarray(y)[pick]
    blocks = [augmented_samples(x[pick], policy, n=n, copies=copies, seed=seed, y=labels, progress=f)
              for f in (progress if progress is not None else [None])]
    img = grid_image(np.concatenate([blocks[0][:1]] + [b[1:] for b in blocks]))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
