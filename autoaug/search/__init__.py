"""Search: a space of policies, drivers that sample it, and the study they share."""
from __future__ import annotations

from .space import SearchSpace, load_space
from .study import StudyContext

__all__ = ["SearchSpace", "StudyContext", "best_policy", "load_space", "run_search"]


def run_search(cfg: dict, progress: bool = True):
    """Run (or resume) the study that `cfg` describes; return (context, trials DataFrame)."""
    ctx = StudyContext.create(cfg)
    figures, complete = {}, True
    if cfg["driver"]["name"] == "optuna":
        from . import optuna_driver
        study = optuna_driver.run(ctx, progress=progress)
        figures = optuna_driver.figures(study)
        complete = not optuna_driver.running(study)
    else:
        from . import kerastuner_driver
        ctx.track()
        kerastuner_driver.run(ctx, progress=progress)
    frame = ctx.tracker.trials_frame()
    best = None
    done = frame[frame["state"] == "complete"] if len(frame) else frame
    if len(done):
        row = done.sort_values("val_accuracy", ascending=False).iloc[0]
        best = {"trial": int(row["trial"]), "run_id": row["run_id"], "val_accuracy": float(row["val_accuracy"])}
    ctx.finish(best, figures, complete)
    return ctx, frame


def best_policy(study: str, tracking_uri: str, storage: str | None = None):
    """The best complete trial's policy, with its provenance in ``policy.meta``.

    From the Optuna storage when one is given, else from the study's MLflow runs.
    """
    from .. import tracking
    from ..config import ConfigError
    from ..policy import Policy
    tracker = tracking.open_study(tracking_uri, study)
    parent = tracker.parent.data
    if storage:
        from .optuna_driver import best_trial
        number, value, policy_dict, run_id = best_trial(study, storage)
        policy = Policy.from_dict(policy_dict)
    else:
        frame = tracker.trials_frame()
        done = frame[frame["state"] == "complete"]
        if not len(done):
            raise ConfigError(f"study {study!r} has no complete trial yet")
        row = done.sort_values(["val_accuracy", "trial"], ascending=[False, True]).iloc[0]
        number, value, run_id = int(row["trial"]), float(row["val_accuracy"]), row["run_id"]
        policy = Policy.from_json(tracker.read_text(run_id, "policy.json"))
    meta = {"study": study, "trial": number, "run_id": run_id, "val_accuracy": value,
            "search_space_hash": parent.params.get("search_space_hash", ""),
            "code_version": parent.tags.get("autoaug.code_version", ""),
            "tracking_uri": tracking.redact(tracking_uri), "source": "optuna" if storage else "mlflow"}
    return Policy(policy.sub_policies, policy.stages, policy.ranges,
                  policy.name or f"{study}-trial{number}", meta)
