"""Build a folder of real photos as users keep them, from CIFAR-10 (offline): runs/photos/.

Every CIFAR-10 image is upscaled (bicubic) to its own size and aspect ratio (short side
96-256 px, aspect 0.6-1.8) and written as a JPEG (quality 90), in the ``train/`` + ``val/``
layout of the transfer-learning tutorials. A few are written the other ways photos come:
PNG (5%), greyscale JPEG (3%), a JPEG stored sideways with an EXIF orientation that turns it
upright (3%), CMYK JPEG (1%). Deterministic (seeded); resumable (existing files are kept);
each file is written atomically.

    .venv/bin/python scripts/make_photos.py                    # 200 + 50 per class -> runs/photos
    .venv/bin/python scripts/make_photos.py --train 1000 --val 100 --out runs/photos-10k
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CIFAR = os.path.join(ROOT, "..", "shared", "data", "cifar10-jpeg.tar.gz")


def photo(src: str, rng: np.random.Generator) -> tuple[Image.Image, str, dict]:
    """(image, file suffix, save options) for one CIFAR image: a new size, a new format."""
    short, aspect = int(rng.integers(96, 257)), float(np.exp(rng.uniform(np.log(0.6), np.log(1.8))))
    w, h = (round(short * aspect), short) if aspect >= 1 else (short, round(short / aspect))
    with Image.open(src) as im:
        im = im.convert("RGB").resize((w, h), Image.BICUBIC)
    kind = rng.random()
    if kind < 0.05:
        return im, ".png", {}
    if kind < 0.08:
        return im.convert("L"), ".jpg", {"quality": 90}
    if kind < 0.11:  # stored a quarter turn off, as cameras do; orientation 6 turns it upright
        exif = Image.Exif()
        exif[0x0112] = 6
        return im.transpose(Image.ROTATE_90), ".jpg", {"quality": 90, "exif": exif.tobytes()}
    if kind < 0.12:
        return im.convert("CMYK"), ".jpg", {"quality": 90}
    return im, ".jpg", {"quality": 90}


def build(out: str, n_train: int, n_val: int, seed: int = 0) -> int:
    from autoaug.data import extract_archive
    from autoaug.files import atomic_path
    cifar = os.path.join(extract_archive(os.path.abspath(CIFAR)), "cifar10")
    written = 0
    for s, (split, src_split, n) in enumerate((("train", "train", n_train), ("val", "test", n_val))):
        for k, c in enumerate(sorted(os.listdir(os.path.join(cifar, src_split)))):
            names = sorted(os.listdir(os.path.join(cifar, src_split, c)))[:n]
            os.makedirs(os.path.join(out, split, c), exist_ok=True)
            for i, name in enumerate(names):
                rng = np.random.default_rng([seed, s, k, i])  # the same photo on every run
                stem = os.path.splitext(name)[0]
                im, suffix, opts = photo(os.path.join(cifar, src_split, c, name), rng)
                target = os.path.join(out, split, c, stem + suffix)
                if os.path.exists(target):
                    continue
                with atomic_path(target) as tmp:
                    im.save(tmp, format="PNG" if suffix == ".png" else "JPEG", **opts)
                written += 1
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "photos"))
    p.add_argument("--train", type=int, default=200, help="train images per class")
    p.add_argument("--val", type=int, default=50, help="val images per class (from CIFAR's test split)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    start = time.perf_counter()
    n = build(a.out, a.train, a.val, a.seed)
    print(f"{a.out}: wrote {n} images in {time.perf_counter() - start:.0f} s "
          f"({a.train} train + {a.val} val per class)")


if __name__ == "__main__":
    main()
