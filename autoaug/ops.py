"""Image transforms: pure TensorFlow on uint8 NHWC batches, one kernel per op of the table.

Every op takes ``images`` (uint8 ``[B, H, W, C]``, C = 1 or 3), a per-image float
parameter ``param`` (``[B]``, already converted from a level) and a stateless
random ``key`` (int64 ``[2]``, or `PerBatchKeys` for images of several batches), and
returns a uint8 batch of the same shape.
``KERNELS`` maps each op of ``TABLE`` to its function; what a level means is data in
``autoaug.opspec``, re-exported here (``ops.TABLE``, ``ops.OPS``, ``ops.get_op``, ...).

The Pillow-based ops reproduce Pillow's C arithmetic (fixed-point affine sampling, luma,
blend truncation, equalize LUT), so they match Pillow pixel for pixel;
tests/test_ops_pillow.py checks this on real images and docs/ops.md has the table.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import tensorflow as tf

from .opspec import (AUTOAUGMENT_OPS, BATCH_OPS, IMAGE_OPS, INT_EPS, MAX_LEVEL, OP_INDEX,  # noqa: F401
                     OP_NAMES, OPS, OPS_WIDE_SIGNED, RANDAUGMENT_OPS, RANGES, TABLE,
                     TRIVIALAUGMENT_OPS, OpError, OpSpec, get_op, range_rows)

FILL = 128  # grey for pixels moved in from outside (Model Garden's replace value)


# --------------------------------------------------------------------------- helpers


def _f32(images):
    return tf.cast(images, tf.float32)


def _per_image(v):
    """[B] -> [B, 1, 1, 1] for broadcasting against NHWC."""
    return tf.reshape(v, [-1, 1, 1, 1])


def _to_uint8_trunc(x):
    """Pillow's CLIP8 for float results: clip then truncate."""
    return tf.cast(tf.clip_by_value(x, 0.0, 255.0), tf.uint8)


def _to_uint8_round(x):
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def _blend(degenerate, images, factor):
    """Pillow's Image.blend(degenerate, image, factor) on float inputs."""
    return _to_uint8_trunc(degenerate + _per_image(factor) * (_f32(images) - degenerate))


def _blend_table(factor):
    """uint8 [B, 256 * 256]: `_blend` of pixel x with degenerate g, at index g * 256 + x.

    Computed as `_blend` computes it, so a lookup gives its pixels exactly; an
    XLA-compiled blend then has no float arithmetic left to contract into fused
    multiply-adds (which round once where `_blend` rounds twice).
    """
    v = tf.range(256, dtype=tf.float32)
    return tf.reshape(_to_uint8_trunc(v[None, :, None] + tf.reshape(factor, [-1, 1, 1]) * (v[None, None, :] - v[None, :, None])),
                      [-1, 256 * 256])


def _luma(images):
    """Pillow's RGB->L conversion (ITU-R 601-2 in 16.16 fixed point), as int32 [B,H,W,1]."""
    x = tf.cast(images, tf.int32)
    if images.shape[-1] == 1:
        return x
    r, g, b = x[..., 0:1], x[..., 1:2], x[..., 2:3]
    return tf.bitwise.right_shift(r * 19595 + g * 38470 + b * 7471 + 0x8000, 16)


def _apply_lut(images, lut):
    """Per-image, per-channel lookup: lut is int32 or uint8 [B, C, 256]."""
    shape = tf.shape(images)
    b, c = shape[0], shape[3]
    x = tf.cast(images, tf.int32)
    base = (tf.range(b)[:, None, None, None] * c + tf.range(c)[None, None, None, :]) * 256
    out = tf.gather(tf.reshape(lut, [-1]), x + base)
    return tf.cast(out, tf.uint8)


def _uniform(key, shape, minval=0.0, maxval=1.0):
    return tf.random.stateless_uniform(shape, seed=key, minval=minval, maxval=maxval)


class PerBatchKeys(NamedTuple):
    """The keys of consecutive batches (int64 ``[B, 2]``) and how many of a kernel's images
    come from each (int32 ``[B]``; the images are in batch order). A kernel given these draws
    each batch's numbers from that batch's key, as it would on that batch alone."""
    keys: tf.Tensor
    counts: tf.Tensor


def _draw(draw, key, shape: list, axis: int):
    """``draw(shape, seed=key)``; for `PerBatchKeys`, each batch's own draw along the image axis."""
    if not isinstance(key, PerBatchKeys):
        return draw(tf.stack(shape), seed=key)
    parts = [draw(tf.stack(shape[:axis] + [key.counts[b]] + shape[axis + 1:]), seed=key.keys[b])
             for b in range(key.keys.shape[0])]
    return tf.concat(parts, axis)


