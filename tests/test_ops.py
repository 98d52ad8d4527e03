"""The op table: what each level means, the vectorised level -> parameter path, and the
contract every op keeps (shapes, dtypes, graph mode, empty batches). Pixel faithfulness
to Pillow is tests/test_ops_pillow.py."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from autoaug import ops

# AutoAugment paper / research code semantics (level 10 is the strongest).
AA_AT_10 = {
    "Rotate": 30.0, "ShearX": 0.3, "ShearY": 0.3, "Solarize": 0.0, "Posterize": 4.0,
    "Color": 1.9, "Contrast": 1.9, "Brightness": 1.9, "Sharpness": 1.9, "SolarizeAdd": 110.0,
}
AA_AT_0 = {
    "Rotate": 0.0, "ShearX": 0.0, "Solarize": 256.0, "Posterize": 8.0, "Color": 0.1,
    "Contrast": 0.1, "Brightness": 0.1, "Sharpness": 0.1, "SolarizeAdd": 0.0, "Cutout": 0.0,
}


def test_autoaugment_magnitudes():
    for name, value in AA_AT_10.items():
        assert ops.OPS[name].param_at(10) == pytest.approx(value), name
    for name, value in AA_AT_0.items():
        assert ops.OPS[name].param_at(0) == pytest.approx(value), name
    # Translate: 10 px on a 32 px image; Cutout: 20 px on 32 px.
    assert ops.OPS["TranslateX"].param_at(10) * 32 == pytest.approx(10.0)
    assert ops.OPS["TranslateY"].param_at(10) * 32 == pytest.approx(10.0)
    assert ops.OPS["Cutout"].param_at(10) * 32 == pytest.approx(20.0)
    # Integer parameters truncate the magnitude, like AutoAugment's int_parameter
    # (research code: ImageOps.solarize(img, 256 - int_parameter(level, 256))).
    for level in range(11):
        assert ops.OPS["Solarize"].param_at(level) == 256 - int(level * 256 / 10)
        assert ops.OPS["Posterize"].param_at(level) == 8 - int(level * 4 / 10)
        assert ops.OPS["SolarizeAdd"].param_at(level) == int(level * 110 / 10)
    assert ops.OPS["Solarize"].param_at(3) == 180.0
    # TrivialAugment-Wide's bins are fractional levels: 6 equal steps of Posterize.
    for k in range(7):
        assert ops.OPS["Posterize"].param_at(10 * k / 6, "wide") == 8 - k


def test_trivialaugment_wide_ranges():
    at10 = {n: ops.OPS[n].param_at(10, "wide") for n in ops.OP_NAMES}
    assert at10["Rotate"] == 135.0 and at10["ShearX"] == pytest.approx(0.99)
    assert at10["TranslateX"] == 1.0  # the full width: 32 px on 32 px
    assert at10["Posterize"] == 2.0 and at10["Solarize"] == 0.0
    table = ops.range_table("wide").numpy()
    for name in ops.OPS_WIDE_SIGNED:  # enhance factors 1 +- 0.99
        lo, hi, signed, ident, _ = table[ops.OP_INDEX[name]]
        assert (lo, signed, ident) == (1.0, 1.0, 1.0) and hi == pytest.approx(1.99)


def test_levels_to_params_matches_param_at_and_reflects_signs():
    names = [n for n in ops.OP_NAMES if ops.OPS[n].has_level]
    for ranges in ops.RANGES:
        table = ops.range_table(ranges)
        for level in (0.0, 2.5, 3.0, 10 / 6, 20 / 3, 7.0, 10.0):
            ids = tf.constant([ops.OP_INDEX[n] for n in names])
            n = len(names)
            plus = ops.levels_to_params(ids, tf.fill([n], level), tf.ones([n]), table).numpy()
            minus = ops.levels_to_params(ids, tf.fill([n], level), -tf.ones([n]), table).numpy()
            for name, p, m in zip(names, plus, minus):
                spec = ops.OPS[name]
                assert p == pytest.approx(spec.param_at(level, ranges), rel=1e-6, abs=1e-6), (name, ranges)
                signed = spec.signed or (ranges == "wide" and name in ops.OPS_WIDE_SIGNED)
                expected = 2 * spec.identity - p if signed else p
                assert m == pytest.approx(expected, rel=1e-6, abs=1e-6), (name, ranges, level)


def test_table_is_consistent():
    assert len(ops.OP_NAMES) == len(set(ops.OP_NAMES)) == len(ops.TABLE)
    assert list(ops.KERNELS) == ops.OP_NAMES  # one kernel per op, in table order
    assert all(ops.OP_NAMES[i] == n for n, i in ops.OP_INDEX.items())
    assert sorted(ops.IMAGE_OPS + ops.BATCH_OPS) == sorted(ops.OP_NAMES)
    assert ops.BATCH_OPS == ["MixUp", "CutMix"]
    assert len(ops.AUTOAUGMENT_OPS) == 16 and len(ops.RANDAUGMENT_OPS) == 14
    for group in (ops.AUTOAUGMENT_OPS, ops.RANDAUGMENT_OPS, ops.TRIVIALAUGMENT_OPS):
        assert set(group) <= set(ops.IMAGE_OPS)
    assert ops.range_table("aa").shape == (len(ops.OP_NAMES), 5)
    with pytest.raises(ops.OpError, match="'paper'"):
        ops.range_table("paper")
    with pytest.raises(ops.OpError, match="'paper'"):
        ops.OPS["Rotate"].param_at(5, "paper")
    with pytest.raises(ops.OpError, match="unknown op 'Blur'.*known ops: Identity"):
        ops.get_op("Blur")
    for spec in ops.TABLE:
        assert spec.severity in ("no level", "grows with level", "both ways from level 5 (identity at 5)")
        if spec.has_level:
            assert spec.param, f"{spec.name} has a level but no named parameter"


def test_seed_key_forms():
    for seed in (5, (5, 0), [5, 0], np.array([5, 0]), tf.constant([5, 0], tf.int32)):
        key = ops.seed_key(seed)
        assert key.dtype == tf.int64 and key.numpy().tolist() == [5, 0]


@pytest.fixture(scope="module")
def tiles():
    from sklearn.datasets import load_sample_images
    photos = load_sample_images().images
    return np.stack([p[y:y + 32, x:x + 32] for p in photos for y, x in ((60, 60), (200, 300), (330, 500))])


def test_identity_levels_are_the_identity(tiles):
    """Level 0 (or the level whose parameter is the identity) leaves images untouched."""
    for name in ops.IMAGE_OPS:
        spec = ops.OPS[name]
        if not spec.has_level:
            continue
        level = 5 if spec.severity.startswith("both ways") else 0
        assert spec.param_at(level) == pytest.approx(spec.identity)
        out = ops.apply_op(name, tiles, level, seed=1).numpy()
        assert np.array_equal(out, tiles), name


def test_severity_grows_with_level(tiles):
    """Mean change from the input never shrinks as the level grows (catches inverted
    Solarize, 4->0-bit Posterize and similar direction mistakes)."""
    for name in ops.IMAGE_OPS:
        spec = ops.OPS[name]
        if not spec.has_level:
            continue
        levels = (5, 7, 10) if spec.severity.startswith("both ways") else (0, 3, 7, 10)
        change = [np.abs(ops.apply_op(name, tiles, lv, seed=3).numpy().astype(int) - tiles).mean()
                  for lv in levels]
        assert all(a <= b + 1e-9 for a, b in zip(change, change[1:])), (name, change)
        assert change[-1] > 0, name
    # Posterize at its strongest keeps 4 bits: not a black image.
    assert ops.apply_op("Posterize", tiles, 10).numpy().mean() > 50


def test_direction_conventions():
    """Positive parameters: Rotate counter-clockwise, TranslateX moves content left."""
    img = np.zeros((1, 9, 9, 1), np.uint8)
    img[0, 4, 8] = 255  # a dot on the right edge of the middle row
    up = ops.apply_op("Rotate", img, 10.0 * 90 / 135, ranges="wide").numpy()  # 90 degrees
    assert up[0, 0, 4, 0] == 255  # counter-clockwise: right edge -> top edge
    left = ops.apply_op("TranslateX", img, 10).numpy()  # 10/32 of 9 px = 2.8 px -> 3 px
    assert np.argwhere(left[0, :, :, 0] == 255).tolist() == [[4, 5]]


@pytest.mark.parametrize("channels", [1, 3])
def test_every_op_runs_in_a_graph_with_unknown_shapes_and_empty_batches(channels):
    spec_in = [tf.TensorSpec([None, None, None, channels], tf.uint8),
               tf.TensorSpec([None], tf.float32), tf.TensorSpec([2], tf.int64)]

    @tf.function(input_signature=spec_in)
    def run_all(x, p, k):
        return [ops.KERNELS[n](x, p, k) for n in ops.IMAGE_OPS]

    rng = np.random.default_rng(0)
    for shape in ((0, 8, 8), (3, 31, 45), (2, 2, 2), (1, 1, 5)):
        x = rng.integers(0, 256, shape + (channels,), np.uint8)
        outs = run_all(x, tf.fill([shape[0]], 0.5), ops.seed_key(1))
        for name, o in zip(ops.IMAGE_OPS, outs):
            assert o.shape == x.shape and o.dtype == tf.uint8, (name, shape)


def test_batch_ops_contract(tiles):
    n = len(tiles)
    labels = tf.one_hot(tf.range(n), n)
    for name in ops.BATCH_OPS:
        out, lab = ops.KERNELS[name](tf.constant(tiles), labels, tf.constant(1.0), tf.ones([n], tf.bool),
                                     ops.seed_key(0))
        assert out.shape == tiles.shape and out.dtype == tf.uint8
        assert lab.shape == (n, n) and lab.dtype == tf.float32
