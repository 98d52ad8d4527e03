"""Search: a space of policies, drivers that sample it, and the study they share."""
from __future__ import annotations

from .space import SearchSpace, load_space
from .study import StudyContext

__all__ = ["SearchSpace", "StudyContext", "load_space", "run_search"]


def run_search(cfg: dict, progress: bool = True):
    """Run (or resume) the study that `cfg` describes; return (context, trials DataFrame)."""
    ctx = StudyContext.create(cfg)
    figures = {}
    if cfg["driver"]["name"] == "optuna":
        from . import optuna_driver
        study = optuna_driver.run(ctx, progress=progress)
        figures = optuna_driver.figures(study)
    else:
        from . import kerastuner_driver
        kerastuner_driver.run(ctx)
    frame = ctx.tracker.trials_frame()
    best = None
    done = frame[frame["state"] == "complete"] if len(frame) else frame
    if len(done):
        row = done.sort_values("val_accuracy", ascending=False).iloc[0]
        best = {"trial": int(row["trial"]), "run_id": row["run_id"], "val_accuracy": float(row["val_accuracy"])}
    ctx.finish(best, figures)
    return ctx, frame