def _uniform_pairs(images, key):
    """float32 [2, N]: two uniform numbers in [0, 1) per image."""
    return _draw(tf.random.stateless_uniform, key, [2, tf.shape(images)[0]], 1)


# --------------------------------------------------------------------------- photometric


def identity(images, param, key):
    return images


def auto_contrast(images, param, key):
    """ImageOps.autocontrast(cutoff=0): per channel, map [min, max] onto [0, 255]."""
    return _apply_lut(images, _auto_contrast_lut(images))


def _auto_contrast_lut(images):
    """int32 [B, C, 256]: AutoContrast's lookup table per image and channel."""
    lo = tf.reduce_min(images, axis=[1, 2])  # [B, C], on uint8: no cast pass
    hi = tf.reduce_max(images, axis=[1, 2])
    lo64, hi64 = tf.cast(lo, tf.float64), tf.cast(hi, tf.float64)
    scale = 255.0 / tf.maximum(hi64 - lo64, 1.0)
    ix = tf.range(256, dtype=tf.float64)[None, None, :]
    lut = tf.floor(ix * scale[..., None] - (lo64 * scale)[..., None])
    lut = tf.cast(tf.clip_by_value(lut, 0.0, 255.0), tf.int32)
    return tf.where((hi > lo)[..., None], lut, tf.range(256)[None, None, :])


def equalize(images, param, key):
    """ImageOps.equalize: Pillow's histogram-equalisation LUT, per image and channel."""
    return _apply_lut(images, _equalize_lut(images))


def _equalize_lut(images):
    """int32 [B, C, 256]: Equalize's lookup table per image and channel."""
    shape = tf.shape(images)
    b, c = shape[0], shape[3]
    x = tf.cast(images, tf.int32)
    base = (tf.range(b)[:, None, None, None] * c + tf.range(c)[None, None, None, :]) * 256
    hist = tf.math.bincount(tf.reshape(x + base, [-1]), minlength=b * c * 256, maxlength=b * c * 256)
    hist = tf.reshape(hist, [b, c, 256])
    bins = tf.range(256)[None, None, :]
    last = tf.reduce_max(tf.where(hist > 0, bins, -1), axis=-1, keepdims=True)
    last_count = tf.gather(hist, tf.maximum(last, 0), batch_dims=2)
    step = (tf.reduce_sum(hist, axis=-1, keepdims=True) - last_count) // 255
    before = tf.cumsum(hist, axis=-1, exclusive=True)
    lut = (step // 2 + before) // tf.maximum(step, 1)
    return tf.where(step > 0, tf.minimum(lut, 255), bins)


def invert(images, param, key):
    return 255 - images


def solarize(images, param, key):
    """ImageOps.solarize: invert every pixel >= threshold (256 = identity)."""
    x = _f32(images)
    return tf.where(x < _per_image(param), images, 255 - images)


def solarize_add(images, param, key):
    """Add `param` to pixels below 128, clipped (Model Garden's solarize_add)."""
    x = _f32(images)
    return tf.where(x < 128.0, _to_uint8_trunc(x + _per_image(param)), images)


def posterize(images, param, key):
    """ImageOps.posterize: keep the top `param` bits."""
    bits = tf.cast(param, tf.int32)
    mask = tf.bitwise.left_shift(tf.constant(255, tf.int32), 8 - bits) % 256
    return tf.cast(tf.bitwise.bitwise_and(tf.cast(images, tf.int32), _per_image(mask)), tf.uint8)


def color(images, param, key):
    """ImageEnhance.Color: blend with the greyscale image."""
    if images.shape[-1] == 1:
        return images
    return _blend(tf.cast(_luma(images), tf.float32), images, param)


def contrast(images, param, key):
    """ImageEnhance.Contrast: blend with int(mean + 0.5) of the image's L (luma) conversion.

    One grey level for the whole image, from Pillow's RGB->L luma, not per-channel means.
    """
    return _blend(_per_image(_contrast_mean(images)), images, param)


def _contrast_mean(images):
    """float32 [B]: int(mean + 0.5) of each image's L (luma) conversion."""
    luma = _luma(images)  # an integer sum, exact, as the float64 sum of integers below 2**53 is
    total = tf.cast(tf.reduce_sum(tf.cast(luma, tf.int64), axis=[1, 2, 3]), tf.float64)
    mean = total / tf.cast(tf.reduce_prod(tf.shape(luma)[1:]), tf.float64)
    return tf.cast(tf.floor(mean + 0.5), tf.float32)


def brightness(images, param, key):
    """ImageEnhance.Brightness: blend with black."""
    return _blend(tf.zeros([], tf.float32), images, param)


def sharpness(images, param, key):
    """ImageEnhance.Sharpness: blend with ImageFilter.SMOOTH (borders kept as they are)."""
    return _blend(_f32(_smooth(images)), images, param)


def _smooth(images):
    """int32: ImageFilter.SMOOTH, the 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 rounded
    to the nearest integer, in integers (a sum over 13 is never halfway, so that is
    (sum + 6) // 13). Pillow leaves the outermost rows and columns unfiltered.

    The kernel is a 3x3 box sum (separable: rows, then columns) plus 4x the centre, and
    v // 13 is (v * 5042) >> 16, exact for 0 <= v <= 13 * 255 + 6 (an integer division
    was the slowest step of this pass).
    """
    x = tf.cast(images, tf.int32)
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    rows = padded[:, :, :-2] + padded[:, :, 1:-1] + padded[:, :, 2:]
    box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
    shape = tf.shape(x)
    ys, xs = tf.range(shape[1])[:, None], tf.range(shape[2])[None, :]
    inner = ((ys >= 1) & (ys < shape[1] - 1) & (xs >= 1) & (xs < shape[2] - 1))[None, :, :, None]
    return tf.where(inner, tf.bitwise.right_shift((box + 4 * x + 6) * 5042, 16), x)


def _hsv_jitter(images, param, hue: bool):
    if images.shape[-1] == 1:
        return images
    hsv = tf.image.rgb_to_hsv(tf.cast(images, tf.float64) / 255.0)
    h, s, v = tf.unstack(hsv, axis=-1)
    p = tf.reshape(tf.cast(param, tf.float64), [-1, 1, 1])
    if hue:
        h = tf.math.floormod(h + p, 1.0)
    else:
        s = tf.clip_by_value(s * p, 0.0, 1.0)
    rgb = tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1)) * 255.0
    return tf.cast(tf.clip_by_value(tf.round(rgb), 0.0, 255.0), tf.uint8)


