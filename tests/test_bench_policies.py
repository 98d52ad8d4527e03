"""scripts/bench_policies.py: random controls, the report's targets, and the three searches
(proxy training, density matching, per class) run, frozen and costed on tiny digit studies."""
import csv
import importlib.util
import json
import sys

import pytest
import yaml
from helpers import ROOT, tiny_overrides

from autoaug.config import apply_overrides
from autoaug.policy import builtin


@pytest.fixture
def bench():
    spec = importlib.util.spec_from_file_location("bench_policies", ROOT / "scripts" / "bench_policies.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being defined
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _experiments(tmp_path):
    """Tiny proxy / density-matching / per-class experiments sharing one digit split."""
    common = {"data.n_train": 300, "training.epochs": 1, "driver.pruner": "none",
              "storage": "null", "baselines": "[none]"}
    specs = {
        "proxy": dict(common, n_trials=3),
        "dm": dict(common, n_trials=4, evaluation="density-matching", **{"density.copies": 1}),
        "pc": dict(common, n_trials=4, evaluation="density-matching", **{
            "density.copies": 1, "search_space": str(ROOT / "search_spaces" / "digits_per_class.yaml")}),
    }
    paths = {}
    for name, extra in specs.items():
        raw = apply_overrides({}, tiny_overrides(tmp_path, name=f"tiny-{name}", **extra))
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(raw))
    return paths


def _args(bench, tmp_path, paths, *extra):
    return bench.parse_args(["--experiment", str(paths["proxy"]), "--dm-experiment", str(paths["dm"]),
                             "--per-class-experiment", str(paths["pc"]), "--runs-dir", str(tmp_path / "runs"),
                             "--csv", str(tmp_path / "b.csv"), "--docs", "", *extra])


def test_random_controls_are_deterministic_and_distinct(bench, tmp_path):
    args = _args(bench, tmp_path, _experiments(tmp_path), "--random", "3")
    cfg = bench.load_cfg(args)
    first = [bench.random_policy(cfg, f"random-{i}").digest() for i in (1, 2, 3)]
    assert first == [bench.random_policy(cfg, f"random-{i}").digest() for i in (1, 2, 3)]
    assert len(set(first)) == 3
    assert bench.random_policy(cfg, "random-2").name == "random-2"


def test_order_and_only(bench, tmp_path):
    paths = _experiments(tmp_path)
    args = _args(bench, tmp_path, paths, "--random", "2")
    assert args.policies[:5] == ["standard", "searched", "searched-dm", "searched-per-class", "none"]
    assert args.policies[-2:] == ["random-1", "random-2"]
    assert bench.seeds_of(args, "random-1") == [0] and bench.seeds_of(args, "none") == [0, 1, 2]
    with pytest.raises(bench.BenchError, match="random-3"):
        _args(bench, tmp_path, paths, "--random", "2", "--only", "none,random-3")
    assert _args(bench, tmp_path, paths, "--search-first").policies  # accepted, a no-op


def _row(name, seed, acc, digest, epochs="20"):
    return {"policy": name, "seed": seed, "test_accuracy": f"{acc:.4f}", "val_accuracy": "0.5",
            "best_val_accuracy": "0.5", "seconds": "60", "cpu_s": "90", "epochs": epochs, "model": "cnn",
            "batch_size": "128", "learning_rate": "0.05", "n_train": "300", "n_val": "100",
            "split_seed": "0", "policy_hash": digest, "code_version": "x", "finished_at": "now"}


