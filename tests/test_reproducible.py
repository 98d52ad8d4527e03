"""The same experiment and seed give the same trial parameters (one worker) and the same pixels."""
import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient

from autoaug.config import load_experiment
from autoaug.policy import Policy
from autoaug.search import run_search
from autoaug.search.optuna_driver import make_storage
from helpers import tiny_overrides

pytestmark = pytest.mark.slow


def _search(folder):
    folder.mkdir()
    url = f"journal:{folder}/study.journal"
    # 1 baseline, 1 random start-up trial, then 1 trial from TPE (which depends on the accuracies)
    cfg = load_experiment(None, tiny_overrides(folder, name="repro", n_trials=3, baselines="[none]",
                                               storage=url, seed=11, **{"training.epochs": 1}))
    run_search(cfg, progress=False)
    study = optuna.load_study(study_name="repro", storage=make_storage(url))
    return study.trials, MlflowClient(cfg.tracking_uri)


def test_same_seed_same_trials_and_pixels(tmp_path, digits):
    (a, client_a), (b, client_b) = _search(tmp_path / "a"), _search(tmp_path / "b")
    assert [t.params for t in a] == [t.params for t in b]
    assert all(t.params for t in a[1:])  # searched trials: real parameters
    assert [t.user_attrs.get("same_as") for t in a] == [t.user_attrs.get("same_as") for t in b]
    for ta, tb in zip(a, b):  # the logged grids of augmented samples: the same pixels
        if "same_as" in ta.user_attrs:  # a repeated proposal reused its twin's run: nothing trained
            continue
        png_a = client_a.download_artifacts(ta.user_attrs["mlflow_run_id"], "samples.png", str(tmp_path / "a"))
        png_b = client_b.download_artifacts(tb.user_attrs["mlflow_run_id"], "samples.png", str(tmp_path / "b"))
        assert open(png_a, "rb").read() == open(png_b, "rb").read()
    policy_a, policy_b = (Policy.from_dict(t[-1].user_attrs["policy"]) for t in (a, b))
    x = digits[0][:64]
    out = policy_a.apply(x, seed=5, index=2).numpy()
    np.testing.assert_array_equal(out, policy_b.apply(x, seed=5, index=2).numpy())
    assert not np.array_equal(out, policy_a.apply(x, seed=6, index=2).numpy())
