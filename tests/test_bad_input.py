"""Malformed input of every kind: one line `autoaug: error: ...` naming it, exit code 2, no
traceback, no password, and no Optuna storage or MLflow store created.

Runs `autoaug.cli.main` in this process (TensorFlow is imported once); tests/test_cli_errors.py
runs the CLI as a subprocess for the experiment-file cases.
"""
import os
import time

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
    ("data-empty-class", lambda d: data(_empty_class(f"{d}/imgs")), "has no images"),
    ("data-mixed-sizes", lambda d: data(_folder(f"{d}/imgs", [("a", "1.png", (8, 8), "L"),
                                                              ("a", "2.png", (9, 9), "L")])),
     "set data.image_size (--image-size N)"),
    ("data-image-size-zero", lambda d: [*data(_folder(f"{d}/imgs", [("a", "1.png", (8, 8), "L")])),
                                        "--image-size", "0"], "'data.image_size' must be a positive integer"),
    ("data-path-is-a-file", lambda d: data(_text(f"{d}/photos.jpg", "a photo, not a folder")), "cannot tell"),
    ("data-corrupt-image-strict", lambda d: [*data(_corrupt(f"{d}/imgs")), "--set", "data.strict=true"],
     "cannot decode image"),
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


# --------------------------------------------------------------------------- stores as inputs


def _mlflow_db(d, study="s"):
    """A real MLflow store with a study's parent run (what `best` and `compare` read)."""
    from mlflow.tracking import MlflowClient
    path = f"{d}/mlflow.db"
    client = MlflowClient(f"sqlite:///{path}")
    exp = client.create_experiment(study)
    client.create_run(exp, tags={"autoaug.study": study, "autoaug.role": "parent"})
    return path


def _optuna_db(d, study="s"):
    import optuna
    path = f"{d}/optuna.db"
    optuna.create_study(study_name=study, storage=f"sqlite:///{path}")
    return path


def _experiment(d, text=""):
    """A copy of a valid experiment in the input folder (so an output may name it)."""
    return _text(f"{d}/e.yaml", f"search_space: {SPACE}\n{text}")


def _nested(depth, kind="json"):
    return "[" * depth + "]" * depth if kind == "json" else "a:\n" + "".join(" " * i + "- \n" for i in range(1, depth))


