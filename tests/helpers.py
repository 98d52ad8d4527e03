"""Shared test helpers: tiny experiment configs and a real `mlflow server` on loopback."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tiny_overrides(tmp_path, name="tiny", n_trials=7, **extra):
    """A search that takes seconds per trial on the embedded digits."""
    items = {
        "name": name, "n_trials": n_trials, "data.n_train": 200, "data.n_val": 100, "model.name": "cnn-small",
        "training.epochs": 2, "training.batch_size": 50, "preview_samples": 4,
        "baselines": "[none, standard]", "driver.n_startup_trials": 2,
        "selection.top_k": 0,  # a test of selection asks for it
        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "search_space": str(ROOT / "search_spaces" / "autoaugment_small.yaml"),
    }
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 90.0, proc=None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


class MlflowServer:
    """`mlflow server` with a SQLite backend and a local artifact store, on a free port."""

    def __init__(self, workdir: Path, backend: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        backend = backend or f"sqlite:///{workdir}/server.db"
        mlflow = str(Path(sys.executable).with_name("mlflow"))
        self.log = open(workdir / "mlflow-server.log", "w")
        self.proc = subprocess.Popen(
            [mlflow, "server", "--backend-store-uri", backend,
             "--artifacts-destination", str(workdir / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        wait_http(self.url + "/health", proc=self.proc)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


QUICKSTART = str(ROOT / "experiments" / "quickstart.yaml")


def cli(command: str, overrides: list[str], *flags: str) -> list[str]:
    """`python -m autoaug.cli COMMAND quickstart.yaml --quiet FLAGS --set ...` as an argv list."""
    args = [sys.executable, "-m", "autoaug.cli", command, QUICKSTART, "--quiet", *flags]
    for item in overrides:
        args += ["--set", item]
    return args


def postgres_url() -> str:
    """The PostgreSQL database the scale-out tests share (`.ci/run` starts one).

    Missing is a failure, not a skip: these tests are what proves multi-host searches work.
    """
    url = os.environ.get("AUTOAUG_TEST_POSTGRES")
    if not url:
        import pytest
        pytest.fail("AUTOAUG_TEST_POSTGRES is not set: start PostgreSQL with "
                    "`sudo bash scripts/start_postgres.sh` and export the URL it prints")
    return url


def study_runs(client, study):
    """(parent runs, child runs) of a study's MLflow experiment."""
    exp = client.get_experiment_by_name(study)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("autoaug.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    return parents, children


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Each test gets its own data cache folder and an empty per-process cache."""
    from autoaug import data
    root = tmp_path / "cache"
    monkeypatch.setenv("AUTOAUG_CACHE", str(root))
    data.clear_cache()
    yield root
    data.clear_cache()


def one_line_error(excinfo, *fragments):
    """The error's message is one line holding every fragment; returns it."""
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg
