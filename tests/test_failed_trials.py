"""A trial that fails (NaN loss, an error inside augmentation, out of memory) ends FAILED with
its reason in Optuna and in MLflow, and the study goes on to its next trial."""
import optuna
import pytest
import tensorflow as tf
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from autoaug.config import load_experiment
from autoaug.search import run_search
from autoaug.search.optuna_driver import make_storage
from helpers import tiny_overrides

pytestmark = pytest.mark.slow


def _search(tmp_path, name, n_trials, **extra):
    url = f"journal:{tmp_path}/{name}.journal"
    cfg = load_experiment(None, tiny_overrides(tmp_path, name=name, n_trials=n_trials, storage=url,
                                               baselines="[none]", **extra))
    run_search(cfg, progress=False)  # returns normally: failures do not stop the study
    study = optuna.load_study(study_name=name, storage=make_storage(url))
    return study.trials, MlflowClient(cfg.tracking_uri)


def _assert_failed(trial, client, prefix, *words):
    assert trial.state == TrialState.FAIL
    reason = trial.user_attrs["fail_reason"]
    assert reason.startswith(prefix) and all(w in reason for w in words), reason
    assert "\n" not in reason
    run = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["autoaug.state"] == "failed"
    assert run.data.tags["autoaug.fail_reason"] == reason


def test_a_diverging_loss_fails_the_trial(tmp_path):
    trials, client = _search(tmp_path, "nan", 2, **{"training.learning_rate": "1e30"})
    assert len(trials) == 2  # the study went on after the first failure
    for t in trials:
        _assert_failed(t, client, "TrainingDiverged: loss became")


def test_an_error_inside_augmentation_fails_the_trial(tmp_path, monkeypatch):
    # The ops accept every uint8 batch the loaders can produce, so no input makes them fail:
    # inject a runtime error into the tf.data augmentation graph of searched policies
    # (the `none` baseline has no sub-policies and trains normally).
    import autoaug.augment as augment
    real = augment.apply_policy

    def broken(policy, images, labels=None, **kw):
        out = real(policy, images, labels, **kw)
        if not policy.sub_policies or tf.executing_eagerly():
            return out
        return tf.cast(tf.debugging.check_numerics(tf.cast(out, tf.float32) / 0.0, "broken op"), tf.uint8)

    monkeypatch.setattr(augment, "apply_policy", broken)
    trials, client = _search(tmp_path, "augfail", 3)
    assert trials[0].state == TrialState.COMPLETE
    for t in trials[1:]:
        _assert_failed(t, client, "InvalidArgumentError", "broken op")


def test_out_of_memory_fails_the_trial(tmp_path):
    # A Wide-ResNet of width 10,000: its 3x3x160000x160000 kernel cannot be allocated.
    trials, client = _search(tmp_path, "oom", 1, **{"model.name": "wrn-10-10000"})
    _assert_failed(trials[0], client, "ResourceExhaustedError", "OOM")
