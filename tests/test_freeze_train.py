"""From search to training: freeze the best policy, load it back three ways, train with it."""
import json
import subprocess
import sys

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import autoaug
from autoaug.config import load_experiment
from autoaug.search import run_search
from helpers import tiny_overrides

pytestmark = pytest.mark.slow


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "autoaug.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def _best_by_mean(frame):
    """(first trial row, mean) of the policy hash with the best mean validation accuracy."""
    done = frame[frame["state"] == "complete"]
    stats = done.groupby("policy_hash").agg(mean=("val_accuracy", "mean"), first=("trial", "min"))
    h = max(stats.index, key=lambda k: (stats.loc[k, "mean"], -stats.loc[k, "first"]))
    rows = done[done["policy_hash"] == h].sort_values("trial")
    return rows.iloc[0], float(stats.loc[h, "mean"])


def test_a_policy_evaluated_by_several_trials_is_ranked_by_their_mean(tmp_path):
    # A space with one point: every searched trial evaluates the same policy with its own
    # training seed, so the frozen score must be their mean, not the luckiest of them.
    space = tmp_path / "one_point.yaml"
    space.write_text("kind: autoaugment\nops: [Rotate]\nsub_policies: 1\nsteps: 1\n"
                     "probabilities: [0.5]\nlevels: [3]\nstages: [policy, flip]\nsearch_order: false\n")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    cfg = load_experiment(None, tiny_overrides(tmp_path, name="repeat", n_trials=3, storage=storage,
                                               search_space=str(space), baselines="[]",
                                               **{"selection.trial_seeds": "per-trial"}))
    _, frame = run_search(cfg, progress=False)
    searched = frame[frame["state"] == "complete"]
    assert len(searched) == 3 and searched["policy_hash"].nunique() == 1
    assert searched["val_accuracy"].nunique() > 1  # the seeds differ, so the values do
    best, mean = _best_by_mean(frame)
    for source in ({}, {"storage": storage}):
        policy = autoaug.search.best_policy("repeat", cfg.tracking_uri, **source)
        assert abs(policy.meta["val_accuracy"] - mean) < 1e-9
        assert policy.meta["trial"] == best["trial"] == 0
        assert policy.meta["evaluations"] == 3 and policy.meta["trials"] == [0, 1, 2]
    client = MlflowClient(cfg.tracking_uri)
    parent = client.get_run(policy.meta["run_id"]).data.tags["mlflow.parentRunId"]
    assert abs(client.get_run(parent).data.metrics["best_val_accuracy"] - mean) < 1e-6


def test_freeze_load_and_train(tmp_path, photos):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    cfg = load_experiment(None, tiny_overrides(tmp_path, name="freeze-study", n_trials=5, storage=storage))
    _, frame = run_search(cfg, progress=False)
    uri = cfg.tracking_uri

    out = tmp_path / "policy.json"
    done = _cli("best", "--study", "freeze-study", "--tracking-uri", uri, "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    frozen = autoaug.load_policy(str(out))
    best, mean = _best_by_mean(frame)
    meta = json.loads(out.read_text())["meta"]
    assert meta["trial"] == best["trial"] and meta["run_id"] == best["run_id"]
    assert meta["study"] == "freeze-study" and meta["search_space_hash"] and meta["code_version"]
    assert abs(meta["val_accuracy"] - mean) < 1e-9

    # The same pixels as the trial's own policy, loaded from the file and from MLflow.
    from_mlflow = autoaug.tracking.read_artifact_text(f"runs:/{best['run_id']}/policy.json", uri)
    trial_policy = autoaug.Policy.from_json(from_mlflow)
    import mlflow
    mlflow.set_tracking_uri(uri)
    via_uri = autoaug.load_policy(f"runs:/{best['run_id']}/policy.json")
    reference = trial_policy.apply(photos, seed=11).numpy()
    assert np.array_equal(frozen.apply(photos, seed=11).numpy(), reference)
    assert np.array_equal(via_uri.apply(photos, seed=11).numpy(), reference)

    # The Optuna storage names the same best trial.
    via_optuna = tmp_path / "policy_optuna.json"
    assert _cli("best", "--study", "freeze-study", "--tracking-uri", uri, "--storage", storage,
                "--out", str(via_optuna), cwd=tmp_path).returncode == 0
    assert json.loads(via_optuna.read_text())["meta"]["run_id"] == best["run_id"]

    done = _cli("compare", "--study", "freeze-study", "--tracking-uri", uri, "--csv", str(tmp_path / "t.csv"),
                cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "t.csv").read_text().count("\n") == 6

    done = _cli("train", "--policy", str(out), "--epochs", "1", "--n-train", "300", "--n-val", "100",
                "--tracking-uri", uri, "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test_accuracy" in done.stdout
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("autoaug-train")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["autoaug.source_run"] == best["run_id"]
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0


def test_user_mistakes_in_best_and_train_are_one_line(tmp_path):
    done = _cli("best", "--study", "nope", "--tracking-uri", f"sqlite:///{tmp_path}/missing.db", cwd=tmp_path)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and last.startswith("autoaug: error:") and "Traceback" not in done.stderr
    assert "does not exist" in last and not (tmp_path / "missing.db").exists()
    done = _cli("train", "--policy", str(tmp_path / "absent.json"), cwd=tmp_path)
    assert done.returncode == 2 and "cannot read policy file" in done.stderr
