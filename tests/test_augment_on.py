"""augment_on: the policy in tf.data or in a layer before the model gives the same pixels.

Also: large images take the XLA-compiled fused step (ops.FUSED_GROUPS), which must give
each op's own kernel's pixels, bit for bit.
"""
import numpy as np
import pytest
import tensorflow as tf

from autoaug import augment, ops
from autoaug.config import ConfigError, load_experiment
from autoaug.pipeline import steps_per_epoch, train_dataset
from autoaug.policy import Policy, PolicyError, Step, builtin
from autoaug.train import train_model

NONE = Policy((), (), "aa", "none")


def _batches(ds, n):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


def test_layer_sees_the_data_path_pixels_batch_by_batch_across_epochs(digits):
    x, y = digits[0][:40], digits[1][:40]
    policy = builtin("randaugment-n2-m9+standard+cutout")
    steps = steps_per_epoch(len(x), 16)  # 3, the last batch short
    kw = dict(batch_size=16, num_classes=10, seed=7, one_hot=True)
    data = _batches(train_dataset(x, y, policy, **kw), 2 * steps)
    plain = _batches(train_dataset(x, y, NONE, **kw), 2 * steps)
    layer = policy.as_layer(seed=7, steps_per_epoch=steps)
    for (xa, ya), (xb, yb) in zip(data, plain):
        assert np.array_equal(ya, yb)
        assert np.array_equal(xa, layer(tf.constant(xb), training=True).numpy())
    assert int(layer.calls.numpy()) == 2 * steps
    assert not np.array_equal(data[0][0], plain[0][0])  # it did augment


def test_train_model_on_the_model_trains_as_on_the_data(digits):
    x, y, x_val, y_val = digits[0][:48], digits[1][:48], digits[0][100:132], digits[1][100:132]
    kw = dict(model="cnn-small", num_classes=10, epochs=2, batch_size=16, seed=3)
    policy = builtin("randaugment-n1-m9+standard")
    on_data = train_model(x, y, x_val, y_val, policy, **kw)
    on_model, net = train_model(x, y, x_val, y_val, policy, augment_on="model", return_model=True, **kw)
    layer = next(l for l in net.layers if isinstance(l, augment.PolicyLayer))
    assert int(layer.calls.numpy()) == 2 * 3  # it augmented every training batch of both epochs
    assert [h["loss"] for h in on_model.history] == [h["loss"] for h in on_data.history]
    assert on_model.val_accuracy == on_data.val_accuracy


def test_policies_that_need_labels_are_refused_on_the_model(digits):
    x, y = digits[0][:16], digits[1][:16]
    mixup = Policy((), (Step("MixUp", 1.0, 5.0),), "aa", "mixup")
    with pytest.raises(ValueError, match="augment_on 'model' cannot run policy mixup.*use augment_on 'data'"):
        train_model(x, y, x, y, mixup, model="cnn-small", num_classes=10, epochs=1, batch_size=8,
                    augment_on="model")
    with pytest.raises(ValueError, match="augment_on must be 'data' or 'model'"):
        train_model(x, y, x, y, NONE, model="cnn-small", num_classes=10, epochs=1, batch_size=8,
                    augment_on="gpu")
    with pytest.raises(PolicyError, match="steps_per_epoch must be a positive integer"):
        builtin("standard").as_layer(steps_per_epoch=0)


def test_config_switch():
    assert load_experiment(None, []).train_args().get("augment_on") is None
    assert load_experiment(None, ["training.augment_on=model"]).train_args()["augment_on"] == "model"
    with pytest.raises(ConfigError, match="'training.augment_on' must be one of data, model, got 'gpu'"):
        load_experiment(None, ["training.augment_on=gpu"])


def test_large_images_take_the_compiled_fused_step_with_each_ops_pixels(photos):
    """At XLA_MIN_PIXELS and up, the fused groups run XLA-compiled on padded batches."""
    side = int(np.ceil(np.sqrt(augment.XLA_MIN_PIXELS)))
    x = tf.image.resize(photos[:12], [side, side + 3], "nearest").numpy().astype(np.uint8)
    for names, _, _ in ops.FUSED_GROUPS:
        for name in names:
            for level in (7,):
                out = Policy(((Step(name, 1.0, level),),)).apply(x, seed=1).numpy()
                spec = ops.OPS[name]
                plus = ops.apply_op(name, x, level).numpy()
                minus = ops.KERNELS[name](tf.constant(x), tf.fill([len(x)], 2 * spec.identity - spec.param_at(level)),
                                          ops.seed_key(0)).numpy()
                same = [np.array_equal(o, a) or (spec.signed and np.array_equal(o, b))
                        for o, a, b in zip(out, plus, minus)]
                assert all(same), f"{name} at level {level}: {len(same) - sum(same)} images differ"


def test_small_images_warp_in_one_sampling_with_each_ops_pixels(photos):
    """Below XLA_MIN_PIXELS the five warps of a step share one `ops.warp`: every image still
    gets exactly what its own op's kernel gives."""
    x = photos[:64]
    warps = ops.WARP_OPS
    policy = Policy(tuple((Step(name, 1.0, 7.0),) for name in warps))
    out = policy.apply(x, seed=3).numpy()
    candidates = []
    for name in warps:
        spec = ops.OPS[name]
        candidates.append(ops.apply_op(name, x, 7.0).numpy())
        candidates.append(ops.KERNELS[name](tf.constant(x), tf.fill([len(x)], 2 * spec.identity - spec.param_at(7.0)),
                                            ops.seed_key(0)).numpy())
    matched = [next((k // 2 for k, c in enumerate(candidates) if np.array_equal(o, c[i])), None)
               for i, o in enumerate(out)]
    assert None not in matched, f"{matched.count(None)} images match no warp kernel"
    assert len(set(matched)) == len(warps)  # every warp op ran in the shared sampling


def test_very_wide_images_take_the_float_path_in_a_policy_too():
    """Warps of images tens of thousands of pixels wide leave the fused group for `_affine`'s float64 path."""
    x = np.random.default_rng(0).integers(0, 256, [2, 2, 40000, 1], dtype=np.uint8)
    for name in ("Rotate", "ShearY"):
        out = Policy(((Step(name, 1.0, 10.0),),)).apply(x, seed=2).numpy()
        spec = ops.OPS[name]
        for o, image in zip(out, x):
            plus = ops.apply_op(name, image, 10.0).numpy()
            minus = ops.KERNELS[name](tf.constant(image[None]), tf.constant([2 * spec.identity - spec.param_at(10.0)]),
                                      ops.seed_key(0)).numpy()[0]
            assert np.array_equal(o, plus) or np.array_equal(o, minus)
