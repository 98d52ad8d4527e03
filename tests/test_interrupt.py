"""Ctrl-C and SIGTERM during a search, sent with os.kill to a real `autoaug search` process:
one line, exit 130/143, the running trial FAILED with reason "interrupted" and queued again,
no MLflow run left RUNNING; a resume then reaches exactly n_trials. A second Ctrl-C stops at once.
Also: an internal failure is one line and exit 1, and a study whose every trial failed exits 1."""
import os
import signal
import subprocess
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from autoaug.search.optuna_driver import make_storage
from helpers import cli, tiny_overrides

pytestmark = pytest.mark.slow


def _start(tmp_path, overrides):
    env = {**os.environ, "AUTOAUG_CACHE": str(tmp_path / "cache")}
    return subprocess.Popen(cli("search", overrides), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_trial(journal, proc, timeout=240):
    """Until the search has a trial under way (its worker recorded in the journal)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if journal.exists() and '"mlflow_run_id"' in journal.read_text():
            time.sleep(2)  # into the training
            return
        time.sleep(0.5)
    raise TimeoutError("no trial started")


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_fails_the_trial_requeues_it_and_a_resume_completes(tmp_path, sig, code):
    journal = tmp_path / "s.journal"
    base = tiny_overrides(tmp_path, name="stop", n_trials=2, baselines="[none]", storage=f"journal:{journal}",
                          **{"driver.pruner": "none"})
    proc = _start(tmp_path, base + ["training.epochs=200"])  # long enough to be interrupted
    _wait_for_trial(journal, proc)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith(f"autoaug: interrupted by {signal.Signals(sig).name}")

    study = optuna.load_study(study_name="stop", storage=make_storage(f"journal:{journal}"))
    first = study.trials[0]
    trials = [(t.state, t.user_attrs) for t in study.trials]
    assert first.state == TrialState.FAIL and first.user_attrs["fail_reason"] == "interrupted", (trials, err[-3000:])
    queued = [t for t in study.trials if t.state == TrialState.WAITING]
    assert [t.user_attrs.get("baseline") for t in queued] == ["none"], trials  # the baseline runs again
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("stop").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"], err[-3000:]
    failed = [r for r in runs if r.data.tags.get("autoaug.role") == "trial"]
    assert [r.data.tags.get("autoaug.fail_reason") for r in failed] == ["interrupted"], err[-3000:]

    resume = subprocess.run(cli("search", base + ["training.epochs=1"]), cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "AUTOAUG_CACHE": str(tmp_path / "cache")})
    assert resume.returncode == 0, resume.stderr[-3000:]
    study = optuna.load_study(study_name="stop", storage=make_storage(f"journal:{journal}"))
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2 and [t.user_attrs.get("baseline") for t in complete][0] == "none"
    runs = client.search_runs([client.get_experiment_by_name("stop").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    journal = tmp_path / "s.journal"
    proc = _start(tmp_path, tiny_overrides(tmp_path, name="twice", n_trials=2, baselines="[none]",
                                           storage=f"journal:{journal}", **{"training.epochs": 200}))
    _wait_for_trial(journal, proc)
    os.kill(proc.pid, signal.SIGINT)
    os.kill(proc.pid, signal.SIGINT)
    start = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.monotonic() - start < 30, err[-3000:]
    assert "Traceback" not in err


def test_a_signal_that_c_code_turns_into_another_error_still_stops_the_search(tmp_path, monkeypatch, capfd):
    # The signal's exception raised inside C code that calls back into Python (TensorFlow's tape
    # imports modules from C) comes out as a SystemError; it must stop the search, not fail one
    # trial and go on to the next.
    import autoaug.train
    from autoaug import cli as cli_module

    calls = []

    def interrupted_in_c(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise AssertionError("the search went on to another trial after the signal")
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt as e:
            raise SystemError("<built-in function __import__> returned a result with an exception set") from e
        raise AssertionError("no signal")

    monkeypatch.setattr(autoaug.train, "train_model", interrupted_in_c)
    monkeypatch.setenv("AUTOAUG_CACHE", str(tmp_path / "cache"))
    journal = tmp_path / "c.journal"
    argv = cli("search", tiny_overrides(tmp_path, name="inc", n_trials=2, baselines="[none]",
                                        storage=f"journal:{journal}"))[3:]
    assert cli_module.main(argv) == 130
    err = capfd.readouterr().err
    assert err.strip().splitlines()[-1].startswith("autoaug: interrupted by SIGINT"), err[-3000:]
    study = optuna.load_study(study_name="inc", storage=make_storage(f"journal:{journal}"))
    assert [(t.state, t.user_attrs.get("fail_reason")) for t in study.trials] == [
        (TrialState.FAIL, "interrupted"), (TrialState.WAITING, None)]  # stopped, and queued again


def test_an_internal_failure_is_one_line_and_exit_1(monkeypatch, capfd):
    from autoaug import cli as cli_module

    def broken(args):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(cli_module, "cmd_compare", broken)
    parser = cli_module.build_parser
    monkeypatch.setattr(cli_module, "build_parser", lambda: _with(parser(), "compare", broken))
    assert cli_module.main(["compare", "--study", "s"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert err == ["autoaug: internal error: RuntimeError: disk on fire (rerun with --verbose for the traceback)"]
    assert cli_module.main(["compare", "--study", "s", "--verbose"]) == 1
    assert "Traceback" in capfd.readouterr().err


def _with(parser, command, fn):
    parser._subparsers._group_actions[0].choices[command].set_defaults(fn=fn)
    return parser


def test_a_search_whose_every_trial_failed_exits_1_with_the_reasons(tmp_path):
    # Out of memory in every trial: the model's spec is valid (preflight passes), its weights do not fit.
    done = subprocess.run(cli("search", tiny_overrides(tmp_path, name="allfail", n_trials=1, baselines="[none]",
                                                       **{"model.name": "wrn-10-10000"})),
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "AUTOAUG_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("autoaug: error: every trial of study allfail failed (1 trials): 1x ResourceExhaustedError")
    assert "Traceback" not in done.stderr
