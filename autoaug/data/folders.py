"""Image folders as users keep them: the layouts, reading one image, resizing it on load.

Layouts (``find_layout``), under ``root`` or under a chain of single sub-folders of it
(``photos.tar.gz`` holding ``photos/train/...``):

``root/train/<class>/*`` with ``root/test/``, ``root/val/`` or ``root/validation/``
    The second folder is the *held-out* split (``Dataset.x_test``): only ``autoaug train``
    and ``autoaug evaluate`` score on it, at the end. The search's validation set is drawn
    from ``train/`` (``data.n_val``). With several, ``test/`` wins, then ``val/``, then
    ``validation/``; the others are not read.
``root/train/<class>/*`` alone, or ``root/<class>/*``
    The held-out split is a stratified, seeded fraction of the images (``data.test_fraction``).

Every image goes through ``decode_image``, in memory and streamed alike, so one seed gives
the same pixels either way: Pillow opens the file (first frame of a GIF), turns it as its
EXIF orientation says, converts it to grey or RGB (RGBA and palette images lose their alpha,
CMYK is converted, 16-bit grey is scaled to 8 bits) and, with a target size, resizes it
(``crop``: the largest centred window of the target's aspect ratio, as Keras'
``crop_to_aspect_ratio``; ``pad``: fit inside and letterbox with zeros; ``stretch``), bilinear.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .dataset import DataError, visible_dirs

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
HELD_OUT_FOLDERS = ("test", "val", "validation")  # the first one present is the held-out split
RESIZE_MODES = ("crop", "pad", "stretch")
_GREY_MODES = {"1", "L", "LA", "I;16", "I;16B", "I;16L", "I;16N"}
_ORIENTATION = 0x0112  # EXIF tag
_EXTENSIONS_TEXT = "/".join(e[1:] for e in IMAGE_EXTENSIONS)


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class Layout:
    """Where the images of a folder dataset are."""

    root: str  # the folder that holds train/ (and the held-out folder), or the class folders
    train: str  # root/train, or root itself for the class-folders layout
    held_out: str | None  # root/test|val|validation, or None: held out by fraction

    @property
    def name(self) -> str:
        return os.path.basename(self.root.rstrip(os.sep)) or "images"

    def folders(self) -> list[str]:
        """The folders whose modification times tell a changed dataset (see cache)."""
        out = [self.root]
        for split in (self.train, self.held_out):
            if split is None:
                continue
            if split != self.root:
                out.append(split)
            out += [os.path.join(split, c) for c in visible_dirs(split)]
        return out


def _split_folder(folder: str) -> str | None:
    return os.path.join(folder, "train") if os.path.isdir(os.path.join(folder, "train")) else None


def find_layout(root: str, label: str | None = None) -> Layout:
    """The layout of ``root`` (see the module docstring); a DataError naming the fix if none."""
    label = label or root
    folder = root
    for _ in range(4):  # through single wrapping folders: photos.tar.gz -> photos/ -> train/
        if _split_folder(folder):
            held = [os.path.join(folder, h) for h in HELD_OUT_FOLDERS
                    if os.path.isdir(os.path.join(folder, h))]
            return Layout(folder, os.path.join(folder, "train"), held[0] if held else None)
        subs = visible_dirs(folder)
        if len(subs) != 1:
            break
        folder = os.path.join(folder, subs[0])
    subs = visible_dirs(folder)
    if len(subs) < 2:
        raise DataError(f"{label} has no train/ folder and no class folders; put images in "
                        f"{label}/<class>/*.jpg (two classes or more), or in {label}/train/<class>/ "
                        f"with {label}/val/<class>/ (or test/)")
    return Layout(folder, folder, None)


def list_images(folder: str) -> list[str]:
    """The image files of one class folder, sorted by name (others are ignored)."""
    with os.scandir(folder) as it:
        names = sorted(e.name for e in it if e.is_file() and not e.name.startswith(".")
                       and e.name.lower().endswith(IMAGE_EXTENSIONS))
    return [os.path.join(folder, n) for n in names]


def list_split(split_dir: str) -> tuple[list[str], list[list[str]]]:
    """(class names, files per class) of ``split_dir/<class>/*``; an empty class is an error."""
    classes = visible_dirs(split_dir)
    if not classes:
        raise DataError(f"{split_dir} has no class folders; put images in "
                        f"{split_dir}/<class>/*.jpg")
    files = []
    for c in classes:
        found = list_images(os.path.join(split_dir, c))
        if not found:
            raise DataError(f"class folder {os.path.join(split_dir, c)} has no images "
                            f"({_EXTENSIONS_TEXT}); add images or remove the folder")
        files.append(found)
    return classes, files


# --------------------------------------------------------------------------- one image


def inspect_image(path: str) -> tuple[int, int, bool]:
    """(height, width, is grey) of ``path`` as ``decode_image`` will see it (after its EXIF
    orientation), after reading the whole file: a truncated or corrupt one raises here.

    JPEGs are decoded at 1/8 scale (the whole file is still read), which is quick.
    """
    from PIL import Image
    with Image.open(path) as im:
        w, h = im.size
        grey = im.mode in _GREY_MODES
        if im.mode not in _GREY_MODES and im.mode not in ("RGB", "RGBA", "RGBX", "P", "PA", "CMYK",
                                                          "YCbCr", "LAB", "HSV"):
            raise ValueError(f"unsupported image mode {im.mode}")
        if im.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):  # a quarter turn swaps the sides
            w, h = h, w
        if im.format == "JPEG":
            im.draft(None, (1, 1))
        im.load()
    return h, w, grey


def _oriented(path: str):
    from PIL import Image, ImageOps
    with Image.open(path) as im:
        im.load()  # the first frame of a GIF
        return ImageOps.exif_transpose(im)  # a loaded copy, turned upright


def _to_channels(im, channels: int):
    if im.mode.startswith("I;16"):  # 16-bit grey: keep the top 8 bits
        im = _sixteen_to_eight(im)
    target = "L" if channels == 1 else "RGB"
    return im if im.mode == target else im.convert(target)


def _sixteen_to_eight(im):
    from PIL import Image
    a = np.asarray(im, dtype=np.uint16) >> 8
    return Image.fromarray(a.astype(np.uint8), "L")


def _resized(im, size: tuple[int, int], how: str):
    from PIL import Image
    th, tw = size
    w, h = im.size
    if (h, w) == (th, tw):
        return im
    if how == "stretch":
        return im.resize((tw, th), Image.BILINEAR)
    if how == "crop":  # the largest centred window with the target's aspect ratio (as Keras)
        ch = max(min(h, int(w * th / tw)), 1)
        cw = max(min(w, int(h * tw / th)), 1)
        top, left = (h - ch) // 2, (w - cw) // 2
        return im.crop((left, top, left + cw, top + ch)).resize((tw, th), Image.BILINEAR)
    scale = min(tw / w, th / h)  # pad: fit inside, centred on black
    nw, nh = max(1, min(tw, round(w * scale))), max(1, min(th, round(h * scale)))
    canvas = Image.new(im.mode, (tw, th), 0)
    canvas.paste(im.resize((nw, nh), Image.BILINEAR), ((tw - nw) // 2, (th - nh) // 2))
    return canvas


def decode_image(path: str, size: tuple[int, int] | None, channels: int, resize: str = "crop"
                 ) -> np.ndarray:
    """uint8 ``[h, w, channels]``: the image at ``path`` upright, converted and resized.

    ``size`` is (height, width), or None to keep the stored size. Raises what Pillow raises
    for an unreadable file.
    """
    return _fitted(_oriented(path), size, channels, resize)


def fit_array(image: np.ndarray, size: tuple[int, int] | None, channels: int, resize: str = "crop"
              ) -> np.ndarray:
    """A decoded uint8 ``[h, w, c]`` image (c = 1, 3 or 4) converted and resized as
    `decode_image` does a file (TFDS examples go through this)."""
    from PIL import Image
    image = np.asarray(image, np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if size in (None, image.shape[:2]) and image.ndim == 3 and image.shape[2] == channels:
        return image  # already as asked
    return _fitted(Image.fromarray(image), size, channels, resize)


def _fitted(im, size, channels: int, resize: str) -> np.ndarray:
    im = _to_channels(im, channels)
    if size is not None:
        im = _resized(im, size, resize)
    arr = np.asarray(im, dtype=np.uint8)
    return arr.reshape(arr.shape[0], arr.shape[1], channels)


def why_unreadable(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def check_image_size(value) -> tuple[int, int] | None:
    """``image_size`` as (height, width): an int N (N x N), [h, w], or None."""
    if value is None:
        return None
    items = [value] * 2 if isinstance(value, int) and not isinstance(value, bool) else value
    if (isinstance(items, (list, tuple)) and len(items) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in items)):
        if all(v > 0 for v in items):
            return int(items[0]), int(items[1])
    raise DataError(f"image_size must be a positive integer N (N x N pixels) or [height, width], "
                    f"got {value!r}; e.g. image_size: 224")
