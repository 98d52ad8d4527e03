#!/usr/bin/env python
"""Policy quality: do the searched policies beat the published ones on reduced CIFAR-10?

In each seed, with the same full training (``autoaug.evaluate.evaluate``, paired by seed): standard;
searched, searched-dm, searched-per-class (the frozen searches of --experiment, --dm-experiment,
--per-class-experiment); none, standard+cutout, the published policies; random-1..N
(``SearchSpace.random_policy(1000 + i)``, first --random-seeds seeds only). The searches go first,
run or resumed by ``autoaug.search.run_search`` with a journal and an MLflow store in
<runs-dir>/<name>/ and frozen there by ``autoaug.search.best_policy``; search_cost.json sums their
wall and CPU seconds over resumed segments. A killed bench resumes from evaluate's CSV. The report
(``--report``: from the CSV alone) is evaluate's paired table, the random median, the searches'
costs and the targets of issues 4 and 6; with the default CSV it rewrites docs/bench_policies.md's.

    .venv/bin/python scripts/bench_policies.py                     # everything (hours on 2 cores)
    .venv/bin/python scripts/bench_policies.py --report            # the table from the CSV so far
    .venv/bin/python scripts/bench_policies.py --epochs 1 --seeds 1 --only none,random-1 \\
        --csv /tmp/smoke/b.csv --runs-dir /tmp/smoke/runs --skip-search   # smoke test
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as dt
import fcntl
import itertools
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
DEFAULT_CSV, DEFAULT_DOCS = ROOT / "docs" / "bench_policies_evaluate.csv", ROOT / "docs" / "bench_policies.md"
PUBLISHED = ["autoaugment-cifar10+standard+cutout", "randaugment-n2-m9+standard+cutout",
             "trivialaugment-wide+standard+cutout"]
BASELINES = ["none", "standard", "standard+cutout"] + PUBLISHED
SEARCHES = {"searched": "experiment", "searched-dm": "dm_experiment", "searched-per-class": "per_class_experiment"}
RANDOM_SEED_BASE = 1000  # random-i is SearchSpace.random_policy(1000 + i)
TARGET_POINTS = 1.0  # issue 4: searched >= best baseline + 1 point
CPU_MIN_TARGETS = {"searched-dm": 15.0, "searched": 60.0}  # issue 6: density matching in 15 CPU-minutes, not 60
MACHINE = f"{os.cpu_count()} CPU cores, {platform.platform(terse=True)}, Python {platform.python_version()}"
TABLE_START, TABLE_END = "<!-- bench-policies-table:start -->", "<!-- bench-policies-table:end -->"


class BenchError(Exception):
    """A problem the user can fix; printed as one line."""


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def rel(path) -> str:  # a path inside the project relative to it, anything else as it is
    return os.path.relpath(path, ROOT) if str(path).startswith(f"{ROOT}{os.sep}") else str(path)


FLAGS = [  # (flag, default, help); the type is the default's
    ("--experiment", str(ROOT / "experiments" / "cifar10_reduced.yaml"), "the proxy search 'searched', and the split"),
    ("--dm-experiment", str(ROOT / "experiments" / "cifar10_reduced_dm.yaml"), "the search 'searched-dm'"),
    ("--per-class-experiment", str(ROOT / "experiments" / "cifar10_reduced_per_class.yaml"), "'searched-per-class'"),
    ("--merge-top", 5, "freeze the density-matching searches as the union of the N best trials per fold / class"),
    ("--random", 5, "random controls random-1..N (0: none)"),
    ("--random-space", str(ROOT / "search_spaces" / "autoaugment.yaml"), "their space (the density-matching one)"),
    ("--random-seeds", 1, "train the random controls on the first N seeds only"),
    ("--epochs", 20, "full-training epochs"), ("--seeds", "3", "N for seeds 0..N-1, or a list such as 3,4"),
    ("--model", "cnn", "full-training model"), ("--batch-size", 128, "batch size"), ("--lr", 0.05, "peak lr"),
    ("--csv", str(DEFAULT_CSV), "evaluate's resumable CSV"), ("--only", "", "comma list of policies (default all)"),
    ("--docs", None, "markdown whose table is rewritten (default: docs/bench_policies.md with the default --csv)"),
    ("--runs-dir", str(ROOT / "runs" / "bench_policies"), "the searches' stores and costs, the frozen policies")]


def parse_args(argv=None):
    from autoaug.config import ConfigError
    from autoaug.evaluate import parse_seeds
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, default, text in FLAGS:
        p.add_argument(flag, default=default, type=type(default) if default is not None else str,
                       help=text if "default" in text else f"{text} (default {rel(default)})")
    for flag, text in (("--skip-search", "run no search; use the policies frozen so far"), ("--report", "only the "
                       "report, from the CSV")):
        p.add_argument(flag, action="store_true", help=text)
    args = p.parse_args(argv)
    try:
        args.seed_list = parse_seeds(args.seeds)
    except ConfigError as e:
        raise BenchError(str(e)) from None
    if min(args.merge_top, args.random_seeds, args.random + 1) < 1:
        raise BenchError("--merge-top and --random-seeds must be positive, --random 0 or more")
    known = ["standard", *SEARCHES, "none", "standard+cutout", *PUBLISHED] + [
        f"random-{i}" for i in range(1, args.random + 1)]
    names = [s.strip() for s in args.only.split(",") if s.strip()] or known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BenchError(f"--only: unknown policy {unknown[0]!r} (--random {args.random}); use {', '.join(known)}")
    args.policies = [n for n in known if n in names]  # in training order
    args.csv, args.runs_dir = os.path.abspath(args.csv), Path(args.runs_dir).resolve()
    args.random_space = os.path.abspath(args.random_space)
    if args.docs is None:
        args.docs = str(DEFAULT_DOCS) if args.csv == str(DEFAULT_CSV) else ""
    return args


def experiments(args):
    """(the full-training experiment, {search to run: its experiment with the bench's stores})."""
    from autoaug.config import ConfigError, load_experiment
    runs = args.runs_dir
    try:
        exp = load_experiment(args.experiment, [
            "name=bench_policies", "storage=null", f"tracking_uri=sqlite:///{runs}/mlflow.db",
            f"model.name={args.model}", f"training.epochs={args.epochs}", f"training.batch_size={args.batch_size}",
            f"training.learning_rate={args.lr}", f"baselines=[{', '.join(BASELINES)}]"])
        searches = {}
        for name in [] if args.report or args.skip_search else [n for n in SEARCHES if n in args.policies]:
            ex = searches[name] = load_experiment(getattr(args, SEARCHES[name]), [  # density models: shared
                f"storage=journal:{runs / name}/search.journal", f"tracking_uri=sqlite:///{runs / name}/mlflow.db",
                f"density.cache_dir={runs / 'density_models'}"])
            if ex.data != exp.data:
                raise BenchError(f"{name}: {rel(ex.path)} has data {ex.data}, but the bench trains on "
                                 f"{rel(exp.path)}'s {exp.data}; use the same split")
    except ConfigError as e:
        raise BenchError(str(e)) from None
    return exp, searches


@contextlib.contextmanager
def flock(path: Path, what: str):
    """An exclusive lock on `path` while the block runs (one bench per CSV, one per search)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BenchError(f"another bench_policies process holds {path} ({what}); wait for it or stop it") from None
        yield


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def cost_segment(path: Path, info: dict):
    """A search segment's wall and CPU seconds (user + system, this process and its children),
    added to the cost file's earlier segments and saved every 30 s, so a killed search loses at
    most 30 s of its cost. Yields (the cost so far, save(**keys))."""
    from autoaug.files import atomic_write, code_version
    cost = {"segments": [], **(read_json(path) or {}), **info}
    segment = {"started": dt.datetime.now().isoformat(timespec="seconds"), "code_version": code_version()}
    cost["segments"].append(segment)
    t0, cpu0, lock, stop = time.perf_counter(), sum(os.times()[:4]), threading.Lock(), threading.Event()

    def save(**keys) -> None:
        with lock:
            segment.update(wall_s=round(time.perf_counter() - t0, 1), cpu_s=round(sum(os.times()[:4]) - cpu0, 1))
            cost.update(keys, **{f"total_{k}": round(sum(s[k] for s in cost["segments"]), 1) for k in ("wall_s",
                                                                                                      "cpu_s")})
            atomic_write(path, json.dumps(cost, indent=1) + "\n")

    thread = threading.Thread(target=lambda: [save() for _ in iter(lambda: stop.wait(30.0), True)], daemon=True)
    save()
    thread.start()
    try:
        yield cost, save
    finally:
        stop.set()
        thread.join()
        save()


def trial_counts(ex) -> dict:
    """{state: trials} of the study in its MLflow store ({} before its first trial)."""
    from autoaug import tracking
    try:
        return dict(collections.Counter(t.state for t in tracking.open_study(ex.tracking_uri, ex.name).trial_records()))
    except tracking.TrackingError:
        return {}


def finished(counts: dict) -> int:
    """Trials that count towards n_trials (the driver tops failed ones up)."""
    return counts.get("complete", 0) + counts.get("pruned", 0)


def run_search_step(name: str, ex, top: int, folder: Path) -> None:
    """Run or resume a search, then freeze it (top > 1: the top-N merge) to folder/policy.json.
    A complete study frozen with this top is left alone; with another top it is only re-frozen."""
    from autoaug import load_policy
    from autoaug.search import best_policy, run_search
    policy_file = folder / "policy.json"
    with flock(folder / "search.lock", f"the {name} search"):
        counts = trial_counts(ex)
        frozen = load_policy(str(policy_file)) if policy_file.exists() else None
        if finished(counts) >= ex.n_trials and frozen and int(frozen.meta.get("merged_top", 1)) == top:
            return log(f"{name}: study {ex.name} complete ({counts}), frozen in {rel(policy_file)}; not re-run")
        if finished(counts) < ex.n_trials:
            log(f"{name}: study {ex.name} ({ex.n_trials} trials, {ex.evaluation}, {ex.model.name} {ex.training.epochs} "
                f"epochs), {finished(counts)} finished before; journal {ex.storage}")
            info = {"study": ex.name, "experiment": rel(ex.path), "n_trials": ex.n_trials, "evaluation": ex.evaluation,
                    "model": ex.model.name, "epochs": ex.training.epochs, "density": dataclasses.asdict(ex.density),
                    "machine": MACHINE}
            with cost_segment(folder / "search_cost.json", info) as (cost, save):
                ctx, _ = run_search(ex, progress=False)
                counts, ev = trial_counts(ex), ctx.evaluator  # density matching: models trained here, or reused?
                paid = ev is not None and (ev.trained_here or (cost.get("density_models") or {}).get("trained_here"))
                save(trials=counts, complete=finished(counts) >= ex.n_trials, density_models=ev and {
                    "key": ev.key, "dir": rel(ev.dir), "trained_here": bool(paid)})
        else:
            log(f"{name}: study {ex.name} complete ({counts}); freezing it again with top {top}")
        policy = best_policy(ex.name, ex.tracking_uri, ex.storage, top=top)
        policy.save(str(policy_file))
    log(f"{name}: {frozen_text(policy.meta)}; frozen to {rel(policy_file)}: {policy.summary(8)}")


def frozen_text(meta: dict) -> str:
    """How a frozen policy was chosen, in a few words."""
    per, trials = "class" if meta.get("selection") == "per-class" else "fold", ", ".join(
        map(str, meta.get("merged_trials") or meta.get("trials") or []))
    how = (f"union of the top {meta['merged_top']} trials of every {per} (trials {trials}); "
           if meta.get("merged_top", 1) > 1 else f"best policy, evaluated by trials {trials} (their mean); "
           if meta.get("evaluations", 1) > 1 else "")
    return f"{how}best trial {meta.get('trial')}, search score {100 * meta.get('val_accuracy', math.nan):.2f}%"


def policy_pairs(args, exp) -> list:
    """[(label, Policy)] in training order: built-ins, the frozen searches, the random draws."""
    from autoaug import load_policy
    from autoaug.data import load_dataset
    from autoaug.search import load_space
    pairs, space = [], load_space(args.random_space) if args.random else None
    num_classes = load_dataset(exp.resolve(exp.data.source)).num_classes if space and space.per_class else 0
    for name in args.policies:
        path = args.runs_dir / name / "policy.json"
        if name.startswith("random-"):
            i = int(name[len("random-"):])
            policy = space.random_policy(RANDOM_SEED_BASE + i, num_classes)
            pairs.append((name, dataclasses.replace(policy, name=name, meta={**policy.meta, "random_control": i})))
        elif name not in SEARCHES or path.exists():
            pairs.append((name, load_policy(str(path) if name in SEARCHES else name)))
        else:
            log(f"{name}: no frozen policy in {rel(path)} yet (run without --skip-search); skipped")
    return pairs


def train(args, exp, pairs) -> None:
    """Every policy on the controls' seeds (seed by seed, controls last), then the others on the
    remaining seeds; evaluate() skips the runs the CSV already has."""
    from autoaug.evaluate import evaluate
    rest = [(lb, p) for lb, p in pairs if not lb.startswith("random-")]
    k = args.random_seeds if len(rest) < len(pairs) else len(args.seed_list)  # one evaluate() without controls
    args.runs_dir.mkdir(parents=True, exist_ok=True)  # evaluate's MLflow store
    with flock(Path(args.csv + ".lock"), f"the CSV {args.csv}"):
        for chosen, seeds in ((pairs, args.seed_list[:k]), (rest, args.seed_list[k:])):
            if chosen and seeds:
                evaluate(exp, chosen, seeds, csv_path=args.csv, log=log)


def report(args, exp, pairs) -> str:
    """evaluate's paired table of the CSV's current runs, then notes: setting, random median,
    the searches' costs and frozen policies, the targets, the rows not counted."""
    from autoaug.evaluate import Evaluation, finished_runs, read_rows, setting_key, summarize
    done = finished_runs(args.csv, exp, pairs)
    if not done:
        return f"no finished run of these policies in {args.csv} for this setting yet\n"
    ref, summaries = summarize(list(done.values()), baselines=tuple(BASELINES))
    by, expected = {s.policy: s for s in summaries}, [(lb, s) for lb, _ in pairs for s in args.seed_list[
        :args.random_seeds if lb.startswith("random-") else None]]
    so_far = "" if all(k in done for k in expected) else " (so far)"
    notes = [f"**Partial**: {sum(k in done for k in expected)} of {len(expected)} runs so far."] if so_far else []
    t, d = exp.training, exp.data
    notes.append(f"Setting: {exp.model.name}, {t.epochs} epochs, batch {t.batch_size}, SGD+Nesterov lr "
                 f"{t.learning_rate:g} cosine, weight decay {t.weight_decay:g}; train {d.n_train} / val {d.n_val} of "
                 f"the train split (split seed {d.split_seed}); test: the test split. Paired gap: to `{ref}` "
                 "(the best baseline), on common seeds.")
    first, randoms = args.seed_list[0], [s for s in summaries if s.policy.startswith("random-")]
    rnd = sorted(100 * float(done[(s.policy, first)]["test_accuracy"]) for s in randoms if (s.policy, first) in done)
    stds = [s.std for s in randoms if not math.isnan(s.std)]
    median = (statistics.median(rnd), statistics.median(stds) if stds else math.nan) if rnd else None
    if rnd:
        notes.append(f"random (median of {len(rnd)}): {median[0]:.2f} on seed {first} (controls {rnd[0]:.2f}–"
                     f"{rnd[-1]:.2f}); random-i is `SearchSpace.random_policy({RANDOM_SEED_BASE} + i)` of "
                     f"`{rel(args.random_space)}`, trained on seeds {args.seed_list[:args.random_seeds]} only.")
    costs = {name: read_json(args.runs_dir / name / "search_cost.json") for name in SEARCHES}
    for name in (n for n in SEARCHES if n in args.policies):
        notes += search_notes(name, costs, dict(pairs).get(name))
    if any(n in args.policies for n in SEARCHES):
        notes += targets(by, ref, median, costs, so_far)
    rows, digests, setting = read_rows(args.csv), {lb: p.digest() for lb, p in pairs}, setting_key(exp)
    stale = collections.Counter(r["policy"] for r in rows if r["setting"] == setting and r["policy"] in digests
                                and r["policy_hash"] != digests[r["policy"]])
    notes += [f"{n} `{name}` row(s) of an earlier policy (another hash) are not counted." for name, n in stale.items()]
    other = sum(r["setting"] != setting for r in rows)
    notes += [f"{other} CSV row(s) of other settings (data, model, schedule) are not counted."] if other else []
    table = Evaluation(list(done.values()), ref, summaries).table()
    return f"```text\n{table}\n```\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def search_notes(name: str, costs: dict, frozen) -> list[str]:
    """The search's evaluation, trials and cost (from its cost file), and its frozen policy."""
    cost, dm = costs.get(name) or {}, (costs.get(name) or {}).get("density_models")
    paid = [n for n, c in costs.items() if dm and ((c or {}).get("density_models") or {}).get("key") == dm["key"]
            and c["density_models"]["trained_here"]]  # who trained the shared density models
    payer = "this search, in its cost" if name in paid else f"`{paid[0]}`" if paid else "no search recorded here"
    how = (f"density matching ({cost['density']['folds']} {cost['model']} models of {cost.get('epochs', '?')} epochs, "
           f"trained and paid for by {payer})" if dm else f"proxy training ({cost.get('epochs')} epochs per trial)")
    trials, cpu = cost.get("trials") or {}, cost.get("total_cpu_s", 0) / 60
    notes = [f"`{name}` search: {how}; study `{cost['study']}`, {cost['n_trials']} trials: "
             f"{', '.join(f'{v} {k}' for k, v in sorted(trials.items())) or 'none'}; {len(cost['segments'])} "
             f"segment(s): **{cpu:.1f} CPU-minutes**, {cost['total_wall_s'] / 60:.1f} minutes wall, "
             f"**{finished(trials) / cpu:.2f} trials per CPU-minute**, on {cost['machine']}"
             f"{'' if cost.get('complete') else ' (not finished)'}."
             if cpu else f"`{name}` search: no cost recorded yet."]
    if frozen is not None:
        notes.append(f"`{name}` policy: {frozen_text(frozen.meta)}; hash {frozen.digest()}: `{frozen.summary(8)}`.")
    return notes


def verdict(gap: float, unit: str = "points") -> str:
    return "**met**" if gap >= 0 else f"**missed by {-gap:.2f} {unit}**"


def targets(by: dict, ref: str, median, costs: dict, so_far: str) -> list[str]:
    """Issue 4: searched >= best baseline + 1 point. Issue 6: the search costs, searched-dm >=
    searched, and both beat standard and the random median by more than the seed-to-seed std."""
    notes, searched, dm = [], by.get("searched"), by.get("searched-dm")
    if searched and ref in BASELINES:
        gap = searched.mean - by[ref].mean
        notes.append(f"Issue 4 (`searched` ≥ best baseline + {TARGET_POINTS:.1f} point): {searched.mean:.2f} vs "
                     f"{ref} {by[ref].mean:.2f} = {gap:+.2f} points: {verdict(gap - TARGET_POINTS)}{so_far}.")
    for name, limit in CPU_MIN_TARGETS.items():
        cost = costs.get(name) or {}
        cpu = cost.get("total_cpu_s", math.nan) / 60
        state = verdict(limit - cpu, "CPU-minutes") if cost.get("complete") or cpu > limit else "search not finished"
        notes.append(f"Issue 6 (`{name}` ≤ {limit:.0f} CPU-min): {f'{cpu:.1f}: {state}' if cost else 'no cost yet'}.")
    if dm and searched:
        notes.append(f"Issue 6 (`searched-dm` ≥ `searched`): {dm.mean:.2f} vs {searched.mean:.2f} = "
                     f"{dm.mean - searched.mean:+.2f} points: {verdict(dm.mean - searched.mean)}{so_far}.")
    standard = (by["standard"].mean, by["standard"].std) if "standard" in by else None
    for name, (ref_name, r) in itertools.product(("searched", "searched-dm"), (("standard", standard),
                                                                                ("the random median", median))):
        if name in by and r:  # beaten by more than the larger of the two rows' seed-to-seed std
            gap, std = by[name].mean - r[0], max([v for v in (by[name].std, r[1]) if not math.isnan(v)] or [math.nan])
            notes.append(f"Issue 6 (`{name}` beats {ref_name} by more than the std): {gap:+.2f} points vs std "
                         f"{std:.2f}: {'undecided (one seed)' if math.isnan(std) else verdict(gap - std)}{so_far}.")
    return notes


def write_docs(path: str, text: str) -> None:
    from autoaug.files import atomic_write
    doc = Path(path).read_text() if Path(path).exists() else ""
    if TABLE_START not in doc or TABLE_END not in doc:
        return log(f"{path} has no {TABLE_START} ... {TABLE_END} section; table not written there")
    head, rest = doc.split(TABLE_START, 1)
    atomic_write(path, f"{head}{TABLE_START}\n<!-- written by scripts/bench_policies.py at "
                       f"{dt.datetime.now():%Y-%m-%d %H:%M} -->\n\n{text}\n{TABLE_END}{rest.split(TABLE_END, 1)[1]}")
    log(f"table written to {rel(path)}")


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        exp, searches = experiments(args)
        if not args.report:
            log(f"machine: {MACHINE}")
            for name in sorted(searches, key=lambda n: n == "searched"):  # density matching first: minutes
                run_search_step(name, searches[name], 1 if name == "searched" else args.merge_top, args.runs_dir / name)
        pairs = policy_pairs(args, exp)
        if not args.report and pairs:
            train(args, exp, pairs)
        text = report(args, exp, pairs)
        print("\n" + text, flush=True)
        if args.docs:
            write_docs(args.docs, text)
        return 0
    except KeyboardInterrupt:
        print("bench_policies: interrupted; finished runs are in the CSV, rerun to resume", file=sys.stderr)
        return 130
    except Exception as e:  # ours, and the library's errors that name their fix (DataError, PolicyError, ...)
        if not {c.__name__ for c in type(e).__mro__} & {"BenchError", "DataError", "PolicyError", "ModelError",
                                                         "TrackingError", "ConfigError"}:
            raise
        print(f"bench_policies: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
