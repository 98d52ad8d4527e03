"""End-to-end searches on the embedded digits, with real MLflow stores."""
import subprocess
import sys

import optuna
import pytest
from mlflow.tracking import MlflowClient

from autoaug.config import load_experiment
from autoaug.search import run_search
from helpers import study_runs, ROOT, MlflowServer, tiny_overrides

pytestmark = pytest.mark.slow


def _assert_study_logged(client, study, n_trials):
    parents, children = study_runs(client, study)
    assert len(parents) == 1
    assert len(children) == n_trials
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    for child in children:
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"policy.json", "samples.png"} <= artifacts
        assert "policy_hash" in child.data.params and "stages" in child.data.params
        if child.data.tags["autoaug.state"] == "complete":
            history = client.get_metric_history(child.info.run_id, "val_accuracy")
            assert [m.step for m in history] == [1, 2]
            assert "augment_images_per_sec" in child.data.metrics
    parent_artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"best_policy.json", "experiment.json", "search_space.json"} <= parent_artifacts
    assert "autoaug.best_run_id" in client.get_run(parents[0].info.run_id).data.tags
    return parents[0], children


def test_cli_search_with_default_sqlite_store(tmp_path):
    """`autoaug search` as a user runs it: default tracking URI sqlite:///mlflow.db in the cwd."""
    overrides = [o for o in tiny_overrides(tmp_path, name="cli-study") if not o.startswith("tracking_uri")]
    args = [sys.executable, "-m", "autoaug.cli", "search", str(ROOT / "experiments" / "quickstart.yaml"),
            "--quiet", "--storage", f"sqlite:///{tmp_path}/optuna.db"]
    for o in overrides:
        args += ["--set", o]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Top searched trials" in done.stdout and "Baselines" in done.stdout
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent, children = _assert_study_logged(client, "cli-study", 7)
    study = optuna.load_study(study_name="cli-study", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert len(study.trials) == 7
    baselines = [t for t in study.trials if "baseline" in t.user_attrs]
    assert [t.user_attrs["baseline"] for t in baselines] == ["none", "standard"]
    assert [t.number for t in baselines] == [0, 1]
    searched = {t.user_attrs["policy_hash"] for t in study.trials if "baseline" not in t.user_attrs}
    assert len(searched) >= 4  # trials produce different policies


def test_search_against_a_real_mlflow_server(tmp_path):
    server = MlflowServer(tmp_path)
    try:
        cfg = load_experiment(None, tiny_overrides(tmp_path, name="server-study", n_trials=6,
                                                   tracking_uri=server.url))
        ctx, frame = run_search(cfg, progress=False)
        assert len(frame) == 6
        _assert_study_logged(MlflowClient(server.url), "server-study", 6)
    finally:
        server.stop()


def test_pruned_trials_are_pruned_in_optuna_and_mlflow(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_experiment(None, tiny_overrides(tmp_path, name="prune-study", n_trials=4,
                                               storage=f"journal:{tmp_path}/j.log",
                                               **{"driver.pruner": "threshold",
                                                  "driver.prune_below": 1.01}))
    ctx, frame = run_search(cfg, progress=False)
    study = optuna.load_study(study_name="prune-study", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(f"{tmp_path}/j.log")))
    states = {t.number: t.state for t in study.trials}
    assert states == {0: optuna.trial.TrialState.COMPLETE, 1: optuna.trial.TrialState.COMPLETE,
                      2: optuna.trial.TrialState.PRUNED, 3: optuna.trial.TrialState.PRUNED}
    assert list(frame["state"]) == ["complete", "complete", "pruned", "pruned"]  # baselines are never pruned
    assert set(frame["status"]) == {"FINISHED"}


def test_a_resumed_study_does_not_repeat_the_draws_of_its_first_run(tmp_path):
    # Optuna seeds a sampler once per process; a worker joining an existing study (a resume, or
    # a second worker) must not replay the creator's random start-up draws.
    from autoaug.search import load_space
    from autoaug.search.optuna_driver import OptunaSuggest, open_study
    cfg = load_experiment(None, tiny_overrides(tmp_path, storage=f"journal:{tmp_path}/s.journal",
                                               **{"driver.n_startup_trials": 10}))
    space = load_space(cfg.search_space)

    def draw(study, n):
        out = []
        for _ in range(n):
            trial = study.ask()
            space.sample(OptunaSuggest(trial))
            study.tell(trial, 0.5)
            out.append(trial.params)
        return out

    study, created = open_study(cfg)
    first = draw(study, 3)
    resumed, created_again = open_study(cfg)
    assert created and not created_again
    again = draw(resumed, 3)
    assert len(resumed.trials) == 6
    assert not any(p in first for p in again)
    fresh, _ = open_study(cfg.with_overrides([f"storage=journal:{tmp_path}/other.journal"]))
    assert draw(fresh, 3) == first  # a new study with the same seed draws the same trials
