"""The Dataset type, DataError, and the image-folder layout that sources and cache both read."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """A dataset that cannot be loaded or split; the message is one line with the fix."""


@dataclass(repr=False)
class Dataset:
    """Train and test splits as uint8 NHWC images and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    name: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
                f"image_shape={self.image_shape}, num_classes={self.num_classes})")



def visible_dirs(path: str) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def find_split_root(root: str) -> str | None:
    """``root`` itself if it has ``train/``, or its only sub-folder if that one has."""
    if os.path.isdir(os.path.join(root, "train")):
        return root
    subs = visible_dirs(root)
    if len(subs) == 1 and os.path.isdir(os.path.join(root, subs[0], "train")):
        return os.path.join(root, subs[0])
    return None
