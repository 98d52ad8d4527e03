#!/usr/bin/env python
"""Augmentation on the data path (tf.data, CPU) versus on the model's device (augment_on: model).

For each batch size, two pipelines feed the same uint8 images at --size px:

  data   from_tensor_slices -> batch -> map(policy.apply, keyed (seed, epoch, index)) ->
         cast -> prefetch, then copied to the device (what ``augment_on: data`` trains on)
  model  from_tensor_slices -> batch -> cast -> prefetch; ``policy.as_layer(steps_per_epoch=...)``
         called on each batch on the device (what ``augment_on: model`` trains on)

Both are timed to the augmented batch resident on the device (GPU 0 when TensorFlow sees one,
else the CPU), in steady state, repeats interleaved (data, model, data, model, ...). The two give
the same pixels for the same seed (tests/test_augment_on.py). Written to be run by a user with a
GPU; it also runs on CPU (``--tiny``) to show it works. Example:

    .venv/bin/python scripts/bench_gpu_augment.py                      # 224 px, batch 128 and 256
    .venv/bin/python scripts/bench_gpu_augment.py --tiny --csv ''      # a quick run on any machine
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["device", "policy", "size", "batch", "data images/s", "model images/s", "model / data"]


class BenchError(Exception):
    """A problem the user can fix; printed as one line."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", default="randaugment-n2-m9", help="a built-in policy (default randaugment-n2-m9)")
    p.add_argument("--size", type=int, default=224, help="image side in px (default 224)")
    p.add_argument("--batches", default="128,256", help="batch sizes (default 128,256)")
    p.add_argument("--pool", type=int, default=1024, help="distinct images (default 1024)")
    p.add_argument("--steps", type=int, default=20, help="batches per timed repeat (default 20)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per placement (default 3)")
    p.add_argument("--warmup", type=int, default=12,
                   help="untimed batches first: traces and XLA compiles (default 12)")
    p.add_argument("--tiny", action="store_true", help="64 px, batch 16, 2 steps, 1 repeat: a smoke run")
    p.add_argument("--csv", default=str(ROOT / "docs" / "bench_gpu_augment.csv"),
                   help="append rows here (default docs/bench_gpu_augment.csv); '' to skip")
    args = p.parse_args(argv)
    if args.tiny:
        args.size, args.batches, args.pool, args.steps, args.repeats, args.warmup = 64, "16", 64, 2, 1, 2
    try:
        args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        raise BenchError(f"--batches: expected integers like 128,256, got {args.batches!r}") from None
    if not args.batches or min(args.batches) < 1 or args.size < 8 or min(args.steps, args.repeats, args.pool) < 1:
        raise BenchError("--batches, --steps, --repeats and --pool must be positive and --size at least 8")
    return args


def images(pool: int, size: int):
    """Real photos (scikit-learn's samples) cut into `pool` tiles and resized to `size`."""
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_sample_images

    tiles = [im[y:y + 160, x:x + 160] for im in load_sample_images().images
             for y in range(0, 260, 40) for x in range(0, 440, 40)]
    picked = [tiles[i % len(tiles)] for i in range(pool)]
    out = tf.image.resize(np.stack(picked), [size, size], "bilinear")
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8).numpy()


def pipelines(x, policy, batch: int, device: str):
    import tensorflow as tf
    from autoaug.pipeline import steps_per_epoch

    steps = steps_per_epoch(len(x), batch)
    auto = tf.data.AUTOTUNE
    base = tf.data.Dataset.from_tensor_slices(x).repeat().batch(batch, drop_remainder=True).enumerate()
    data = base.map(lambda g, b: tf.cast(policy.apply(b, seed=0, epoch=g // steps, index=g % steps), tf.float32),
                    num_parallel_calls=auto).prefetch(auto)
    model = base.map(lambda g, b: tf.cast(b, tf.float32), num_parallel_calls=auto).prefetch(auto)
    with tf.device(device):
        layer = policy.as_layer(seed=0, steps_per_epoch=steps)

    def run_data(it):
        with tf.device(device):
            return tf.identity(next(it))

    def run_model(it):
        with tf.device(device):
            return layer(next(it), training=True)

    return {"data": (data, run_data), "model": (model, run_model)}


def rate(ds, step, batch: int, steps: int, warmup: int = 0) -> float:
    it = iter(ds)
    for _ in range(warmup):
        step(it)
    start = time.perf_counter()
    for _ in range(steps):
        out = step(it)
    out.numpy()  # wait for the device
    return steps * batch / (time.perf_counter() - start)


def main(argv=None) -> int:
    args = parse_args(argv)
    import tensorflow as tf
    import autoaug

    try:
        policy = autoaug.builtin(args.policy)
    except Exception as e:
        raise BenchError(f"--policy: {e}") from None
    if policy.needs_labels:
        raise BenchError(f"--policy {args.policy} needs labels (MixUp/CutMix or per-class): it cannot run in the model")
    gpus = tf.config.list_physical_devices("GPU")
    device = "/GPU:0" if gpus else "/CPU:0"
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU only"
    print(f"device: {device} ({name}); {os.cpu_count()} CPUs; tensorflow {tf.__version__}; "
          f"policy {args.policy}; {args.size}x{args.size}", flush=True)
    x = images(args.pool, args.size)
    rows = []
    for batch in args.batches:
        runs = pipelines(x, policy, batch, device)
        for ds, step in runs.values():
            rate(ds, step, batch, 1, warmup=args.warmup)  # traces, XLA compiles, buffers
        measured = {k: [] for k in runs}
        for _ in range(args.repeats):
            for placement, (ds, step) in runs.items():
                measured[placement].append(rate(ds, step, batch, args.steps, warmup=2))
        d, m = statistics.median(measured["data"]), statistics.median(measured["model"])
        row = {"device": name, "policy": args.policy, "size": args.size, "batch": batch,
               "data images/s": f"{d:.0f}", "model images/s": f"{m:.0f}", "model / data": f"{m / d:.2f}"}
        rows.append(row)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    if args.csv:
        path = Path(args.csv)
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                w.writeheader()
            w.writerows(rows)
        print(f"appended to {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench_gpu_augment: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
