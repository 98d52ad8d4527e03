"""`run_search`: one worker of a study, whichever driver the experiment names."""
from __future__ import annotations

from ..config import Experiment
from ..tracking import records_frame
from .freeze import best_by_policy
from .study import StudyContext


def run_search(exp: Experiment, progress: bool = True):
    """Run (or resume) the study that `exp` describes.

    Args:
        exp: the experiment (`autoaug.config.load_experiment`).
        progress: show the driver's progress bar.

    Returns:
        (the `StudyContext`, a pandas DataFrame of every trial of the study, all workers).

    Raises:
        ConfigError, DataError, PolicyError, TrackingError: a bad experiment, dataset,
        baseline or store, before any trial runs.
    """
    ctx = StudyContext.create(exp)
    if exp.driver.name == "optuna":
        from . import optuna_driver as driver
    else:
        from . import kerastuner_driver as driver
    figures, complete = driver.run(ctx, progress=progress)
    records = ctx.tracker.trial_records()
    ranked = best_by_policy([t for t in records if t.complete])
    best = None
    if ranked:
        head, mean, _ = ranked
        best = {"trial": head.number, "run_id": head.run_id, "val_accuracy": mean}
    ctx.finish(best, figures, complete)
    return ctx, records_frame(records)
