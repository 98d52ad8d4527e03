"""Apply a Policy to a batch: vectorised, per image, stateless, traced once per structure.

The graph depends only on the policy's *structure* (the stage sequence and the number
of steps per sub-policy) and on the channel count. Its numbers (op ids, probabilities,
levels, magnitude ranges) enter as tensors, so every policy with the same structure,
whatever its ops and however many sub-policies it has, reuses one trace. Within a
step, images are partitioned by the op they drew and each op runs only on its own
images (``tf.dynamic_partition`` / ``tf.dynamic_stitch``).

Randomness: one stateless key per batch, derived from (seed, epoch, batch index), then
split per stage and step. Every draw has one value per image.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from . import ops
from .policy import Policy, PolicyError, Step

_IDENTITY = ops.OP_INDEX["Identity"]
_N_OPS = len(ops.OP_NAMES)
_GRAPHS: dict = {}


def tracing_count() -> int:
    """How many times any augmentation graph has been traced in this process."""
    return sum(fn.experimental_get_tracing_count() for fn in _GRAPHS.values())


def batch_key(seed, epoch=0, index=0) -> tf.Tensor:
    """The stateless key of one batch: derived from (seed, epoch, batch index)."""
    key = ops.seed_key(seed)
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(epoch, tf.int64))
    return tf.random.experimental.stateless_fold_in(key, tf.cast(index, tf.int64))


def _split(key, n):
    return tf.unstack(tf.random.experimental.stateless_split(key, n))


def _run_step(images, op_ids, levels, apply, signs, table, key):
    """One step for the whole batch: image i runs op_ids[i] at levels[i] where apply[i]."""
    op_ids = tf.where(apply, op_ids, _IDENTITY)
    params = ops.levels_to_params(op_ids, levels, signs, table)
    n = tf.shape(images)[0]
    parts = tf.dynamic_partition(images, op_ids, _N_OPS)
    idx = tf.dynamic_partition(tf.range(n), op_ids, _N_OPS)
    prm = tf.dynamic_partition(params, op_ids, _N_OPS)
    op_keys = _split(key, _N_OPS)
    outs = []
    for i, spec in enumerate(ops._TABLE):
        if spec.kind == "batch" or i == _IDENTITY:
            outs.append(parts[i])
        else:
            outs.append(spec.fn(parts[i], prm[i], op_keys[i]))
    return tf.dynamic_stitch(idx, outs)


def _sub_policies(images, op_ids, probs, levels, table, key):
    """AutoAugment application: each image draws one sub-policy, runs its steps in order."""
    n = tf.shape(images)[0]
    k = tf.shape(op_ids)[0]
    keys = _split(key, 1 + op_ids.shape[1])
    choice = tf.random.stateless_uniform([n], keys[0], 0, k, tf.int32)
    for l in range(op_ids.shape[1]):
        k_apply, k_sign, k_ops = _split(keys[l + 1], 3)
        apply = tf.random.stateless_uniform([n], k_apply) < tf.gather(probs[:, l], choice)
        signs = tf.where(tf.random.stateless_uniform([n], k_sign) < 0.5, -1.0, 1.0)
        images = _run_step(images, tf.gather(op_ids[:, l], choice), tf.gather(levels[:, l], choice),
                           apply, signs, table, k_ops)
    return images


def _single_step(images, labels, op_name, prob, level, table, key):
    """A stage that is one step: only its own op is in the graph."""
    spec = ops.OPS[op_name]
    n = tf.shape(images)[0]
    k_apply, k_sign, k_op = _split(key, 3)
    apply = tf.random.stateless_uniform([n], k_apply) < prob
    signs = tf.where(tf.random.stateless_uniform([n], k_sign) < 0.5, -1.0, 1.0)
    op_ids = tf.fill([n], ops.OP_INDEX[op_name])
    params = ops.levels_to_params(op_ids, tf.fill([n], level), signs, table)
    if spec.kind == "batch":
        return spec.fn(images, labels, params[0], apply, k_op)
    mask = tf.cast(apply, tf.int32)
    parts = tf.dynamic_partition(images, mask, 2)
    idx = tf.dynamic_partition(tf.range(n), mask, 2)
    out = spec.fn(parts[1], tf.dynamic_partition(params, mask, 2)[1], k_op)
    return tf.dynamic_stitch(idx, [parts[0], out]), labels


def _graph(structure: tuple, channels: int, with_labels: bool):
    """The tf.function for one policy structure (cached)."""
    cache_key = (structure, channels, with_labels)
    if cache_key in _GRAPHS:
        return _GRAPHS[cache_key]
    num_steps = next((s[1] for s in structure if isinstance(s, tuple)), 1)
    n_stages = len(structure)

    def run(images, labels, op_ids, probs, levels, stage_probs, stage_levels, table, key):
        keys = _split(key, n_stages + 1)
        for i, stage in enumerate(structure):
            if isinstance(stage, tuple):
                images = _sub_policies(images, op_ids, probs, levels, table, keys[i])
            else:
                images, labels = _single_step(images, labels, stage, stage_probs[i],
                                              stage_levels[i], table, keys[i])
        return images, labels

    signature = [
        tf.TensorSpec([None, None, None, channels], tf.uint8),
        tf.TensorSpec([None, None], tf.float32),
        tf.TensorSpec([None, num_steps], tf.int32),
        tf.TensorSpec([None, num_steps], tf.float32),
        tf.TensorSpec([None, num_steps], tf.float32),
        tf.TensorSpec([n_stages], tf.float32),
        tf.TensorSpec([n_stages], tf.float32),
        tf.TensorSpec([_N_OPS, 5], tf.float32),
        tf.TensorSpec([2], tf.int64),
    ]
    fn = tf.function(run, input_signature=signature, autograph=False)
    _GRAPHS[cache_key] = fn
    return fn


def policy_tensors(policy: Policy) -> dict:
    """The numbers of a policy as arrays; shorter sub-policies are padded with Identity p=0."""
    num_steps = max(policy.num_steps, 1)
    k = max(len(policy.sub_policies), 1)
    op_ids = np.full([k, num_steps], _IDENTITY, np.int32)
    probs = np.zeros([k, num_steps], np.float32)
    levels = np.zeros([k, num_steps], np.float32)
    for i, sub in enumerate(policy.sub_policies):
        for j, step in enumerate(sub):
            op_ids[i, j], probs[i, j], levels[i, j] = ops.OP_INDEX[step.op], step.p, step.level
    stages = [s for s in policy.stages if isinstance(s, Step) or policy.sub_policies]
    stage_probs = np.array([s.p if isinstance(s, Step) else 1.0 for s in stages], np.float32)
    stage_levels = np.array([s.level if isinstance(s, Step) else 0.0 for s in stages], np.float32)
    return dict(op_ids=op_ids, probs=probs, levels=levels, stage_probs=stage_probs,
                stage_levels=stage_levels)


def apply_policy(policy: Policy, images, labels=None, seed=0, epoch=0, index=0):
    """Augment a uint8 batch [B, H, W, C] (C = 1 or 3) with `policy`.

    Works eagerly and inside ``Dataset.map`` after ``batch``. ``labels`` (one-hot float
    [B, classes]) are required when the policy has a MixUp/CutMix stage; then the
    mixed ``(images, labels)`` pair is returned, otherwise just the images.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8:
        raise PolicyError(f"policies apply to uint8 images, got {images.dtype.name}")
    if images.shape.rank != 4 or images.shape[-1] not in (1, 3):
        raise PolicyError(f"images must be a batch [B, H, W, C] with C = 1 or 3, got {images.shape}")
    if policy.uses_labels and labels is None:
        raise PolicyError(f"policy {policy.name or ''} mixes labels (MixUp/CutMix): pass one-hot labels")
    structure = policy.structure()
    if not structure:
        return images if labels is None else (images, labels)
    t = policy_tensors(policy)
    fn = _graph(structure, int(images.shape[-1]), labels is not None)
    lab = tf.zeros([tf.shape(images)[0], 0]) if labels is None else tf.cast(labels, tf.float32)
    out, lab = fn(images, lab, t["op_ids"], t["probs"], t["levels"], t["stage_probs"],
                  t["stage_levels"], ops.range_table(policy.ranges), batch_key(seed, epoch, index))
    return out if labels is None else (out, lab)


@keras.saving.register_keras_serializable(package="autoaug")
class PolicyLayer(keras.layers.Layer):
    """A Keras layer that augments in training and passes through at inference.

    Inputs are images in 0..255 (any dtype); they are rounded to uint8 for the ops and
    returned in the input dtype. Each call draws from (seed, call counter), so a model
    replays the same augmentation sequence for the same seed.
    """

    def __init__(self, policy, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.policy = policy if isinstance(policy, Policy) else Policy.from_dict(policy)
        if self.policy.uses_labels:
            raise PolicyError("MixUp/CutMix need labels: apply them in tf.data, not in a layer")
        self.seed = int(seed)
        self._calls = tf.Variable(0, dtype=tf.int64, trainable=False, name="augment_calls")

    def call(self, inputs, training=None):
        if not training:
            return inputs
        dtype = inputs.dtype
        images = inputs if dtype == tf.uint8 else tf.cast(tf.clip_by_value(tf.round(inputs), 0, 255), tf.uint8)
        out = apply_policy(self.policy, images, seed=self.seed, index=self._calls.assign_add(1))
        return out if dtype == tf.uint8 else tf.cast(out, dtype)

    def get_config(self):
        return {**super().get_config(), "policy": self.policy.to_dict(), "seed": self.seed}
