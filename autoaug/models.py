"""Proxy and full-training models (Keras 3, functional).

Every model takes images with pixel values 0..255 (uint8 or float), casts them to
float32 and rescales them by 1/255 in its first layer, and ends in a float32
``Dense(num_classes, activation="softmax")``, so it works unchanged under the
``mixed_float16`` / ``mixed_bfloat16`` policies. There are no preprocessing or
augmentation layers inside (augmentation lives in tf.data), so the models compile
with XLA (``jit_compile=True``).

``build_model(name, input_shape, num_classes, **kw)`` knows

``"cnn"``        six 3x3 convs (32-32-64-64-128-128), BN + ReLU, max-pool after each
                 pair, global average pool, dense (the proxy model of the guide).
``"cnn-small"``  two convs (16, 32) for tests and the MNIST quickstart.
``"resnet-small"``  for photo-sized images (64-160 px): a stride-2 stem and three
                 pre-activation residual blocks (32, 64, 128 channels; the last two stride 2).
``"wrn-D-K"``    pre-activation Wide-ResNet of depth D (6n+4) and width K, e.g.
                 ``"wrn-16-2"``, ``"wrn-28-2"`` (1.47M parameters for 10 classes),
                 ``"wrn-28-10"``.

Keyword options (all models): ``weight_decay`` (L2 on kernels, default 0: prefer the
optimizer's decoupled ``weight_decay``), ``dropout`` (before the classifier for the
CNNs; inside each residual block for WRN, as in the paper), ``bn_momentum``
(default 0.9, PyTorch's 0.1), ``output`` ("softmax" or "logits") and ``seed`` (seed the
initializers of this model only; without it weights follow the global seed set by
``keras.utils.set_random_seed``). ``"cnn"`` also takes ``widths`` (three stage widths).
"""
from __future__ import annotations

import re

import keras
from keras import layers

KNOWN_MODELS = ("cnn", "cnn-small", "wrn-16-2", "wrn-28-2", "resnet-small")
_WRN = re.compile(r"^wrn-(\d+)-(\d+)$")
_COMMON = ("weight_decay", "dropout", "bn_momentum", "output", "seed")


class ModelError(ValueError):
    """An unknown model name or a bad model option; one line naming the fix."""


class _Init:
    """Kernel initializers: seeded per layer when ``seed`` is given, global otherwise."""

    def __init__(self, seed: int | None):
        self.seed, self.count = seed, 0

    def __call__(self, kind: str = "he_normal"):
        if self.seed is None:
            return kind
        self.count += 1
        cls = {"he_normal": keras.initializers.HeNormal,
               "glorot_uniform": keras.initializers.GlorotUniform}[kind]
        return cls(seed=self.seed * 1000 + self.count)


def build_model(name: str, input_shape, num_classes: int, **kw) -> keras.Model:
    """A fresh, uncompiled ``keras.Model`` mapping 0..255 images to class probabilities."""
    if not isinstance(name, str):
        raise ModelError(f"model name must be a string; known models: {', '.join(KNOWN_MODELS)}, "
                         f"wrn-<depth>-<width>")
    key = name.strip().lower()
    try:
        input_shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ModelError(f"input_shape must be (height, width, channels), not {input_shape!r}") \
            from None
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ModelError(f"input_shape must be (height, width, channels), not {input_shape!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ModelError(f"num_classes must be an integer >= 2, not {num_classes!r}")

    if key == "cnn":
        _check(name, kw, _COMMON + ("widths",))
        return _cnn(input_shape, num_classes, **kw)
    if key == "cnn-small":
        _check(name, kw, _COMMON)
        return _cnn(input_shape, num_classes, widths=(16, 32), convs_per_stage=1,
                    name="cnn_small", **kw)
    if key == "resnet-small":
        _check(name, kw, _COMMON)
        return _resnet_small(input_shape, num_classes, **kw)
    m = _WRN.match(key)
    if m:
        depth, width = int(m.group(1)), int(m.group(2))
        if depth < 10 or (depth - 4) % 6 or width < 1:
            raise ModelError(f"{name}: Wide-ResNet depth must be 6n+4 >= 10 (16, 22, 28, 40) and "
                             f"width >= 1, e.g. wrn-28-2")
        _check(name, kw, _COMMON)
        return _wrn(input_shape, num_classes, depth, width, **kw)
    raise ModelError(f"unknown model {name!r}; known models: {', '.join(KNOWN_MODELS)} "
                     f"(or any wrn-<depth>-<width>)")


def _check(name: str, kw: dict, known: tuple[str, ...]) -> None:
    unknown = sorted(set(kw) - set(known))
    if unknown:
        raise ModelError(f"unknown option {unknown[0]!r} for model {name}; "
                         f"known options: {', '.join(known)}")
    out = kw.get("output", "softmax")
    if out not in ("softmax", "logits"):
        raise ModelError(f"output must be 'softmax' or 'logits', not {out!r}")
    for k in ("weight_decay", "dropout"):
        v = kw.get(k, 0.0)
        if not isinstance(v, (int, float)) or not 0.0 <= v < (1.0 if k == "dropout" else 1e9):
            raise ModelError(f"{k} must be a number in [0, 1) for dropout or >= 0 for "
                             f"weight_decay, not {v!r}")


# --------------------------------------------------------------------------- pieces


def _stem(input_shape):
    inputs = keras.Input(shape=input_shape, name="images")
    # Cast to float32 and scale in float32 whatever the global dtype policy is.
    x = layers.Rescaling(1.0 / 255.0, dtype="float32", name="rescale")(inputs)
    return inputs, x


def _head(x, num_classes, init, reg, dropout, output):
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(num_classes, activation="softmax" if output == "softmax" else None,
                        kernel_initializer=init("glorot_uniform"), kernel_regularizer=reg,
                        dtype="float32", name="classifier")(x)


def _conv(x, filters, init, reg, name, stride=1, kernel=3):
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                         kernel_initializer=init(), kernel_regularizer=reg, name=name)(x)


