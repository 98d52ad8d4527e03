#!/usr/bin/env python
"""Policy quality: do the searched policies beat the published ones on reduced CIFAR-10?

The same model is trained with the same schedule from scratch with each policy

  baselines  none, standard, standard+cutout, autoaugment-cifar10+standard+cutout,
             randaugment-n2-m9+standard+cutout, trivialaugment-wide+standard+cutout
  searched   searched            proxy-training search (experiments/cifar10_reduced.yaml),
                                 its best single trial
             searched-dm         density-matching search (experiments/cifar10_reduced_dm.yaml),
                                 the union of the top --merge-top trials of every fold
             searched-per-class  density matching with one policy per class
                                 (experiments/cifar10_reduced_per_class.yaml), top --merge-top
                                 trials of every class
  controls   random-1 ... random-N  policies drawn uniformly from the proxy search's space
                                 (numpy default_rng(1000 + i)): what a search must beat

on the experiment's reduced split of the CIFAR-10 *train* split (4,000 train images, stratified,
split seed 0: the images the searches trained or scored on). It validates on the experiment's
1,000 held-out train images (reported, never used to select anything here) and measures test
accuracy on the 10,000 test images.

Every search is run (or resumed) here with an Optuna journal and an MLflow store of its own and
frozen with ``autoaug.search.best_policy``. The proxy search keeps its historic files at the top
of ``runs/bench_policies/`` (search.journal, mlflow.db, searched_policy.json, search_cost.json);
the others use ``runs/bench_policies/<name>/`` (search.journal, mlflow.db, policy.json,
search_cost.json). The two density-matching searches share the K density models through
``runs/bench_policies/density_models/``: the search that trains them pays for them in its cost,
the other reuses them (recorded in its cost file). A search's wall and CPU time (this process,
TensorFlow's threads included, plus its children) are summed over every resumed segment.

Order of work, so that a run cut short is informative: the searches (density matching, per
class, then the proxy search; a search whose study is complete and whose policy is frozen is not re-run), then the
full trainings seed by seed, in each seed: standard, searched, searched-dm, searched-per-class,
none, standard+cutout, the published policies, the random controls (these on the first
--random-seeds seeds only). Every finished run is appended to the CSV at once; (policy, seed)
pairs already there with the same setting (epochs, model, batch, lr, split) are skipped, so a
killed run resumes where it stopped (a search resumes from its journal like any resumed
study: the driver fails and re-queues the killed trials, and the joining sampler draws anew).

At the end, and with ``--report`` at any time from the CSV alone, it prints the table: n seeds,
mean test accuracy, standard deviation, standard error, differences to ``standard`` and to the
best baseline, the searches' costs and the targets of issues 4 and 6; with the default CSV it
also rewrites the table section of ``docs/bench_policies.md``.

    .venv/bin/python scripts/bench_policies.py --pin-head          # everything (hours on 2 cores)
    .venv/bin/python scripts/bench_policies.py --report             # the table from the CSV so far
    .venv/bin/python scripts/bench_policies.py --epochs 1 --seeds 1 --only none,random-1 \\
        --csv /tmp/smoke/b.csv --runs-dir /tmp/smoke/runs --skip-search   # smoke test
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import fcntl
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from autoaug.files import atomic_write, git_sha, has_uncommitted_edits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench_policies"
DEFAULT_CSV = ROOT / "docs" / "bench_policies.csv"
DEFAULT_DOCS = ROOT / "docs" / "bench_policies.md"
DEFAULT_EXPERIMENT = ROOT / "experiments" / "cifar10_reduced.yaml"
# The random controls' space: AutoAugment's, which the density-matching searches search.
DEFAULT_RANDOM_SPACE = ROOT / "search_spaces" / "autoaugment.yaml"
DEFAULT_DM_EXPERIMENT = ROOT / "experiments" / "cifar10_reduced_dm.yaml"
DEFAULT_PER_CLASS_EXPERIMENT = ROOT / "experiments" / "cifar10_reduced_per_class.yaml"
SEARCHED, SEARCHED_DM, SEARCHED_PER_CLASS = "searched", "searched-dm", "searched-per-class"
PUBLISHED = ["autoaugment-cifar10+standard+cutout", "randaugment-n2-m9+standard+cutout",
             "trivialaugment-wide+standard+cutout"]
BASELINES = ["none", "standard", "standard+cutout"] + PUBLISHED
RANDOM_PREFIX = "random-"
RANDOM_RNG_BASE = 1000  # random-i is drawn with numpy.random.default_rng(1000 + i)
TARGET_POINTS = 1.0  # issue 4: searched >= best baseline + 1 point
DM_COST_CPU_MIN = 15.0  # issue 6: the density-matching search within 15 CPU-minutes
PROXY_COST_CPU_MIN = 60.0  # ... against a proxy search of 60 CPU-minutes
FIELDS = ["policy", "seed", "test_accuracy", "val_accuracy", "best_val_accuracy", "seconds",
          "cpu_s", "epochs", "model", "batch_size", "learning_rate", "n_train", "n_val",
          "split_seed", "policy_hash", "code_version", "finished_at"]
SETTING = ("epochs", "model", "batch_size", "learning_rate", "n_train", "n_val", "split_seed")
DATA_KEYS = ("source", "n_train", "n_val", "split_seed")
TABLE_START = "<!-- bench-policies-table:start -->"
TABLE_END = "<!-- bench-policies-table:end -->"
COST_SAVE_EVERY_S = 30.0


class BenchError(Exception):
    """A problem the user can fix; printed as one line."""


def log(msg: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- searches


@dataclasses.dataclass(frozen=True)
class Search:
    """One search of the bench: the CSV's policy name, its experiment flag, its files."""

    name: str
    flag: str  # the args attribute that holds the experiment path
    folder: str  # under the runs dir; "" = the runs dir itself (the proxy search's historic files)
    merged: bool  # frozen with top=--merge-top (else the best single trial)

    @property
    def dir(self) -> Path:
        return RUNS / self.folder if self.folder else RUNS

    @property
    def journal(self) -> Path:
        return self.dir / "search.journal"

    @property
    def mlflow_db(self) -> Path:
        return self.dir / "mlflow.db"

    @property
    def policy_file(self) -> Path:
        return self.dir / "policy.json" if self.folder else RUNS / "searched_policy.json"

    @property
    def cost_file(self) -> Path:
        return self.dir / "search_cost.json"

    @property
    def lock_file(self) -> Path:
        return self.dir / "search.lock"