def hue(images, param, key):
    """Rotate the hue by `param` turns of the colour circle."""
    return _hsv_jitter(images, param, hue=True)


def saturation(images, param, key):
    """Scale HSV saturation by `param`."""
    return _hsv_jitter(images, param, hue=False)


def gaussian_noise(images, param, key):
    """Add N(0, param) noise per pixel (param in 0..255 units)."""
    noise = _draw(tf.random.stateless_normal, key, tf.unstack(tf.shape(images)), 0) * _per_image(param)
    return _to_uint8_round(_f32(images) + noise)


# --------------------------------------------------------------------------- geometric


def _fix16(v):
    """Pillow's FIX(v) = floor(v * 65536 + 0.5): a float64 coefficient in 16.16 fixed point."""
    return tf.cast(tf.floor(v * 65536.0 + 0.5), tf.int64)


def _affine(images, matrix, fill):
    """Pillow's Image.transform(size, AFFINE, matrix, NEAREST) per image, bit for bit.

    ``matrix`` is [B, 6] = (a, b, c, d, e, f): the output pixel (x, y) samples the input at
    (a*(x+.5) + b*(y+.5) + c, d*(x+.5) + e*(y+.5) + f), truncated to integers; pixels
    that land outside the input take ``fill``. Like libImaging's ImagingTransformAffine,
    each image takes one of three paths:

    * b == d == 0 (translations, flips, the identity): ImagingScaleAffine, float64;
    * otherwise, when all four corners map inside +-32768: affine_fixed, coefficients
      rounded to 16.16 fixed point and accumulated in integers. This is why a float
      implementation disagrees with Pillow on a few pixels (0.02-0.07% of a 96x128
      rotation, differences of up to 78 grey levels);
    * otherwise (images tens of thousands of pixels wide): float64 (computed only if a
      batch needs it).
    """
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    plan = _affine_plan(matrix, h, w)
    src_x, src_y = _affine_sources(*plan[:4], h, w)
    m = tf.cast(matrix, tf.float64)
    a, b, cc, d, e, f = [tf.reshape(m[:, i], [-1, 1, 1]) for i in range(6)]
    xs = tf.cast(tf.range(w), tf.float64)[None, None, :]
    ys = tf.cast(tf.range(h), tf.float64)[None, :, None]
    generic = tf.reshape(plan[4], [-1, 1, 1])

    def float_path():
        gx = tf.cast(tf.floor(cc + b * 0.5 + a * 0.5 + a * xs + b * ys), tf.int64)
        gy = tf.cast(tf.floor(f + e * 0.5 + d * 0.5 + d * xs + e * ys), tf.int64)
        return tf.where(generic, gx, src_x), tf.where(generic, gy, src_y)

    src_x, src_y = tf.cond(tf.reduce_any(generic), float_path, lambda: (src_x, src_y))
    return _sample(images, src_x, src_y, fill)


