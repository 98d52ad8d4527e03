"""autoaug.models: shapes, sizes, determinism, XLA, mixed precision, a real training step."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from autoaug.models import KNOWN_MODELS, ModelError, build_model


@pytest.fixture(autouse=True)
def fresh_session():
    keras.backend.clear_session()
    yield
    keras.backend.clear_session()


def batch_of(digits, photos, shape, n=8):
    if shape[-1] == 1:
        x, y = digits
        idx = np.arange(5000).reshape(10, 500)[:, : n // 10 + 1].T.ravel()[:n]  # mixed classes
        return x[idx], y[idx]
    return photos[:n], np.arange(n) % 10


@pytest.mark.parametrize("name", KNOWN_MODELS)
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)], ids=["mnist", "cifar"])
def test_builds_and_maps_uint8_images_to_probabilities(name, shape, digits, photos):
    model = build_model(name, shape, 10)
    x, _ = batch_of(digits, photos, shape, n=4)
    probs = model(x, training=False)  # uint8 straight in
    assert probs.shape == (4, 10) and probs.dtype == "float32"
    np.testing.assert_allclose(np.sum(probs, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(model(x.astype("float32"), training=False), probs, rtol=1e-5)
    assert model.layers[1].name == "rescale"


def test_parameter_counts_are_those_of_the_published_architectures():
    counts = {n: build_model(n, (32, 32, 3), 10).count_params()
              for n in ("cnn", "cnn-small", "wrn-16-2", "wrn-28-2", "wrn-40-2")}
    assert counts["wrn-28-2"] == pytest.approx(1.47e6, rel=0.01)  # WRN paper / FixMatch: 1.47M
    assert counts["wrn-40-2"] == pytest.approx(2.24e6, rel=0.01)  # AutoAugment's WRN-40-2: 2.2M
    assert counts["wrn-16-2"] == pytest.approx(0.69e6, rel=0.02)
    assert 250_000 < counts["cnn"] < 350_000
    assert counts["cnn-small"] < 10_000
    assert build_model("cnn", (32, 32, 3), 100).count_params() == counts["cnn"] + 128 * 90 + 90


def test_same_seed_same_initial_weights():
    def weights(global_seed, name="wrn-16-2", **kw):
        keras.backend.clear_session()
        keras.utils.set_random_seed(global_seed)
        return [w.numpy() for w in build_model(name, (32, 32, 3), 10, **kw).weights]

    a, b, c = weights(1), weights(1), weights(2)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))
    # seed= makes one model reproducible whatever the global seed is
    d, e = weights(5, "cnn", seed=7), weights(6, "cnn", seed=7)
    assert all(np.array_equal(u, v) for u, v in zip(d, e))
    kernels = [w for w in d if w.ndim == 4]
    assert not np.array_equal(kernels[1], kernels[2][:, :, :32, :32])  # per-layer seeds differ


def test_xla_training_step_learns_real_digits(digits):
    keras.utils.set_random_seed(0)
    x, y = batch_of(digits, None, (28, 28, 1), n=64)
    model = build_model("cnn-small", (28, 28, 1), 10)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy",
                  jit_compile=True)
    first = model.train_on_batch(x, y)
    for _ in range(15):
        last = model.train_on_batch(x, y)
    assert np.isfinite(first) and last < first


def test_xla_step_on_real_photos(photos):
    keras.utils.set_random_seed(0)
    x, y = photos[:16], keras.utils.to_categorical(np.arange(16) % 10, 10)
    model = build_model("cnn", (32, 32, 3), 10)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "categorical_crossentropy",
                  jit_compile=True)
    losses = [float(model.train_on_batch(x.astype("float32"), y)) for _ in range(3)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_wrn_compiles_with_xla(photos):
    model = build_model("wrn-16-2", (32, 32, 3), 10)
    forward = tf.function(lambda x: model(x, training=False), jit_compile=True)
    x = tf.constant(photos[:4], tf.float32)
    np.testing.assert_allclose(forward(x), model(x, training=False), atol=1e-5)


def test_mixed_precision_keeps_the_output_in_float32(photos):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model("wrn-16-2", (32, 32, 3), 10, dropout=0.1)
        out = model(photos[:2])
        conv = model.get_layer("g1b1_conv1")
        assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
        assert model.get_layer("classifier").compute_dtype == "float32"
        assert out.dtype == "float32"
        np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_options_logits_and_no_preprocessing_layers():
    model = build_model("cnn", (32, 32, 3), 10, output="logits", dropout=0.2,
                        weight_decay=1e-4, widths=(16, 32, 64))
    assert model.get_layer("classifier").activation.__name__ == "linear"
    assert model.count_params() < 100_000
    assert len(model.losses) == 7  # six convs + dense carry the L2 penalty
    allowed = {"InputLayer", "Rescaling", "Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D",
               "GlobalAveragePooling2D", "Dropout", "Dense", "Add"}
    for name in KNOWN_MODELS:
        kinds = {type(l).__name__ for l in build_model(name, (32, 32, 3), 10).layers}
        assert kinds <= allowed, kinds - allowed


def test_tiny_inputs_still_build():
    assert build_model("cnn", (8, 8, 1), 3)(np.zeros((1, 8, 8, 1))).shape == (1, 3)


@pytest.mark.parametrize("args,fragments", [
    (("resnet50", (32, 32, 3), 10), ["unknown model 'resnet50'", "cnn, cnn-small, wrn-16-2",
                                     "wrn-<depth>-<width>"]),
    (("wrn-20-2", (32, 32, 3), 10), ["depth must be 6n+4"]),
    (("cnn", (32, 32), 10), ["input_shape must be (height, width, channels)"]),
    (("cnn", (32, 32, 3), 1), ["num_classes must be an integer >= 2"]),
])
def test_bad_arguments_are_one_line_errors(args, fragments):
    with pytest.raises(ModelError) as e:
        build_model(*args)
    assert "\n" not in str(e.value)
    for f in fragments:
        assert f in str(e.value)


def test_bad_options_are_one_line_errors():
    with pytest.raises(ModelError, match="unknown option 'width' for model wrn-16-2"):
        build_model("wrn-16-2", (32, 32, 3), 10, width=4)
    with pytest.raises(ModelError, match="output must be"):
        build_model("cnn", (32, 32, 3), 10, output="probs")
    with pytest.raises(ModelError, match="dropout"):
        build_model("cnn", (32, 32, 3), 10, dropout=1.5)
    assert isinstance(ModelError("x"), ValueError)
    assert tf.is_tensor(build_model("WRN-16-1", (16, 16, 3), 2)(np.zeros((1, 16, 16, 3))))
