"""Malformed input of every kind: one line `autoaug: error: ...` naming it, exit code 2, no
traceback, no password, and no Optuna storage or MLflow store created.

Runs `autoaug.cli.main` in this process (TensorFlow is imported once); tests/test_cli_errors.py
runs the CLI as a subprocess for the experiment-file cases.
"""
import os

import numpy as np
import pytest
from PIL import Image

from autoaug.cli import main
from helpers import QUICKSTART, ROOT

SECRET = "pw-s3cr3t-7q"
SPACE = str(ROOT / "search_spaces" / "autoaugment_small.yaml")


def _png(path, size=(8, 8), mode="L"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new(mode, size, 100).save(path)


def _folder(root, train, test=(("a", "1.png", (8, 8), "L"),)):
    for cls, name, size, mode in train:
        _png(f"{root}/train/{cls}/{name}", size, mode)
    for cls, name, size, mode in test:
        _png(f"{root}/test/{cls}/{name}", size, mode)
    return root


def _npz(path, **arrays):
    base = dict(x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.array([0, 1, 0, 1]),
                x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.array([0, 1]))
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def _text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def _corrupt(root):
    _folder(root, [("a", "1.png", (8, 8), "L")])
    _text(f"{root}/train/a/2.png", "not a png at all")
    return root


def _empty_class(root):
    os.makedirs(f"{root}/train/a")
    return _folder(root, [])


def search(*flags):
    return ["search", QUICKSTART, "--quiet", *flags]


def data(source):
    return search("--set", f"data.source={source}")


def policy(path):
    return ["preview", "--policy", path, "--out", "preview.png"]


# (id, build(d) -> argv, message in the error line); d is a folder outside the working directory
CASES = [
    # policy JSON
    ("policy-not-json", lambda d: policy(_text(f"{d}/p.json", '{"sub_policies": [[')),
     "policy is not valid JSON"),
    ("policy-unknown-op", lambda d: policy(_text(
        f"{d}/p.json", '{"schema_version": 1, "sub_policies": [[{"op": "Twirl", "p": 0.5, "level": 3}]]}')), "unknown op 'Twirl'"),
    ("policy-probability", lambda d: policy(_text(
        f"{d}/p.json", '{"schema_version": 1, "sub_policies": [[{"op": "Rotate", "p": 1.5, "level": 3}]]}')), "outside [0, 1]"),
    ("policy-not-object", lambda d: policy(_text(f"{d}/p.json", "[1, 2]")), "must be a JSON object"),
    ("policy-missing", lambda d: policy(f"{d}/nope.json"), "cannot read policy file"),
    # search-space YAML
    ("space-not-yaml", lambda d: search("--set", f"search_space={_text(f'{d}/s.yaml', 'ops: [Rotate')}"),
     "is not valid YAML"),
    ("space-kind", lambda d: search("--set", f"search_space={_text(f'{d}/s.yaml', 'kind: gridaugment')}"),
     "'kind' must be one of"),
    ("space-level", lambda d: search("--set", f"search_space={_text(f'{d}/s.yaml', 'levels: [0, 42]')}"),
     "outside 0..10"),
    ("space-unknown-key", lambda d: search("--set", f"search_space={_text(f'{d}/s.yaml', 'magnitude: 3')}"),
     "unknown search-space keys: magnitude"),
    ("space-missing", lambda d: search("--set", f"search_space={d}/nope.yaml"), "search-space file not found"),
    # experiment YAML
    ("experiment-number", lambda d: search("--set", "training.learning_rate=fast"),
     "'training.learning_rate' must be a non-negative number"),
    ("experiment-heartbeat", lambda d: search("--set", "driver.heartbeat_s=0"),
     "'driver.heartbeat_s' must be a positive integer"),
    ("experiment-missing", lambda d: ["search", f"{d}/nope.yaml"], "experiment file not found"),
    ("experiment-evaluation", lambda d: search("--set", "evaluation=density"),
     "'evaluation' must be one of proxy-training, density-matching"),
    ("density-one-fold", lambda d: search("--set", "evaluation=density-matching", "--set", "density.folds=1"),
     "'density.folds' must be at least 2"),
    ("density-train-policy", lambda d: search("--set", "evaluation=density-matching",
                                              "--set", "density.train_policy=sharpen"), "unknown policy 'sharpen'"),
    ("space-per-class-kind", lambda d: search("--set", f"search_space={_text(f'{d}/s.yaml', '{kind: randaugment, per_class: true}')}"),
     "'per_class: true' needs kind: autoaugment"),
    ("best-top-zero", lambda d: ["best", "--study", "s", "--top", "0"], "--top must be at least 1"),
    ("experiment-python-tag", lambda d: ["search", _text(  # read as data: never constructs objects
        f"{d}/e.yaml", f"name: !!python/object/apply:os.system ['touch {d}/pwned']\n")], "is not valid YAML"),
    # datasets
    ("data-missing-folder", lambda d: data(f"{d}/no/such/folder"), "does not exist"),
    ("data-empty-folder", lambda d: data(os.path.dirname(_text(f"{d}/empty/.keep", ""))), "has no train/ folder"),
    ("data-empty-class", lambda d: data(_empty_class(f"{d}/imgs")), "has no .png/.jpg/.jpeg images"),
    ("data-mixed-sizes", lambda d: data(_folder(f"{d}/imgs", [("a", "1.png", (8, 8), "L"),
                                                              ("a", "2.png", (9, 9), "L")])),
     "all images must have one size"),
    ("data-grey-and-rgb", lambda d: data(_folder(f"{d}/imgs", [("a", "1.png", (8, 8), "L"),
                                                               ("a", "2.png", (8, 8), "RGB")])),
     "convert all images to one colour mode"),
    ("data-corrupt-image", lambda d: data(_corrupt(f"{d}/imgs")), "cannot decode image"),
    ("data-label-out-of-range", lambda d: data(_npz(f"{d}/a.npz", y_test=np.array([0, 3]))),
     "y_test has label 3 but y_train only has labels 0..1"),
    ("data-npz-dtype", lambda d: data(_npz(f"{d}/a.npz", x_train=np.full((4, 8, 8), "x"))),
     "not numeric images"),
    ("data-npz-missing-key", lambda d: data(_npz(f"{d}/a.npz", y_test=None)), "lacks y_test"),
    ("data-npz-pickled", lambda d: data(_npz(f"{d}/a.npz", y_test=np.array([0, "1"], dtype=object))),
     "holds object (pickled) arrays"),
    ("data-npz-not-zip", lambda d: data(_text(f"{d}/a.npz", "hello")), "not a readable .npz file"),
    # storages and tracking stores
    ("storage-unreachable", lambda d: search("--storage", f"postgresql://u:{SECRET}@127.0.0.1:1/x"),
     "cannot open Optuna storage postgresql://u:***@127.0.0.1:1/x"),
    ("storage-journal-folder", lambda d: search("--storage", f"journal:{d}/no/such/s.journal"),
     "cannot open Optuna storage journal:"),
    ("storage-bad-url", lambda d: search("--storage", "nosuchdb://h/x"), "cannot open Optuna storage nosuchdb"),
    ("workers-sqlite", lambda d: search("--workers", "2", "--storage", f"sqlite:///{d}/o.db"),
     "SQLite storage (not for parallel workers)"),
    ("workers-memory", lambda d: search("--workers", "3"), "cannot share an in-memory study"),
    ("workers-kerastuner", lambda d: search("--workers", "2", "--driver", "kerastuner",
                                            "--storage", f"journal:{d}/s.journal"), "needs the optuna driver"),
    ("worker-memory", lambda d: ["worker", QUICKSTART], "autoaug worker cannot share an in-memory study"),
    ("worker-kerastuner", lambda d: ["worker", QUICKSTART, "--driver", "kerastuner", "--storage",
                                     f"journal:{d}/s.journal"], "autoaug worker needs the optuna driver"),
    ("tracking-folder", lambda d: search("--tracking-uri", f"sqlite:///{d}/no/such/mlflow.db"),
     "folder"),
]


@pytest.mark.parametrize("build,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capfd, build, message):
    d, work = tmp_path / "input", tmp_path / "work"
    d.mkdir(), work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("AUTOAUG_CACHE", str(tmp_path / "cache"))
    argv = build(str(d))
    before = sorted(p.relative_to(d) for p in d.rglob("*"))
    assert main(argv) == 2
    out, err = capfd.readouterr()
    last = err.strip().splitlines()[-1]
    assert last.startswith("autoaug: error: ") and message in last, last
    assert "Traceback" not in err and SECRET not in out + err
    assert list(work.iterdir()) == []  # no mlflow.db, optuna.db, journal or preview
    assert sorted(p.relative_to(d) for p in d.rglob("*")) == before


def test_ui_binds_loopback_unless_told():
    from autoaug.cli import build_parser
    assert build_parser().parse_args(["ui"]).host == "127.0.0.1"


@pytest.mark.parametrize("url,shown", [
    ("postgresql://u:pw@db:5432/x", "postgresql://u:***@db:5432/x"),
    ("postgresql://:pw@db/x", "postgresql://:***@db/x"),
    ("postgresql://u@db/x?password=pw&sslmode=require", "postgresql://u@db/x?password=***&sslmode=require"),
    ("https://u:pw@mlflow.example/", "https://u:***@mlflow.example/"),
    ("journal:runs/a.journal", "journal:runs/a.journal"),
])
def test_redact_hides_passwords(url, shown):
    from autoaug.tracking import redact
    assert redact(url) == shown