def _affine_plan(matrix, h, w):
    """The per-image numbers of `_affine`, from float64 work on [B, W] and [B, H] only.

    Returns (scale [B] bool, sx int64 [B, W], sy int64 [B, H], fixed int64 [B, 6],
    generic [B] bool): scale-path images sample column sx[x] of row sy[y]; fixed-path
    images use the 16.16 coefficients ``fixed``; generic images need the float64 path.
    What is left per pixel is integer arithmetic (`_affine_sources`), which XLA cannot
    round differently.
    """
    m = tf.cast(matrix, tf.float64)
    a, b, cc, d, e, f = [m[:, i:i + 1] for i in range(6)]  # [B, 1]
    xs = tf.cast(tf.range(w), tf.float64)[None, :]
    ys = tf.cast(tf.range(h), tf.float64)[None, :]
    wf, hf = tf.cast(w, tf.float64), tf.cast(h, tf.float64)
    sx = tf.cast(tf.floor(cc + a * 0.5 + a * xs), tf.int64)
    sy = tf.cast(tf.floor(f + e * 0.5 + e * ys), tf.int64)
    scale = (b == 0.0) & (d == 0.0)
    fixed = tf.concat([_fix16(a), _fix16(b), _fix16(cc + a * 0.5 + b * 0.5),
                       _fix16(d), _fix16(e), _fix16(f + d * 0.5 + e * 0.5)], axis=1)
    corners_ok = tf.ones_like(scale)
    for px, py in ((0.0, 0.0), (wf, hf), (0.0, hf), (wf, 0.0)):
        corners_ok &= (tf.abs(px * a + py * b + cc) < 32768.0) & (tf.abs(px * d + py * e + f) < 32768.0)
    generic = tf.logical_not(scale | corners_ok)
    return scale[:, 0], sx, sy, fixed, generic[:, 0]


def _affine_sources(scale, sx, sy, fixed, h, w):
    """int64 [B, H, W] source columns and rows: scale path, or libImaging affine_fixed
    (16.16 integers, arithmetic shift; computed only if an image needs it)."""
    full = [tf.shape(scale)[0], h, w]
    scale = tf.reshape(scale, [-1, 1, 1])
    sx, sy = sx[:, None, :], sy[:, :, None]

    def fixed_path():
        a0, a1, a2, a3, a4, a5 = [tf.reshape(fixed[:, i], [-1, 1, 1]) for i in range(6)]
        xi = tf.range(tf.cast(w, tf.int64))[None, None, :]
        yi = tf.range(tf.cast(h, tf.int64))[None, :, None]
        qx = tf.bitwise.right_shift((a2 + a0 * xi) + a1 * yi, tf.constant(16, tf.int64))
        qy = tf.bitwise.right_shift((a5 + a3 * xi) + a4 * yi, tf.constant(16, tf.int64))
        return tf.where(scale, sx, qx), tf.where(scale, sy, qy)

    return tf.cond(tf.reduce_all(scale),
                   lambda: (tf.broadcast_to(sx, full), tf.broadcast_to(sy, full)), fixed_path)


def _sample(images, src_x, src_y, fill):
    """images[b, src_y, src_x], or ``fill`` where the source is outside the image."""
    shape = tf.shape(images)
    bsz, h, w, c = shape[0], shape[1], shape[2], shape[3]
    w64, h64 = tf.cast(w, tf.int64), tf.cast(h, tf.int64)
    valid = (src_x >= 0) & (src_x < w64) & (src_y >= 0) & (src_y < h64)
    ix = tf.cast(tf.clip_by_value(src_x, 0, tf.maximum(w64 - 1, 0)), tf.int32)
    iy = tf.cast(tf.clip_by_value(src_y, 0, tf.maximum(h64 - 1, 0)), tf.int32)
    flat = (tf.range(bsz)[:, None, None] * h + iy) * w + ix
    gathered = tf.gather(tf.reshape(images, [-1, c]), flat)
    return tf.where(valid[..., None], gathered, tf.cast(fill, images.dtype))


def _size(images, dtype=tf.float64):
    shape = tf.shape(images)
    return tf.cast(shape[1], dtype), tf.cast(shape[2], dtype)


def _round15(v):
    """Python's round(v, 15), as Image.rotate applies it to cos and sin (cos 90 deg -> 0)."""
    return tf.round(v * 1e15) / 1e15


def rotate(images, param, key):
    """Image.rotate(param degrees, NEAREST, fillcolor=grey): counter-clockwise about (W/2, H/2).

    The matrix is built exactly as Pillow builds it (angle mod 360, cos/sin rounded to 15
    decimals), so 90/180/270 degrees give exact transposes as Pillow's fast paths do.
    """
    return _affine(images, _rotate_matrix(param, *_size(images)), FILL)


def _rotate_matrix(param, h, w):
    angle = tf.math.floormod(tf.cast(param, tf.float64), 360.0)
    theta = -(angle * (math.pi / 180.0))
    cos, sin, msin = _round15(tf.cos(theta)), _round15(tf.sin(theta)), _round15(-tf.sin(theta))
    cx, cy = w / 2.0, h / 2.0
    c = cos * -cx + sin * -cy + 0.0 + cx
    f = msin * -cx + cos * -cy + 0.0 + cy
    return tf.stack([cos, sin, c, msin, cos, f], axis=1)


def _matrix(param, **entries):
    """[B, 6] float64 affine matrix: the identity with some entries replaced by [B] tensors."""
    n = tf.shape(param)[0]
    eye = {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0, "e": 1.0, "f": 0.0}
    cols = [tf.cast(entries[k], tf.float64) if k in entries else tf.fill([n], tf.constant(v, tf.float64))
            for k, v in eye.items()]
    return tf.stack(cols, axis=1)


def shear_x(images, param, key):
    """Image.transform(AFFINE, (1, param, 0, 0, 1, 0)): x_in = x + param * y."""
    return _affine(images, _matrix(param, b=param), FILL)


def shear_y(images, param, key):
    """Image.transform(AFFINE, (1, 0, 0, param, 1, 0)): y_in = y + param * x."""
    return _affine(images, _matrix(param, d=param), FILL)


def translate_x(images, param, key):
    """Image.transform(AFFINE, (1, 0, param * W, 0, 1, 0)): content moves left for param > 0.

    AutoAugment: up to 10 px on 32 px, i.e. param up to 10/32 of the width.
    """
    return _affine(images, _translate_x_matrix(param, *_size(images)), FILL)


def _translate_x_matrix(param, h, w):
    return _matrix(param, c=tf.cast(param, tf.float64) * w)


def translate_y(images, param, key):
    """Image.transform(AFFINE, (1, 0, 0, 0, 1, param * H)): content moves up for param > 0."""
    return _affine(images, _translate_y_matrix(param, *_size(images)), FILL)


def _translate_y_matrix(param, h, w):
    return _matrix(param, f=tf.cast(param, tf.float64) * h)


def flip_lr(images, param, key):
    return tf.reverse(images, axis=[2])


def flip_ud(images, param, key):
    return tf.reverse(images, axis=[1])


def pad_crop(images, param, key):
    """Zero-pad by pad = int(param * min(H, W)) pixels, crop back at a random offset per image.

    The result is the image shifted by an integer (dx, dy) drawn uniformly from
    [-pad, pad]^2, with zeros moved in (the CIFAR "pad 4, random crop" at level 5 on 32 px).
    """
    h, w = _size(images, tf.float32)
    pad = tf.floor(param * tf.minimum(h, w) + 1e-4)
    u = _uniform_pairs(images, key)
    dx = tf.floor(u[0] * (2 * pad + 1)) - pad
    dy = tf.floor(u[1] * (2 * pad + 1)) - pad
    return _affine(images, _matrix(param, c=dx, f=dy), 0)


def cutout(images, param, key):
    """Fill a square of int(param * min(H, W)) pixels, centred at a random pixel, with grey.

    The square is clipped at the borders (DeVries & Taylor; AutoAugment's Cutout).
    """
    h, w = _size(images, tf.float32)
    size = tf.floor(param * tf.minimum(h, w) + 1e-4)
    u = _uniform_pairs(images, key)
    cy, cx = tf.floor(u[0] * h), tf.floor(u[1] * w)
    y0, x0 = cy - tf.floor(size / 2), cx - tf.floor(size / 2)
    ys = tf.cast(tf.range(tf.shape(images)[1]), tf.float32)[None, :, None]
    xs = tf.cast(tf.range(tf.shape(images)[2]), tf.float32)[None, None, :]
    inside_y = (ys >= y0[:, None, None]) & (ys < (y0 + size)[:, None, None])
    inside_x = (xs >= x0[:, None, None]) & (xs < (x0 + size)[:, None, None])
    return tf.where((inside_y & inside_x)[..., None], tf.cast(FILL, tf.uint8), images)


