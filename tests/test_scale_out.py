"""Parallel workers on PostgreSQL + one `mlflow server`; a worker killed with SIGKILL and restarted.

PostgreSQL comes from AUTOAUG_TEST_POSTGRES (`.ci/run` starts one); without it these tests fail.
"""
import json
import subprocess
import time
import uuid
from urllib.parse import urlsplit

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from autoaug.search.optuna_driver import make_storage
from helpers import study_runs, MlflowServer, cli, postgres_url, tiny_overrides

pytestmark = pytest.mark.slow
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def test_three_workers_share_postgres_and_one_mlflow_server(tmp_path):
    """`autoaug search --workers 3`: exactly N trials, no duplicates, N child runs under one parent;
    the database password is neither printed nor logged to MLflow."""
    pg = postgres_url()
    password = urlsplit(pg).password
    assert password, "AUTOAUG_TEST_POSTGRES must carry a password (the test checks it never leaks)"
    name, n = f"pg-{uuid.uuid4().hex[:8]}", 5
    server = MlflowServer(tmp_path)
    try:
        overrides = tiny_overrides(tmp_path, name=name, n_trials=n, baselines="[none]",
                                   tracking_uri=server.url, storage=pg, **{"training.epochs": 1})
        done = subprocess.run(cli("search", overrides, "--workers", "3"), cwd=tmp_path,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        assert password not in done.stdout + done.stderr
        assert "Top searched trials" in done.stdout

        study = optuna.load_study(study_name=name, storage=make_storage(pg))
        trials = study.get_trials(deepcopy=False)
        numbers = [t.number for t in trials]
        assert len(numbers) == len(set(numbers))
        finished = [t for t in trials if t.state in DONE]
        assert len(finished) == n
        assert not [t for t in trials if t.state == TrialState.RUNNING]
        assert len({t.user_attrs["worker"] for t in finished}) >= 2  # the work was shared
        assert [t.user_attrs.get("baseline") for t in trials].count("none") == 1

        client = MlflowClient(server.url)
        parents, children = study_runs(client, name)
        assert len(parents) == 1
        assert study.user_attrs["mlflow_parent_run_id"] == parents[0].info.run_id
        ran = {t.number for t in trials if "mlflow_run_id" in t.user_attrs}
        assert len(children) == len(ran) >= n
        assert sorted(int(c.data.tags["autoaug.trial"]) for c in children) == sorted(ran)
        assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
        assert client.get_run(parents[0].info.run_id).info.status == "FINISHED"

        # the password is in no param, tag or logged config
        for run in parents + children:
            assert password not in json.dumps([run.data.params, run.data.tags])
        logged = client.download_artifacts(parents[0].info.run_id, "experiment.json", str(tmp_path))
        text = open(logged).read()
        assert password not in text and "***" in text
    finally:
        server.stop()


def _wait_for_running_trial(storage, name, proc, min_number, timeout=600):
    """The first RUNNING trial numbered >= min_number once its MLflow run exists."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the worker exited before it could be killed"
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            study = None
        for t in study.get_trials(states=(TrialState.RUNNING,)) if study else []:
            if t.number >= min_number and "mlflow_run_id" in t.user_attrs:
                return study, t
        time.sleep(0.3)
    raise TimeoutError("no trial started")


@pytest.mark.parametrize("backend", ["journal", "postgres"])
def test_a_killed_worker_resumes_and_its_trial_is_retried(tmp_path, backend):
    """SIGKILL a worker mid-trial, start it again: the study reaches its target, nothing finished
    is lost, the killed trial ends FAILED (journal: the restarted worker finds its process gone;
    PostgreSQL: its heartbeat stopped), its parameters run again, its MLflow run is closed."""
    name, n = f"kill-{backend}-{uuid.uuid4().hex[:8]}", 4
    url = f"journal:{tmp_path}/study.journal" if backend == "journal" else postgres_url()
    overrides = tiny_overrides(tmp_path, name=name, n_trials=n, baselines="[none]", storage=url,
                               **{"driver.heartbeat_s": 1, "training.epochs": 1})
    storage = make_storage(url)
    log = open(tmp_path / "worker1.log", "w")
    proc = subprocess.Popen(cli("worker", overrides), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        study, victim = _wait_for_running_trial(storage, name, proc, min_number=1)
    finally:
        proc.kill()  # SIGKILL: no cleanup runs in the worker
        proc.wait()
        log.close()
    killed_at = time.time()
    before = {t.number for t in study.get_trials(states=DONE)}
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = victim.user_attrs["mlflow_run_id"]
    assert client.get_run(run_id).info.status == "RUNNING"

    time.sleep(max(0.0, 4 - (time.time() - killed_at)))  # past the 3 s heartbeat grace period
    done = subprocess.run(cli("worker", overrides), cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    study = optuna.load_study(study_name=name, storage=storage)
    trials = {t.number: t for t in study.get_trials()}
    assert trials[victim.number].state == TrialState.FAIL
    if backend == "journal":
        assert trials[victim.number].user_attrs["fail_reason"] == "worker killed"
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params
    assert retries[0].user_attrs.get("baseline") == victim.user_attrs.get("baseline")
    assert retries[0].state in DONE
    assert before <= {k for k, t in trials.items() if t.state in DONE}  # nothing finished was lost
    assert sum(t.state in DONE for t in trials.values()) == n
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]

    killed_run = client.get_run(run_id)
    assert killed_run.info.status == "FAILED"
    assert killed_run.data.tags["autoaug.fail_reason"] == "worker killed"
    parents, children = study_runs(client, name)
    assert len(parents) == 1
    assert not [c for c in children if c.info.status == "RUNNING"]
    assert len(children) == n + 1  # the killed trial's run, and one run per finished trial