def _binary(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(bytes(range(256)) * 4)
    return path


def _valid_policy(d):
    return _text(f"{d}/p.json", '{"schema_version": 1, "sub_policies": [[{"op": "Rotate", "p": 0.5, "level": 3}]]}')


# (id, build(d) -> argv, exit code, words in the last line): outputs that are inputs, stores
# crossed or missing, doomed runs refused before any trial, files no loader can read
TABLE = [(name, build, 2, words) for name, build, words in CASES] + [
    # outputs never overwrite inputs, and unwritable ones are one line
    ("best-out-is-mlflow-store", lambda d: ["best", "--study", "s", "--tracking-uri", f"sqlite:///{_text(f'{d}/m.db', 'x')}",
                                            "--out", f"{d}/m.db"], 2, "is the MLflow tracking store"),
    ("best-out-is-optuna-storage", lambda d: ["best", "--study", "s", "--storage", f"sqlite:///{_text(f'{d}/o.db', 'x')}",
                                              "--out", f"{d}/o.db"], 2, "is the Optuna storage"),
    ("best-out-is-experiment", lambda d: ["best", "--experiment", _experiment(d), "--out", f"{d}/e.yaml"],
     2, "is the experiment file"),
    ("best-out-is-folder", lambda d: ["best", "--study", "s", "--out", d], 2, "is a folder"),
    ("preview-out-is-policy", lambda d: ["preview", "--policy", _valid_policy(d), "--out", f"{d}/p.json"],
     2, "is the policy file"),
    ("preview-out-is-folder", lambda d: ["preview", "--policy", "standard", "--out", d], 2, "is a folder"),
    ("preview-out-under-file", lambda d: ["preview", "--policy", "standard", "--out", f"{_text(f'{d}/f.txt', 'x')}/a.png"],
     2, "is not a folder"),
    ("compare-csv-is-store", lambda d: ["compare", "--study", "s", "--tracking-uri", f"sqlite:///{_text(f'{d}/m.db', 'x')}",
                                        "--csv", f"{d}/m.db"], 2, "is the MLflow tracking store"),
    ("compare-csv-is-folder", lambda d: ["compare", "--study", "s", "--csv", d], 2, "is a folder"),
    ("evaluate-csv-is-experiment", lambda d: ["evaluate", _experiment(d), "--policies", "none", "--csv", f"{d}/e.yaml"],
     2, "is the experiment file"),
    ("train-store-is-policy", lambda d: ["train", "--policy", _valid_policy(d), "--tracking-uri", f"sqlite:///{d}/p.json"],
     2, "is the policy file"),
    ("search-stores-one-file", lambda d: search("--tracking-uri", f"sqlite:///{d}/x.db", "--storage", f"sqlite:///{d}/x.db"),
     2, "is the MLflow tracking store"),
    ("search-storage-is-experiment", lambda d: ["search", _experiment(d), "--storage", f"sqlite:///{d}/e.yaml"],
     2, "is the experiment file"),
    # reading never creates a store
    ("best-missing-store", lambda d: ["best", "--study", "s", "--tracking-uri", f"sqlite:///{d}/missing.db"],
     2, "does not exist"),
    ("compare-missing-store", lambda d: ["compare", "--study", "s", "--tracking-uri", f"sqlite:///{d}/missing.db"],
     2, "does not exist"),
    ("best-missing-storage", lambda d: ["best", "--study", "s", "--tracking-uri", f"sqlite:///{_mlflow_db(d)}",
                                        "--storage", f"sqlite:///{d}/missing.db"], 2, "does not exist"),
    ("best-missing-study", lambda d: ["best", "--study", "other", "--tracking-uri", f"sqlite:///{_mlflow_db(d)}"],
     2, "no study 'other'"),
    ("train-runs-uri-missing-store", lambda d: ["train", "--policy", "runs:/0123abcd/policy.json",
                                                "--tracking-uri", f"sqlite:///{d}/missing.db"], 2, "does not exist"),
    ("train-runs-uri-default-store", lambda d: ["train", "--policy", "runs:/0123abcd/policy.json"], 2, "does not exist"),
    # stores crossed: refused before anything is written to them
    ("search-storage-is-mlflow", lambda d: search("--storage", f"sqlite:///{_mlflow_db(d)}"), 2, "is an MLflow database"),
    ("search-journal-is-mlflow", lambda d: search("--storage", f"journal:{_mlflow_db(d)}"), 2, "is an MLflow database"),
    ("search-tracking-is-optuna", lambda d: search("--tracking-uri", f"sqlite:///{_optuna_db(d)}"), 2, "is an Optuna database"),
    ("compare-tracking-is-optuna", lambda d: ["compare", "--study", "s", "--tracking-uri", f"sqlite:///{_optuna_db(d)}"],
     2, "is an Optuna database"),
    ("best-tracking-not-a-db", lambda d: ["best", "--study", "s", "--tracking-uri", f"sqlite:///{_valid_policy(d)}",
                                          "--out", f"{d}/out.json"], 2, "is not a SQLite database"),
    ("search-tracking-unreachable", lambda d: search("--tracking-uri", "http://127.0.0.1:9"), 2, "cannot reach MLflow server"),
    ("search-tracking-postgres-down", lambda d: search("--tracking-uri", f"postgresql://u:{SECRET}@127.0.0.1:1/x"),
     2, "cannot reach database"),
    # doomed runs refused before any trial
    ("model-unknown", lambda d: search("--set", "model.name=resnet999"), 2, "unknown model 'resnet999'"),
    ("model-wrn-depth", lambda d: search("--set", "model.name=wrn-15-2"), 2, "depth must be 6n+4"),
    ("learning-rate-nan", lambda d: search("--set", "training.learning_rate=.nan"), 2,
     "'training.learning_rate' must be a non-negative number, got nan"),
    ("learning-rate-zero", lambda d: search("--set", "training.learning_rate=0"), 2, "must be above 0"),
    ("label-smoothing-5", lambda d: search("--set", "training.label_smoothing=5"), 2, "must be in [0, 1)"),
    ("prune-below-inf", lambda d: search("--set", "driver.prune_below=.inf"), 2,
     "'driver.prune_below' must be a non-negative number, got inf"),
    ("seed-negative", lambda d: search("--seed", "-1"), 2, "'seed' must be an integer in 0.."),
    ("split-seed-fraction", lambda d: search("--set", "data.split_seed=0.5"), 2, "'data.split_seed' must be an integer"),
    ("study-name-quote", lambda d: search("--study-name", "it's"), 2, "must be 1-128 letters"),
    ("best-study-name-quote", lambda d: ["best", "--study", "a'b"], 2, "must be 1-128 letters"),
    ("data-one-class", lambda d: data(_npz(f"{d}/a.npz", y_train=np.zeros(4, np.int64), y_test=np.zeros(2, np.int64)))
     + ["--set", "data.n_train=2", "--set", "data.n_val=2"], 2, "at least 2 classes"),
    ("data-one-class-in-split", lambda d: data(_npz(f"{d}/a.npz", x_train=np.zeros((6, 8, 8), np.uint8),
                                                    y_train=np.array([0, 0, 0, 0, 0, 1])))
     + ["--set", "data.n_train=2", "--set", "data.n_val=1"], 2, "only class 0"),
    ("data-labels-1-based", lambda d: data(_npz(f"{d}/a.npz", y_train=np.array([1, 2, 1, 2]), y_test=np.array([1, 2]))),
     2, "class 0 would have no image"),
    ("space-trivial-level-0", lambda d: search("--set", f"search_space={_text(f'{d}/s.yaml', '{kind: trivialaugment, levels: [0]}')}"),
     2, "needs a level above 0"),
    ("space-nan-level", lambda d: search("--set", f"search_space={_text(f'{d}/s.yaml', 'levels: [.nan]')}"),
     2, "outside 0..10"),
    ("preview-n-negative", lambda d: ["preview", "--policy", "standard", "--n", "-3"], 2, "--n must be in 1..64"),
    ("preview-copies-negative", lambda d: ["preview", "--policy", "standard", "--copies", "-2"], 2, "--copies must be in 1..32"),
    ("preview-offset-too-far", lambda d: ["preview", "--policy", "standard", "--offset", "100000"], 2, "--offset must be in 0..3999"),
    ("train-label-smoothing", lambda d: ["train", "--policy", "none", "--set", "training.label_smoothing=1"], 2, "must be in [0, 1)"),
    ("evaluate-model-unknown", lambda d: ["evaluate", QUICKSTART, "--policies", "none", "--set", "model.name=resnet999",
                                          "--csv", f"{d}/ev.csv"], 2, "unknown model 'resnet999'"),
    # files no loader can read
    ("policy-binary", lambda d: policy(_binary(f"{d}/p.json")), 2, "is not a text file"),
    ("policy-nested", lambda d: policy(_text(f"{d}/p.json", _nested(100000))), 2, "nested too deeply"),
    ("experiment-binary", lambda d: ["search", _binary(f"{d}/e.yaml")], 2, "is not a text file"),
    ("experiment-nested", lambda d: ["search", _text(f"{d}/e.yaml", _nested(3000))], 2, "nested too deeply"),
    ("space-binary", lambda d: search("--set", f"search_space={_binary(f'{d}/s.yaml')}"), 2, "is not a text file"),
]


def _listing(folder):
    """Every file under `folder` with its size and modification time."""
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("build,code,message", [c[1:] for c in TABLE], ids=[c[0] for c in TABLE])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capfd, build, code, message):
    d, work = tmp_path / "input", tmp_path / "work"
    d.mkdir(), work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("AUTOAUG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = build(str(d))
    capfd.readouterr()
    before = _listing(d)
    start = time.monotonic()
    assert main(argv) == code
    assert time.monotonic() - start < 30  # refused up front, or a service that fails fast
    out, err = capfd.readouterr()
    last = err.strip().splitlines()[-1]
    assert last.startswith("autoaug: error: ") and message in last, last
    assert "Traceback" not in err and SECRET not in out + err
    assert list(work.iterdir()) == []  # no mlflow.db, optuna.db, journal or preview
    assert _listing(d) == before  # no input changed, no file (or temp file) added


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