# --------------------------------------------------------------------------- batch ops (mix labels)


def _beta(key, alpha, n):
    """Beta(alpha, alpha) draws from stateless gammas; alpha <= 0 gives lambda = 1 (no mixing)."""
    a = tf.maximum(alpha, 1e-3)
    k1, k2 = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    g1 = tf.random.stateless_gamma([n], seed=k1, alpha=a)
    g2 = tf.random.stateless_gamma([n], seed=k2, alpha=a)
    lam = g1 / tf.maximum(g1 + g2, 1e-12)
    return tf.where(alpha > 0, lam, tf.ones_like(lam))


def mixup(images, labels, alpha, apply, key):
    """MixUp with a shuffled copy of the batch; `apply` [B] bool selects the images that mix."""
    n = tf.shape(images)[0]
    k_perm, k_lam = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    perm = tf.argsort(_uniform(k_perm, [n]))
    lam = tf.where(apply, _beta(k_lam, alpha, n), 1.0)
    mixed = _per_image(lam) * _f32(images) + _per_image(1 - lam) * _f32(tf.gather(images, perm))
    new_labels = lam[:, None] * labels + (1 - lam[:, None]) * tf.gather(labels, perm)
    return _to_uint8_round(mixed), new_labels


def cutmix(images, labels, alpha, apply, key):
    """CutMix: paste a box of a shuffled partner; labels mix by the pasted area."""
    n = tf.shape(images)[0]
    h, w = _size(images, tf.float32)
    k_perm, k_lam, k_pos = tf.unstack(tf.random.experimental.stateless_split(key, 3))
    perm = tf.argsort(_uniform(k_perm, [n]))
    lam = tf.where(apply, _beta(k_lam, alpha, n), 1.0)
    cut = tf.sqrt(1.0 - lam)
    bh, bw = tf.floor(h * cut), tf.floor(w * cut)
    u = _uniform(k_pos, [2, n])
    cy, cx = tf.floor(u[0] * h), tf.floor(u[1] * w)
    y0 = tf.clip_by_value(cy - tf.floor(bh / 2), 0, h)
    y1 = tf.clip_by_value(cy - tf.floor(bh / 2) + bh, 0, h)
    x0 = tf.clip_by_value(cx - tf.floor(bw / 2), 0, w)
    x1 = tf.clip_by_value(cx - tf.floor(bw / 2) + bw, 0, w)
    ys = tf.cast(tf.range(tf.shape(images)[1]), tf.float32)[None, :, None]
    xs = tf.cast(tf.range(tf.shape(images)[2]), tf.float32)[None, None, :]
    box = ((ys >= y0[:, None, None]) & (ys < y1[:, None, None])
           & (xs >= x0[:, None, None]) & (xs < x1[:, None, None]))
    out = tf.where(box[..., None], tf.gather(images, perm), images)
    area = (y1 - y0) * (x1 - x0) / (h * w)
    new_labels = (1 - area[:, None]) * labels + area[:, None] * tf.gather(labels, perm)
    return out, new_labels


# --------------------------------------------------------------------------- the kernels

KERNELS: dict[str, Callable] = {
    "Identity": identity, "AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert,
    "Rotate": rotate, "Solarize": solarize, "SolarizeAdd": solarize_add, "Posterize": posterize,
    "Color": color, "Contrast": contrast, "Brightness": brightness, "Sharpness": sharpness,
    "ShearX": shear_x, "ShearY": shear_y, "TranslateX": translate_x, "TranslateY": translate_y,
    "Cutout": cutout, "FlipLR": flip_lr, "FlipUD": flip_ud, "PadCrop": pad_crop,
    "GaussianNoise": gaussian_noise, "Hue": hue, "Saturation": saturation,
    "MixUp": mixup, "CutMix": cutmix,
}  # in TABLE order; batch ops (MixUp, CutMix) take (images, labels, alpha, apply, key)


# --------------------------------------------------------------------------- fused groups
# A policy step runs many ops, each on the few images that drew it. Three groups of ops run
# as one kernel each instead: the per-pixel lookups (one LUT gather), the affine warps (one
# sampling) and the blends with an integer image. Each group is ``prepare`` (per-image
# tables from small float work, never per pixel) and ``apply`` (per pixel: integer work, a
# lookup, at most one float add), so ``apply`` can be XLA-compiled and still give the same
# pixels as the kernels above: XLA may fuse a multiply and an add into one rounding, and
# no multiply is left next to an add. The pixels equal each op's kernel's, bit for bit.

POINT_OPS = ("AutoContrast", "Equalize", "Invert", "Solarize", "SolarizeAdd", "Posterize",
             "Contrast", "Brightness")