SEARCHES = (Search(SEARCHED, "experiment", "", False),
            Search(SEARCHED_DM, "dm_experiment", SEARCHED_DM, True),
            Search(SEARCHED_PER_CLASS, "per_class_experiment", SEARCHED_PER_CLASS, True))
SEARCH_NAMES = [s.name for s in SEARCHES]


def density_cache() -> Path:
    """The K density models, shared by the two density-matching searches."""
    return RUNS / "density_models"


def random_names(n: int) -> list[str]:
    return [f"{RANDOM_PREFIX}{i}" for i in range(1, n + 1)]


def is_random(name: str) -> bool:
    return name.startswith(RANDOM_PREFIX)


def train_order(n_random: int) -> list[str]:
    """Priority of the full trainings within a seed."""
    return (["standard", SEARCHED, SEARCHED_DM, SEARCHED_PER_CLASS, "none", "standard+cutout"]
            + PUBLISHED + random_names(n_random))


def report_order(n_random: int) -> list[str]:
    return BASELINES + SEARCH_NAMES + random_names(n_random)


def hashed(name: str) -> bool:
    """Policies whose rows are keyed by the policy's digest (a changed policy is a new row)."""
    return name in SEARCH_NAMES or is_random(name)


# --------------------------------------------------------------------------- arguments


