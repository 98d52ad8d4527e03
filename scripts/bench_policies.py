#!/usr/bin/env python
"""Policy quality: does the searched policy beat the published ones on reduced CIFAR-10?

The same model is trained with the same schedule from scratch with each policy

  none, standard, standard+cutout, autoaugment-cifar10+standard+cutout,
  randaugment-n2-m9+standard+cutout, trivialaugment-wide+standard+cutout, searched

on the experiment's reduced split of the CIFAR-10 *train* split (4,000 train images, stratified,
split seed 0: the images the search trained its proxies on). It validates on the experiment's
1,000 held-out train images (reported, never used to select anything here) and measures test
accuracy on the 10,000 test images.

"searched" is the winner of the search of ``experiments/cifar10_reduced.yaml``, run (or resumed)
here with an Optuna journal and an MLflow store of its own under ``runs/bench_policies/``, frozen
with ``autoaug.search.best_policy`` to ``runs/bench_policies/searched_policy.json``. The search's
wall time and CPU time (this process, TensorFlow's threads included, plus its children) are
kept in ``runs/bench_policies/search_cost.json``, summed over every resumed segment.

Order of work, so that a run cut short is informative: the baselines' first seed, then the
search, then everything left seed by seed (``--search-first`` runs the search before anything).
Every finished run is appended to the CSV at once; (policy, seed) pairs already there with the
same setting (epochs, model, batch, lr, split) are skipped, so a killed run resumes where it
stopped (the search resumes from its journal; trials a kill left running are marked failed).

At the end, and with ``--report`` at any time from the CSV alone, it prints the table: n seeds,
mean test accuracy, standard deviation, standard error, difference to the best baseline, and the
search's cost; with the default CSV it also rewrites the table section of
``docs/bench_policies.md``.

    .venv/bin/python scripts/bench_policies.py --pin-head          # everything (hours on 2 cores)
    .venv/bin/python scripts/bench_policies.py --report             # the table from the CSV so far
    .venv/bin/python scripts/bench_policies.py --epochs 1 --seeds 1 --only none,standard \\
        --csv /tmp/smoke.csv --skip-search                          # smoke test of the code path
"""
from __future__ import annotations

import argparse
import csv
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

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench_policies"
DEFAULT_CSV = ROOT / "docs" / "bench_policies.csv"
DEFAULT_DOCS = ROOT / "docs" / "bench_policies.md"
DEFAULT_EXPERIMENT = ROOT / "experiments" / "cifar10_reduced.yaml"
SEARCHED = "searched"
BASELINES = ["none", "standard", "standard+cutout", "autoaugment-cifar10+standard+cutout",
             "randaugment-n2-m9+standard+cutout", "trivialaugment-wide+standard+cutout"]
POLICIES = BASELINES + [SEARCHED]
TARGET_POINTS = 1.0
FIELDS = ["policy", "seed", "test_accuracy", "val_accuracy", "best_val_accuracy", "seconds",
          "cpu_s", "epochs", "model", "batch_size", "learning_rate", "n_train", "n_val",
          "split_seed", "policy_hash", "code_version", "finished_at"]
SETTING = ("epochs", "model", "batch_size", "learning_rate", "n_train", "n_val", "split_seed")
TABLE_START = "<!-- bench-policies-table:start -->"
TABLE_END = "<!-- bench-policies-table:end -->"
COST_SAVE_EVERY_S = 30.0


class BenchError(Exception):
    """A problem the user can fix; printed as one line."""


