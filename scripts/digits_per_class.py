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
   paired by seed (``autoaug.evaluate.evaluate``), and reports test accuracy on the 1,000
   held-out test digits with each policy's paired gap to ``none``.

Everything goes under runs/digits_per_class/ (git-ignored); finished trainings are appended
to docs/digits_per_class_evaluate.csv (evaluate's CSV; docs/digits_per_class.csv is the record
of the first run, in older columns) and skipped when the script runs again; the report is
written to docs/digits_per_class.md.

    .venv/bin/python scripts/digits_per_class.py            # about 10 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RUNS = ROOT / "runs" / "digits_per_class"
EXPERIMENT = ROOT / "experiments" / "digits_per_class.yaml"
CSV = ROOT / "docs" / "digits_per_class_evaluate.csv"
DOC = ROOT / "docs" / "digits_per_class.md"
CONTROLS = ["none", "none+flip", "none+crop"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--top", type=int, default=3, help="trials merged per class (default 3)")
    p.add_argument("--seeds", type=int, default=3, help="full trainings per policy (default 3)")
    p.add_argument("--epochs", type=int, default=15, help="full-training epochs (default 15)")
    return p.parse_args(argv)


def search(exp):
    """Run the study unless MLflow already has all of its trials."""
    from autoaug import tracking
    from autoaug.search import run_search
    try:
        records = tracking.open_study(exp.tracking_uri, exp.name).trial_records()
        if sum(r.state == "complete" for r in records) >= exp.n_trials:
            print(f"search: study {exp.name} already has its {exp.n_trials} trials", flush=True)
            return
    except tracking.TrackingError:
        pass
    run_search(exp, progress=False)


def op_table(exp, num_classes: int) -> tuple[list, list]:
    """Per class and op: mean held-out accuracy of that class over trials that gave it the op."""
    from autoaug import tracking
    from autoaug.policy import Policy
    tracker = tracking.open_study(exp.tracking_uri, exp.name)
    sums: dict = {}
    for record in tracker.trial_records():
        if record.state != "complete":
            continue
        policy = Policy.from_json(tracker.read_text(record.run_id, "policy.json"))
        for group in policy.class_policies:
            for c in group.classes:
                acc = record.classes[c] if c < len(record.classes) else None
                if acc is None:
                    continue
                for op in {step.op for sp in group.sub_policies for step in sp}:
                    s = sums.setdefault((c, op), [0.0, 0])
                    s[0] += acc
                    s[1] += 1
    ops = sorted({op for _, op in sums})
    rows = [[c] + [sums[(c, op)][0] / sums[(c, op)][1] if (c, op) in sums else float("nan") for op in ops]
            for c in range(num_classes)]
    return ops, rows


def train_all(args, exp, per_class):
    """The controls and the per-class policy in full training, paired by seed (`evaluate`)."""
    from autoaug.evaluate import evaluate
    full = exp.with_overrides([f"training.epochs={args.epochs}", f"tracking_uri=sqlite:///{RUNS / 'evaluate.db'}"])
    return evaluate(full, CONTROLS + [("per-class", per_class)], list(range(args.seeds)), csv_path=str(CSV),
                    reference="none")


def report(args, exp, per_class, evaluation, ops, rows) -> str:
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
    lines += ["", f"Full training: {exp.model.name}, {args.epochs} epochs on the same {exp.data.n_train} "
              "digits, test accuracy (%) on the 1,000 test digits, paired by seed "
              "(`autoaug.evaluate`):", "", "```text", evaluation.table(), "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    from autoaug.config import load_experiment
    from autoaug.search import best_policy
    RUNS.mkdir(parents=True, exist_ok=True)
    exp = load_experiment(str(EXPERIMENT), [f"tracking_uri=sqlite:///{RUNS / 'mlflow.db'}",
                                            f"density.cache_dir={RUNS / 'density_models'}"])
    search(exp)
    per_class = best_policy(exp.name, exp.tracking_uri, top=args.top)
    per_class.save(str(RUNS / "per_class_policy.json"))
    ops, rows = op_table(exp, len(per_class.class_policies))
    evaluation = train_all(args, exp, per_class)
    text = report(args, exp, per_class, evaluation, ops, rows)
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