def parse_args(argv=None):
    global RUNS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default=str(DEFAULT_EXPERIMENT),
                   help="experiment YAML of the proxy-training search ('searched'), of the data "
                        "split and of the random controls' space "
                        "(default experiments/cifar10_reduced.yaml)")
    p.add_argument("--dm-experiment", default=str(DEFAULT_DM_EXPERIMENT),
                   help="experiment YAML of the density-matching search ('searched-dm'; default "
                        "experiments/cifar10_reduced_dm.yaml)")
    p.add_argument("--per-class-experiment", default=str(DEFAULT_PER_CLASS_EXPERIMENT),
                   help="experiment YAML of the per-class density-matching search "
                        "('searched-per-class'; default experiments/cifar10_reduced_per_class.yaml)")
    p.add_argument("--merge-top", type=int, default=5,
                   help="freeze searched-dm and searched-per-class as the union of the sub-policies "
                        "of the N best trials of every fold / class (default 5)")
    p.add_argument("--random", type=int, default=5,
                   help="number of random control policies random-1..N (default 5; 0 = none)")
    p.add_argument("--random-space", default=str(DEFAULT_RANDOM_SPACE),
                   help="search space the random controls are drawn from (default "
                        "search_spaces/autoaugment.yaml, the density-matching searches' space)")
    p.add_argument("--random-seeds", type=int, default=1,
                   help="train the random controls on the first N seeds of --seeds only (default 1)")
    p.add_argument("--epochs", type=int, default=20, help="full-training epochs (default 20)")
    p.add_argument("--seeds", default="3",
                   help="N for seeds 0..N-1, or a comma list such as 3,4 (default 3)")
    p.add_argument("--model", default="cnn", help="model of the full trainings (default cnn)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05, help="peak learning rate (default 0.05)")
    p.add_argument("--csv", default=str(DEFAULT_CSV),
                   help="append finished runs here (default docs/bench_policies.csv)")
    p.add_argument("--docs", default=None,
                   help="markdown file whose table section is rewritten (default "
                        "docs/bench_policies.md when --csv is the default, else none); '' = none")
    p.add_argument("--only", default="",
                   help="comma list of policies to run/report (default all: the baselines, "
                        f"{', '.join(SEARCH_NAMES)}, random-1..N)")
    p.add_argument("--search-trials", type=int, default=None,
                   help="override n_trials of the proxy-training search only")
    p.add_argument("--search-epochs", type=int, default=None,
                   help="override the proxy epochs of the proxy-training search only (its study "
                        "gets a -e<N> suffix)")
    p.add_argument("--search-first", action="store_true",
                   help=argparse.SUPPRESS)  # accepted for old command lines: searches now always go first
    p.add_argument("--skip-search", action="store_true",
                   help="run no search; use the frozen policies that exist")
    p.add_argument("--pin-head", action="store_true",
                   help="run the library as committed at HEAD: copy it to runs/bench_policies/"
                        "code-<sha>/ and re-run this script on that copy (for long runs in a "
                        "working tree that others edit)")
    p.add_argument("--runs-dir", default=str(RUNS),
                   help="search journals, MLflow stores, frozen policies, search costs and the "
                        "density models go here (default runs/bench_policies)")
    p.add_argument("--report", action="store_true",
                   help="only print (and write) the table from the CSV; train nothing")
    args = p.parse_args(argv)
    try:
        if "," in args.seeds:
            args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
        else:
            args.seed_list = list(range(int(args.seeds)))
    except ValueError:
        raise BenchError(f"--seeds {args.seeds!r} is not a count or a comma list of integers")
    if not args.seed_list or min(args.seed_list) < 0:
        raise BenchError("--seeds needs at least one non-negative seed")
    for flag in ("epochs", "batch_size", "search_trials", "search_epochs", "merge_top", "random_seeds"):
        v = getattr(args, flag)
        if v is not None and v <= 0:
            raise BenchError(f"--{flag.replace('_', '-')} must be a positive integer, got {v}")
    if args.random < 0:
        raise BenchError(f"--random must be 0 or more, got {args.random}")
    if not args.lr > 0:
        raise BenchError(f"--lr must be positive, got {args.lr}")
    known = train_order(args.random)
    names = [s.strip() for s in args.only.split(",") if s.strip()] or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        hint = (f" (there are --random {args.random} controls)" if is_random(unknown[0]) else "")
        raise BenchError(f"--only: unknown policy {unknown[0]!r}{hint}; choose from {', '.join(known)}")
    args.policies = [n for n in known if n in names]  # in training priority
    args.csv = os.path.abspath(args.csv)
    args.random_space = os.path.abspath(args.random_space)
    RUNS = Path(args.runs_dir).resolve()
    if args.docs is None:
        args.docs = str(DEFAULT_DOCS) if args.csv == str(DEFAULT_CSV) else ""
    return args


def load_cfg(args) -> dict:
    """The proxy-training experiment: the data split and setting of the bench, the random
    controls' space and the search 'searched' (with --search-trials/--search-epochs)."""
    from autoaug.config import load_experiment
    overrides = []
    if args.search_trials is not None:
        overrides.append(f"n_trials={args.search_trials}")
    if args.search_epochs is not None:
        overrides.append(f"training.epochs={args.search_epochs}")
    cfg = load_experiment(args.experiment, overrides)
    cfg["random_space"] = args.random_space
    if args.search_epochs is not None:
        cfg["name"] = f"{cfg['name']}-e{args.search_epochs}"
    return with_stores(cfg, SEARCHES[0])


def with_stores(cfg: dict, search: Search) -> dict:
    # The bench's own stores, under the git-ignored runs/.
    cfg["storage"] = f"journal:{search.journal}"
    cfg["tracking_uri"] = f"sqlite:///{search.mlflow_db}"
    return cfg


def search_cfg(args, search: Search, cfg: dict) -> dict:
    """The experiment of `search` with the bench's stores (`cfg`: the proxy experiment's)."""
    import copy

    from autoaug.config import ConfigError, load_experiment
    if search.name == SEARCHED:
        return copy.deepcopy(cfg)
    path = getattr(args, search.flag)
    try:
        out = with_stores(load_experiment(path), search)
    except ConfigError as e:
        raise BenchError(f"{search.name}: {e} (--{search.flag.replace('_', '-')}; a library "
                         f"without density matching rejects its keys)") from None
    if out.get("evaluation", "proxy-training") == "density-matching":
        out["density"]["cache_dir"] = str(density_cache())
    for k in DATA_KEYS:
        if out["data"][k] != cfg["data"][k]:
            raise BenchError(f"{search.name}: {path} has data.{k} = {out['data'][k]!r} but the bench "
                             f"trains on {args.experiment}'s {cfg['data'][k]!r}; use the same split")
    return out


def setting_of(args, cfg) -> dict:
    d = cfg["data"]
    return {"epochs": str(args.epochs), "model": args.model, "batch_size": str(args.batch_size),
            "learning_rate": f"{args.lr:g}", "n_train": str(d["n_train"]), "n_val": str(d["n_val"]),
            "split_seed": str(d["split_seed"])}


# --------------------------------------------------------------------------- locks, files


class FileLock:
    """An exclusive flock on `path`, released when the process dies."""

    def __init__(self, path: Path, what: str):
        self.path, self.what, self.f = Path(path), what, None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "a")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.f.close()
            raise BenchError(f"another bench_policies process holds {self.path} ({self.what}); "
                             f"wait for it or stop it") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def read_rows(path: str) -> list[dict]:
    """The CSV's complete rows (a row cut short by a kill is ignored)."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                float(row["test_accuracy"]), int(row["seed"])
            except (KeyError, TypeError, ValueError):
                continue
            rows.append(row)
    return rows


def append_row(path: str, row: dict) -> None:
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def pin_head(argv) -> None:
    """Re-exec this script with the library of HEAD (a copy under runs/) first on sys.path.

    A run of hours must not pick up edits made to autoaug/ meanwhile: tf.function and
    autograph read a function's source again whenever they trace it, so a half-edited
    working tree can break (or silently change) a run that is already going.
    """
    import subprocess
    if os.environ.get("AUTOAUG_BENCH_PINNED"):
        return
    sha = git_sha(ROOT)
    if not sha:
        raise BenchError(f"--pin-head needs git in {ROOT} (no commit found); run without --pin-head")
    dest = RUNS / f"code-{sha}"
    if not (dest / "CODE_VERSION").exists():
        tmp = RUNS / f".code-{sha}.tmp{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", "HEAD", "autoaug"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        (tmp / "CODE_VERSION").write_text(sha + "\n")
        try:
            os.rename(tmp, dest)
        except OSError:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    env = dict(os.environ, AUTOAUG_BENCH_PINNED=sha,
               PYTHONPATH=os.pathsep.join([str(dest)] + [p for p in
                                          os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    log(f"running the library of HEAD {sha} from {os.path.relpath(dest, ROOT)}")
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + list(argv), env)


def code_version() -> str:
    """The commit of the library in use, '+dirty' when it has uncommitted edits."""
    import autoaug
    pkg = Path(autoaug.__file__).resolve().parent
    marker = pkg.parent / "CODE_VERSION"  # written by pin_head into its copy of HEAD
    if marker.exists():
        return marker.read_text().strip()
    sha = git_sha(pkg)
    return sha + ("+dirty" if sha and has_uncommitted_edits(pkg) else "")


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# --------------------------------------------------------------------------- searches: cost, run, freeze


class CostMeter:
    """Wall and CPU seconds of one search segment, saved every 30 s and at the end.

    The file keeps every segment (a killed run loses at most 30 s of accounting), so a
    resumed search reports its whole cost, the work of killed trials included.
    """

    def __init__(self, path: Path, info: dict, segment: dict | None = None):
        self.path = Path(path)
        self.data = load_cost(self.path) or {"segments": []}
        self.data.update(info)
        self.segment = {"started": dt.datetime.now().isoformat(timespec="seconds"),
                        "wall_s": 0.0, "cpu_s": 0.0, "state": "running", **(segment or {})}
        self.data["segments"].append(self.segment)
        self.t0, self.c0 = time.perf_counter(), cpu_seconds()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.save()
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(COST_SAVE_EVERY_S):
            self.save()

    def save(self, **extra):
        self.segment["wall_s"] = round(time.perf_counter() - self.t0, 1)
        self.segment["cpu_s"] = round(cpu_seconds() - self.c0, 1)
        self.data.update(extra)
        segs = self.data["segments"]
        self.data["total_wall_s"] = round(sum(s["wall_s"] for s in segs), 1)
        self.data["total_cpu_s"] = round(sum(s["cpu_s"] for s in segs), 1)
        atomic_write(self.path, json.dumps(self.data, indent=1) + "\n")

    def __exit__(self, exc_type, exc, tb):
        self._stop.set()
        self._thread.join()
        self.segment["state"] = "finished" if exc_type is None else f"stopped ({exc_type.__name__})"
        self.save()


def load_cost(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def trial_counts(cfg) -> dict:
    import optuna

    from autoaug.search.optuna_driver import make_storage
    try:
        study = optuna.load_study(study_name=cfg["name"], storage=make_storage(cfg["storage"]))
    except KeyError:
        return {}
    counts: dict = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return counts


def finished(counts: dict) -> int:
    """Trials that count towards n_trials (failed ones are topped up by the driver)."""
    return counts.get("complete", 0) + counts.get("pruned", 0)


def is_density(cfg: dict) -> bool:
    return cfg.get("evaluation", "proxy-training") == "density-matching"


def search_top(args, search: Search) -> int:
    return args.merge_top if search.merged else 1


def frozen_top(policy) -> int:
    return int(policy.meta.get("merged_top", 1) or 1)


def run_search_step(args, search: Search, cfg: dict) -> None:
    """Run/resume one search, then freeze its policy to `search.policy_file`.

    A search whose study is complete and whose frozen policy was made with the current
    --merge-top is left alone; a complete study with another --merge-top is only re-frozen.
    """
    from autoaug.search import run_search
    who = search.name
    top = search_top(args, search)
    search.dir.mkdir(parents=True, exist_ok=True)
    info = {"search": who, "experiment": os.path.relpath(cfg["_path"], ROOT), "study": cfg["name"],
            "storage": os.path.relpath(search.journal, ROOT), "tracking_uri": cfg["tracking_uri"],
            "n_trials": cfg["n_trials"], "evaluation": cfg.get("evaluation", "proxy-training"),
            "model": cfg["model"]["name"], "machine": machine()}
    if is_density(cfg):
        den = cfg["density"]
        info["density"] = {"folds": den["folds"], "copies": den["copies"],
                           "train_policy": den["train_policy"], "model_epochs": cfg["training"]["epochs"],
                           "cache_dir": os.path.relpath(den["cache_dir"], ROOT)}
    else:
        info["proxy_epochs"] = cfg["training"]["epochs"]
    with FileLock(search.lock_file, f"the {who} search"):
        before = trial_counts(cfg)
        frozen = frozen_policy(search)
        cost = load_cost(search.cost_file) or {}
        if finished(before) >= cfg["n_trials"] and frozen is not None and frozen_top(frozen) == top \
                and (cost.get("best") or {}).get("policy_hash") == frozen.digest():
            log(f"{who}: study {cfg['name']} complete ({before}), policy frozen in "
                f"{os.path.relpath(search.policy_file, ROOT)}; not re-run")
            return
        if finished(before) < cfg["n_trials"]:
            # A resumed study joins as a new worker, and the driver gives every joining worker
            # a sampler seed of its own: it does not replay the earlier random draws.
            what = (f"density matching, {cfg['density']['folds']} models of {cfg['training']['epochs']} "
                    f"epochs (cache {os.path.relpath(cfg['density']['cache_dir'], ROOT)})"
                    if is_density(cfg) else f"proxy training, {cfg['training']['epochs']} epochs")
            log(f"{who}: study {cfg['name']} ({cfg['n_trials']} trials, {what}, {cfg['model']['name']}), "
                f"{finished(before)} finished before; journal {info['storage']}")
            with CostMeter(search.cost_file, info, {"code_version": code_version()}) as meter:
                ctx, _ = run_search(cfg, progress=False)
                evaluator = getattr(ctx, "evaluator", None)
                if evaluator is not None:
                    trained = bool(evaluator.trained_here)
                    meter.segment["density_models"] = "trained" if trained else "reused"
                    paid = trained or any(s.get("density_models") == "trained"
                                          for s in meter.data["segments"])
                    meter.data["density_models"] = {
                        "key": evaluator.key, "dir": os.path.relpath(evaluator.dir, ROOT),
                        "trained_here": paid,
                        "clean_accuracy": [f.get("clean_accuracy") for f in evaluator.info.get("folds", [])]}
                counts = trial_counts(cfg)
                meter.save(trials=counts, complete=finished(counts) >= cfg["n_trials"])
        else:
            counts = before
            log(f"{who}: study {cfg['name']} complete ({counts}); freezing it again with top {top}")
        policy = freeze(cfg, top, who)
        policy.save(str(search.policy_file))
        cost = load_cost(search.cost_file) or dict(info, segments=[], total_wall_s=0.0, total_cpu_s=0.0)
        cost.update(trials=counts, complete=finished(counts) >= cfg["n_trials"])
        cost["best"] = {"trial": policy.meta.get("trial"), "val_accuracy": policy.meta.get("val_accuracy"),
                        "policy_hash": policy.digest(), "name": policy.name,
                        "is_baseline": policy.name in cfg["baselines"], "summary": policy.summary(8),
                        "merged_top": policy.meta.get("merged_top", 1),
                        "merged_trials": policy.meta.get("merged_trials"),
                        "selection": policy.meta.get("selection", "best trial")}
        atomic_write(search.cost_file, json.dumps(cost, indent=1) + "\n")
    log(f"{who}: done, {counts}; wall {cost['total_wall_s'] / 60:.1f} min, "
        f"CPU {cost['total_cpu_s'] / 60:.1f} CPU-min; {frozen_text(policy.meta)} frozen to "
        f"{os.path.relpath(search.policy_file, ROOT)}: {policy.summary(8)}")


def freeze(cfg: dict, top: int, who: str):
    from autoaug.search import best_policy
    if top == 1:
        return best_policy(cfg["name"], cfg["tracking_uri"], cfg["storage"])
    try:
        return best_policy(cfg["name"], cfg["tracking_uri"], cfg["storage"], top=top)
    except TypeError as e:
        if "top" not in str(e):
            raise
        raise BenchError(f"{who}: this library's best_policy() cannot merge the top {top} trials "
                         f"(no top=); use a newer library or --merge-top 1") from None


def frozen_text(meta: dict) -> str:
    """How a frozen policy was chosen, in a few words."""
    val = meta.get("val_accuracy")
    score = f"search score {100 * val:.2f}%" if isinstance(val, (int, float)) else "search score ?"
    if int(meta.get("merged_top", 1) or 1) > 1:
        trials = meta.get("merged_trials") or []
        per = {"per-class": "class", "per-fold": "fold"}.get(meta.get("selection"), "fold")
        return (f"union of the top {meta['merged_top']} trials of every {per} "
                f"({len(trials)} trials: {', '.join(str(t) for t in trials)}; best trial "
                f"{meta.get('trial')}, {score})")
    if int(meta.get("evaluations", 1) or 1) > 1:
        trials = ", ".join(str(t) for t in meta.get("trials") or [])
        return f"best policy, evaluated by trials {trials} ({score}, their mean)"
    return f"best trial {meta.get('trial')} ({score})"


def frozen_policy(search: Search):
    from autoaug import load_policy
    path = search.policy_file
    return load_policy(str(path)) if path.exists() else None


# --------------------------------------------------------------------------- random controls


class RandomSuggest:
    """Answers a search space's questions with uniform draws: a policy no search chose."""

    def __init__(self, seed: int):
        import numpy as np
        self.rng = np.random.default_rng(seed)

    def categorical(self, name, choices):
        return choices[int(self.rng.integers(len(choices)))]

    def int(self, name, low, high):
        return int(self.rng.integers(low, high + 1))

    def float(self, name, low, high):
        return float(self.rng.uniform(low, high))


