"""Data larger than memory: image folders streamed through tf.data give the same pixels,
batches, trainings and density-matching scores as the same folder in memory."""
import numpy as np
import pytest
from PIL import Image

from autoaug import builtin, data
from autoaug.data import load_dataset
from autoaug.data.stream import ImageFiles

pytestmark = pytest.mark.usefixtures("fresh_data_cache")




@pytest.fixture
def folder(tmp_path, photos):
    """Real photo tiles, upscaled to varied sizes and aspect ratios, as JPEGs: train/ + val/."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    i = 0
    for split, n in (("train", 16), ("val", 4)):
        for c in ("a", "b", "c"):
            (root / split / c).mkdir(parents=True)
            for k in range(n):
                w, h = int(rng.integers(24, 60)), int(rng.integers(24, 60))
                Image.fromarray(photos[i % len(photos)]).resize((w, h)).save(root / split / c / f"{k}.jpg")
                i += 1
    return root


def test_streamed_images_batches_and_eval_equal_in_memory(folder):
    from autoaug.pipeline import augment_array, eval_dataset, train_dataset
    mem = load_dataset(folder, image_size=20, resize="pad")
    st = load_dataset(folder, image_size=20, resize="pad", in_memory=False)
    assert isinstance(st.x_train, ImageFiles) and isinstance(mem.x_train, np.ndarray)
    assert st.x_train.shape == mem.x_train.shape == (48, 20, 20, 3)
    np.testing.assert_array_equal(np.asarray(st.x_test), mem.x_test)
    policy = builtin("standard+cutout")  # per-image random crops, flips and holes
    batches = [list(train_dataset(ds.x_train, ds.y_train, policy, batch_size=10, num_classes=3,
                                  seed=5, epochs=2, one_hot=True)) for ds in (mem, st)]
    assert len(batches[0]) == len(batches[1]) == 10
    for (xm, ym), (xs, ys) in zip(*batches):
        np.testing.assert_array_equal(xm.numpy(), xs.numpy())
        np.testing.assert_array_equal(ym.numpy(), ys.numpy())
    evals = [np.concatenate([b[0].numpy() for b in eval_dataset(ds.x_test, ds.y_test, batch_size=5,
                                                                 num_classes=3)]) for ds in (mem, st)]
    np.testing.assert_array_equal(*evals)
    np.testing.assert_array_equal(augment_array(st.x_train, st.y_train, policy, seed=1, copy_index=2, batch_size=16),
                                  augment_array(mem.x_train, mem.y_train, policy, seed=1, copy_index=2, batch_size=16))
    picked = st.x_train[np.array([3, 1])]
    assert isinstance(picked, ImageFiles)
    np.testing.assert_array_equal(np.asarray(picked), mem.x_train[[3, 1]])


def test_a_disk_cache_decodes_once_and_gives_the_same_pixels(folder, tmp_path):
    from autoaug.config import ConfigError, load_experiment
    from autoaug.pipeline import train_dataset
    mem = load_dataset(folder, image_size=20, resize="pad")
    cached = load_dataset(folder, image_size=20, resize="pad", in_memory=False, disk_cache=True)
    assert isinstance(cached.x_train, ImageFiles) and cached.x_train.store is not None
    files = {f.name.rsplit("-", 1)[1]: f for f in (tmp_path / "cache" / "decoded").glob("*.npy")}
    assert sorted(files) == ["test.npy", "train.npy"]
    stamps = {k: f.stat().st_mtime_ns for k, f in files.items()}
    np.testing.assert_array_equal(np.asarray(cached.x_test), mem.x_test)
    policy = builtin("standard+cutout")
    batches = [list(train_dataset(ds.x_train, ds.y_train, policy, batch_size=10, num_classes=3,
                                  seed=5, epochs=2, one_hot=True)) for ds in (mem, cached)]
    for (xm, ym), (xs, ys) in zip(*batches):
        np.testing.assert_array_equal(xm.numpy(), xs.numpy())
        np.testing.assert_array_equal(ym.numpy(), ys.numpy())
    picked = cached.x_train[np.array([7, 3, 1])][1:]  # subsets keep their rows
    assert isinstance(picked, ImageFiles) and picked.store is not None
    np.testing.assert_array_equal(np.asarray(picked), mem.x_train[[3, 1]])
    np.testing.assert_array_equal(picked[1], mem.x_train[1])

    data.clear_cache()  # the in-process cache: load from the folder again
    load_dataset(folder, image_size=20, resize="pad", in_memory=False, disk_cache=True)
    assert {k: f.stat().st_mtime_ns for k, f in files.items()} == stamps  # read, not written again
    files["train.npy"].write_bytes(files["train.npy"].read_bytes()[:200])  # a truncated cache
    data.clear_cache()
    again = load_dataset(folder, image_size=20, resize="pad", in_memory=False, disk_cache=True)
    np.testing.assert_array_equal(np.asarray(again.x_train), mem.x_train)  # decoded again
    assert files["train.npy"].stat().st_size > 200
    with pytest.raises(ConfigError, match="'data.disk_cache' must be true or false"):
        load_experiment(None, ["data.disk_cache=sometimes"])


def test_in_memory_auto_streams_above_the_limit(folder):
    small = load_dataset(folder, image_size=20)
    assert isinstance(small.x_train, np.ndarray)  # auto, far below a quarter of RAM
    tiny = load_dataset(folder, image_size=20, memory_limit_gb=1e-6)
    assert isinstance(tiny.x_train, ImageFiles)


def _experiment(folder, tmp_path, *extra):
    from autoaug.config import load_experiment
    return load_experiment(None, [f"data.source={folder}", "data.image_size=16", "data.n_train=36",
                                  "data.n_val=12", "model.name=cnn-small", "training.epochs=2",
                                  "training.batch_size=12", f"tracking_uri=sqlite:///{tmp_path}/m.db",
                                  *extra])


def test_training_streamed_replays_training_in_memory(folder, tmp_path):
    from autoaug.data import load_experiment_data
    from autoaug.train import train_model
    results = []
    for in_memory, disk_cache in (("true", "false"), ("false", "false"), ("false", "true")):
        exp = _experiment(folder, tmp_path, f"data.in_memory={in_memory}", f"data.disk_cache={disk_cache}")
        ds, (x_tr, y_tr, x_val, y_val) = load_experiment_data(exp)
        assert isinstance(x_tr, ImageFiles) == (in_memory == "false")
        assert (getattr(x_tr, "store", None) is not None) == (disk_cache == "true")
        results.append(train_model(x_tr, y_tr, x_val, y_val, builtin("standard"),
                                   num_classes=ds.num_classes, x_test=ds.x_test, y_test=ds.y_test,
                                   **exp.train_args()))
    mem = results[0]
    for st in results[1:]:
        assert [h["loss"] for h in mem.history] == [h["loss"] for h in st.history]  # same seed, same run
        assert mem.val_accuracy == st.val_accuracy and mem.test_accuracy == st.test_accuracy


def test_density_matching_scores_streamed_as_in_memory(folder, tmp_path):
    from autoaug.data import load_experiment_data
    from autoaug.search.density import DensityEvaluator
    scores = []
    for in_memory in ("true", "false"):
        exp = _experiment(folder, tmp_path, f"data.in_memory={in_memory}", "training.epochs=1",
                          "evaluation=density-matching", f"density.cache_dir={tmp_path}/dm")
        ds, arrays = load_experiment_data(exp)
        ev = DensityEvaluator(exp, arrays, ds.num_classes).prepare(log=lambda *_: None)
        scores.append(ev.score(builtin("standard+cutout")))
    mem, st = scores
    assert mem.fold_accuracy == st.fold_accuracy
    assert st.loss == pytest.approx(mem.loss, rel=1e-5)


def test_cli_train_streams(folder, tmp_path, monkeypatch, capsys):
    from autoaug.cli import main
    from helpers import QUICKSTART
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--policy", "standard", "--experiment", QUICKSTART, "--data", str(folder),
                 "--image-size", "16", "--n-train", "36", "--n-val", "12", "--epochs", "1", "--model", "cnn-small",
                 "--set", "data.in_memory=false", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "test_accuracy" in out and "test split: 12 images" in out, out
