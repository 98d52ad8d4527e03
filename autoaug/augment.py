"""Apply a Policy to a batch: vectorised, per image, stateless, traced once per structure.

The graph depends only on the policy's *structure* (the stage sequence and the number
of steps per sub-policy) and on the channel count. Its numbers (op ids, probabilities,
levels, magnitude ranges) enter as tensors, so every policy with the same structure,
whatever its ops and however many sub-policies it has, reuses one trace. Within a
step, images are partitioned by the op they drew and each op runs only on its own
images (``tf.dynamic_partition`` / ``tf.dynamic_stitch``).

Per-class policies use the same graph: every sub-policy (the default's, then each class
group's) is one row of a flat table, and three small tensors say which group each class
belongs to and where each group's rows start and how many there are. Each image draws a
row within its own group, so the class-to-group mapping is data too, never traced.

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
    for i, spec in enumerate(ops.TABLE):
        if spec.kind == "batch" or i == _IDENTITY:
            outs.append(parts[i])
        else:
            outs.append(ops.KERNELS[spec.name](parts[i], prm[i], op_keys[i]))
    return tf.dynamic_stitch(idx, outs)


def _groups(class_ids, group_of):
    """Per image, its class group (0 = the default sub-policies): class ids outside the
    lookup vector `group_of` belong to the default."""
    size = tf.shape(group_of)[0]
    inside = (class_ids >= 0) & (class_ids < size)
    return tf.where(inside, tf.gather(group_of, tf.clip_by_value(class_ids, 0, size - 1)), 0)


def _draw_rows(n, group, group_start, group_count, key):
    """Per image, a row of the sub-policy table drawn uniformly within its group's rows.

    Default-group images draw exactly as plain policies always have (one int32 draw in
    [0, count of default rows)), so plain policies give the same pixels as before
    per-class policies existed; class-group images use a second, independent draw.
    """
    default = tf.random.stateless_uniform([n], key, 0, group_count[0], tf.int32)
    wide = tf.random.stateless_uniform([n], tf.random.experimental.stateless_fold_in(key, 1),
                                       None, None, tf.int64)
    count = tf.cast(tf.gather(group_count, group), tf.int64)
    local = tf.cast(tf.math.floormod(wide, count), tf.int32)
    return tf.where(group > 0, tf.gather(group_start, group) + local, default)


def _sub_policies(images, groups, op_ids, probs, levels, table, key):
    """AutoAugment application: each image draws one sub-policy of its class group
    (`groups` = (group per image, group start rows, group row counts)) and runs its
    steps in order."""
    n = tf.shape(images)[0]
    keys = _split(key, 1 + op_ids.shape[1])
    choice = _draw_rows(n, *groups, keys[0])
    for l in range(op_ids.shape[1]):
        k_apply, k_sign, k_ops = _split(keys[l + 1], 3)
        apply = tf.random.stateless_uniform([n], k_apply) < tf.gather(probs[:, l], choice)
        signs = tf.where(tf.random.stateless_uniform([n], k_sign) < 0.5, -1.0, 1.0)
        images = _run_step(images, tf.gather(op_ids[:, l], choice), tf.gather(levels[:, l], choice),
                           apply, signs, table, k_ops)
    return images


def _single_step(images, labels, op_name, prob, level, table, key):
    """A stage that is one step: only its own op is in the graph."""
    spec, kernel = ops.OPS[op_name], ops.KERNELS[op_name]
    n = tf.shape(images)[0]
    k_apply, k_sign, k_op = _split(key, 3)
    apply = tf.random.stateless_uniform([n], k_apply) < prob
    signs = tf.where(tf.random.stateless_uniform([n], k_sign) < 0.5, -1.0, 1.0)
    op_ids = tf.fill([n], ops.OP_INDEX[op_name])
    params = ops.levels_to_params(op_ids, tf.fill([n], level), signs, table)
    if spec.kind == "batch":
        return kernel(images, labels, params[0], apply, k_op)
    mask = tf.cast(apply, tf.int32)
    parts = tf.dynamic_partition(images, mask, 2)
    idx = tf.dynamic_partition(tf.range(n), mask, 2)
    out = kernel(parts[1], tf.dynamic_partition(params, mask, 2)[1], k_op)
    return tf.dynamic_stitch(idx, [parts[0], out]), labels


def _graph(structure: tuple, channels: int, with_labels: bool):
    """The tf.function for one policy structure (cached)."""
    cache_key = (structure, channels, with_labels)
    if cache_key in _GRAPHS:
        return _GRAPHS[cache_key]
    num_steps = next((s[1] for s in structure if isinstance(s, tuple)), 1)
    n_stages = len(structure)

    def run(images, labels, class_ids, group_of, group_start, group_count, op_ids, probs, levels,
            stage_probs, stage_levels, table, key):
        keys = _split(key, n_stages + 1)
        for i, stage in enumerate(structure):
            if isinstance(stage, tuple):
                groups = (_groups(class_ids, group_of), group_start, group_count)
                images = _sub_policies(images, groups, op_ids, probs, levels, table, keys[i])
            else:
                images, labels = _single_step(images, labels, stage, stage_probs[i],
                                              stage_levels[i], table, keys[i])
        return images, labels

    signature = [
        tf.TensorSpec([None, None, None, channels], tf.uint8),
        tf.TensorSpec([None, None], tf.float32),
        tf.TensorSpec([None], tf.int32),  # class id per image
        tf.TensorSpec([None], tf.int32),  # class -> group (0 = default)
        tf.TensorSpec([None], tf.int32),  # group -> first row
        tf.TensorSpec([None], tf.int32),  # group -> number of rows
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
    """The numbers of a policy as arrays.

    One table of sub-policy rows: the default's first, then each class group's (an empty
    list becomes one Identity p=0 row); shorter sub-policies are padded with Identity p=0.
    ``group_of[c]`` is the group of class c (0 = default, g + 1 = class_policies[g]);
    ``group_start`` and ``group_count`` locate each group's rows.
    """
    num_steps = max(policy.num_steps, 1)
    none = ((Step("Identity", 0.0, 0.0),),)
    rows, starts, counts = [], [], []
    for subs in [policy.sub_policies] + [g.sub_policies for g in policy.class_policies]:
        subs = subs or none
        starts.append(len(rows))
        counts.append(len(subs))
        rows.extend(subs)
    op_ids = np.full([len(rows), num_steps], _IDENTITY, np.int32)
    probs = np.zeros([len(rows), num_steps], np.float32)
    levels = np.zeros([len(rows), num_steps], np.float32)
    for i, sub in enumerate(rows):
        for j, step in enumerate(sub):
            op_ids[i, j], probs[i, j], levels[i, j] = ops.OP_INDEX[step.op], step.p, step.level
    n_classes = max((c + 1 for g in policy.class_policies for c in g.classes), default=1)
    group_of = np.zeros([n_classes], np.int32)
    for g, group in enumerate(policy.class_policies):
        group_of[list(group.classes)] = g + 1
    stages = [s for s in policy.stages if isinstance(s, Step) or policy.has_sub_policies]
    stage_probs = np.array([s.p if isinstance(s, Step) else 1.0 for s in stages], np.float32)
    stage_levels = np.array([s.level if isinstance(s, Step) else 0.0 for s in stages], np.float32)
    return dict(op_ids=op_ids, probs=probs, levels=levels, stage_probs=stage_probs,
                stage_levels=stage_levels, group_of=group_of,
                group_start=np.array(starts, np.int32), group_count=np.array(counts, np.int32))


def class_ids(labels) -> tf.Tensor:
    """int32 [B] class ids from labels: class ids [B] (or [B, 1]), or one-hot/soft [B, K] (argmax)."""
    labels = tf.convert_to_tensor(labels)
    if not (labels.dtype.is_integer or labels.dtype.is_floating or labels.dtype == tf.bool):
        raise PolicyError(f"labels must be numbers, got {labels.dtype.name}")
    rank = labels.shape.rank
    if rank == 2 and labels.shape[-1] == 1:
        labels, rank = labels[:, 0], 1
    if rank == 2:
        return tf.argmax(tf.cast(labels, tf.float32), axis=-1, output_type=tf.int32)
    if rank != 1:
        raise PolicyError(f"labels must be class ids [B] or one-hot [B, K], got shape {labels.shape}")
    wide = tf.round(tf.cast(labels, tf.float64)) if labels.dtype.is_floating else tf.cast(labels, tf.int64)
    # ids out of range use the default sub-policies; clip so that none wraps around in int32
    return tf.cast(tf.clip_by_value(wide, -1, 2 ** 31 - 1), tf.int32)


def apply_policy(policy: Policy, images, labels=None, seed=0, epoch=0, index=0):
    """Augment a uint8 batch [B, H, W, C] (C = 1 or 3) with `policy`.

    Works eagerly and inside ``Dataset.map`` after ``batch``. ``labels`` are required
    when the policy has a MixUp/CutMix stage (one-hot float [B, classes]; the mixed
    labels are returned) or is per-class (class ids [B] or one-hot/soft [B, K], whose
    argmax is the class). With labels the result is ``(images, labels)``, the labels
    unchanged unless mixed; without, just the images. ``Policy.apply`` calls this.

    Args:
        policy: the Policy to apply.
        images: uint8 ``[B, H, W, C]``, C = 1 or 3 (array or tensor).
        labels: optional; see above.
        seed, epoch, index: the batch's stateless key (``batch_key``): the same three
            give the same pixels, in any process and under any ``num_parallel_calls``.

    Returns:
        The augmented uint8 images, or ``(images, labels)`` when labels are passed.

    Raises:
        PolicyError: images that are not a uint8 batch with 1 or 3 channels, labels
            missing for a MixUp/CutMix or per-class policy, or labels of the wrong shape.

    >>> import numpy as np
    >>> from autoaug import builtin
    >>> images = np.random.default_rng(0).integers(0, 256, [8, 32, 32, 3], dtype=np.uint8)
    >>> policy = builtin("randaugment-n1-m9+standard")
    >>> out = apply_policy(policy, images, seed=42, epoch=0, index=3)
    >>> out.shape, out.dtype.name
    (TensorShape([8, 32, 32, 3]), 'uint8')
    >>> bool(np.array_equal(out, policy.apply(images, seed=42, epoch=0, index=3)))
    True
    >>> mixup = Policy(stages=[Step("MixUp", 1.0, 5.0)])
    >>> _, mixed = apply_policy(mixup, images, np.eye(8, dtype=np.float32), seed=1)
    >>> mixed.shape, bool(np.allclose(mixed.numpy().sum(axis=1), 1.0))
    (TensorShape([8, 8]), True)
    >>> apply_policy(mixup, images)
    Traceback (most recent call last):
    ...
    autoaug.policy.PolicyError: the policy mixes labels (MixUp/CutMix): pass one-hot labels
    """
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8:
        raise PolicyError(f"policies apply to uint8 images, got {images.dtype.name}")
    if images.shape.rank != 4 or images.shape[-1] not in (1, 3):
        raise PolicyError(f"images must be a batch [B, H, W, C] with C = 1 or 3, got {images.shape}")
    named = f"policy {policy.name}" if policy.name else "the policy"
    if policy.uses_labels and labels is None:
        raise PolicyError(f"{named} mixes labels (MixUp/CutMix): pass one-hot labels")
    if policy.per_class and labels is None:
        raise PolicyError(f"per-class {named} needs labels: pass class ids [B] or one-hot labels [B, K]")
    if labels is not None:
        labels = tf.convert_to_tensor(labels)
        if policy.uses_labels and (labels.shape.rank != 2 or labels.shape[-1] == 1):
            raise PolicyError(f"{named} mixes labels (MixUp/CutMix): pass one-hot labels [B, K], "
                              f"got shape {labels.shape}")
    structure = policy.structure()
    if not structure:
        return images if labels is None else (images, labels)
    n = tf.shape(images)[0]
    if policy.per_class:
        ids = class_ids(labels)
        if images.shape[0] is not None and ids.shape[0] is not None and images.shape[0] != ids.shape[0]:
            raise PolicyError(f"{ids.shape[0]} labels for a batch of {images.shape[0]} images")
    else:
        ids = tf.zeros([n], tf.int32)
    t = policy_tensors(policy)
    fn = _graph(structure, int(images.shape[-1]), policy.uses_labels)
    lab = tf.cast(labels, tf.float32) if policy.uses_labels else tf.zeros([n, 0])
    out, mixed = fn(images, lab, ids, t["group_of"], t["group_start"], t["group_count"],
                    t["op_ids"], t["probs"], t["levels"], t["stage_probs"], t["stage_levels"],
                    ops.range_table(policy.ranges), batch_key(seed, epoch, index))
    if labels is None:
        return out
    return out, (mixed if policy.uses_labels else labels)


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
        if self.policy.per_class:
            raise PolicyError("a per-class policy needs each image's label: apply it in tf.data "
                              "(Policy.apply(images, labels)), not in a layer")
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