def random_policy(cfg: dict, name: str, num_classes: int = 0):
    """random-i: drawn uniformly from cfg's random_space (same i, same policy)."""
    from autoaug.search import load_space
    i = int(name[len(RANDOM_PREFIX):])
    source = cfg["random_space"]
    space = load_space(source)
    policy = space.sample(RandomSuggest(RANDOM_RNG_BASE + i), num_classes)
    meta = {"random_control": i, "rng_seed": RANDOM_RNG_BASE + i,
            "search_space": os.path.relpath(source, ROOT),
            "search_space_hash": space.digest()}
    return dataclasses.replace(policy, name=name, meta=meta)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    return f"{os.cpu_count()} CPU cores ({cpu}), {mem:.0f} GiB, {platform.system()}, Python {platform.python_version()}"


# --------------------------------------------------------------------------- full training


def seeds_of(args, name: str) -> list[int]:
    """The seeds a policy is trained with: the random controls only the first --random-seeds."""
    return args.seed_list[:args.random_seeds] if is_random(name) else list(args.seed_list)


def train_all(args, cfg) -> None:
    import numpy as np

    from autoaug.config import resolve
    from autoaug.data import load_dataset, reduced_split
    from autoaug.policy import builtin
    from autoaug.train import train_model

    setting = setting_of(args, cfg)
    d = cfg["data"]
    ds = load_dataset(resolve(d["source"], cfg))
    x_tr, y_tr, x_val, y_val = reduced_split(ds, d["n_train"], d["n_val"], seed=d["split_seed"])
    assert not np.shares_memory(x_tr, ds.x_test)
    log(f"data: {ds!r}; train {len(x_tr)}, validation {len(x_val)} (held out of the train split, "
        f"split seed {d['split_seed']}), test {len(ds.x_test)}")
    searches = {s.name: s for s in SEARCHES}
    policies = {}
    for name in args.policies:
        if name in searches:
            p = frozen_policy(searches[name])
            if p is None:
                log(f"{name}: no frozen policy yet (run without --skip-search); skipped")
                continue
            policies[name] = p
        elif is_random(name):
            policies[name] = random_policy(cfg, name, ds.num_classes)
            log(f"{name}: hash {policies[name].digest()}: {policies[name].summary(8)}")
        else:
            policies[name] = builtin(name)
    version = code_version()
    log(f"library: {os.path.dirname(sys.modules['autoaug'].__file__)} (code {version or '?'})")
    with FileLock(Path(args.csv + ".lock"), f"the CSV {args.csv}"):
        done = {row_key(r) for r in read_rows(args.csv) if same_setting(r, setting)}
        todo = [(s, n) for s in args.seed_list for n in policies  # policies: in priority order
                if s in seeds_of(args, n) and key_of(n, s, policies[n]) not in done]
        log(f"full training: {len(todo)} runs to do ({args.model}, {args.epochs} epochs, batch "
            f"{args.batch_size}, lr {args.lr:g}), {len(done)} already in {args.csv}")
        for k, (seed, name) in enumerate(todo, 1):
            policy = policies[name]
            t0, c0 = time.perf_counter(), cpu_seconds()
            result = train_model(x_tr, y_tr, x_val, y_val, policy, model=args.model,
                                 num_classes=ds.num_classes, epochs=args.epochs,
                                 batch_size=args.batch_size, learning_rate=args.lr, seed=seed,
                                 x_test=ds.x_test, y_test=ds.y_test)
            row = dict(setting, policy=name, seed=seed, test_accuracy=f"{result.test_accuracy:.4f}",
                       val_accuracy=f"{result.val_accuracy:.4f}",
                       best_val_accuracy=f"{result.best_val_accuracy:.4f}",
                       seconds=f"{time.perf_counter() - t0:.1f}", cpu_s=f"{cpu_seconds() - c0:.1f}",
                       policy_hash=policy.digest(), code_version=version,
                       finished_at=dt.datetime.now().isoformat(timespec="seconds"))
            append_row(args.csv, row)
            log(f"[{k}/{len(todo)}] {name} seed {seed}: test {result.test_accuracy:.4f}, "
                f"val {result.val_accuracy:.4f}, {row['seconds']} s")


