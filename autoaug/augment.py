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

Schedules use the same graph too: every table above has one slice per keyframe (a
policy without schedule is one keyframe), and the graph picks the keyframe in effect at
``progress`` (the fraction of training done) and, for a linear schedule, interpolates
probabilities and levels toward the next one (`tables_at`). Keyframe fractions and
``progress`` are tensors, so neither a new epoch nor a new schedule retraces.

Randomness: one stateless key per batch, derived from (seed, epoch, batch index), then
split per stage and step. Every draw has one value per image. One call can augment several
consecutive batches (``batches``): each batch draws from its own keys as it would alone, so
the pixels are the same, while the per-call cost of the graph (thousands of small kernels,
which dominates on small images) is paid once for all of them.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from . import ops
from .opspec import MAX_LEVEL
from .policy import Policy, PolicyError, Step

_IDENTITY = ops.OP_INDEX["Identity"]
_N_OPS = len(ops.OP_NAMES)
_GRAPHS: dict = {}


def tracing_count() -> int:
    """How many times any augmentation graph has been traced in this process."""
    return sum(fn.experimental_get_tracing_count() for fn in _GRAPHS.values())


def positive_int(value) -> bool:
    """Whether `value` is an integer >= 1 (a Python or NumPy int, not a bool)."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 1


def batch_key(seed, epoch=0, index=0) -> tf.Tensor:
    """The stateless key of one batch: derived from (seed, epoch, batch index)."""
    key = ops.seed_key(seed)
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(epoch, tf.int64))
    return tf.random.experimental.stateless_fold_in(key, tf.cast(index, tf.int64))


class _Keys:
    """The stateless keys of the batches that one call augments (int64 ``[B, 2]``, B static)
    and their sizes (int32 ``[B]``; the images are the batches one after the other).

    Every key operation is done per batch, and a per-image draw concatenates each batch's own
    draw: a batch gets the same numbers alone (B = 1, exactly the ops of a single key) or
    beside others.
    """

    def __init__(self, keys, sizes):
        self.keys, self.sizes = keys, sizes

    @property
    def count(self) -> int:
        return self.keys.shape[0]

    def _each(self, fn):
        return [fn(self.keys[b], b) for b in range(self.count)]

    def split(self, n) -> tf.Tensor:
        """[n, B, 2]: `stateless_split(key, n)` of each batch; ``_Keys(out[i], sizes)`` is split i."""
        return tf.stack(self._each(lambda k, b: tf.random.experimental.stateless_split(k, n)), axis=1)

    def unstack(self, n) -> list:
        return [_Keys(k, self.sizes) for k in tf.unstack(self.split(n))]

    def fold_in(self, data) -> "_Keys":
        return _Keys(tf.stack(self._each(lambda k, b: tf.random.experimental.stateless_fold_in(k, data))), self.sizes)

    def uniform(self, minval=0, maxval=None, dtype=tf.float32) -> tf.Tensor:
        """One `stateless_uniform` value per image, each batch from its own key."""
        draws = self._each(lambda k, b: tf.random.stateless_uniform([self.sizes[b]], k, minval, maxval, dtype))
        return draws[0] if self.count == 1 else tf.concat(draws, 0)

    def batch_of(self) -> tf.Tensor:
        """int32 [N]: the batch of each image."""
        return tf.repeat(tf.range(self.count), self.sizes)


def _run_step(images, op_ids, levels, apply, signs, table, keys):
    """One step for the whole batch: image i runs op_ids[i] at levels[i] where apply[i]."""
    op_ids = tf.where(apply, op_ids, _IDENTITY)
    params = ops.levels_to_params(op_ids, levels, signs, table)
    op_keys = keys.unstack(_N_OPS)
    return _apply_ops(images, op_ids, params, lambda i: op_keys[i], range(_N_OPS))


# Which fused group (`ops.FUSED_GROUPS`) runs each op; -1: its own kernel (or nothing).
_GROUP_OF_OP = [-1] * _N_OPS
for _g, (_names, _, _) in enumerate(ops.FUSED_GROUPS):
    for _name in _names:
        _GROUP_OF_OP[ops.OP_INDEX[_name]] = _g
_WARP_GROUP = next(g for g, (names, _, _) in enumerate(ops.FUSED_GROUPS) if "Rotate" in names)
# At this many pixels per image and more, the fused groups run XLA-compiled (one compile
# per power-of-two bucket of images from 8 up, see `_fused`); below, XLA's per-call cost and its
# compiles outweigh what it saves.
XLA_MIN_PIXELS = 64 * 64
# Below XLA_MIN_PIXELS a call's cost is mostly per call (a step is thousands of small kernels,
# whatever the number of images), so `train_dataset` augments several consecutive batches per
# call (`batches_per_call`), up to this many pixels and this many batches.
CALL_PIXELS = 2048 * 32 * 32
MAX_BATCHES_PER_CALL = 16
_COMPILED = [tf.function(apply, jit_compile=True, autograph=False) for _, _, apply in ops.FUSED_GROUPS]
_LOCAL_INDEX = []  # per group: op index -> its position in the group's list
for _names, _, _ in ops.FUSED_GROUPS:
    _LOCAL_INDEX.append(np.array([_names.index(o) if o in _names else 0 for o in ops.OP_NAMES], np.int32))


def _if_any(idx, fn, like):
    """fn() when idx is not empty, else an empty batch shaped like `like` (nothing runs)."""
    return tf.cond(tf.size(idx) > 0, fn, lambda: tf.zeros_like(like[:0]))


def _bucket(n, limit):
    """The smallest power of two >= n and >= 8, at most `limit` (1 <= n <= limit)."""
    powers = tf.bitwise.left_shift(1, tf.range(3, 31))
    return tf.minimum(tf.reduce_min(tf.where(powers >= n, powers, 2 ** 30)), limit)


def _fused(g, images, idx, op_ids, params):
    """Group g of `ops.FUSED_GROUPS` on images[idx].

    On large images: tables from ``prepare``, then ``apply`` XLA-compiled, on a batch padded
    to a power of two (with Identity images, dropped after) so that a pipeline compiles it a
    few times, not once per partition size. On small images the tables would cost more than
    the pixels: each op's own kernel runs on its own images, except the warps, which share one
    `ops.warp` (one affine sampling for all five ops; the same pixels either way).
    """
    names, prepare, _ = ops.FUSED_GROUPS[g]
    n, total = tf.size(idx), tf.shape(images)[0]
    sub_ops, sub_params = tf.gather(op_ids, idx), tf.gather(params, idx)

    def compiled():
        pad = _bucket(n, total) - n
        sub = tf.gather(images, tf.concat([idx, tf.fill([pad], idx[0])], 0))
        tables = prepare(sub, tf.concat([sub_ops, tf.fill([pad], _IDENTITY)], 0),
                         tf.concat([sub_params, tf.zeros([pad])], 0))
        return _COMPILED[g](sub, *tables)[:n]

    def per_op():
        local = tf.gather(_LOCAL_INDEX[g], sub_ops)
        parts = tf.dynamic_partition(tf.gather(images, idx), local, len(names))
        where = tf.dynamic_partition(tf.range(n), local, len(names))
        prm = tf.dynamic_partition(sub_params, local, len(names))
        no_key = tf.zeros([2], tf.int64)  # the fused ops draw nothing
        return tf.dynamic_stitch(where, [ops.KERNELS[name](parts[j], prm[j], no_key) for j, name in enumerate(names)])

    def one_warp():
        return ops.warp(tf.gather(images, idx), sub_ops, sub_params)

    return tf.cond(_large(images), compiled, one_warp if g == _WARP_GROUP else per_op)


def batches_per_call(policy: Policy, batch_size: int, height, width) -> int:
    """How many consecutive batches one `apply_policy` call augments in `train_dataset`.

    1 for large images (their cost is per pixel; the compiled groups would see larger buckets),
    for MixUp/CutMix (they mix within a batch) and for unknown sizes; else up to
    `CALL_PIXELS` per call. The pixels are the same whatever this returns.
    """
    if policy.uses_labels or height is None or width is None or height * width >= XLA_MIN_PIXELS:
        return 1
    return max(1, min(MAX_BATCHES_PER_CALL, CALL_PIXELS // (batch_size * height * width)))


def _large(images):
    """Whether the fused groups run XLA-compiled (`XLA_MIN_PIXELS`)."""
    return tf.shape(images)[1] * tf.shape(images)[2] >= XLA_MIN_PIXELS


def _apply_ops(images, op_ids, params, op_key, candidates):
    """Image i runs op op_ids[i] with params[i]; op k draws from op_key(k) (`_Keys`).

    Only ops in `candidates` (op indices) can occur. Each op or fused group runs on its
    own images only, and only if there are any; an op's images keep their batch order, so
    the ops that draw (Cutout, PadCrop, GaussianNoise) draw as they always have: once per
    batch, with that batch's key, when a call holds several.
    """
    n = tf.shape(images)[0]
    candidates = [i for i in candidates if i != _IDENTITY and ops.TABLE[i].kind != "batch"]
    idxs, outs = [tf.range(n)], [images]
    groups = sorted({_GROUP_OF_OP[i] for i in candidates} - {-1})
    own = [i for i in candidates if _GROUP_OF_OP[i] == -1]
    warps = [i for i in candidates if _GROUP_OF_OP[i] == _WARP_GROUP]
    float_warp = tf.zeros([n], tf.bool)
    if warps:  # compiled warps: images beyond the fixed-point range take `ops.warp`, with Pillow's float64 path
        float_warp = tf.cond(_large(images), lambda: ops.warp_needs_float(op_ids, params, tf.shape(images)[1],
                                                                            tf.shape(images)[2]), lambda: float_warp)
    member = tf.gather(tf.constant(_GROUP_OF_OP, tf.int32), op_ids)
    for g in groups:
        idx = tf.cast(tf.where((member == g) & ~float_warp)[:, 0], tf.int32)
        idxs.append(idx)
        outs.append(_if_any(idx, lambda g=g, idx=idx: _fused(g, images, idx, op_ids, params), images))
    if warps:
        idx = tf.cast(tf.where(float_warp)[:, 0], tf.int32)
        idxs.append(idx)
        outs.append(_if_any(idx, lambda idx=idx: ops.warp(tf.gather(images, idx), tf.gather(op_ids, idx),
                                                          tf.gather(params, idx)), images))
    for i in own:
        idx = tf.cast(tf.where(tf.equal(op_ids, i))[:, 0], tf.int32)
        kernel, keys = ops.KERNELS[ops.TABLE[i].name], op_key(i)
        key = keys.keys[0]
        if keys.count > 1 and ops.TABLE[i].random:  # each batch's images draw from its own key
            counts = tf.math.bincount(tf.gather(keys.batch_of(), idx), minlength=keys.count, maxlength=keys.count)
            key = ops.PerBatchKeys(keys.keys, counts)
        idxs.append(idx)
        outs.append(_if_any(idx, lambda idx=idx, key=key, kernel=kernel: kernel(
            tf.gather(images, idx), tf.gather(params, idx), key), images))
    return tf.dynamic_stitch(idxs, outs)  # later entries win: the ops' results over the inputs


def _groups(class_ids, group_of):
    """Per image, its class group (0 = the default sub-policies): class ids outside the
    lookup vector `group_of` belong to the default."""
    size = tf.shape(group_of)[0]
    inside = (class_ids >= 0) & (class_ids < size)
    return tf.where(inside, tf.gather(group_of, tf.clip_by_value(class_ids, 0, size - 1)), 0)


def _draw_rows(group, group_start, group_count, keys):
    """Per image, a row of the sub-policy table drawn uniformly within its group's rows.

    Default-group images draw exactly as plain policies always have (one int32 draw in
    [0, count of default rows)), so plain policies give the same pixels as before
    per-class policies existed; class-group images use a second, independent draw.
    """
    default = keys.uniform(0, group_count[0], tf.int32)
    wide = keys.fold_in(1).uniform(None, None, tf.int64)
    count = tf.cast(tf.gather(group_count, group), tf.int64)
    local = tf.cast(tf.math.floormod(wide, count), tf.int32)
    return tf.where(group > 0, tf.gather(group_start, group) + local, default)


def _sub_policies(images, groups, op_ids, probs, levels, table, keys):
    """AutoAugment application: each image draws one sub-policy of its class group
    (`groups` = (group per image, group start rows, group row counts)) and runs its
    steps in order.

    The steps run in a `tf.while_loop`, so the graph holds every op once, not once per
    step: a graph half (or a third) the size traces and instantiates that much faster.
    """
    split = keys.split(1 + op_ids.shape[1])
    choice = _draw_rows(*groups, _Keys(split[0], keys.sizes))
    op_ids, probs, levels = (tf.gather(t, choice) for t in (op_ids, probs, levels))

    def step(l, images):
        k_apply, k_sign, k_ops = _Keys(split[l + 1], keys.sizes).unstack(3)
        apply = k_apply.uniform() < probs[:, l]
        signs = tf.where(k_sign.uniform() < 0.5, -1.0, 1.0)
        out = _run_step(images, op_ids[:, l], levels[:, l], apply, signs, table, k_ops)
        return l + 1, tf.ensure_shape(out, images.shape)

    _, images = tf.while_loop(lambda l, _: l < op_ids.shape[1], step, (tf.constant(0), images),
                              shape_invariants=(tf.TensorShape([]), images.shape))
    return images


def _single_step(images, labels, op_name, prob, level, table, keys):
    """A stage that is one step: only its own op is in the graph."""
    spec, kernel = ops.OPS[op_name], ops.KERNELS[op_name]
    n = tf.shape(images)[0]
    k_apply, k_sign, k_op = keys.unstack(3)
    apply = k_apply.uniform() < prob
    signs = tf.where(k_sign.uniform() < 0.5, -1.0, 1.0)
    op_ids = tf.fill([n], ops.OP_INDEX[op_name])
    params = ops.levels_to_params(op_ids, tf.fill([n], level), signs, table)
    if spec.kind == "batch":  # pairs images within the batch: one batch per call (`apply_policy`)
        return kernel(images, labels, params[0], apply, k_op.keys[0])
    op_ids = tf.where(apply, op_ids, _IDENTITY)
    return _apply_ops(images, op_ids, params, lambda i: k_op, [ops.OP_INDEX[op_name]]), labels


_MIXED = {"probs": 1.0, "levels": MAX_LEVEL, "stage_probs": 1.0, "stage_levels": MAX_LEVEL}
_PICKED = ("op_ids", "group_of", "group_start", "group_count")


def tables_at(t: dict, progress) -> dict:
    """The policy tables in effect at `progress` (fraction of training done), from the
    per-keyframe tables of `policy_tensors`: op ids and class groups of keyframe k, the one
    in effect; probabilities and levels ``(1 - w) * keyframe k + w * keyframe k + 1``,
    clipped to their range, where w is how far `progress` is from k to k + 1 for a linear
    schedule and 0 for a step schedule. `Schedule.at` computes the same float32 numbers.
    """
    fractions = tf.convert_to_tensor(t["fractions"], tf.float32)
    progress = tf.cast(progress, tf.float32)
    last = tf.shape(fractions)[0] - 1
    k = tf.clip_by_value(tf.reduce_sum(tf.cast(fractions <= progress, tf.int32)) - 1, 0, last)
    k1 = tf.minimum(k + 1, last)
    w = tf.clip_by_value(tf.math.divide_no_nan(progress - tf.gather(fractions, k),
                                               tf.gather(fractions, k1) - tf.gather(fractions, k)), 0.0, 1.0)
    w = w * tf.cast(t["interpolate"], tf.float32)
    out = {name: tf.gather(t[name], k) for name in _PICKED}
    for name, high in _MIXED.items():
        x = tf.convert_to_tensor(t[name], tf.float32)
        out[name] = tf.clip_by_value((1.0 - w) * tf.gather(x, k) + w * tf.gather(x, k1), 0.0, high)
    return out


def _graph(structure: tuple, channels: int, with_labels: bool, batches: int = 1):
    """The tf.function for one policy structure and number of batches per call (cached)."""
    cache_key = (structure, channels, with_labels, batches)
    if cache_key in _GRAPHS:
        return _GRAPHS[cache_key]
    num_steps = next((s[1] for s in structure if isinstance(s, tuple)), 1)
    n_stages = len(structure)

    def run(images, labels, class_ids, progress, fractions, interpolate, group_of, group_start,
            group_count, op_ids, probs, levels, stage_probs, stage_levels, table, keys, sizes):
        now = tables_at(dict(fractions=fractions, interpolate=interpolate, group_of=group_of,
                             group_start=group_start, group_count=group_count, op_ids=op_ids,
                             probs=probs, levels=levels, stage_probs=stage_probs,
                             stage_levels=stage_levels), progress)
        group_of, group_start, group_count = now["group_of"], now["group_start"], now["group_count"]
        op_ids, probs, levels = now["op_ids"], now["probs"], now["levels"]
        stage_probs, stage_levels = now["stage_probs"], now["stage_levels"]
        keys = _Keys(keys, sizes).unstack(n_stages + 1)
        for i, stage in enumerate(structure):
            if isinstance(stage, tuple):
                groups = (_groups(class_ids, group_of), group_start, group_count)
                images = _sub_policies(images, groups, op_ids, probs, levels, table, keys[i])
            else:
                images, labels = _single_step(images, labels, stage, stage_probs[i],
                                              stage_levels[i], table, keys[i])
        return images, labels

    # every table has a leading keyframe axis (one keyframe without schedule)
    signature = [
        tf.TensorSpec([None, None, None, channels], tf.uint8),
        tf.TensorSpec([None, None], tf.float32),
        tf.TensorSpec([None], tf.int32),  # class id per image
        tf.TensorSpec([], tf.float32),  # progress: fraction of training done
        tf.TensorSpec([None], tf.float32),  # keyframe -> fraction where it starts
        tf.TensorSpec([], tf.float32),  # 1: interpolate (linear schedule), 0: hold (step)
        tf.TensorSpec([None, None], tf.int32),  # class -> group (0 = default)
        tf.TensorSpec([None, None], tf.int32),  # group -> first row
        tf.TensorSpec([None, None], tf.int32),  # group -> number of rows
        tf.TensorSpec([None, None, num_steps], tf.int32),
        tf.TensorSpec([None, None, num_steps], tf.float32),
        tf.TensorSpec([None, None, num_steps], tf.float32),
        tf.TensorSpec([None, n_stages], tf.float32),
        tf.TensorSpec([None, n_stages], tf.float32),
        tf.TensorSpec([_N_OPS, 5], tf.float32),
        tf.TensorSpec([batches, 2], tf.int64),  # each batch's key
        tf.TensorSpec([batches], tf.int32),  # each batch's size
    ]
    fn = tf.function(run, input_signature=signature, autograph=False)
    _GRAPHS[cache_key] = fn
    return fn


def policy_tensors(policy: Policy) -> dict:
    """The numbers of a policy as arrays, one slice (the leading axis) per keyframe of its
    schedule; a policy without schedule is one keyframe at 0.

    Per keyframe, one table of sub-policy rows: the default's first, then each class
    group's (an empty list becomes one Identity p=0 row); shorter sub-policies are padded
    with Identity p=0. ``group_of[c]`` is the group of class c (0 = default, g + 1 =
    class_policies[g]); ``group_start`` and ``group_count`` locate each group's rows.
    Keyframes with fewer rows, classes or groups are padded (rows: Identity p=0; classes:
    the default group; groups: one row at 0), never drawn. ``fractions`` are where the
    keyframes start; ``interpolate`` is 1.0 for a linear schedule, else 0.0.
    """
    frames = policy.schedule.keyframes if policy.schedule else ((0.0, policy),)
    tables = [_keyframe_tensors(p) for _, p in frames]
    out = {}
    for name, fill in (("op_ids", _IDENTITY), ("probs", 0.0), ("levels", 0.0), ("stage_probs", 0.0),
                       ("stage_levels", 0.0), ("group_of", 0), ("group_start", 0), ("group_count", 1)):
        arrays = [t[name] for t in tables]
        size = max(len(a) for a in arrays)
        out[name] = np.stack([np.concatenate([a, np.full((size - len(a),) + a.shape[1:], fill, a.dtype)])
                              for a in arrays])
    out["fractions"] = np.array([at for at, _ in frames], np.float32)
    linear = policy.schedule is not None and policy.schedule.mode == "linear"
    out["interpolate"] = np.float32(1.0 if linear else 0.0)
    return out


def _keyframe_tensors(policy: Policy) -> dict:
    """`policy_tensors` of one schedule-free policy, without the keyframe axis."""
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


def apply_policy(policy: Policy, images, labels=None, seed=0, epoch=0, index=0, progress=None, *,
                 batch_size=None, batches: int = 1):
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
        progress: the fraction of training done (a number or scalar tensor; default 0,
            the start): a scheduled policy applies ``policy.at(progress)``, with the same
            pixels; ignored by a policy without schedule.
        batch_size, batches: ``images`` may hold up to ``batches`` consecutive batches of
            ``batch_size`` images (the last may be shorter): batches ``index``, ``index + 1``,
            ... of the epoch. Each gets the pixels it gets alone, in one call, which costs
            much less than ``batches`` calls on small images (`pipeline.train_dataset` does
            this). Not for MixUp/CutMix, which mix images within one batch.

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
    if progress is None:
        progress = 0.0
    elif isinstance(progress, bool) or (isinstance(progress, (int, float, np.number)) and not np.isfinite(progress)):
        raise PolicyError(f"progress must be the fraction of training done (0..1), got {progress!r}")
    elif not isinstance(progress, (int, float, np.number)) and tf.convert_to_tensor(progress).shape.rank != 0:
        raise PolicyError(f"progress must be one number (a scalar), got shape {tf.convert_to_tensor(progress).shape}")
    if policy.uses_labels and labels is None:
        raise PolicyError(f"{named} mixes labels (MixUp/CutMix): pass one-hot labels")
    if policy.per_class and labels is None:
        raise PolicyError(f"per-class {named} needs labels: pass class ids [B] or one-hot labels [B, K]")
    if not positive_int(batches):
        raise PolicyError(f"batches must be a positive integer, got {batches!r}")
    if batches > 1 and policy.uses_labels:
        raise PolicyError(f"{named} mixes labels (MixUp/CutMix) within a batch: apply it to one batch at a time")
    if batches > 1 and not positive_int(batch_size):
        raise PolicyError(f"batches > 1 needs the batch_size of each batch, got {batch_size!r}")
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
    fn = _graph(structure, int(images.shape[-1]), policy.uses_labels, int(batches))
    lab = tf.cast(labels, tf.float32) if policy.uses_labels else tf.zeros([n, 0])
    if batches == 1:
        keys, sizes = batch_key(seed, epoch, index)[None], n[None]
    else:
        tf.debugging.assert_less_equal(n, batches * batch_size,
                                       message=f"more than {batches} batches of {batch_size} images")
        keys = tf.stack([batch_key(seed, epoch, tf.cast(index, tf.int64) + b) for b in range(batches)])
        sizes = tf.clip_by_value(n - batch_size * tf.range(batches), 0, batch_size)
    out, mixed = fn(images, lab, ids, tf.cast(progress, tf.float32), t["fractions"], t["interpolate"],
                    t["group_of"], t["group_start"], t["group_count"],
                    t["op_ids"], t["probs"], t["levels"], t["stage_probs"], t["stage_levels"],
                    ops.range_table(policy.ranges), keys, sizes)
    if labels is None:
        return out
    return out, (mixed if policy.uses_labels else labels)


@keras.saving.register_keras_serializable(package="autoaug")
class PolicyLayer(keras.layers.Layer):
    """A Keras layer that augments in training and passes through at inference.

    Inputs are images in 0..255 (any dtype); they are rounded to uint8 for the ops and
    returned in the input dtype. Each call draws from (seed, call counter), so a model
    replays the same augmentation sequence for the same seed.

    A scheduled policy reads its place in the schedule from the layer's ``progress``
    variable (the fraction of training done, 0 at first): set it with
    ``layer.progress.assign(epoch / epochs)``, or pass ``ScheduleProgress(layer, epochs)``
    to ``fit`` as a callback. Layers of policies without schedule have no such variable.

    With ``steps_per_epoch`` the layer keys its batches as `autoaug.pipeline.train_dataset`
    does: call g (from 0) is batch ``g % steps_per_epoch`` of epoch ``g // steps_per_epoch``,
    so the same seed gives the same pixels in the model as in tf.data (``train_model`` with
    ``augment_on="model"``); with ``total_epochs`` too, a scheduled policy's progress is
    ``epoch / total_epochs``, as there. ``layer.calls`` counts the training batches seen
    (assign ``start_epoch * steps_per_epoch`` to resume).
    """

    def __init__(self, policy, seed: int = 0, steps_per_epoch: int | None = None,
                 total_epochs: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.policy = policy if isinstance(policy, Policy) else Policy.from_dict(policy)
        if self.policy.uses_labels:
            raise PolicyError("MixUp/CutMix need labels: apply them in tf.data, not in a layer")
        if self.policy.per_class:
            raise PolicyError("a per-class policy needs each image's label: apply it in tf.data "
                              "(Policy.apply(images, labels)), not in a layer")
        self.seed = int(seed)
        for name, value in (("steps_per_epoch", steps_per_epoch), ("total_epochs", total_epochs)):
            if value is not None and not positive_int(value):
                raise PolicyError(f"{name} must be a positive integer or None, got {value!r}")
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
        self.total_epochs = None if total_epochs is None else int(total_epochs)
        self._calls = tf.Variable(0, dtype=tf.int64, trainable=False, name="augment_calls")
        self.progress = None
        if self.policy.schedule is not None:
            self.progress = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="augment_progress")

    def call(self, inputs, training=None):
        if not training:
            return inputs
        dtype = inputs.dtype
        images = inputs if dtype == tf.uint8 else tf.cast(tf.clip_by_value(tf.round(inputs), 0, 255), tf.uint8)
        if self.steps_per_epoch is None:
            out = apply_policy(self.policy, images, seed=self.seed, index=self._calls.assign_add(1),
                               progress=self.progress)
        else:  # as train_dataset keys its batches
            g = self._calls.assign_add(1) - 1
            epoch, index = g // self.steps_per_epoch, g % self.steps_per_epoch
            progress = self.progress
            if self.policy.schedule is not None and self.total_epochs is not None:
                progress = tf.cast(epoch, tf.float32) / float(self.total_epochs)
            out = apply_policy(self.policy, images, seed=self.seed, epoch=epoch, index=index,
                               progress=progress)
        return out if dtype == tf.uint8 else tf.cast(out, dtype)

    @property
    def calls(self) -> tf.Variable:
        """The number of training batches augmented so far (int64)."""
        return self._calls

    def get_config(self):
        return {**super().get_config(), "policy": self.policy.to_dict(), "seed": self.seed,
                "steps_per_epoch": self.steps_per_epoch, "total_epochs": self.total_epochs}


class ScheduleProgress(keras.callbacks.Callback):
    """Sets a scheduled `PolicyLayer`'s progress to ``epoch / epochs`` as each epoch begins,
    as `autoaug.pipeline.train_dataset` does for the tf.data pipeline."""

    def __init__(self, layer: PolicyLayer, epochs: int):
        super().__init__()
        if layer.progress is None:
            raise PolicyError("the layer's policy has no schedule: it needs no ScheduleProgress")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise PolicyError(f"epochs must be a positive integer, got {epochs!r}")
        self.layer, self.epochs = layer, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.layer.progress.assign(epoch / self.epochs)