WARP_OPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
BLEND_OPS = ("Color", "Sharpness")

_WARP_MATRICES = {
    "Rotate": _rotate_matrix,
    "ShearX": lambda param, h, w: _matrix(param, b=param),
    "ShearY": lambda param, h, w: _matrix(param, d=param),
    "TranslateX": _translate_x_matrix,
    "TranslateY": _translate_y_matrix,
}


def _where_op(op_ids, name, value, otherwise):
    """Per image: `value` where the image drew op `name`, else `otherwise` (leading axis B)."""
    pick = tf.reshape(tf.equal(op_ids, OP_INDEX[name]), [-1] + [1] * (otherwise.shape.rank - 1))
    return tf.where(pick, value, otherwise)


def _for_op(op_ids, name, fn, images, tail):
    """fn(images that drew `name`) scattered into zeros [B] + tail; only run if one did."""
    idx = tf.where(tf.equal(op_ids, OP_INDEX[name]))
    shape = tf.concat([tf.shape(op_ids, out_type=tf.int64), tf.cast(tail, tf.int64)], 0)
    return tf.cond(tf.size(idx) > 0, lambda: tf.scatter_nd(idx, fn(tf.gather(images, idx[:, 0])), shape),
                   lambda: tf.zeros(shape, tf.int32))


def point_prepare(images, op_ids, params):
    """(int32 [B, C, 256],): each image's lookup table (the identity for other ops)."""
    c = tf.shape(images)[3]
    v = tf.range(256)[None, None, :]
    vf = tf.cast(v, tf.float32)
    p = tf.reshape(params, [-1, 1, 1])
    bits = tf.cast(params, tf.int32)
    mask = tf.reshape(tf.bitwise.left_shift(tf.constant(255, tf.int32), 8 - bits) % 256, [-1, 1, 1])
    lut = tf.broadcast_to(v, tf.stack([tf.shape(op_ids)[0], c, 256]))
    lut = _where_op(op_ids, "Invert", 255 - v, lut)
    lut = _where_op(op_ids, "Solarize", tf.where(vf < p, v, 255 - v), lut)
    lut = _where_op(op_ids, "SolarizeAdd", tf.where(vf < 128.0, tf.cast(_to_uint8_trunc(vf + p), tf.int32), v), lut)
    lut = _where_op(op_ids, "Posterize", tf.bitwise.bitwise_and(v, mask), lut)
    lut = _where_op(op_ids, "Brightness", tf.cast(_to_uint8_trunc(0.0 + p * (vf - 0.0)), tf.int32), lut)
    mean = tf.cast(_for_op(op_ids, "Contrast", lambda x: tf.cast(_contrast_mean(x), tf.int32), images, [])[:, None, None],
                   tf.float32)
    lut = _where_op(op_ids, "Contrast", tf.cast(_to_uint8_trunc(mean + p * (vf - mean)), tf.int32), lut)
    lut = _where_op(op_ids, "AutoContrast", _for_op(op_ids, "AutoContrast", _auto_contrast_lut, images, [c, 256]), lut)
    lut = _where_op(op_ids, "Equalize", _for_op(op_ids, "Equalize", _equalize_lut, images, [c, 256]), lut)
    return (tf.cast(lut, tf.uint8),)


def point_apply(images, lut):
    return _apply_lut(images, lut)


def warp_matrices(op_ids, params, h, w):
    """float64 [B, 6]: each image's Pillow affine matrix (the identity for other ops)."""
    h, w = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
    matrix = _matrix(params)
    for name, build in _WARP_MATRICES.items():
        matrix = _where_op(op_ids, name, build(params, h, w), matrix)
    return matrix


def warp_prepare(images, op_ids, params):
    """(scale, sx, sy, fixed) of `_affine_plan` for each image's matrix."""
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    return _affine_plan(warp_matrices(op_ids, params, h, w), h, w)[:4]


def warp(images, op_ids, params):
    """Each image's warp op by `_affine` (any of its paths): what the warp kernels give."""
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    return _affine(images, warp_matrices(op_ids, params, h, w), FILL)


def warp_needs_float(op_ids, params, h, w):
    """[B] bool: images whose warp takes Pillow's float64 path (left to their own kernel)."""
    return _affine_plan(warp_matrices(op_ids, params, h, w), h, w)[4]


def warp_apply(images, scale, sx, sy, fixed):
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    return _sample(images, *_affine_sources(scale, sx, sy, fixed, h, w), FILL)


