"""Density matching (Fast AutoAugment): score a policy without training per trial.

The reduced train split is cut into K stratified folds. Model k trains once, on every
fold but k, with ``density.train_policy`` (the ``standard`` stages by default). A policy
is scored by the models' accuracy and loss on their own held-out fold augmented with the
policy, averaged over ``density.copies`` augmented copies. A policy scores high when the
images it makes still look like their class to models that never saw them augmented
that way. Every trial uses the same augmentation seeds (common random numbers), so two
trials differ by their policies, not by their draws.

The K models are trained once per (data, split, model, schedule, folds, train policy,
seed) and kept in ``density.cache_dir`` (default ``~/.cache/autoaug/density/<key>/``).
A file lock makes parallel workers on one host train them once; the worker that trains
them also logs them to the study's MLflow parent run, where workers on other hosts (or
a resumed study on a new machine) download them instead of training.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, field

import numpy as np

from ..config import Experiment
from ..data import cache_root
from ..data.splits import fold_indices
from ..files import atomic_path, atomic_write
from ..labels import forbidden_ops
from ..policy import Policy, builtin

CACHE_FORMAT = 1
ARTIFACT_DIR = "density_models"


@dataclass
class DensityScore:
    accuracy: float  # mean over folds and copies: the trial's value
    loss: float  # mean cross-entropy over the same images
    fold_accuracy: list = field(default_factory=list)
    class_accuracy: list = field(default_factory=list)  # NaN for a class without held-out images
    augment_s: float = 0.0
    seconds: float = 0.0


def train_policy(exp: Experiment) -> Policy:
    """The K models' training policy, a built-in adapted to the dataset (`autoaug.labels`)."""
    return forbidden_ops(exp).adapt(builtin(exp.density.train_policy))


def models_spec(exp: Experiment, num_classes: int) -> dict:
    """Everything the K models depend on; its hash names the cache folder."""
    d, den = exp.data, exp.density
    return {"format": CACHE_FORMAT, "source": d.source, "n_train": d.n_train, "n_val": d.n_val,
            "split_seed": d.split_seed, "model": exp.model.name, "training": _training(exp),
            "folds": den.folds, "train_policy": train_policy(exp).digest(),
            "seed": exp.seed, "num_classes": num_classes,
            # image folders resized on load: other pixels, other models (absent otherwise, so
            # that the models cached before these keys existed are still found)
            **({"decoding": [d.image_size, d.resize, d.channels]}
               if d.image_size is not None or d.channels is not None else {})}


def _training(exp: Experiment) -> dict:
    """The schedule the models depend on (how often they validate does not change them)."""
    t = dataclasses.asdict(exp.training)
    t.pop("validate_every")
    return t


