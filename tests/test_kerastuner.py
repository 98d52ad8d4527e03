"""The KerasTuner driver: a tiny real search on the embedded digits, and its failure handling."""
import json
import types
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from autoaug.config import load_experiment
from autoaug.search import kerastuner_driver, load_space, run_search
from autoaug.search.study import TrialOutcome

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_kerastuner_search_logs_one_child_per_trial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = [
        "name=kt-test", "driver.name=kerastuner", "driver.tuner=random", "n_trials=6",
        "data.n_train=200", "data.n_val=100", "training.epochs=1", "training.batch_size=50",
        "preview_samples=4", "baselines=[none, standard]", f"tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"search_space={ROOT / 'search_spaces' / 'autoaugment_small.yaml'}"]
    ctx, frame = run_search(load_experiment(None, overrides), progress=False)
    assert len(frame) == 6

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("kt-test").experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("autoaug.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 6
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted(int(c.data.tags["autoaug.trial"]) for c in children) == list(range(6))

    by_number = {int(c.data.tags["autoaug.trial"]): c for c in children}
    assert [by_number[i].data.tags.get("autoaug.baseline") for i in range(2)] == ["none", "standard"]
    searched = [by_number[i] for i in range(2, 6)]
    assert all("autoaug.baseline" not in c.data.tags for c in searched)
    assert len({c.data.params["policy_hash"] for c in searched}) >= 3  # different policies
    assert all(any(k.startswith("raw.sp0.step0.") for k in c.data.params) for c in searched)

    for child in children:
        assert child.data.tags["autoaug.state"] == "complete", child.data.tags.get("autoaug.fail_reason")
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"policy.json", "samples.png"} <= artifacts
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")] == [1]
    assert "autoaug.best_run_id" in client.get_run(parents[0].info.run_id).data.tags
    assert (tmp_path / "runs" / "kerastuner" / "kt-test" / "oracle.json").exists()

    # Running the same study again resumes: nothing left to run, no new child runs.
    _, frame = run_search(load_experiment(None, overrides), progress=False)
    assert len(frame) == 6


class _FakeContext:
    """Records what the driver asks for instead of training; trial 3 raises."""

    def __init__(self, tuner, n_trials=6, epochs=9):
        self.exp = load_experiment(None, [f"n_trials={n_trials}", "baselines=[none, standard]",
                                          f"name=fake-{tuner}", f"driver.tuner={tuner}", f"training.epochs={epochs}"])
        self.space = load_space(str(ROOT / "search_spaces" / "autoaugment_small.yaml"))
        self.tracker = types.SimpleNamespace(trials_frame=list)
        self.calls = []
        self.num_classes = 10

    def track(self):
        pass

    def prepare_evaluation(self):
        pass

    def baseline_policy(self, name):
        return name

    def run_trial(self, number, policy, params, *, baseline=None, epochs=None, **_):
        self.calls.append((number, baseline, epochs))
        if number == 3:
            raise ValueError("boom")
        return TrialOutcome(number, "complete", 0.1 * number, policy, f"run-{number}", 0.0, baseline)


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband"])
def test_failed_trials_do_not_stop_the_search(tmp_path, monkeypatch, tuner):
    monkeypatch.chdir(tmp_path)
    ctx = _FakeContext(tuner)
    kerastuner_driver.run(ctx, progress=False)
    assert [c[0] for c in ctx.calls] == list(range(6))
    assert [c[1] for c in ctx.calls] == ["none", "standard", None, None, None, None]
    # Hyperband's most aggressive bracket starts at ceil(9 / 3**2) = 1 epoch.
    assert {c[2] for c in ctx.calls[2:]} == ({1} if tuner == "hyperband" else {None})
    trial = json.loads((tmp_path / "runs" / "kerastuner" / f"fake-{tuner}" / "trial_1" / "trial.json").read_text())
    assert trial["status"] == "FAILED" and "ValueError: boom" in trial["message"]
