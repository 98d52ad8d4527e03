"""Stratified, deterministic splits: validation/train subsets and K folds.

Same labels and seed, same indices: a split never depends on anything but its arguments.
"""
from __future__ import annotations

import numpy as np

from .dataset import DataError, Dataset


def _allocate(counts: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` over classes in proportion to ``counts`` (largest remainder, ties by class)."""
    total = int(counts.sum())
    if n == 0 or total == 0:
        return np.zeros_like(counts)
    exact = counts * (n / total)
    quota = np.floor(exact).astype(np.int64)
    quota = np.minimum(quota, counts)
    short = n - int(quota.sum())
    if short > 0:
        remainder = exact - quota
        remainder[quota >= counts] = -1.0
        order = np.lexsort((np.arange(len(counts)), -remainder))  # largest first, then class
        for c in order:
            if short == 0:
                break
            if quota[c] < counts[c]:
                quota[c] += 1
                short -= 1
    return quota


def split_indices(labels, n_train: int | None = None, n_val: int | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, deterministic ``(train_idx, val_idx)`` into ``labels``.

    Each class is permuted once from ``seed``; validation takes the head of every class
    (in proportion to class frequency) and train the next ones. So for one seed the
    validation set does not depend on ``n_train``. ``None`` means "all remaining" (if
    both are None, everything is train). Both index arrays are shuffled (not class-sorted).
    """
    labels = np.asarray(labels).reshape(-1)
    n = len(labels)
    for what, v in (("n_train", n_train), ("n_val", n_val)):
        if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool)
                              or v < 0):
            raise DataError(f"{what} must be a non-negative integer or None, not {v!r}")
    if n_train is None and n_val is None:
        want_train, want_val = n, 0
    elif n_val is None:
        want_train, want_val = n_train, n - n_train
    elif n_train is None:
        want_train, want_val = n - n_val, n_val
    else:
        want_train, want_val = n_train, n_val
    if want_train < 0 or want_val < 0 or want_train + want_val > n:
        asked = " + ".join(f"{k}={v}" for k, v in (("n_train", n_train), ("n_val", n_val))
                           if v is not None)
        raise DataError(f"{asked} is more than the {n} images of the train split; ask for fewer")
    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes)).astype(np.int64)
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(classes))]
    q_val = _allocate(counts, int(want_val))
    q_train = _allocate(counts - q_val, int(want_train))
    val = np.concatenate([p[:q] for p, q in zip(per_class, q_val)] + [np.zeros(0, np.int64)])
    train = np.concatenate([p[qv:qv + qt] for p, qv, qt in zip(per_class, q_val, q_train)]
                           + [np.zeros(0, np.int64)])
    train = np.random.default_rng([seed, 1]).permutation(train).astype(np.int64)
    val = np.random.default_rng([seed, 2]).permutation(val).astype(np.int64)
    return train, val


def reduced_split(ds: Dataset, n_train: int | None = None, n_val: int | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_tr, y_tr, x_val, y_val)`` drawn from the TRAIN split only, stratified by class.

    Example: ``reduced_split(ds, 4000, 1000, seed=0)`` is "reduced CIFAR-10" with a
    1,000-image validation set. The test split is never touched. Same seed, same images.
    """
    tr, va = split_indices(ds.y_train, n_train, n_val, seed)
    return ds.x_train[tr], ds.y_train[tr], ds.x_train[va], ds.y_train[va]



def fold_indices(y: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """K disjoint, stratified index sets covering y (each class spread evenly over the folds)."""
    rng = np.random.default_rng(seed)
    assign = np.empty(len(y), np.int64)
    offset = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        assign[idx] = (np.arange(len(idx)) + offset) % folds
        offset += len(idx)  # the next class starts where this one stopped: balanced fold sizes
    return [np.flatnonzero(assign == k) for k in range(folds)]