def models_key(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


class DensityEvaluator:
    """K trained models and their held-out folds; ``score(policy)`` evaluates a policy."""

    def __init__(self, exp: Experiment, arrays: tuple, num_classes: int):
        self.exp, self.num_classes = exp, num_classes
        den = exp.density
        self.copies, self.seed = den.copies, exp.seed
        x_tr, y_tr = arrays[0], arrays[1]
        held_out = fold_indices(y_tr, den.folds, exp.data.split_seed)
        self.folds = [(x_tr[i], y_tr[i]) for i in held_out]
        self.fit_sets = [np.setdiff1d(np.arange(len(y_tr)), i) for i in held_out]
        self.arrays = (x_tr, y_tr)
        self.spec = json.loads(json.dumps(models_spec(exp, num_classes), default=str))  # as stored
        self.key = models_key(self.spec)
        root = den.cache_dir or os.path.join(cache_root(), "density")
        self.dir = os.path.join(root, self.key)
        self.models: list = []
        self.trained_here = False  # whether this process trained the models (else: reused)
        self.info: dict = {}

    # ------------------------------------------------------------------ models
    def prepare(self, tracker=None, log=print) -> "DensityEvaluator":
        """Load the cached models, or fetch them from the study's parent run, or train them."""
        os.makedirs(os.path.dirname(self.dir), exist_ok=True)
        with open(self.dir + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits here while the first trains
            try:
                if not self._complete() and tracker is not None:
                    tracker.download_dir(f"{ARTIFACT_DIR}/{self.key}", self.dir)
                if not self._complete():
                    log(f"density matching: training {len(self.folds)} fold models once "
                        f"({self.exp.model.name}, {self.exp.training.epochs} epochs, "
                        f"policy {self.exp.density.train_policy}) into {self.dir}")
                    self._train()
                    self.trained_here = True
                    if tracker is not None:
                        tracker.log_dir(self.dir, f"{ARTIFACT_DIR}/{self.key}")
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        with open(os.path.join(self.dir, "models.json")) as f:
            self.info = json.load(f)
        self._load()
        if tracker is not None:
            tracker.log_density_models(self.key, self.info, trained=self.trained_here)
        return self

    def _complete(self) -> bool:
        try:
            with open(os.path.join(self.dir, "models.json")) as f:
                info = json.load(f)
        except (OSError, ValueError):
            return False
        return info.get("spec") == self.spec and all(
            os.path.exists(self._weights(k)) for k in range(len(self.folds)))

    def _weights(self, k: int) -> str:
        return os.path.join(self.dir, f"fold{k}.weights.h5")

    def _train(self) -> None:
        from ..train import train_model
        exp = self.exp
        os.makedirs(self.dir, exist_ok=True)
        x_tr, y_tr = self.arrays
        policy = train_policy(exp)
        folds = []
        for k, ((x_held, y_held), fit) in enumerate(zip(self.folds, self.fit_sets)):
            start = time.perf_counter()
            result, net = train_model(
                x_tr[fit], y_tr[fit], x_held, y_held, policy, num_classes=self.num_classes,
                return_model=True, **exp.train_args(seed=exp.seed + k))
            with atomic_path(self._weights(k)) as tmp:
                net.save_weights(tmp)
            folds.append({"fold": k, "n_fit": int(len(fit)), "n_held_out": int(len(y_held)),
                          "clean_accuracy": float(result.val_accuracy),
                          "train_s": round(time.perf_counter() - start, 1)})
        info = {"key": self.key, "spec": self.spec, "folds": folds,
                "trained_by": f"{socket.gethostname()}:{os.getpid()}",
                "trained_at": dt.datetime.now().isoformat(timespec="seconds")}
        # last: its presence = complete
        atomic_write(os.path.join(self.dir, "models.json"), json.dumps(info, indent=1))

    def _load(self) -> None:
        from ..models import build_model
        from ..train import configure_device
        configure_device()
        shape = self.arrays[0].shape[1:]
        self.models = []
        for k in range(len(self.folds)):
            net = build_model(self.exp.model.name, shape, self.num_classes)
            net.load_weights(self._weights(k))
            self.models.append(net)

    # ------------------------------------------------------------------ scoring
    def score(self, policy: Policy, on_fold=None) -> DensityScore:
        """The policy's density-matching score; ``on_fold(k, metrics)`` after each fold
        (the running means: the driver's pruning hook may raise there)."""
        from ..data.stream import ImageFiles
        from ..pipeline import augment_array, augmented_batches
        start = time.perf_counter()
        correct = np.zeros(self.num_classes)
        count = np.zeros(self.num_classes)
        fold_acc, losses, augment_s = [], [], 0.0
        for k, (net, (x, y)) in enumerate(zip(self.models, self.folds)):
            hits = 0
            for c in range(self.copies):
                t0 = time.perf_counter()
                if isinstance(x, ImageFiles):  # streamed: augment and predict a batch at a time
                    probs = np.concatenate([
                        np.asarray(net.predict_on_batch(b.astype(np.float32)), np.float64)
                        for b in augmented_batches(x, y, policy, seed=self.seed * 1000 + k, copy_index=c)])
                    augment_s += time.perf_counter() - t0  # reading and predicting included
                else:
                    images = augment_array(x, y, policy, seed=self.seed * 1000 + k, copy_index=c)
                    augment_s += time.perf_counter() - t0
                    probs = np.asarray(net.predict(images.astype(np.float32), batch_size=500, verbose=0),
                                       np.float64)
                ok = probs.argmax(1) == y
                hits += int(ok.sum())
                np.add.at(correct, y, ok)
                np.add.at(count, y, 1)
                losses.append(float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1)).mean()))
            fold_acc.append(hits / (self.copies * len(y)))
            if on_fold is not None:
                on_fold(k + 1, {"val_accuracy": float(np.mean(fold_acc)), "val_loss": float(np.mean(losses))})
        with np.errstate(invalid="ignore", divide="ignore"):
            class_acc = (correct / count).tolist()
        return DensityScore(float(np.mean(fold_acc)), float(np.mean(losses)), fold_acc, class_acc,
                            augment_s, time.perf_counter() - start)
