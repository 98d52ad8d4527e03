import numpy as np
import pytest
import tensorflow as tf

import autoaug
from autoaug import augment
from autoaug.pipeline import train_dataset
from autoaug.policy import Policy, PolicyError, Step, builtin


def _one(op, p=1.0, level=5.0):
    return Policy(((Step(op, p, level),),))


def test_probability_one_and_zero(photos):
    x = photos[:16]
    assert np.array_equal(_one("Invert").apply(x, seed=1).numpy(), 255 - x)
    assert np.array_equal(_one("Invert", p=0.0).apply(x, seed=1).numpy(), x)


def test_steps_run_in_order(photos):
    x = photos[:8]
    posterize_then_invert = Policy(((Step("Posterize", 1, 10), Step("Invert", 1, 0)),))
    expected = 255 - (x & 0xF0)
    assert np.array_equal(posterize_then_invert.apply(x).numpy(), expected)


def test_each_image_draws_its_own_sub_policy(photos):
    # 64 copies of one image: a per-batch implementation would give one result for all.
    x = np.repeat(photos[:1], 64, axis=0)
    out = builtin("autoaugment-cifar10").apply(x, seed=0).numpy()
    distinct = {o.tobytes() for o in out}
    assert len(distinct) >= 10
    half = Policy(((Step("Invert", 1, 0),), (Step("Identity", 1, 0),)))
    inverted = np.mean([np.array_equal(o, 255 - x[0]) for o in half.apply(np.repeat(x, 8, 0), seed=3).numpy()])
    assert 0.35 < inverted < 0.65


def test_signs_are_drawn_per_image(photos):
    x = np.repeat(photos[:1], 32, axis=0)
    out = _one("Rotate", 1.0, 10).apply(x, seed=5).numpy()
    plus = autoaug.ops.apply_op("Rotate", x[:1], 10).numpy()[0]
    matches = np.array([np.array_equal(o, plus) for o in out])
    assert 0 < matches.sum() < 32


def test_same_seed_same_pixels_different_seed_differs(photos):
    p = builtin("autoaugment-cifar10+standard+cutout")
    a, b = p.apply(photos, seed=7).numpy(), p.apply(photos, seed=7).numpy()
    c = p.apply(photos, seed=8).numpy()
    d = p.apply(photos, seed=7, epoch=1).numpy()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def _epochs(ds, n):
    return [tuple(t.numpy() for t in batch) for batch in ds.take(n)]


def test_pipeline_reproducible_whatever_parallelism(photos):
    y = np.arange(len(photos)) % 10
    p = builtin("trivialaugment-wide+standard")
    serial = _epochs(train_dataset(photos, y, p, batch_size=32, num_classes=10, seed=3,
                                   num_parallel_calls=1), 12)
    parallel = _epochs(train_dataset(photos, y, p, batch_size=32, num_classes=10, seed=3,
                                     num_parallel_calls=tf.data.AUTOTUNE), 12)
    for (xa, ya), (xb, yb) in zip(serial, parallel):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    other = _epochs(train_dataset(photos, y, p, batch_size=32, num_classes=10, seed=4), 1)
    assert not np.array_equal(serial[0][0], other[0][0])


def test_no_retrace_for_policies_of_the_same_shape(photos):
    y = np.arange(len(photos)) % 10
    builtin("autoaugment-cifar10").apply(photos[:4])  # trace once for this shape, alone
    next(iter(train_dataset(photos, y, builtin("autoaugment-cifar10"), batch_size=16, num_classes=10)))  # and per call of several batches
    before = augment.tracing_count()
    rng = np.random.RandomState(0)
    for trial in range(5):
        ops_ = rng.choice(autoaug.ops.AUTOAUGMENT_OPS, size=(rng.randint(1, 30), 2))
        p = Policy(tuple(tuple(Step(str(o), float(rng.rand()), float(rng.randint(11))) for o in row)
                         for row in ops_), ranges=("aa", "wide")[trial % 2])
        p.apply(photos[:8], seed=trial)
        next(iter(train_dataset(photos, y, p, batch_size=16, num_classes=10, seed=trial)))
    assert augment.tracing_count() == before