def key_of(name: str, seed, policy) -> tuple:
    return (name, str(seed), policy.digest() if hashed(name) else "")


def row_key(row: dict) -> tuple:
    return (row["policy"], row["seed"], row.get("policy_hash", "") if hashed(row["policy"]) else "")


def same_setting(row: dict, setting: dict) -> bool:
    for k in SETTING:
        v = row.get(k, "")
        if k == "learning_rate":
            try:
                if float(v) != float(setting[k]):
                    return False
            except ValueError:
                return False
        elif v != setting[k]:
            return False
    return True


# --------------------------------------------------------------------------- report


def summarize(values: list[float]) -> dict:
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n >= 2 else float("nan")
    return {"n": n, "mean": mean, "std": std, "se": std / math.sqrt(n) if n >= 2 else float("nan")}


def finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def current_hashes(args, cfg, rows: list[dict]) -> dict:
    """The digest each hashed policy has now (frozen file / random draw; else its last row's)."""
    searches = {s.name: s for s in SEARCHES}
    out = {}
    for name in args.policies:
        if not hashed(name):
            continue
        try:
            p = frozen_policy(searches[name]) if name in searches else random_policy(cfg, name)
            digest = p.digest() if p is not None else None
        except (ValueError, OSError):  # unreadable policy; a per-class space needs num_classes
            digest = None
        if digest is None:
            mine = [r for r in rows if r["policy"] == name]
            digest = mine[-1].get("policy_hash", "") if mine else None
        out[name] = digest
    return out


