#!/usr/bin/env python
"""Per-class policies on the embedded MNIST digits: what does a per-class search learn?

1. Runs (or reuses) the density-matching search of ``experiments/digits_per_class.yaml``: each
   class gets its own sub-policies over FlipLR, FlipUD, Rotate, ShearX, TranslateX/Y, scored on
   that class's held-out digits by two models trained once on clean digits.
2. Freezes the per-class policy (``best --top N``: per class, the sub-policies of the N trials
   that scored best on that class) and prints, per class, the mean held-out accuracy of the
   trials by the op they gave that class: the table shows which classes tolerate which ops.
3. Trains the experiment's model on the same 2,000 digits with ``none``, flips for every class
   (``none+flip``), pad-and-crop shifts (``none+crop``) and the per-class policy, over seeds,
   and reports test accuracy on the 1,000 held-out test digits.

Everything goes under runs/digits_per_class/ (git-ignored); finished trainings are appended
to docs/digits_per_class.csv and skipped when the script runs again; the report is written to
docs/digits_per_class.md.

    .venv/bin/python scripts/digits_per_class.py            # about 10 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RUNS = ROOT / "runs" / "digits_per_class"
EXPERIMENT = ROOT / "experiments" / "digits_per_class.yaml"
CSV = ROOT / "docs" / "digits_per_class.csv"
DOC = ROOT / "docs" / "digits_per_class.md"
FIELDS = ["policy", "seed", "test_accuracy", "epochs", "policy_hash"]
CONTROLS = ["none", "none+flip", "none+crop"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--top", type=int, default=3, help="trials merged per class (default 3)")
    p.add_argument("--seeds", type=int, default=3, help="full trainings per policy (default 3)")
    p.add_argument("--epochs", type=int, default=15, help="full-training epochs (default 15)")
    return p.parse_args(argv)


def search(cfg):
    """Run the study unless MLflow already has all of its trials."""
    from autoaug import tracking
    from autoaug.search import run_search
    try:
        frame = tracking.open_study(cfg["tracking_uri"], cfg["name"]).trials_frame()
        if (frame["state"] == "complete").sum() >= cfg["n_trials"]:
            print(f"search: study {cfg['name']} already has its {cfg['n_trials']} trials", flush=True)
            return
    except tracking.TrackingError:
        pass
    run_search(cfg, progress=False)


def op_table(cfg, num_classes: int) -> tuple[list, list]:
    """Per class and op: mean held-out accuracy of that class over trials that gave it the op."""
    from autoaug import tracking
    from autoaug.policy import Policy
    tracker = tracking.open_study(cfg["tracking_uri"], cfg["name"])
    sums: dict = {}
    for run in tracker.trial_runs():
        if run.data.tags.get("autoaug.state") != "complete":
            continue
        policy = Policy.from_json(tracker.read_text(run.info.run_id, "policy.json"))
        for group in policy.class_policies:
            for c in group.classes:
                acc = run.data.metrics.get(f"class{c}_accuracy")
                for op in {step.op for sp in group.sub_policies for step in sp}:
                    s = sums.setdefault((c, op), [0.0, 0])
                    s[0] += acc
                    s[1] += 1
    ops = sorted({op for _, op in sums})
    rows = [[c] + [sums[(c, op)][0] / sums[(c, op)][1] if (c, op) in sums else float("nan") for op in ops]
            for c in range(num_classes)]
    return ops, rows


def train_all(args, cfg, per_class):
    from autoaug.data import load_dataset, reduced_split
    from autoaug.policy import builtin
    from autoaug.train import train_model
    d = cfg["data"]
    ds = load_dataset(d["source"])
    x_tr, y_tr, x_val, y_val = reduced_split(ds, d["n_train"], d["n_val"], seed=d["split_seed"])
    policies = {name: builtin(name) for name in CONTROLS}
    policies["per-class"] = per_class
    done = set()
    if CSV.exists():
        with open(CSV, newline="") as f:
            done = {(r["policy"], r["seed"], r["epochs"], r["policy_hash"]) for r in csv.DictReader(f)}
    for seed in range(args.seeds):
        for name, policy in policies.items():
            if (name, str(seed), str(args.epochs), policy.digest()) in done:
                continue
            result = train_model(x_tr, y_tr, x_val, y_val, policy, model=cfg["model"]["name"],
                                 num_classes=ds.num_classes, epochs=args.epochs,
                                 batch_size=cfg["training"]["batch_size"],
                                 learning_rate=cfg["training"]["learning_rate"], seed=seed,
                                 x_test=ds.x_test, y_test=ds.y_test)
            new = not CSV.exists()
            with open(CSV, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=FIELDS)
                if new:
                    w.writeheader()
                w.writerow({"policy": name, "seed": seed, "test_accuracy": f"{result.test_accuracy:.4f}",
                            "epochs": args.epochs, "policy_hash": policy.digest()})
            print(f"{name} seed {seed}: test {result.test_accuracy:.4f}", flush=True)
    return policies


def report(args, cfg, policies, ops, rows) -> str:
    per_class = policies["per-class"]
    lines = [f"Per-class policy (`autoaug best --top {args.top}`), one line per class:", "",
             "| class | merged sub-policies |", "|---:|---|"]
    for g in per_class.class_policies:
        subs = " / ".join("; ".join(str(s) for s in sp) for sp in g.sub_policies) or "(none)"
        lines.append(f"| {','.join(map(str, g.classes))} | {subs} |")
    lines += ["", "Mean held-out accuracy (%) of each class over the trials that gave that class the op "
              "(density matching, 2 models trained on clean digits; any level, p >= 0.5):", "",
              "| class | " + " | ".join(ops) + " |", "|---:|" + "---:|" * len(ops)]
    for row in rows:
        lines.append(f"| {row[0]} | " + " | ".join(f"{100 * v:.1f}" for v in row[1:]) + " |")
    with open(CSV, newline="") as f:
        csv_rows = [r for r in csv.DictReader(f) if r["epochs"] == str(args.epochs)]
    lines += ["", f"Full training: {cfg['model']['name']}, {args.epochs} epochs on the same "
              f"{cfg['data']['n_train']} digits, test accuracy (%) on the 1,000 test digits:", "",
              "| policy | n | mean | std | per seed |", "|---|---:|---:|---:|---|"]
    for name, policy in policies.items():
        acc = [100 * float(r["test_accuracy"]) for r in csv_rows
               if r["policy"] == name and r["policy_hash"] == policy.digest()]
        if acc:
            std = statistics.stdev(acc) if len(acc) > 1 else float("nan")
            lines.append(f"| {name} | {len(acc)} | {statistics.fmean(acc):.2f} | {std:.2f} | "
                         + ", ".join(f"{a:.1f}" for a in acc) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    from autoaug.config import load_experiment
    from autoaug.search import best_policy
    RUNS.mkdir(parents=True, exist_ok=True)
    cfg = load_experiment(str(EXPERIMENT), [f"tracking_uri=sqlite:///{RUNS / 'mlflow.db'}",
                                            f"density.cache_dir={RUNS / 'density_models'}"])
    search(cfg)
    per_class = best_policy(cfg["name"], cfg["tracking_uri"], top=args.top)
    per_class.save(str(RUNS / "per_class_policy.json"))
    ops, rows = op_table(cfg, len(per_class.class_policies))
    policies = train_all(args, cfg, per_class)
    text = report(args, cfg, policies, ops, rows)
    print("\n" + text)
    write_doc(text)
    return 0


def write_doc(text: str) -> None:
    """Replace the generated section of the doc (the prose around it is kept)."""
    start, end = "<!-- digits-per-class:start -->", "<!-- digits-per-class:end -->"
    doc = DOC.read_text() if DOC.exists() else f"# Per-class policies on MNIST digits\n\n{start}\n{end}\n"
    head, rest = doc.split(start, 1)
    tail = rest.split(end, 1)[1]
    from autoaug.files import atomic_write
    atomic_write(DOC, f"{head}{start}\n{text}{end}{tail}")


if __name__ == "__main__":
    sys.exit(main())
