"""Preflight: everything that can be checked without training, before any trial or training.

``search``, ``worker``, ``train`` and ``evaluate`` call these before they write anything, so
a doomed run (a model that cannot be built, one class in the data, a space that cannot
produce a policy, a store of the wrong kind, an output that would overwrite an input) is one
line and exit 2 instead of a study whose every trial fails.
"""
from __future__ import annotations

import os

import numpy as np

from .config import ConfigError, Experiment
from .data import DataError
from .stores import file_of


def inputs_of(exp: Experiment, policies=()) -> dict:
    """{what: local file} of a run's inputs and stores (only the ones that are files)."""
    found = {"experiment file": exp.path,
             "search-space file": exp.space_source if isinstance(exp.space_source, str) else None,
             "MLflow tracking store": file_of(exp.tracking_uri), "Optuna storage": file_of(exp.storage)}
    source = exp.resolve(exp.data.source)
    if os.path.isfile(source):
        found["dataset"] = source
    for p in policies:
        if isinstance(p, str) and os.path.isfile(p):
            found[f"policy file {p}"] = p
    return {k: v for k, v in found.items() if v}


def check_stores_apart(exp: Experiment, policies=()) -> None:
    """The MLflow store and the Optuna storage are two files, and neither is an input."""
    from .files import OutputError, check_output
    stores = {"MLflow tracking store": (file_of(exp.tracking_uri), "--tracking-uri"),
              "Optuna storage": (file_of(exp.storage), "--storage")}
    inputs = {k: v for k, v in inputs_of(exp, policies).items() if k not in stores}
    for what, (path, flag) in stores.items():
        if not path:
            continue
        others = dict(inputs)
        if what == "Optuna storage" and stores["MLflow tracking store"][0]:
            others["MLflow tracking store"] = stores["MLflow tracking store"][0]
        try:
            check_output(path, others, f"{flag} ({what})")
        except OutputError as e:
            raise ConfigError(str(e)) from None


def check_labels(y_train: np.ndarray, num_classes: int, where: str) -> None:
    """Labels 0..K-1 with at least two classes in the training images."""
    present = np.unique(np.asarray(y_train))
    if len(present) and (present.min() < 0 or present.max() >= num_classes):
        raise DataError(f"{where}: labels must be 0..{num_classes - 1}, found {present.min()}..{present.max()}")
    if len(present) < 2:
        only = f"only class {int(present[0])}" if len(present) else "no image"
        raise DataError(f"{where}: the training images hold {only}; a classifier needs at least 2 classes")


def check_model(name: str, image_shape, num_classes: int) -> None:
    """The model builds for these images and classes, without allocating its weights."""
    import keras

    from .models import ModelError, build_model
    try:
        with keras.StatelessScope(initialize_variables=False):  # shapes only, no weights
            build_model(name, tuple(image_shape), num_classes)
    except ModelError:
        raise
    except Exception as e:
        text = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(f"model {name!r} cannot be built for {tuple(image_shape)} images and "
                          f"{num_classes} classes: {text}") from None
    finally:
        keras.backend.clear_session()  # drop the unbuilt variables


def check_space(space, num_classes: int) -> None:
    """The space produces a valid policy (one drawn at random, checked as data)."""
    from .policy import PolicyError
    try:
        space.random_policy(0, num_classes).validate()
    except (ConfigError, PolicyError, ValueError, IndexError) as e:
        raise ConfigError(f"search space {space.name or 'inline'} cannot produce a valid policy: {e}") from None


def check_training(exp: Experiment, arrays: tuple, num_classes: int, image_shape) -> None:
    """The data and the model of a training: at least two classes, labels in range, a model."""
    check_labels(arrays[1], num_classes, f"dataset {exp.data.source} (n_train={exp.data.n_train})")
    check_model(exp.model.name, image_shape, num_classes)