def policy_stats(name: str, rows: list[dict]) -> dict | None:
    mine = [r for r in rows if r["policy"] == name]
    acc = {int(r["seed"]): float(r["test_accuracy"]) for r in mine}
    if not acc:
        return None
    s = summarize([100 * acc[k] for k in sorted(acc)])
    s.update(seeds=sorted(acc), values=[100 * acc[k] for k in sorted(acc)],
             val=100 * statistics.fmean(float(r["val_accuracy"]) for r in mine),
             minutes=statistics.fmean(float(r["seconds"]) for r in mine) / 60)
    return s


def random_summary(args, stats: dict) -> dict | None:
    """The random controls' median test accuracy on the first seed."""
    first = args.seed_list[0]
    values = {n: s["values"][s["seeds"].index(first)] for n, s in stats.items()
              if is_random(n) and first in s["seeds"]}
    if not values:
        return None
    stds = [s["std"] for n, s in stats.items() if is_random(n) and finite(s["std"])]
    return {"n": len(values), "mean": statistics.median(values.values()),
            "std": statistics.median(stds) if stds else float("nan"), "se": float("nan"),
            "values": sorted(values.values()), "seed": first, "names": sorted(values),
            "val": None, "minutes": None}


def diff_text(s: dict, ref: dict) -> str:
    d = s["mean"] - ref["mean"]
    se = math.sqrt(s["se"] ** 2 + ref["se"] ** 2) if finite(s["se"]) and finite(ref["se"]) else float("nan")
    return f"{d:+.2f}" + (f" ± {se:.2f}" if finite(se) else "")


def fmt(v, p: int = 2) -> str:
    return f"{v:.{p}f}" if finite(v) else "–"


def verdict(gap: float, unit: str = "points") -> str:
    """`gap` >= 0: met; else missed by -gap."""
    return "**met**" if gap >= 0 else f"**missed by {-gap:.2f} {unit}**"


def load_costs() -> dict:
    return {s.name: load_cost(s.cost_file) for s in SEARCHES}


def cost_minutes(cost: dict | None) -> tuple[float, float]:
    if not cost:
        return float("nan"), float("nan")
    return cost.get("total_cpu_s", 0) / 60, cost.get("total_wall_s", 0) / 60


def live_trials(search: Search, cost: dict) -> dict:
    """Trial counts of the cost file, or of the journal while the search may be running."""
    t = cost.get("trials", {}) or {}
    if not cost.get("complete") and search.journal.exists() and cost.get("study"):
        try:
            t = trial_counts({"name": cost["study"], "storage": f"journal:{search.journal}"}) or t
        except Exception as e:  # noqa: BLE001 (a journal being written: the file's counts then)
            log(f"{search.name}: cannot count the trials in {search.journal}: {e}")
    return t


def evaluator_text(search: Search, cost: dict, costs: dict) -> str:
    model = cost.get("model", "?")
    if cost.get("evaluation", "proxy-training") != "density-matching":
        return f"proxy training (the {model} trained {cost.get('proxy_epochs')} epochs per trial)"
    den = cost.get("density", {}) or {}
    text = (f"density matching ({den.get('folds')} {model} models of {den.get('model_epochs')} epochs "
            f"trained once on the clean folds with `{den.get('train_policy')}`, {den.get('copies')} "
            f"augmented copies per score; ")
    dm = cost.get("density_models")
    if not dm:
        return text + "models not prepared yet)"
    if dm.get("trained_here"):
        return text + f"models trained by this search, in its cost, shared through `{dm.get('dir')}`)"
    payers = [n for n, c in costs.items() if n != search.name and c
              and (c.get("density_models") or {}).get("key") == dm.get("key")
              and (c.get("density_models") or {}).get("trained_here")]
    return text + (f"models reused from `{dm.get('dir')}`, trained and paid for by `{payers[0]}`)"
                   if payers else f"models reused from `{dm.get('dir')}`, trained before any search "
                                  f"recorded here: their cost is in no search's)")


