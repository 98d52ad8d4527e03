#!/usr/bin/env python
"""Issue 12: how much does the frozen policy's gain depend on the search's own seed?

One search is one draw: its sampler, screen and trial trainings all follow the experiment's
``seed``, and two seeds of the same search can freeze policies a point apart. For each search
seed S this runs the whole user path, as a user would, each step a child process:

1. ``autoaug search EXPERIMENT --set seed=S`` (screen, trials, selection) into its own journal
   and MLflow store under --runs-dir; its cost is the CPU-seconds of that child (``os.times``);
2. ``autoaug best`` freezes the winner to <runs-dir>/<study>_s<S>_policy.json;
3. ``autoaug evaluate --from-study`` trains the winner and the study's baselines x --eval-seeds
   paired test seeds into --csv (resumable; seeds split over --workers processes).

A finished search appends one row to --costs (search seed, frozen policy's hash, CPU-seconds,
code, machine); a seed with a row is not searched again, and a killed evaluation resumes from the
CSV. The table: per search seed, the winner's paired gap to the best baseline with its 95%
interval, and the search's cost; over the search seeds, the mean gain with its 95% t-interval
and how many searches reach --target points.

    .venv/bin/python scripts/bench_search_seeds.py experiments/cifar10_screened.yaml --search-seeds 3,4,5 \\
        --csv docs/cifar10_screened_evaluate.csv --costs docs/cifar10_screened_search_seeds.csv
    .venv/bin/python scripts/bench_search_seeds.py experiments/cifar10_screened.yaml --report \\
        --csv docs/cifar10_screened_evaluate.csv --costs docs/cifar10_screened_search_seeds.csv
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from autoaug.config import ConfigError, Experiment, load_experiment  # noqa: E402
from autoaug.evaluate import parse_seeds, read_rows, setting_key  # noqa: E402
from autoaug.policy import Policy  # noqa: E402
from autoaug.stats import mean_interval, paired_gap  # noqa: E402

MACHINE = f"{os.cpu_count()} CPU cores, {platform.platform(terse=True)}, Python {platform.python_version()}"
COLUMNS = ["search_seed", "policy_hash", "policy", "search_cpu_s", "search_wall_s", "code", "machine", "note",
           "finished_at"]


def cli(*args: str, **kwargs) -> subprocess.Popen:
    """`autoaug ARGS` of this checkout, as a child process."""
    return subprocess.Popen([sys.executable, "-m", "autoaug.cli", *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, **kwargs)


def run_cli(*args: str) -> float:
    """Run one CLI command to its end; its CPU-seconds (user + system)."""
    before = os.times()
    proc = cli(*args)
    proc.wait()
    if proc.returncode:
        sys.exit(f"bench_search_seeds: `autoaug {' '.join(args)}` failed (exit {proc.returncode})")
    after = os.times()
    return (after.children_user - before.children_user) + (after.children_system - before.children_system)


def code_version() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "autoaug"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() + ("+edits" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"


def study_sets(seed: int, runs_dir: Path, name: str, overrides: list[str] = ()) -> list[str]:
    """The user's --set overrides, then those that give search seed `seed` its own journal and
    MLflow store."""
    own = [f"seed={seed}", f"storage=journal:{runs_dir / f'{name}_s{seed}.journal'}",
           f"tracking_uri=sqlite:///{runs_dir / f'{name}_s{seed}.db'}"]
    return [a for item in [*overrides, *own] for a in ("--set", item)]


def search_one(experiment: str, seed: int, runs_dir: Path, name: str, overrides: list[str]) -> dict:
    sets = study_sets(seed, runs_dir, name, overrides)
    out = runs_dir / f"{name}_s{seed}_policy.json"
    resumed = (runs_dir / f"{name}_s{seed}.journal").exists()
    start = time.time()
    cpu = run_cli("search", experiment, *sets)
    wall = time.time() - start
    run_cli("best", "--experiment", experiment, "--tracking-uri", sets[-1].split("=", 1)[1], "--out", str(out))
    policy = Policy.from_json(out.read_text())
    return {"search_seed": seed, "policy_hash": policy.digest(), "policy": policy.summary(),
            "search_cpu_s": f"{cpu:.0f}", "search_wall_s": f"{wall:.0f}", "code": code_version(),
            "machine": MACHINE, "note": "; ".join([*(f"--set {o}" for o in overrides),
                                                   *(["resumed: CPU of the last segment only"] if resumed else [])]),
            "finished_at": dt.datetime.now().isoformat(timespec="seconds")}


def evaluate_one(experiment: str, sets: list[str], seeds: list[int], workers: int, csv_path: str) -> None:
    """`autoaug evaluate --from-study`, the seeds dealt round-robin over `workers` processes
    (each as a list, "3," not "3": a lone number would be a count of seeds)."""
    groups = [seeds[i::workers] for i in range(workers) if seeds[i::workers]]
    procs = [cli("evaluate", experiment, *sets, "--from-study", "--seeds", ",".join(map(str, g)) + ",", "--csv", csv_path,
                 stdout=subprocess.DEVNULL) for g in groups]
    if any([p.wait() for p in procs]):  # a list: wait for every process, not only up to a failed one
        sys.exit("bench_search_seeds: an evaluation failed (its error is above); run again to resume it")


def append_row(path: str, row: dict) -> None:
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


def report(exp: Experiment, csv_path: str, costs_path: str, eval_seeds: list[int], target: float) -> str:
    setting = setting_key(exp)
    runs = [r for r in read_rows(csv_path) if r["setting"] == setting and int(r["seed"]) in eval_seeds]
    by_hash: dict[str, dict[int, float]] = {}
    by_name: dict[str, dict[int, float]] = {}
    for r in runs:
        by_hash.setdefault(r["policy_hash"], {})[int(r["seed"])] = 100 * float(r["test_accuracy"])
        by_name.setdefault(r["policy"], {})[int(r["seed"])] = 100 * float(r["test_accuracy"])
    baselines = [b for b in exp.baselines if b in by_name]
    if not baselines:
        raise ConfigError(f"{csv_path} holds no run of the baselines {', '.join(exp.baselines)} in this setting")
    best = max(baselines, key=lambda b: statistics.fmean(by_name[b].values()))
    ref = by_name[best]
    lines = [f"{'search seed':>11}  {'frozen policy':<14}{'CPU-min':>8}  {'test %':>7}  gap to {best} [95% CI, paired seeds]",
             "-" * 86]
    gains = []
    for row in read_rows(costs_path):
        acc = by_hash.get(row["policy_hash"], {})
        g = paired_gap(acc, ref)
        head = f"{row['search_seed']:>11}  {row['policy_hash']:<14}{float(row['search_cpu_s']) / 60:>8.1f}"
        if g.n < len(eval_seeds):
            lines.append(f"{head}  {g.n} of {len(eval_seeds)} test seeds done")
            continue
        gains.append(g.mean)
        lines.append(f"{head}  {statistics.fmean(acc.values()):>7.2f}  {g.mean:+.2f} [{g.low:+.2f}, {g.high:+.2f}] "
                     f"{g.verdict}" + (f"  ({row['note']})" if row["note"] else ""))
    lines.append(f"{best}: {statistics.fmean(ref.values()):.2f} % over {len(ref)} test seeds")
    if len(gains) >= 2:
        mean, sd, low, high = mean_interval(gains)
        lines.append(f"over {len(gains)} search seeds: gain {mean:+.2f} [{low:+.2f}, {high:+.2f}] "
                     f"(95% t-interval), sd {sd:.2f} between searches; {sum(g >= target for g in gains)} of "
                     f"{len(gains)} reach {target:+.1f}, {sum(g > 0 for g in gains)} gain")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment")
    ap.add_argument("--search-seeds", default="3", help="a count (3: seeds 0-2) or a list (3,4,5; one seed: 4,)")
    ap.add_argument("--eval-seeds", default="5", help="paired test seeds per frozen policy")
    ap.add_argument("--csv", required=True, help="evaluate's resumable CSV")
    ap.add_argument("--costs", required=True, help="one row per finished search (resumable)")
    ap.add_argument("--runs-dir", default="runs/search_seeds")
    ap.add_argument("--workers", type=int, default=2, help="evaluation processes in parallel")
    ap.add_argument("--target", type=float, default=1.0, help="the gain a search should reach, in points")
    ap.add_argument("--report", action="store_true", help="only print the table from the CSVs")
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="an experiment override for every search and evaluation (a variant: give it its own --costs)")
    args = ap.parse_args(argv)
    # the children run in this checkout: give them the paths as this process sees them
    args.experiment, args.csv, args.costs = (str(Path(p).resolve()) for p in (args.experiment, args.csv, args.costs))
    try:
        eval_seeds = parse_seeds(args.eval_seeds)
        exp = load_experiment(args.experiment, args.set)
        setting = setting_key(exp)
        if not args.report:
            runs_dir = Path(args.runs_dir).resolve()
            runs_dir.mkdir(parents=True, exist_ok=True)
            seeds = parse_seeds(args.search_seeds)
            for seed in seeds:
                if seed not in {int(r["search_seed"]) for r in read_rows(args.costs)}:
                    append_row(args.costs, search_one(args.experiment, seed, runs_dir, exp.name, args.set))
                row = next(r for r in read_rows(args.costs) if int(r["search_seed"]) == seed)
                finished = {int(r["seed"]) for r in read_rows(args.csv)
                            if r["policy_hash"] == row["policy_hash"] and r["setting"] == setting}
                if not set(eval_seeds) <= finished:
                    evaluate_one(args.experiment, study_sets(seed, runs_dir, exp.name, args.set), eval_seeds,
                                 args.workers, args.csv)
                    if seed != seeds[-1]:  # progress; the last seed's table is printed below
                        print(report(exp, args.csv, args.costs, eval_seeds, args.target), flush=True)
        print(report(exp, args.csv, args.costs, eval_seeds, args.target))
    except ConfigError as e:
        print(f"bench_search_seeds: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
