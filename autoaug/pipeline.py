"""tf.data builders: shuffle -> batch -> policy (vectorised, per image) -> cast -> prefetch.

Data arrive as in-memory uint8 arrays (see `autoaug.data`), so there is nothing to
cache: decoding happened once per process. Augmentation runs after batching, on the
whole batch, with a stateless key derived from (seed, epoch, batch index); the
result is identical whatever `num_parallel_calls` is.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from .policy import Policy


def _labels(y, num_classes: int, one_hot: bool):
    y = tf.cast(y, tf.int32)
    return tf.one_hot(y, num_classes) if one_hot else y


def train_dataset(x: np.ndarray, y: np.ndarray, policy: Policy, *, batch_size: int,
                  num_classes: int, seed: int = 0, epochs: int | None = None,
                  one_hot: bool = False, num_parallel_calls=tf.data.AUTOTUNE) -> tf.data.Dataset:
    """Augmented training batches of (float32 images in 0..255, labels).

    Labels are one-hot when asked or when the policy mixes them (MixUp/CutMix).
    With ``epochs=None`` the dataset repeats forever; pass ``steps_per_epoch`` to fit.
    """
    steps = steps_per_epoch(len(x), batch_size)
    one_hot = one_hot or policy.uses_labels
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).repeat(epochs).enumerate()

    def augment(g, batch):
        images, labels = batch
        labels = _labels(labels, num_classes, one_hot)
        epoch, index = g // steps, g % steps
        if policy.uses_labels:
            images, labels = policy.apply(images, labels, seed=seed, epoch=epoch, index=index)
        else:
            images = policy.apply(images, seed=seed, epoch=epoch, index=index)
        return tf.cast(images, tf.float32), labels

    ds = ds.map(augment, num_parallel_calls=num_parallel_calls, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(x: np.ndarray, y: np.ndarray, *, batch_size: int, num_classes: int,
                 one_hot: bool = False) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    ds = ds.map(lambda im, lab: (tf.cast(im, tf.float32), _labels(lab, num_classes, one_hot)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


def augmented_samples(x: np.ndarray, policy: Policy, n: int = 8, copies: int = 4,
                      seed: int = 0) -> np.ndarray:
    """[copies + 1, n, H, W, C]: the originals, then `copies` augmented versions."""
    images = tf.convert_to_tensor(x[:n])
    rows = [images] + [policy.apply(images, seed=seed, index=i) for i in range(copies)]
    return np.stack([r.numpy() for r in rows])