def search_notes(search: Search, cost: dict | None, costs: dict) -> list[str]:
    name = search.name
    frozen = None
    try:
        frozen = frozen_policy(search)
    except (ValueError, OSError) as e:
        log(f"{name}: cannot read {search.policy_file}: {e}")
    notes = []
    if not cost:
        notes.append(f"`{name}` search: none recorded yet "
                     f"({os.path.relpath(search.cost_file, ROOT)}).")
    else:
        t = live_trials(search, cost)
        cpu, wall = cost_minutes(cost)
        rate = finished(t) / cpu if cpu > 0 else float("nan")
        extra = ", ".join(f"{v} {k}" for k, v in sorted(t.items())
                          if k not in ("complete", "pruned", "fail", "failed"))
        trials = (f"{t.get('complete', 0)} complete, {t.get('pruned', 0)} pruned, "
                  f"{t.get('fail', t.get('failed', 0))} failed" + (f", {extra}" if extra else ""))
        notes.append(
            f"`{name}` search: {evaluator_text(search, cost, costs)}; study `{cost.get('study')}` of "
            f"`{cost.get('experiment')}`, {cost.get('n_trials')} trials; trials"
            f"{'' if cost.get('complete') else ' so far'}: {trials}; "
            f"{len(cost.get('segments', []))} segment(s): **{cpu:.1f} CPU-minutes**, {wall:.1f} minutes "
            f"wall, **{fmt(rate)} trials per CPU-minute** (complete + pruned), on {cost.get('machine', '?')}"
            + ("" if cost.get("complete") else " — search not finished yet") + ".")
    best = (cost or {}).get("best") or {}
    if frozen is not None:
        baseline = (f"; this is the baseline `{best['name']}`" if best.get("is_baseline")
                    and best.get("policy_hash") == frozen.digest() else "")
        notes.append(f"`{name}` policy: {frozen_text(frozen.meta)}{baseline}, hash {frozen.digest()}: "
                     f"`{frozen.summary(8)}`.")
    elif best:
        notes.append(f"`{name}` policy (from the cost file; {os.path.relpath(search.policy_file, ROOT)} "
                     f"is missing): hash {best.get('policy_hash')}: `{best.get('summary')}`.")
    return notes


def target_notes(stats: dict, best_name: str | None, rnd: dict | None, costs: dict, complete: bool) -> list[str]:
    so_far = "" if complete else " (so far)"
    notes = []
    s, best = stats.get(SEARCHED), stats.get(best_name) if best_name else None
    if s is not None and best is not None:
        d = s["mean"] - best["mean"]
        notes.append(f"Issue 4 target (`searched` ≥ best baseline + {TARGET_POINTS:.1f} point): searched "
                     f"{s['mean']:.2f} vs {best_name} {best['mean']:.2f} = {d:+.2f} points: "
                     f"{verdict(d - TARGET_POINTS)}{so_far}.")
    parts = []
    for name, limit in ((SEARCHED_DM, DM_COST_CPU_MIN), (SEARCHED, PROXY_COST_CPU_MIN)):
        cost = costs.get(name)
        cpu, _ = cost_minutes(cost)
        if not cost:
            parts.append(f"`{name}` no cost recorded yet (target ≤ {limit:.0f} CPU-minutes)")
            continue
        dm = cost.get("density_models") or {}
        reused = " (its density models reused, paid by another search)" if dm and not dm.get("trained_here") else ""
        if cost.get("complete") or cpu > limit:
            parts.append(f"`{name}` {cpu:.1f} CPU-minutes, target ≤ {limit:.0f}: "
                         f"{verdict(limit - cpu, 'CPU-minutes')}{reused}")
        else:
            parts.append(f"`{name}` {cpu:.1f} CPU-minutes so far, search not finished (target ≤ "
                         f"{limit:.0f}){reused}")
    notes.append("Issue 6 cost targets: " + "; ".join(parts) + ".")
    dm_s = stats.get(SEARCHED_DM)
    if dm_s is not None and s is not None:
        d = dm_s["mean"] - s["mean"]
        notes.append(f"Issue 6 target (`searched-dm` ≥ `searched`): {dm_s['mean']:.2f} vs {s['mean']:.2f} = "
                     f"{d:+.2f} points: {verdict(d)}{so_far}.")
    else:
        notes.append("Issue 6 target (`searched-dm` ≥ `searched`): not measured yet.")
    parts = []
    refs = [("standard", stats.get("standard")), ("the random median", rnd)]
    for name in (SEARCHED, SEARCHED_DM):
        a = stats.get(name)
        for ref_name, ref in refs:
            if a is None or ref is None:
                parts.append(f"`{name}` vs {ref_name}: not measured yet")
                continue
            d = a["mean"] - ref["mean"]
            stds = [v for v in (a["std"], ref["std"]) if finite(v)]
            if not stds:
                parts.append(f"`{name}` vs {ref_name}: {d:+.2f} points, no seed-to-seed std yet "
                             f"(needs 2 seeds): undecided")
                continue
            thr = max(stds)
            state = "**met**" if d > thr else f"**missed by {thr - d:.2f} points**"
            parts.append(f"`{name}` vs {ref_name}: {d:+.2f} points vs std {thr:.2f}: {state}")
    notes.append("Issue 6 targets (beat `standard` and the random median by more than the seed-to-seed "
                 "standard deviation, the larger of the two rows'): " + "; ".join(parts) + so_far + ".")
    return notes


def baseline_twins(shown: list, stats: dict) -> dict:
    """{search: baseline} for searches whose frozen policy *is* a baseline with results."""
    from autoaug.policy import builtin
    twins = {}
    for search in SEARCHES:
        frozen = frozen_policy(search) if search.name in shown and search.name not in stats else None
        if frozen is not None:
            twin = next((b for b in BASELINES if b in stats and builtin(b).digest() == frozen.digest()), None)
            if twin:
                twins[search.name] = twin
    return twins