def test_mixup_stage_mixes_labels(photos):
    y = tf.one_hot(np.arange(32) % 10, 10)
    p = builtin("standard").with_stages(["flip", Step("MixUp", 1.0, 10)])
    images, labels = p.apply(photos[:32], y, seed=1)
    np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0, atol=1e-5)
    assert (labels.numpy().max(axis=1) < 0.999).any()
    with pytest.raises(PolicyError, match="pass one-hot labels"):
        p.apply(photos[:4])


def test_keras_layer_serializes_and_augments_only_in_training(photos):
    import keras
    layer = builtin("autoaugment-cifar10").as_layer(seed=3)
    x = photos[:8].astype("float32")
    assert np.array_equal(layer(x, training=False), x)
    assert not np.array_equal(layer(x, training=True), x)
    clone = augment.PolicyLayer.from_config(layer.get_config())
    assert clone.policy == layer.policy and clone.seed == 3
    model = keras.Sequential([keras.Input((32, 32, 3)), layer, keras.layers.Flatten()])
    restored = keras.models.model_from_json(model.to_json())
    assert restored.layers[0].policy == layer.policy


def test_bad_images_are_rejected(photos):
    p = builtin("autoaugment-cifar10")
    with pytest.raises(PolicyError, match="uint8"):
        p.apply(photos.astype("float32"))
    with pytest.raises(PolicyError, match="C = 1 or 3"):
        p.apply(photos[..., :2])


@pytest.mark.parametrize("level", [3, 10])
def test_policy_path_matches_apply_op_bit_for_bit(photos, level):
    """The XLA-compiled policy step gives the same pixels as each op alone (which matches Pillow)."""
    from autoaug import ops
    for name in ops.IMAGE_OPS:
        spec = ops.OPS[name]
        if spec.random or name in ("Hue", "Saturation"):  # own draws / float64 HSV (<= 1 level)
            continue
        out = _one(name, 1.0, level).apply(photos, seed=1).numpy()
        plus = ops.apply_op(name, photos, level).numpy()
        minus = ops.KERNELS[name](tf.constant(photos),
                                  tf.fill([len(photos)], 2 * spec.identity - spec.param_at(level)),
                                  ops.seed_key(0)).numpy()
        same = [np.array_equal(o, a) or (spec.signed and np.array_equal(o, b)) for o, a, b in zip(out, plus, minus)]
        assert all(same), f"{name} at level {level}: {len(same) - sum(same)} images differ"


