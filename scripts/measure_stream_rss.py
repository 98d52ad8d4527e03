"""Peak memory of a search trial on image folders of 10k and 50k photos at 224 px, streamed
(``data.in_memory: false``) and in memory: streaming must stay flat as the data grows.

Builds ``runs/stream_rss/c10-<N>k/{train,test}/<class>/*.jpg`` from CIFAR-10 (offline, in
../shared/data), every image upscaled to 224x224 (bilinear) and written as a JPEG (quality 90);
the test split is 100 images per class of CIFAR's test split. Each row runs in a fresh process
and reports that process's peak RSS (``getrusage`` maxrss), its wall and CPU seconds:

``search trial``  ``autoaug search`` with one trial (baseline ``standard``): the folder listed,
                  1,000 train + 200 validation images drawn from it, ``cnn-small``, 1 epoch.
``full pass``     every train image of the folder once through the training pipeline
                  (``pipeline.train_dataset``: shuffle, decode + resize, batch, ``standard``).

Prints a table and appends each finished row to docs/stream_rss.csv; run it again and it
measures only the rows missing there (delete a row to measure it again).

    .venv/bin/python scripts/measure_stream_rss.py
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from multiprocessing import Pool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
WORK = os.path.join(ROOT, "runs", "stream_rss")
CSV = os.path.join(ROOT, "docs", "stream_rss.csv")
CIFAR = os.path.join(ROOT, "..", "shared", "data", "cifar10-jpeg.tar.gz")
SIZE = 224
FIELDS = ["images", "data", "run", "peak_rss_mb", "seconds", "cpu_s", "images_read"]
ROWS = [(10_000, "streamed", "search trial"), (50_000, "streamed", "search trial"),
        (10_000, "in memory", "search trial"),
        (10_000, "streamed", "full pass"), (50_000, "streamed", "full pass")]


# --------------------------------------------------------------------------- the folders


def _upscale(job: tuple[str, str]) -> None:
    from PIL import Image

    from autoaug.files import atomic_path
    src, dst = job
    if os.path.exists(dst):
        return
    with Image.open(src) as im:
        big = im.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
    with atomic_path(dst) as tmp:
        big.save(tmp, format="JPEG", quality=90)


def build(n_train: int) -> str:
    """runs/stream_rss/c10-<N>k: n_train/10 train and 100 test images per class, at 224 px.
    A smaller folder links the files of a larger one where it exists (same images)."""
    from autoaug.data import extract_archive
    cifar = os.path.join(extract_archive(os.path.abspath(CIFAR)), "cifar10")
    out = os.path.join(WORK, f"c10-{n_train // 1000}k")
    full = os.path.join(WORK, "c10-50k")
    jobs, links = [], []
    for split, per_class in (("train", n_train // 10), ("test", 100)):
        for c in sorted(os.listdir(os.path.join(cifar, split))):
            os.makedirs(os.path.join(out, split, c), exist_ok=True)
            for name in sorted(os.listdir(os.path.join(cifar, split, c)))[:per_class]:
                dst = os.path.join(out, split, c, name)
                shared = os.path.join(full, split, c, name)
                if out != full and os.path.exists(shared):
                    links.append((shared, dst))
                else:
                    jobs.append((os.path.join(cifar, split, c, name), dst))
    for shared, dst in links:
        if not os.path.exists(dst):
            os.link(shared, dst)
    with Pool(os.cpu_count() or 1) as pool:
        pool.map(_upscale, jobs, chunksize=256)
    return out


# --------------------------------------------------------------------------- one row (child)


def child(folder: str, data: str, run: str) -> dict:
    in_memory = "true" if data == "in memory" else "false"
    start, cpu0 = time.perf_counter(), time.process_time()
    if run == "search trial":
        from autoaug.cli import main
        name = f"rss-{os.path.basename(folder)}-{in_memory}"
        code = main(["search", os.path.join(ROOT, "experiments", "quickstart.yaml"), "--quiet",
                     "--n-trials", "1", "--image-size", str(SIZE), "--study-name", name,
                     "--tracking-uri", f"sqlite:///{WORK}/mlflow.db",
                     "--set", f"data.source={folder}", "--set", f"data.in_memory={in_memory}",
                     "--set", "data.n_train=1000", "--set", "data.n_val=200",
                     "--set", "model.name=cnn-small", "--set", "training.epochs=1",
                     "--set", "training.batch_size=50", "--set", "baselines=[standard]",
                     "--set", "selection.top_k=0", "--set", "preview_samples=4",
                     "--set", "data.forbidden_ops=[]"])
        if code:
            raise SystemExit(f"autoaug search exited with {code}")
        read = 1200
    else:
        from autoaug import builtin
        from autoaug.data import load_dataset
        from autoaug.pipeline import train_dataset
        ds = load_dataset(folder, image_size=SIZE, in_memory=in_memory == "true")
        read = 0
        for images, _ in train_dataset(ds.x_train, ds.y_train, builtin("standard"), batch_size=64,
                                       num_classes=ds.num_classes, seed=0, epochs=1):
            read += int(images.shape[0])
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "seconds": round(time.perf_counter() - start, 1),
            "cpu_s": round(time.process_time() - cpu0, 1), "images_read": read}


# --------------------------------------------------------------------------- the table


def done_rows() -> list[dict]:
    if not os.path.exists(CSV):
        return []
    with open(CSV) as f:
        return list(csv.DictReader(f))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=3, metavar=("FOLDER", "DATA", "RUN"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child(*a.child)), flush=True)
        return
    os.makedirs(WORK, exist_ok=True)
    env = {**os.environ, "AUTOAUG_CACHE": os.path.join(WORK, "cache")}
    missing = [row for row in ROWS if not any(
        (r["images"], r["data"], r["run"]) == (str(row[0]), row[1], row[2]) for r in done_rows())]
    folders = {}
    for n in sorted({row[0] for row in missing}, reverse=True):  # the largest first: the others link it
        start = time.perf_counter()
        folders[n] = build(n)
        print(f"{os.path.basename(folders[n])} ready in {time.perf_counter() - start:.0f} s", flush=True)
    for n, data, run in missing:
        folder = folders[n]
        proc = subprocess.run([sys.executable, __file__, "--child", folder, data, run], env=env,
                              capture_output=True, text=True, cwd=WORK)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"{n} {data} {run} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        row = {"images": n, "data": data, "run": run, **json.loads(lines[-1][7:])}
        new = not os.path.exists(CSV)
        with open(CSV, "a", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            if new:
                w.writeheader()
            w.writerow(row)
        print(row, flush=True)
    print(f"\n{'images':>7}  {'data':<9}  {'run':<12}  {'peak RSS MB':>11}  {'seconds':>7}  "
          f"{'CPU s':>6}  {'read':>6}")
    for r in done_rows():
        print(f"{int(r['images']):>7,}  {r['data']:<9}  {r['run']:<12}  {r['peak_rss_mb']:>11}  "
              f"{r['seconds']:>7}  {r['cpu_s']:>6}  {r['images_read']:>6}")


if __name__ == "__main__":
    main()
