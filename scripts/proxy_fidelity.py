#!/usr/bin/env python
"""Proxy fidelity from finished full trainings: can the search's score rank policies?

When the proxy is the target training itself (``experiments/cifar10_reduced.yaml``: the same
model, schedule and split, every trial with seed 0), a policy's search score *is* the validation
accuracy of its seed-0 full training. So the runs that `autoaug evaluate` or the benchmarks have
finished give each policy's proxy score and its test accuracy without any new training. This
prints, per policy, the score and the test mean, and three Spearman correlations with 95% intervals
(Fisher z, standard error 1.03 / sqrt(n - 3)):

- *all*: seed-0 validation against the mean test accuracy over every seed;
- *independent luck*: for the policies trained with other seeds too, seed-0 validation against
  the mean test accuracy of those other seeds, so that the two share no training run;
- *top K*: over the ``--top`` policies best on test only, the ones a search has to choose
  between once it has found the right region (a proxy can rank a wide range of policies and
  still invert the best few).

Rows are grouped by ``policy_hash`` (the same name in two files may be two policies); ``--where
col=value`` keeps matching rows only (e.g. ``epochs=20``); a file's rows can be named with a
prefix: ``FILE:prefix``.

``--density EXPERIMENT`` adds a third proxy, density matching: the experiment's K fold models
(trained once, or reused from the cache) score every policy that ``--policy NAME=SOURCE`` names
(``load_policy``'s sources: a built-in, a JSON file; or ``random:SPACE:SEED``, a draw from a
space), or a built-in of the CSV's name; the policy must have the CSV row's hash. The density
scores are then ranked against the test means of every seed.

    .venv/bin/python scripts/proxy_fidelity.py docs/bench_policies.csv \\
        docs/bench_policies_random_light.csv:light- --where epochs=20
    .venv/bin/python scripts/proxy_fidelity.py ... --density experiments/cifar10_reduced_dm.yaml \\
        --policy searched=runs/bench_policies/searched/policy.json \\
        --policy random-1=random:search_spaces/autoaugment.yaml:1001 ...
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from autoaug.stats import spearman  # noqa: E402


def read_rows(specs: list[str], where: list[str]) -> dict:
    """policy_hash -> {"name": ..., "val": {seed: acc}, "test": {seed: acc}}."""
    filters = [w.split("=", 1) for w in where]
    policies: dict = {}
    for spec in specs:
        path, _, prefix = spec.partition(":")
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if any(row.get(k) != v for k, v in filters):
                    continue
                p = policies.setdefault(row["policy_hash"], {"name": prefix + row["policy"], "val": {}, "test": {}})
                seed = int(row["seed"])
                p["val"][seed], p["test"][seed] = float(row["val_accuracy"]), float(row["test_accuracy"])
    return policies


def interval(r: float, n: int) -> tuple[float, float]:
    if n <= 3 or not math.isfinite(r) or abs(r) >= 1:
        return (math.nan, math.nan)
    z, half = math.atanh(r), 1.96 * 1.03 / math.sqrt(n - 3)
    return (math.tanh(z - half), math.tanh(z + half))


def line(what: str, scores: list[float], tests: list[float]) -> str:
    r = spearman(scores, tests)
    lo, hi = interval(r, len(scores))
    return f"{what}: Spearman {r:+.2f} [{lo:+.2f}, {hi:+.2f}] (95% CI) over {len(scores)} policies"


def lines(what: str, scores: list[float], tests: list[float], top: int) -> list[str]:
    """The Spearman line over all the policies, then over the `top` best on test."""
    best = sorted(range(len(tests)), key=lambda i: -tests[i])[:top]
    return [line(what, scores, tests),
            line(f"{what}, top {len(best)} on test", [scores[i] for i in best], [tests[i] for i in best])]


def density_scores(experiment: str, named: dict, policies: dict) -> dict:
    """policy_hash -> density-matching accuracy, for the policies that can be rebuilt."""
    from autoaug import load_policy
    from autoaug.config import load_experiment
    from autoaug.data.sources import load_experiment_data
    from autoaug.search import load_space
    from autoaug.search.density import DensityEvaluator
    exp = load_experiment(experiment)
    ds, arrays = load_experiment_data(exp)
    evaluator = DensityEvaluator(exp, arrays, ds.num_classes).prepare()
    scores = {}
    for digest, p in policies.items():
        source = named.get(p["name"], p["name"])
        try:
            if source.startswith("random:"):
                space, _, seed = source[len("random:"):].rpartition(":")
                policy = load_space(space).random_policy(int(seed))
            else:
                policy = load_policy(source)
        except Exception as e:  # noqa: BLE001 - a policy that cannot be rebuilt is reported and skipped
            print(f"density: {p['name']}: cannot rebuild it from {source!r} ({e}); skipped")
            continue
        if policy.digest() != digest:
            print(f"density: {p['name']}: {source!r} has hash {policy.digest()}, the CSV {digest}; skipped")
            continue
        scores[digest] = evaluator.score(policy).accuracy
    return scores


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csvs", nargs="+", help="evaluate-style CSVs (policy, seed, val_accuracy, test_accuracy, "
                                            "policy_hash), each optionally FILE:prefix")
    ap.add_argument("--where", action="append", default=[], metavar="COL=VALUE")
    ap.add_argument("--seed", type=int, default=0, help="the seed whose validation is the proxy's score")
    ap.add_argument("--top", type=int, default=6, help="also rank only the K policies best on test (default 6)")
    ap.add_argument("--density", metavar="EXPERIMENT", help="also score the policies by density matching")
    ap.add_argument("--policy", action="append", default=[], metavar="NAME=SOURCE",
                    help="where --density finds the CSV's policy NAME")
    args = ap.parse_args(argv)
    try:
        policies = read_rows(args.csvs, args.where)
    except (OSError, KeyError, ValueError) as e:
        print(f"proxy_fidelity: cannot read the CSVs ({type(e).__name__}: {e})", file=sys.stderr)
        return 2
    scored = {h: p for h, p in policies.items() if args.seed in p["val"]}
    if len(scored) < 3:
        print(f"proxy_fidelity: {len(scored)} policies have a seed-{args.seed} run; 3 or more are needed",
              file=sys.stderr)
        return 2
    rows = sorted(scored.values(), key=lambda p: -p["val"][args.seed])
    print(f"{'policy':40s} {'proxy (val, seed ' + str(args.seed) + ')':>22s} {'test mean':>10s} {'n':>3s} "
          f"{'test, other seeds':>18s}")
    for p in rows:
        others = [t for s, t in p["test"].items() if s != args.seed]
        other = f"{100 * statistics.mean(others):.2f} ({len(others)})" if others else "-"
        print(f"{p['name'][:40]:40s} {100 * p['val'][args.seed]:22.2f} {100 * statistics.mean(p['test'].values()):10.2f} "
              f"{len(p['test']):3d} {other:>18s}")
    print(*lines("all", [p["val"][args.seed] for p in rows], [statistics.mean(p["test"].values()) for p in rows],
                 args.top), sep="\n")
    indep = [p for p in rows if any(s != args.seed for s in p["test"])]
    print(line("independent luck", [p["val"][args.seed] for p in indep],
               [statistics.mean(t for s, t in p["test"].items() if s != args.seed) for p in indep]))
    if args.density:
        from autoaug.config import ConfigError
        from autoaug.data import DataError
        bad = [spec for spec in args.policy if "=" not in spec]
        if bad:
            print(f"proxy_fidelity: --policy {bad[0]!r}: expected NAME=SOURCE", file=sys.stderr)
            return 2
        try:
            scores = density_scores(args.density, dict(spec.split("=", 1) for spec in args.policy), scored)
        except (ConfigError, DataError) as e:
            print(f"proxy_fidelity: --density {args.density}: {e}", file=sys.stderr)
            return 2
        by_score = sorted(scores, key=lambda h: -scores[h])
        print(f"\n{'policy':40s} {'density matching':>22s} {'test mean':>10s}")
        for h in by_score:
            print(f"{scored[h]['name'][:40]:40s} {100 * scores[h]:22.2f} "
                  f"{100 * statistics.mean(scored[h]['test'].values()):10.2f}")
        print(*lines("density matching", [scores[h] for h in by_score],
                     [statistics.mean(scored[h]["test"].values()) for h in by_score], args.top), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