def test_fresh_process_builds_two_pipelines():
    """autoaug.augment first imported while tf.data traces: its tables must not be graph tensors."""
    import subprocess
    import sys
    code = ("import numpy as np, tensorflow as tf, autoaug\n"
            "x = np.zeros((16, 32, 32, 3), np.uint8)\n"
            "for name in ('autoaugment-cifar10', 'randaugment-n2-m9'):\n"
            "    p = autoaug.load_policy(name)\n"
            "    ds = tf.data.Dataset.from_tensor_slices(x).batch(8).enumerate()"
            ".map(lambda i, b: p.apply(b, seed=0, index=i))\n"
            "    assert sum(len(b) for b in ds) == 16\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def _drawing_policy():
    """Sub-policies with every op that draws (Cutout, PadCrop, GaussianNoise) beside warps and
    point ops, then single-step stages."""
    subs = ((Step("Cutout", 0.8, 6), Step("Rotate", 0.5, 7)), (Step("PadCrop", 0.9, 5), Step("Equalize", 0.6, 0)),
            (Step("GaussianNoise", 0.7, 4), Step("Color", 0.5, 8)), (Step("ShearX", 0.6, 9), Step("Invert", 0.3, 0)))
    return Policy(subs).with_stages(["flip", "policy", Step("PadCrop", 1.0, 4), Step("Cutout", 1.0, 4)])


@pytest.mark.parametrize("name", ["drawing", "autoaugment-cifar10", "randaugment-n2-m9", "per-class"])
def test_several_batches_per_call_give_each_batch_its_own_pixels(photos, name):
    if name == "drawing":
        policy = _drawing_policy()
    elif name == "per-class":
        policy = Policy.from_dict({**_drawing_policy().to_dict(), "class_policies": [
            {"classes": [1, 2], "sub_policies": [[["Solarize", 0.9, 5], ["Cutout", 0.5, 3]]]}]})
    else:
        policy = builtin(name)
    y = np.arange(len(photos)) % 10
    batch, batches = 48, 6  # 208 images: 4 batches of 48 and one of 16, and a 6th that is empty
    kwargs = dict(seed=5, epoch=3, index=7)
    labels = (y,) if policy.needs_labels else ()
    together = policy.apply(photos, *labels, **kwargs, batch_size=batch, batches=batches)
    together = (together[0] if labels else together).numpy()
    for b, start in enumerate(range(0, len(photos), batch)):
        part = (y[start:start + batch],) if labels else ()
        alone = policy.apply(photos[start:start + batch], *part, seed=5, epoch=3, index=7 + b)
        alone = (alone[0] if labels else alone).numpy()
        assert np.array_equal(together[start:start + batch], alone), f"batch {b} differs"
    assert not np.array_equal(together, photos)


def test_several_batches_per_call_refused_for_label_mixing_and_without_batch_size(photos):
    mixup = builtin("standard").with_stages(["flip", Step("MixUp", 1.0, 10)])
    with pytest.raises(PolicyError, match="within a batch"):
        mixup.apply(photos[:32], tf.one_hot(np.arange(32) % 10, 10), batch_size=16, batches=2)
    with pytest.raises(PolicyError, match="needs the batch_size"):
        builtin("standard").apply(photos[:32], batches=2)
    with pytest.raises(PolicyError, match="batches must be a positive integer"):
        builtin("standard").apply(photos[:32], batch_size=16, batches=0)


def test_pipeline_batches_are_the_same_whatever_the_batches_per_call(photos, monkeypatch):
    policy = _drawing_policy()
    y = np.arange(len(photos)) % 10
    assert augment.batches_per_call(policy, 32, 32, 32) > 1  # 208 images: 6 batches of 32 and one of 16
    args = dict(batch_size=32, num_classes=10, seed=2, epochs=3)
    several = _epochs(train_dataset(photos, y, policy, **args), 21)
    resumed = _epochs(train_dataset(photos, y, policy, **args, start_epoch=1), 14)
    monkeypatch.setattr(augment, "MAX_BATCHES_PER_CALL", 1)
    assert augment.batches_per_call(policy, 32, 32, 32) == 1
    one = _epochs(train_dataset(photos, y, policy, **args), 30)
    assert len(several) == len(one) == 21 and [len(b[0]) for b in one[:7]] == [32] * 6 + [16]
    for (xa, ya), (xb, yb) in zip(several, one):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    for (xa, _), (xb, _) in zip(resumed, one[7:]):
        assert np.array_equal(xa, xb)


def test_canonical_spelling_keeps_the_pixels():
    """Policy.canonical rewrites steps that cannot change a pixel; for a seed, every image is the same."""
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (48, 32, 32, 3)), tf.uint8)
    policy = Policy(((Step("ShearX", 0.0, 8.0),), (Step("Identity", 0.9, 4.0), Step("SolarizeAdd", 0.5, 10.0)),
                     (Step("AutoContrast", 0.7, 3.0), Step("Rotate", 0.6, 4.0)))).with_stages(["policy", "cutout"])
    canonical = policy.canonical()
    assert canonical.digest() != policy.digest()
    assert [str(s) for s in canonical.sub_policies[1]] == ["Identity p=0 L=0", "SolarizeAdd p=0.5 L=10"]
    assert np.array_equal(policy.apply(images, seed=5).numpy(), canonical.apply(images, seed=5).numpy())
