"""`run_search`: one worker of a study, whichever driver the experiment names."""
from __future__ import annotations

from ..config import Experiment
from ..signals import on_interrupt
from ..tracking import records_frame
from .freeze import best_by_policy
from .selection import select
from .study import StudyContext


def run_search(exp: Experiment, progress: bool = True, log=None, allow_forbidden_ops: bool = False):
    """Run (or resume) the study that `exp` describes; once it is complete, its selection.

    Args:
        exp: the experiment (`autoaug.config.load_experiment`).
        progress: show the driver's progress bar.
        log: where each finished trial and the selection (``selection.top_k`` > 0) are
            reported, a line each (default: above the progress bar, or print).
        allow_forbidden_ops: run the baselines as written, even where they use ops that
            change the dataset's labels (else they are adapted, `autoaug.labels`).

    Returns:
        (the `StudyContext`, a pandas DataFrame of every trial of the study, all workers).

    Raises:
        ConfigError, DataError, PolicyError, TrackingError: a bad experiment, dataset,
        baseline or store, before any trial runs.

    >>> from autoaug.config import load_experiment
    >>> exp = load_experiment(None, ["name=doc", "n_trials=2", "baselines=[none]", "data.n_train=60",
    ...                              "data.n_val=30", "training.epochs=1", "driver.pruner=none",
    ...                              "tracking_uri=sqlite:///" + tmp + "/mlflow.db"])
    >>> ctx, frame = run_search(exp, progress=False, log=lambda line: None)  # quiet: no line per trial
    >>> list(frame["state"]), list(frame["baseline"])
    (['complete', 'complete'], ['none', ''])
    """
    ctx = StudyContext.create(exp, allow_forbidden_ops=allow_forbidden_ops)
    if log is None:  # under a progress bar, lines go above it instead of through it
        from tqdm import tqdm
        log = tqdm.write if progress else print
    ctx.log = log
    if exp.driver.name == "optuna":
        from . import optuna_driver as driver
    elif exp.driver.name == "pbt":
        from . import pbt_driver as driver
    else:
        from . import kerastuner_driver as driver

    def close_runs():  # SIGINT/SIGTERM: no MLflow run of ours is left RUNNING
        try:
            ctx.interrupted()
        except Exception:  # a store that went away: the interrupt still wins
            pass
    with on_interrupt(close_runs):
        figures, complete = driver.run(ctx, progress=progress)
        selection = select(ctx, log=log) if complete else None
        records = ctx.tracker.trial_records()
        ranked = best_by_policy([t for t in records if t.complete])
        best = None
        if selection is not None:
            w = selection["winner"]
            best = {"trial": w["trial"], "run_id": w["run_id"], "val_accuracy": w["mean"]}
        elif ranked:
            head, mean, _ = ranked
            best = {"trial": head.number, "run_id": head.run_id, "val_accuracy": mean}
        ctx.finish(best, figures, complete)
    return ctx, records_frame(records)