def test_report_targets_stale_rows_and_model_reuse(bench, tmp_path):
    args = _args(bench, tmp_path, _experiments(tmp_path), "--random", "3")
    cfg = bench.load_cfg(args)
    frozen = {}
    for search, base in zip(bench.SEARCHES, ["standard", "standard+cutout", "none"]):
        search.dir.mkdir(parents=True, exist_ok=True)
        policy = builtin(base)
        policy.save(str(search.policy_file))
        frozen[search.name] = policy.digest()
    costs = {"searched": (3000, None), "searched-dm": (600, True), "searched-per-class": (120, False)}
    for search in bench.SEARCHES:
        cpu, trained = costs[search.name]
        cost = {"study": search.name, "experiment": "x.yaml", "n_trials": 4, "model": "cnn",
                "complete": True, "trials": {"complete": 3, "pruned": 1}, "segments": [{}],
                "total_cpu_s": cpu, "total_wall_s": cpu / 2, "machine": "m", "proxy_epochs": 8}
        if trained is not None:
            cost.update(evaluation="density-matching", density_models={"key": "k", "dir": "d",
                                                                       "trained_here": trained})
        search.cost_file.write_text(json.dumps(cost))
    acc = {"none": 0.60, "standard": 0.70, "standard+cutout": 0.68, "searched": 0.72,
           "searched-dm": 0.73, "searched-per-class": 0.69}
    rows = []
    for seed, noise in enumerate((0.0, 0.004, -0.004)):
        for name, a in acc.items():
            rows.append(_row(name, seed, a + noise, frozen.get(name, builtin(name).digest()
                                                          if name in bench.BASELINES else "")))
    for i, a in enumerate((0.62, 0.66, 0.64), 1):
        rows.append(_row(f"random-{i}", 0, a, bench.random_policy(cfg, f"random-{i}").digest()))
    rows.append(_row("searched-dm", 0, 0.10, "an-old-hash"))  # an earlier frozen policy
    rows.append(_row("none", 0, 0.10, "", epochs="40"))  # another setting
    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=bench.FIELDS)
        w.writeheader()
        w.writerows(rows)
    args = _args(bench, tmp_path, _experiments(tmp_path), "--random", "3", "--only",
                 "none,standard,standard+cutout,searched,searched-dm,searched-per-class,"
                 "random-1,random-2,random-3")
    text, stats = bench.build_report(args, cfg)
    assert stats["searched-dm"]["n"] == 3 and stats["searched-dm"]["mean"] == pytest.approx(73.0)
    assert "| random (median of 3) | 3 | 64.00 |" in text
    assert "1 `searched-dm` row(s) of an earlier policy" in text
    assert "1 CSV row(s) of other settings" in text
    assert "searched 72.00 vs standard 70.00 = +2.00 points: **met**" in text  # issue 4
    assert "(`searched-dm` ≥ `searched`): 73.00 vs 72.00 = +1.00 points: **met**" in text
    assert "`searched-dm` 10.0 CPU-minutes, target ≤ 15: **met**" in text
    assert "`searched` 50.0 CPU-minutes, target ≤ 60: **met**" in text
    assert "trained and paid for by `searched-dm`" in text
    assert "**0.40 trials per CPU-minute**" in text  # searched-dm: 4 finished trials / 10 CPU-minutes
    assert "`searched-dm` vs the random median: +9.00 points vs std 0.40: **met**" in text


@pytest.mark.slow
def test_three_searches_run_freeze_cost_and_resume(bench, tmp_path):
    paths = _experiments(tmp_path)
    args = _args(bench, tmp_path, paths, "--merge-top", "2")
    cfg = bench.load_cfg(args)
    for search in bench.SEARCHES:
        bench.run_search_step(args, search, bench.search_cfg(args, search, cfg))
    runs = tmp_path / "runs"
    assert (runs / "searched_policy.json").exists() and (runs / "search_cost.json").exists()
    cost = {s.name: json.loads(s.cost_file.read_text()) for s in bench.SEARCHES}
    assert (runs / "searched-dm" / "policy.json").exists() and (runs / "searched-dm" / "search.journal").exists()
    assert cost["searched-dm"]["density_models"]["trained_here"] is True
    assert cost["searched-per-class"]["density_models"]["trained_here"] is False
    assert cost["searched-dm"]["density_models"]["key"] == cost["searched-per-class"]["density_models"]["key"]
    assert cost["searched-dm"]["best"]["merged_top"] == 2 and cost["searched"]["best"]["merged_top"] == 1
    assert bench.frozen_policy(bench.SEARCHES[2]).per_class
    assert all(c["complete"] for c in cost.values())

    # complete and frozen: not re-run; another --merge-top: re-frozen only (no new segment)
    segments = len(cost["searched-dm"]["segments"])
    bench.run_search_step(args, bench.SEARCHES[1], bench.search_cfg(args, bench.SEARCHES[1], cfg))
    args3 = _args(bench, tmp_path, paths, "--merge-top", "3")
    bench.run_search_step(args3, bench.SEARCHES[1], bench.search_cfg(args3, bench.SEARCHES[1], cfg))
    again = json.loads(bench.SEARCHES[1].cost_file.read_text())
    assert len(again["segments"]) == segments and again["best"]["merged_top"] == 3

    text, _ = bench.build_report(args, cfg)
    assert "trained and paid for by `searched-dm`" in text
    assert "union of the top 2 trials of every class" in text