def log(msg: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- arguments


def parse_args(argv=None):
    global RUNS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default=str(DEFAULT_EXPERIMENT),
                   help="experiment YAML of the search and of the data split "
                        "(default experiments/cifar10_reduced.yaml)")
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
                   help=f"comma list of policies to run/report (default all: {','.join(POLICIES)})")
    p.add_argument("--search-trials", type=int, default=None,
                   help="override the experiment's n_trials for the search")
    p.add_argument("--search-epochs", type=int, default=None,
                   help="override the experiment's proxy epochs (the study gets a -e<N> suffix)")
    p.add_argument("--search-first", action="store_true",
                   help="run the search before any full training (default: the baselines' first "
                        "seed, then the search, then the rest seed by seed)")
    p.add_argument("--skip-search", action="store_true",
                   help="do not run the search; use the frozen policy if there is one")
    p.add_argument("--pin-head", action="store_true",
                   help="run the library as committed at HEAD: copy it to runs/bench_policies/"
                        "code-<sha>/ and re-run this script on that copy (for long runs in a "
                        "working tree that others edit)")
    p.add_argument("--runs-dir", default=str(RUNS),
                   help="search journal, MLflow store, frozen policy and search cost go here "
                        "(default runs/bench_policies)")
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
    for flag in ("epochs", "batch_size", "search_trials", "search_epochs"):
        v = getattr(args, flag)
        if v is not None and v <= 0:
            raise BenchError(f"--{flag.replace('_', '-')} must be a positive integer, got {v}")
    if not args.lr > 0:
        raise BenchError(f"--lr must be positive, got {args.lr}")
    names = [s.strip() for s in args.only.split(",") if s.strip()] or list(POLICIES)
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise BenchError(f"--only: unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    args.policies = [n for n in POLICIES if n in names]
    args.csv = os.path.abspath(args.csv)
    RUNS = Path(args.runs_dir).resolve()
    if args.docs is None:
        args.docs = str(DEFAULT_DOCS) if args.csv == str(DEFAULT_CSV) else ""
    return args


def load_cfg(args) -> dict:
    from autoaug.config import load_experiment
    overrides = []
    if args.search_trials is not None:
        overrides.append(f"n_trials={args.search_trials}")
    if args.search_epochs is not None:
        overrides.append(f"training.epochs={args.search_epochs}")
    cfg = load_experiment(args.experiment, overrides)
    if args.search_epochs is not None:
        cfg["name"] = f"{cfg['name']}-e{args.search_epochs}"
    # The bench's own stores, under the git-ignored runs/.
    cfg["storage"] = f"journal:{RUNS / 'search.journal'}"
    cfg["tracking_uri"] = f"sqlite:///{RUNS / 'mlflow.db'}"
    return cfg


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


def atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise BenchError(f"--pin-head needs git in {ROOT} ({e}); run without --pin-head") from None
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
    import subprocess

    import autoaug
    pkg = Path(autoaug.__file__).resolve().parent
    marker = pkg.parent / "CODE_VERSION"
    if marker.exists():
        return marker.read_text().strip()
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=pkg, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=pkg,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return sha + ("+dirty" if dirty and sha else "")


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# --------------------------------------------------------------------------- search cost


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


def recover_killed_trials(cfg) -> None:
    """Mark trials left RUNNING by a killed bench as failed; re-queue lost baselines.

    Safe because the search lock guarantees that no other bench worker is running. The
    journal storage has no heartbeats, so without this a killed trial stays RUNNING for
    ever, and a killed baseline trial is never re-run (enqueue_baselines sees its name).
    """
    import optuna
    from optuna.trial import TrialState

    from autoaug.search.optuna_driver import make_storage
    storage = make_storage(cfg["storage"])
    try:
        study = optuna.load_study(study_name=cfg["name"], storage=storage)
    except KeyError:
        return
    tracker = None
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        log(f"search: trial {t.number} was left running by a killed run; marked failed")
        run_id = t.user_attrs.get("mlflow_run_id")
        if run_id:
            try:
                from autoaug import tracking
                tracker = tracker or tracking.open_study(cfg["tracking_uri"], cfg["name"])
                tracker.end_trial(run_id, "failed", reason="killed (bench_policies resumed)")
            except Exception as e:  # the MLflow record is cosmetic here
                log(f"search: could not close MLflow run {run_id}: {e}")
    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    for name in cfg["baselines"]:
        states = [t.state for t in study.get_trials(deepcopy=False)
                  if t.user_attrs.get("baseline") == name]
        if states and not any(s in live for s in states):
            study.enqueue_trial({}, user_attrs={"baseline": name})
            log(f"search: baseline {name} was lost to a killed run; queued again")


def run_search_step(args, cfg) -> None:
    """Run/resume the search, then freeze its winner to runs/bench_policies/searched_policy.json."""
    from autoaug.search import best_policy, run_search
    RUNS.mkdir(parents=True, exist_ok=True)
    info = {"experiment": os.path.relpath(cfg["_path"], ROOT), "study": cfg["name"],
            "storage": os.path.relpath(cfg["storage"][len("journal:"):], ROOT),
            "tracking_uri": cfg["tracking_uri"], "n_trials": cfg["n_trials"],
            "proxy_epochs": cfg["training"]["epochs"], "model": cfg["model"]["name"],
            "machine": machine()}
    with FileLock(RUNS / "search.lock", "the search"):
        recover_killed_trials(cfg)
        before = trial_counts(cfg)
        existing = sum(before.values())
        if existing:
            # Optuna seeds a sampler's RNG once per process: a resumed study with the same seed
            # draws the same random start-up trials again (measured: trials 9, 10 repeated 6, 7).
            # Offset the seed by the trials already there; a fresh study keeps the file's seed.
            cfg["seed"] = int(cfg["seed"]) + existing
            log(f"search: resuming after {existing} trials; sampler/trial seed offset to {cfg['seed']} "
                f"so that the resumed sampler does not repeat earlier draws")
        log(f"search: study {cfg['name']} ({cfg['n_trials']} trials of {cfg['training']['epochs']} "
            f"epochs, {cfg['model']['name']}), {sum(before.get(s, 0) for s in ('complete', 'pruned'))} "
            f"finished before; journal {info['storage']}")
        with CostMeter(RUNS / "search_cost.json", info, {"code_version": code_version()}) as meter:
            run_search(cfg, progress=False)
            counts = trial_counts(cfg)
            meter.save(trials=counts, complete=(counts.get("complete", 0) + counts.get("pruned", 0)
                                                >= cfg["n_trials"]))
        policy = best_policy(cfg["name"], cfg["tracking_uri"], cfg["storage"])
        path = RUNS / "searched_policy.json"
        policy.save(str(path))
        cost = load_cost(RUNS / "search_cost.json")
        cost["best"] = {"trial": policy.meta.get("trial"), "val_accuracy": policy.meta.get("val_accuracy"),
                        "policy_hash": policy.digest(), "name": policy.name,
                        "is_baseline": policy.name in cfg["baselines"], "summary": policy.summary(8)}
        atomic_write(RUNS / "search_cost.json", json.dumps(cost, indent=1) + "\n")
    log(f"search: done, {counts}; wall {cost['total_wall_s'] / 60:.1f} min, "
        f"CPU {cost['total_cpu_s'] / 60:.1f} CPU-min; best trial {policy.meta.get('trial')} "
        f"(val {policy.meta.get('val_accuracy'):.4f}) frozen to {os.path.relpath(path, ROOT)}: "
        f"{policy.summary(8)}")


def searched_policy():
    from autoaug import load_policy
    path = RUNS / "searched_policy.json"
    return load_policy(str(path)) if path.exists() else None


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


def train_all(args, cfg, policies_only=None, seeds_only=None) -> None:
    import numpy as np

    from autoaug.config import resolve
    from autoaug.data import load_dataset, reduced_split
    from autoaug.policy import builtin
    from autoaug.train import train_model

    setting = setting_of(args, cfg)
    policies = {}
    for name in (policies_only if policies_only is not None else args.policies):
        if name == SEARCHED:
            p = searched_policy()
            if p is None:
                log("searched: no frozen policy yet (run without --skip-search); skipped")
                continue
            policies[name] = p
        else:
            policies[name] = builtin(name)
    d = cfg["data"]
    ds = load_dataset(resolve(d["source"], cfg))
    x_tr, y_tr, x_val, y_val = reduced_split(ds, d["n_train"], d["n_val"], seed=d["split_seed"])
    assert not np.shares_memory(x_tr, ds.x_test)
    log(f"data: {ds!r}; train {len(x_tr)}, validation {len(x_val)} (held out of the train split, "
        f"split seed {d['split_seed']}), test {len(ds.x_test)}")
    version = code_version()
    log(f"library: {os.path.dirname(sys.modules['autoaug'].__file__)} (code {version or '?'})")
    with FileLock(Path(args.csv + ".lock"), f"the CSV {args.csv}"):
        done = {row_key(r) for r in read_rows(args.csv) if same_setting(r, setting)}
        todo = [(s, n) for s in (seeds_only if seeds_only is not None else args.seed_list)
                for n in policies
                if (n, str(s), policies[n].digest() if n == SEARCHED else "") not in done]
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


def row_key(row: dict) -> tuple:
    return (row["policy"], row["seed"], row.get("policy_hash", "") if row["policy"] == SEARCHED else "")


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


def build_report(args, cfg) -> tuple[str, dict]:
    setting = setting_of(args, cfg)
    all_rows = read_rows(args.csv)
    rows = [r for r in all_rows if same_setting(r, setting) and r["policy"] in args.policies]
    other = len(all_rows) - len([r for r in all_rows if same_setting(r, setting)])
    frozen = searched_policy()
    searched_rows = [r for r in rows if r["policy"] == SEARCHED]
    if frozen is not None:
        current = frozen.digest()
    elif searched_rows:
        current = searched_rows[-1].get("policy_hash", "")
    else:
        current = None
    stale = [r for r in searched_rows if r.get("policy_hash", "") != current]
    rows = [r for r in rows if r["policy"] != SEARCHED or r.get("policy_hash", "") == current]

    stats = {}
    for name in args.policies:
        acc = {int(r["seed"]): float(r["test_accuracy"]) for r in rows if r["policy"] == name}
        if not acc:
            continue
        val = [float(r["val_accuracy"]) for r in rows if r["policy"] == name]
        secs = [float(r["seconds"]) for r in rows if r["policy"] == name]
        s = summarize([100 * acc[k] for k in sorted(acc)])
        s.update(seeds=sorted(acc), values=[100 * acc[k] for k in sorted(acc)],
                 val=100 * statistics.fmean(val), minutes=statistics.fmean(secs) / 60)
        stats[name] = s
    base = {n: s for n, s in stats.items() if n != SEARCHED}
    best_name = max(base, key=lambda n: base[n]["mean"]) if base else None
    best = base.get(best_name)

    lines = [f"| policy | n | test acc. mean (%) | std | s.e. | vs best baseline | per seed (0, 1, 2, ...) "
             f"| val acc. (%) | min/run |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    fmt = lambda v, p=2: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{p}f}"
    for name in args.policies:
        s = stats.get(name)
        if s is None:
            lines.append(f"| {name} | 0 | – | – | – | – | – | – | – |")
            continue
        if best is None or name == best_name:
            diff = "best baseline" if name == best_name else "–"
        else:
            d = s["mean"] - best["mean"]
            se = math.sqrt(s["se"] ** 2 + best["se"] ** 2) if s["n"] > 1 and best["n"] > 1 else float("nan")
            diff = f"{d:+.2f}" + (f" ± {se:.2f}" if not math.isnan(se) else "")
        per_seed = ", ".join(f"{v:.1f}" for v in s["values"])
        lines.append(f"| {name} | {s['n']} | {s['mean']:.2f} | {fmt(s['std'])} | {fmt(s['se'])} | {diff} | "
                     f"{per_seed} | {s['val']:.2f} | {s['minutes']:.1f} |")
    notes = []
    n_min = min((s["n"] for s in stats.values()), default=0)
    complete = len(stats) == len(args.policies) and n_min >= len(args.seed_list)
    if not complete:
        notes.append(f"**Partial**: {sum(s['n'] for s in stats.values())} of "
                     f"{len(args.policies) * len(args.seed_list)} runs so far; n per row is in the table.")
    notes.append(f"Setting: {args.model}, {args.epochs} epochs, batch {args.batch_size}, SGD+Nesterov "
                 f"lr {args.lr:g} cosine, weight decay 5e-4; train {setting['n_train']} / val "
                 f"{setting['n_val']} from the train split (split seed {setting['split_seed']}); "
                 f"test = the 10,000 test images. std = sample standard deviation over seeds, s.e. = "
                 f"std/sqrt(n); \"vs best baseline\" = difference of means in points ± the s.e. of "
                 f"that difference.")
    cost = load_cost(RUNS / "search_cost.json")
    if cost:
        t = cost.get("trials", {})
        if not cost.get("complete"):
            try:  # the search may be running now: count its trials in the journal
                t = trial_counts({"name": cost["study"], "storage": cfg["storage"]}) or t
            except Exception:
                pass
        segs = cost.get("segments", [])
        notes.append(
            f"Search cost (study `{cost.get('study')}`, {cost.get('n_trials')} trials of a "
            f"{cost.get('proxy_epochs')}-epoch {cost.get('model')} proxy; trials so far: "
            f"{', '.join(f'{v} {k}' for k, v in sorted(t.items())) or 'n/a'}; "
            f"{len(segs)} segment(s)): **{cost.get('total_cpu_s', 0) / 60:.0f} CPU-minutes**, "
            f"{cost.get('total_wall_s', 0) / 60:.0f} minutes wall, on {cost.get('machine', '?')}"
            + ("" if cost.get("complete") else " — search not finished yet") + ".")
        b = cost.get("best")
        if b:
            notes.append(f"Searched policy: trial {b['trial']} (proxy val. acc. {100 * b['val_accuracy']:.2f}%"
                         + (f"; this is the baseline `{b['name']}`" if b.get("is_baseline") else "")
                         + f"), hash {b['policy_hash']}: `{b['summary']}`.")
    else:
        notes.append("Search cost: no search recorded yet (runs/bench_policies/search_cost.json).")
    if SEARCHED in stats and best is not None:
        d = stats[SEARCHED]["mean"] - best["mean"]
        verdict = ("met" if d >= TARGET_POINTS else f"missed by {TARGET_POINTS - d:.2f} points")
        notes.append(f"Target (searched ≥ best baseline + {TARGET_POINTS:.1f} point): searched "
                     f"{stats[SEARCHED]['mean']:.2f} vs {best_name} {best['mean']:.2f} = {d:+.2f} "
                     f"points: **{verdict}**" + ("" if complete else " (so far)") + ".")
    if stale:
        notes.append(f"{len(stale)} searched-policy row(s) of an earlier frozen policy are not counted.")
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
    if args.docs:
        if write_docs(args.docs, table):
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
        if SEARCHED in args.policies and not args.skip_search:
            if not args.search_first:
                # The search takes hours here: train the baselines' first seed before it, so
                # that a run cut short still leaves a comparison of the baselines in the CSV.
                train_all(args, cfg, [n for n in args.policies if n != SEARCHED], args.seed_list[:1])
            run_search_step(args, cfg)
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