def build_report(args, cfg) -> tuple[str, dict]:
    setting = setting_of(args, cfg)
    all_rows = read_rows(args.csv)
    same = [r for r in all_rows if same_setting(r, setting)]
    other = len(all_rows) - len(same)
    rows = [r for r in same if r["policy"] in args.policies]
    current = current_hashes(args, cfg, rows)
    stale: dict = {}
    kept = []
    for r in rows:
        if r["policy"] in current and r.get("policy_hash", "") != current[r["policy"]]:
            stale[r["policy"]] = stale.get(r["policy"], 0) + 1
        else:
            kept.append(r)
    rows = kept

    shown = [n for n in report_order(args.random) if n in args.policies]
    stats = {n: s for n in shown if (s := policy_stats(n, rows)) is not None}
    twins = baseline_twins(shown, stats)
    for name, twin in twins.items():
        stats[name] = dict(stats[twin])
    base = {n: s for n, s in stats.items() if n in BASELINES}
    best_name = max(base, key=lambda n: base[n]["mean"]) if base else None
    best, standard = base.get(best_name), stats.get("standard")
    rnd = random_summary(args, stats)

    lines = [("| policy | n | test acc. mean (%) | std | s.e. | vs standard | vs best baseline "
              "| per seed (0, 1, 2, ...) | val acc. (%) | min/run |"),
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]

    def line(label: str, name: str, s: dict | None, per_seed: str | None = None) -> str:
        if s is None:
            return f"| {label} | 0 | – | – | – | – | – | – | – | – |"
        vs_std = "reference" if name == "standard" else diff_text(s, standard) if standard else "–"
        vs_best = "best baseline" if name == best_name else diff_text(s, best) if best else "–"
        per_seed = per_seed or ", ".join(f"{v:.1f}" for v in s["values"])
        return (f"| {label} | {s['n']} | {s['mean']:.2f} | {fmt(s['std'])} | {fmt(s['se'])} | {vs_std} | "
                f"{vs_best} | {per_seed} | {fmt(s['val'])} | {fmt(s['minutes'], 1)} |")

    for name in shown:
        lines.append(line(name, name, stats.get(name)))
    randoms = [n for n in shown if is_random(n)]
    if randoms:
        per = (f"seed {rnd['seed']}: " + ", ".join(f"{v:.1f}" for v in rnd["values"])) if rnd else None
        lines.append(line(f"random (median of {rnd['n'] if rnd else 0})", "", rnd, per))

    expected = sum(len(seeds_of(args, n)) for n in shown)
    counted = sum(len(set(stats[n]["seeds"]) & set(seeds_of(args, n))) for n in stats)
    complete = counted >= expected
    notes = [f"`{name}` froze the baseline `{twin}` itself (the same policy hash): its row is "
             f"`{twin}`'s full trainings, which are not run twice." for name, twin in twins.items()]
    if not complete:
        notes.append(f"**Partial**: {counted} of {expected} runs so far; n per row is in the table.")
    notes.append(f"Setting: {args.model}, {args.epochs} epochs, batch {args.batch_size}, SGD+Nesterov "
                 f"lr {args.lr:g} cosine, weight decay 5e-4; train {setting['n_train']} / val "
                 f"{setting['n_val']} from the train split (split seed {setting['split_seed']}); "
                 f"test = the 10,000 test images. std = sample standard deviation over seeds, s.e. = "
                 f"std/sqrt(n); \"vs standard\" / \"vs best baseline\" = difference of means in points "
                 f"± the s.e. of that difference.")
    if randoms:
        seeds = ", ".join(str(s) for s in args.seed_list[:args.random_seeds])
        space = os.path.relpath(cfg["random_space"], ROOT)
        spread = (f"; over the controls: {min(rnd['values']):.2f}–{max(rnd['values']):.2f}, std across "
                  f"controls {fmt(statistics.stdev(rnd['values']) if rnd['n'] > 1 else float('nan'))}"
                  if rnd else "")
        notes.append(f"Random controls {randoms[0]}..{randoms[-1]}: policies drawn uniformly from `{space}` "
                     f"(the density-matching searches' space, stage order included; random-i from numpy "
                     f"`default_rng({RANDOM_RNG_BASE} + i)`, the same policy on every run); they cost no "
                     f"search and are trained with seed {seeds} only (--random-seeds {args.random_seeds}). "
                     f"\"random (median of N)\": the median of their seed-{args.seed_list[0]} test "
                     f"accuracies (its std: the median of the controls' own seed-to-seed std, once they "
                     f"have 2 seeds){spread}.")
    costs = load_costs()
    for search in SEARCHES:
        if search.name in args.policies:
            notes += search_notes(search, costs.get(search.name), costs)
    if any(n in args.policies for n in SEARCH_NAMES):
        notes += target_notes(stats, best_name, rnd, costs, complete)
    for name, n in stale.items():
        notes.append(f"{n} `{name}` row(s) of an earlier policy (another hash) are not counted.")
    if other:
        notes.append(f"{other} CSV row(s) of other settings (epochs/model/batch/lr/split) are not counted.")
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text, stats


def write_docs(path: str, table: str) -> bool:
    p = Path(path)
    if not p.exists():
        return False
    text = p.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        log(f"{path} has no {TABLE_START} ... {TABLE_END} section; table not written there")
        return False
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    atomic_write(p, f"{head}{TABLE_START}\n<!-- written by scripts/bench_policies.py at {stamp} -->\n\n"
                    f"{table}\n{TABLE_END}{tail}")
    return True


def report(args, cfg) -> None:
    table, _ = build_report(args, cfg)
    print("\n" + table, flush=True)
    if args.docs and write_docs(args.docs, table):
        log(f"table written to {os.path.relpath(args.docs, ROOT)}")


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        from autoaug.config import ConfigError
        try:
            cfg = load_cfg(args)
        except ConfigError as e:
            raise BenchError(str(e)) from None
        if args.report:
            report(args, cfg)
            return 0
        if args.pin_head:
            pin_head(sys.argv[1:] if argv is None else argv)
        log(f"machine: {machine()}")
        if not args.skip_search:
            # Every experiment is read (and checked) before the first search starts: a bad file
            # fails now, not after an hour of proxy search.
            # The density-matching searches (minutes) run before the proxy search (an hour).
            order = sorted(SEARCHES, key=lambda s: s.name == SEARCHED)
            todo = [(s, search_cfg(args, s, cfg)) for s in order if s.name in args.policies]
            for search, search_config in todo:
                run_search_step(args, search, search_config)
        train_all(args, cfg)
        report(args, cfg)
        return 0
    except BenchError as e:
        print(f"bench_policies: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_policies: interrupted; finished runs are in the CSV, rerun to resume",
              file=sys.stderr)
        return 130
    except Exception as e:  # library errors that name their fix (DataError, PolicyError, ...)
        if type(e).__name__ in ("DataError", "PolicyError", "ModelError", "TrackingError", "ConfigError"):
            print(f"bench_policies: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