def blend_prepare(images, op_ids, params):
    """(is_color [B] bool, `_blend_table` [B, 65536]): Color blends with the luma,
    Sharpness with the smoothed image."""
    return tf.equal(op_ids, OP_INDEX["Color"]), _blend_table(params)


def blend_apply(images, is_color, table):
    x = tf.cast(images, tf.int32)
    luma = tf.broadcast_to(_luma(images), tf.shape(x))
    degenerate = tf.where(tf.reshape(is_color, [-1, 1, 1, 1]), luma, _smooth(images))
    row = tf.reshape(tf.range(tf.shape(x)[0]) * (256 * 256), [-1, 1, 1, 1])
    return tf.gather(tf.reshape(table, [-1]), row + degenerate * 256 + x)


FUSED_GROUPS = (  # (ops, prepare, apply)
    (POINT_OPS, point_prepare, point_apply),
    (WARP_OPS, warp_prepare, warp_apply),
    (BLEND_OPS, blend_prepare, blend_apply),
)


def range_table(ranges: str = "aa") -> tf.Tensor:
    """``opspec.range_rows`` as a float32 [n_ops, 5] tensor.

    Passed into the augmentation graph as data, so AutoAugment and Wide ranges share a trace.
    """
    return tf.constant(range_rows(ranges), tf.float32)


def levels_to_params(op_ids, levels, signs, table):
    """Vectorised level -> parameter for per-image op ids; signs are +-1 per image.

    Same numbers as ``OpSpec.param_at`` (integer magnitudes truncated towards the
    identity), then reflected around the identity where the sign is negative.
    """
    row = tf.gather(table, op_ids)
    lo, hi, signed, ident, integer = tf.unstack(row, axis=-1)
    value = lo + (hi - lo) * levels / MAX_LEVEL
    delta = value - ident
    truncated = ident + tf.sign(delta) * tf.floor(tf.abs(delta) + INT_EPS)
    value = tf.where(integer > 0, truncated, value)
    return tf.where((signed > 0) & (signs < 0), 2.0 * ident - value, value)


def seed_key(seed) -> tf.Tensor:
    """An int seed, a pair, or a [2] tensor -> an int64 [2] stateless key."""
    if isinstance(seed, int):
        return tf.constant([seed, 0], tf.int64)
    key = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    return tf.reshape(key, [2])


def apply_op(name: str, images, level: float, seed=0, ranges: str = "aa"):
    """Apply one op to a batch (or a single HWC image) at one level, positive sign, always.

    Deterministic for a given ``seed``; the seed matters only for ops that draw
    (Cutout, PadCrop, GaussianNoise).

    Args:
        name: an op of ``TABLE`` that works image by image (not MixUp/CutMix).
        images: uint8 ``[B, H, W, C]`` or ``[H, W, C]``, C = 1 or 3 (array or tensor).
        level: 0..10; ``opspec.OpSpec.param_at`` says what it means for ``name``.
        seed: an int, a pair, or an int64 ``[2]`` tensor (see ``seed_key``).
        ranges: ``"aa"`` (AutoAugment) or ``"wide"`` (TrivialAugment-Wide) magnitudes.

    Returns:
        A uint8 tensor shaped like ``images``.

    Raises:
        OpError: unknown op or ranges, a batch op, a level outside 0..10, or images
            that are not uint8 with 1 or 3 channels.

    >>> import numpy as np
    >>> image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    >>> apply_op("Invert", image, level=0).numpy()[0, 0]
    array([255, 254, 253], dtype=uint8)
    >>> apply_op("Rotate", np.zeros([4, 32, 32, 1], np.uint8), level=7).shape
    TensorShape([4, 32, 32, 1])
    >>> apply_op("Warp", image, level=3)
    Traceback (most recent call last):
    ...
    autoaug.opspec.OpError: unknown op 'Warp'; known ops: Identity, AutoContrast, ...
    """
    spec = get_op(name)
    if spec.kind == "batch":
        raise OpError(f"{name} mixes images and labels; use it as a policy stage, not apply_op")
    if not 0.0 <= float(level) <= MAX_LEVEL:
        raise OpError(f"level {level} for {name} is outside 0..{MAX_LEVEL:g}")
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8:
        raise OpError(f"images must be uint8, got {images.dtype.name}")
    single = images.shape.rank == 3
    batch = images[None] if single else images
    if batch.shape.rank != 4 or batch.shape[-1] not in (1, 3):
        raise OpError(f"images must be [B, H, W, C] with C = 1 or 3, got shape {images.shape}")
    param = tf.fill([tf.shape(batch)[0]], spec.param_at(level, ranges))
    out = KERNELS[name](batch, param, seed_key(seed))
    return out[0] if single else out
