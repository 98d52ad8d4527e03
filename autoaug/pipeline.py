"""tf.data builders: shuffle -> batch -> policy (vectorised, per image) -> cast -> prefetch.

Data arrive as in-memory uint8 arrays (see `autoaug.data`), decoded once per process, or
as streamed `ImageFiles`, whose paths are shuffled and then decoded in parallel, in order. Augmentation runs after batching, on the
whole batch, with a stateless key derived from (seed, epoch, batch index); the
result is identical whatever `num_parallel_calls` is. Small images are augmented several
consecutive batches per call (`augment.batches_per_call`), each with its own key, then split
back into the same batches: the same pixels at a fraction of the per-call cost.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from .augment import batches_per_call, positive_int
from .data.stream import ImageFiles
from .policy import Policy, PolicyError


def _labels(y, num_classes: int, one_hot: bool):
    y = tf.cast(y, tf.int32)
    return tf.one_hot(y, num_classes) if one_hot else y


def train_dataset(x: np.ndarray, y: np.ndarray, policy: Policy, *, batch_size: int,
                  num_classes: int, seed: int = 0, epochs: int | None = None,
                  one_hot: bool = False, num_parallel_calls=tf.data.AUTOTUNE,
                  start_epoch: int = 0, total_epochs: int | None = None) -> tf.data.Dataset:
    """Augmented training batches of (float32 images in 0..255, labels).

    Labels are one-hot when asked or when the policy mixes them (MixUp/CutMix). A
    per-class policy is given each batch's labels to pick each image's sub-policies.
    With ``epochs=None`` the dataset repeats forever; pass ``steps_per_epoch`` to fit.
    ``start_epoch``: begin at that epoch, with the data order and augmentation keys of an
    uninterrupted run (the batches before it are skipped before they are augmented).
    ``total_epochs``: the length of the training (default ``epochs``); a scheduled policy
    applies ``policy.at(epoch / total_epochs)`` in each epoch.
    """
    total = total_epochs if total_epochs is not None else epochs
    if policy.schedule is not None and not positive_int(total):
        raise PolicyError("a scheduled policy needs total_epochs, the number of epochs of the training "
                          f"(its progress is epoch / total_epochs), got {total!r}")
    one_hot = one_hot or policy.uses_labels
    ds = tf.data.Dataset.from_tensor_slices((_elements(x), y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = _decoded(ds, x)  # streamed files: the paths were shuffled, now decode them in parallel
    height, width = ds.element_spec[0].shape[:2]
    per_call = batches_per_call(policy, batch_size, height, width)
    calls = steps_per_epoch(len(x), batch_size * per_call)  # per epoch; only an epoch's last is short
    ds = ds.batch(batch_size * per_call).repeat(epochs).enumerate()
    if start_epoch:
        ds = ds.skip(start_epoch * calls)

    image_shape = ds.element_spec[1][0].shape  # [None, H, W, C]

    def augment(c, batch):
        images, labels = batch
        labels = _labels(labels, num_classes, one_hot)
        epoch, index = c // calls, (c % calls) * per_call
        progress = None if policy.schedule is None else tf.cast(epoch, tf.float32) / float(total)
        kwargs = dict(seed=seed, epoch=epoch, index=index, progress=progress, batch_size=batch_size,
                      batches=per_call)
        if policy.needs_labels:
            images, labels = policy.apply(images, labels, **kwargs)
        else:
            images = policy.apply(images, **kwargs)
        # Policies keep the image size; saying so gives every policy the same element spec,
        # so that a process compiles its (XLA) training step once, not once per policy.
        images.set_shape(image_shape)
        return tf.cast(images, tf.float32), labels

    ds = ds.map(augment, num_parallel_calls=num_parallel_calls, deterministic=True)
    if per_call > 1:
        ds = ds.flat_map(lambda images, labels: _batches(images, labels, batch_size))
    # tf.data's default graph rewrites copy the whole function library on every iterator:
    # seconds for a large policy (AutoAugment's graph has ~13k nodes), and none of them applies
    # to this shuffle -> batch -> map -> prefetch chain. Off: the same batches, ~2x faster to start.
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def _batches(images, labels, batch_size: int) -> tf.data.Dataset:
    """The consecutive batches of one call, one element each."""
    starts = tf.data.Dataset.range(0, tf.cast(tf.shape(images)[0], tf.int64), batch_size)
    return starts.map(lambda s: (images[s:s + batch_size], labels[s:s + batch_size]))


def eval_dataset(x: np.ndarray, y: np.ndarray, *, batch_size: int, num_classes: int,
                 one_hot: bool = False) -> tf.data.Dataset:
    ds = _decoded(tf.data.Dataset.from_tensor_slices((_elements(x), y)), x).batch(batch_size)
    ds = ds.map(lambda im, lab: (tf.cast(im, tf.float32), _labels(lab, num_classes, one_hot)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _elements(x):
    """What `from_tensor_slices` takes: the images, or the keys of streamed `ImageFiles`."""
    return x.keys() if isinstance(x, ImageFiles) else x


def _decoded(ds: tf.data.Dataset, x) -> tf.data.Dataset:
    """(key, label) -> (image, label) for streamed `ImageFiles`, in parallel and in order."""
    if not isinstance(x, ImageFiles):
        return ds
    return ds.map(lambda p, label: (x.read(p), label), num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


def _labels_for(policy: Policy, y) -> np.ndarray | None:
    """The labels `policy.apply` needs for `y` (int class ids), or None when it needs none.

    Per-class policies read the class ids as they are; MixUp/CutMix get them one-hot.
    """
    if not policy.needs_labels:
        return None
    if y is None:
        return None  # let apply_policy say what is missing
    y = np.asarray(y)
    if policy.uses_labels and y.ndim == 1:
        return np.eye(int(y.max()) + 1 if len(y) else 1, dtype=np.float32)[y.astype(np.int64)]
    return y


def augmented_samples(x: np.ndarray, policy: Policy, n: int = 8, copies: int = 4,
                      seed: int = 0, y: np.ndarray | None = None, progress: float | None = None) -> np.ndarray:
    """[copies + 1, n, H, W, C]: the originals, then `copies` augmented versions.

    ``y`` (class ids [N] or one-hot [N, K]) is needed for per-class and label-mixing
    policies; only the images are returned. ``progress``: where a scheduled policy is in
    its schedule (default 0, the start).
    """
    images = tf.convert_to_tensor(np.asarray(x[:n]))
    labels = _labels_for(policy, None if y is None else np.asarray(y)[:n])
    rows = [images]
    for i in range(copies):
        out = policy.apply(images, labels, seed=seed, index=i, progress=progress)
        rows.append(out if labels is None else out[0])
    return np.stack([r.numpy() for r in rows])


def augment_array(x: np.ndarray, y: np.ndarray | None, policy: Policy, seed: int, copy_index: int,
                  batch_size: int = 256) -> np.ndarray:
    """uint8 images `x` [N, H, W, C] augmented by `policy`, in order, one copy.

    Batches of `batch_size` in order; batch b draws from the stateless key
    (seed, epoch=copy_index, index=b), so the same seed, copy index and batch size give
    the same pixels. ``y`` (class ids [N] or one-hot [N, K]) is used by per-class
    policies (and one-hot, by MixUp/CutMix); it may be None for other policies.
    """
    out = list(augmented_batches(x, y, policy, seed, copy_index, batch_size))
    return np.concatenate(out) if out else np.asarray(x).copy()


def augmented_batches(x, y: np.ndarray | None, policy: Policy, seed: int, copy_index: int,
                      batch_size: int = 256):
    """`augment_array` one uint8 batch at a time (streamed `ImageFiles` are read the same way)."""
    if not isinstance(x, ImageFiles):
        x = np.asarray(x)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if y is not None and len(y) != len(x):
        raise ValueError(f"{len(y)} labels for {len(x)} images")
    labels = _labels_for(policy, y)
    batches = (x.batches(batch_size) if isinstance(x, ImageFiles)
               else (x[s:s + batch_size] for s in range(0, len(x), batch_size)))
    for b, batch in enumerate(batches):
        images = tf.convert_to_tensor(batch)
        start = b * batch_size
        if labels is None:
            aug = policy.apply(images, seed=seed, epoch=copy_index, index=b)
        else:
            aug = policy.apply(images, labels[start:start + batch_size], seed=seed,
                               epoch=copy_index, index=b)[0]
        yield aug.numpy()