def _bn(x, momentum, name):
    return layers.BatchNormalization(momentum=momentum, epsilon=1e-5, name=name)(x)


def _regularizer(weight_decay):
    return keras.regularizers.L2(weight_decay) if weight_decay else None


# --------------------------------------------------------------------------- CNNs


def _cnn(input_shape, num_classes, widths=(32, 64, 128), weight_decay=0.0, dropout=0.0,
         bn_momentum=0.9, output="softmax", seed=None, convs_per_stage=2, name="cnn"):
    """Stages of `convs_per_stage` conv-BN-ReLU blocks, each stage followed by a max-pool."""
    widths = tuple(int(w) for w in widths)
    init, reg = _Init(seed), _regularizer(weight_decay)
    inputs, x = _stem(input_shape)
    for s, w in enumerate(widths, start=1):
        for j in range(1, convs_per_stage + 1):
            suffix = f"{s}_{j}" if convs_per_stage > 1 else f"{s}"
            x = _conv(x, w, init, reg, f"conv{suffix}")
            x = _bn(x, bn_momentum, f"bn{suffix}")
            x = layers.ReLU(name=f"relu{suffix}")(x)
        if min(x.shape[1], x.shape[2]) >= 2:
            x = layers.MaxPooling2D(2, name=f"pool{s}")(x)
    outputs = _head(x, num_classes, init, reg, dropout, output)
    return keras.Model(inputs, outputs, name=name)


# --------------------------------------------------------------------------- Wide-ResNet


def _wrn(input_shape, num_classes, depth, width, weight_decay=0.0, dropout=0.0,
         bn_momentum=0.9, output="softmax", seed=None):
    """Zagoruyko & Komodakis (2016), pre-activation blocks; (depth-4)/6 blocks per group."""
    init, reg = _Init(seed), _regularizer(weight_decay)
    n = (depth - 4) // 6
    inputs, x = _stem(input_shape)
    x = _conv(x, 16, init, reg, "conv0")
    channels = 16
    for g, base in enumerate((16, 32, 64), start=1):
        filters = base * width
        for b in range(1, n + 1):
            stride = 2 if (g > 1 and b == 1) else 1
            p = f"g{g}b{b}_"
            pre = _bn(x, bn_momentum, p + "bn1")
            pre = layers.ReLU(name=p + "relu1")(pre)
            if stride != 1 or channels != filters:
                shortcut = _conv(pre, filters, init, reg, p + "shortcut", stride=stride, kernel=1)
            else:
                shortcut = x
            y = _conv(pre, filters, init, reg, p + "conv1", stride=stride)
            y = _bn(y, bn_momentum, p + "bn2")
            y = layers.ReLU(name=p + "relu2")(y)
            if dropout:
                y = layers.Dropout(dropout, name=p + "dropout")(y)
            y = _conv(y, filters, init, reg, p + "conv2")
            x = layers.Add(name=p + "add")([shortcut, y])
            channels = filters
    x = _bn(x, bn_momentum, "bn_final")
    x = layers.ReLU(name="relu_final")(x)
    outputs = _head(x, num_classes, init, reg, 0.0, output)
    return keras.Model(inputs, outputs, name=f"wrn_{depth}_{width}")


# --------------------------------------------------------------------------- small ResNet


def _resnet_small(input_shape, num_classes, weight_decay=0.0, dropout=0.0, bn_momentum=0.9,
                  output="softmax", seed=None):
    """A proxy for photos: the stride-2 stem does at 96 px what a CIFAR net does at 32 px."""
    init, reg = _Init(seed), _regularizer(weight_decay)
    inputs, x = _stem(input_shape)
    x = _conv(x, 32, init, reg, "conv0", stride=2 if min(input_shape[:2]) >= 16 else 1)
    channels = 32
    for s, filters in enumerate((32, 64, 128), start=1):
        stride = 2 if s > 1 and min(x.shape[1], x.shape[2]) >= 2 else 1
        p = f"s{s}_"
        pre = layers.ReLU(name=p + "relu1")(_bn(x, bn_momentum, p + "bn1"))
        shortcut = (_conv(pre, filters, init, reg, p + "shortcut", stride=stride, kernel=1)
                    if stride != 1 or channels != filters else x)
        y = _conv(pre, filters, init, reg, p + "conv1", stride=stride)
        y = layers.ReLU(name=p + "relu2")(_bn(y, bn_momentum, p + "bn2"))
        y = _conv(y, filters, init, reg, p + "conv2")
        x = layers.Add(name=p + "add")([shortcut, y])
        channels = filters
    x = layers.ReLU(name="relu_final")(_bn(x, bn_momentum, "bn_final"))
    outputs = _head(x, num_classes, init, reg, dropout, output)
    return keras.Model(inputs, outputs, name="resnet_small")
