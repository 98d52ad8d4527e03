"""Search: a space of policies, drivers that sample it, and the study they share."""
from __future__ import annotations

import re

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
        ctx.prepare_evaluation()
        kerastuner_driver.run(ctx, progress=progress)
    frame = ctx.tracker.trials_frame()
    best = None
    done = frame[frame["state"] == "complete"] if len(frame) else frame
    if len(done):
        trials = [{"number": int(r["trial"]), "value": float(r["val_accuracy"]), "run_id": r["run_id"],
                   "hash": r["policy_hash"]} for _, r in done.iterrows()]
        ranked = best_by_policy(trials)
        if ranked:
            head, mean, _ = ranked
            best = {"trial": head["number"], "run_id": head["run_id"], "val_accuracy": mean}
    ctx.finish(best, figures, complete)
    return ctx, frame


def best_by_policy(trials: list) -> tuple[dict, float, list] | None:
    """(first trial, mean value, trial numbers) of the policy with the best mean value
    (None when no trial has a value).

    A policy evaluated by several trials (TPE proposes a promising categorical point again;
    each trial trains with its own seed) is scored by the mean of its trials, not by its
    luckiest one: the seed-to-seed noise of a proxy is as large as the differences sought.
    """
    groups: dict = {}
    for t in sorted(trials, key=lambda t: t["number"]):
        if t["value"] == t["value"]:  # not NaN
            groups.setdefault(t.get("hash") or f"trial{t['number']}", []).append(t)
    if not groups:
        return None
    best = max(groups.values(), key=lambda g: (sum(t["value"] for t in g) / len(g), -g[0]["number"]))
    return best[0], sum(t["value"] for t in best) / len(best), [t["number"] for t in best]


def best_policy(study: str, tracking_uri: str, storage: str | None = None, top: int = 1):
    """The best complete trial's policy, with its provenance in ``policy.meta``.

    A policy that several trials evaluated is ranked by their mean (``best_by_policy``);
    its meta then lists them (``evaluations``, ``trials``). From the Optuna storage when one
    is given, else from the study's MLflow runs. With
    ``top`` N > 1, the union of the sub-policies of the N best searched trials of every
    fold (Fast AutoAugment's final policy); for a per-class search, of the N best trials
    of every class, by that class's own score.
    """
    from .. import tracking
    from ..config import ConfigError
    from ..policy import Policy
    if top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}")
    tracker = tracking.open_study(tracking_uri, study)
    parent = tracker.parent.data
    trials = _complete_trials(study, tracker, storage)
    ranked = best_by_policy(trials)
    if ranked is None:
        raise ConfigError(f"study {study!r} has no complete trial yet")
    best, mean, numbers = ranked
    meta = {"study": study, "trial": best["number"], "run_id": best["run_id"], "val_accuracy": mean,
            "search_space_hash": parent.params.get("search_space_hash", ""),
            "code_version": parent.tags.get("autoaug.code_version", ""),
            "tracking_uri": tracking.redact(tracking_uri), "source": "optuna" if storage else "mlflow"}
    if top == 1:
        if len(numbers) > 1:
            meta.update(evaluations=len(numbers), trials=numbers)
        policy = best["policy"]()
        return Policy(policy.sub_policies, policy.stages, policy.ranges,
                      policy.name or f"{study}-trial{best['number']}", meta,
                      class_policies=policy.class_policies)
    return merge_top(trials, top, f"{study}-top{top}", meta)


def merge_top(trials: list, n: int, name: str, meta: dict):
    """Union of the sub-policies of the `n` best searched trials per fold (or per class)."""
    from ..config import ConfigError
    from ..policy import ClassPolicy, Policy
    searched = [t for t in trials if not t["baseline"]]
    if not searched:
        raise ConfigError("no complete searched trial to merge (only baselines so far)")
    head = max(searched, key=lambda t: (t["value"], -t["number"]))
    policies: dict = {}

    def policy_of(t):
        if t["number"] not in policies:
            policies[t["number"]] = t["policy"]()
        return policies[t["number"]]

    def top_by(score) -> list:
        return sorted(searched, key=lambda t: (-score(t), t["number"]))[:n]

    def union(groups) -> tuple:
        return tuple(dict.fromkeys(sp for subs in groups for sp in subs))

    first = policy_of(head)
    chosen: dict = {}
    if first.per_class:
        classes = sorted({c for g in first.class_policies for c in g.classes})
        groups = []
        for c in classes:
            picked = top_by(lambda t: _score(t["classes"], c, t["value"]))
            chosen.update({t["number"]: None for t in picked})
            groups.append(ClassPolicy((c,), union(g.sub_policies for t in picked
                                                  for g in policy_of(t).class_policies if c in g.classes)))
        subs, selection = (), "per-class"
    else:
        folds = max((len(t["folds"]) for t in searched), default=0) or 1
        picked_subs = []
        for k in range(folds):
            picked = top_by(lambda t: _score(t["folds"], k, t["value"]))
            chosen.update({t["number"]: None for t in picked})
            picked_subs += [policy_of(t).sub_policies for t in picked]
        subs, groups, selection = union(picked_subs), [], "per-fold"
    meta = dict(meta, trial=head["number"], run_id=head["run_id"], val_accuracy=head["value"],
                merged_top=n, merged_trials=sorted(chosen), selection=selection)
    return Policy(subs, first.stages, first.ranges, name, meta, class_policies=tuple(groups))


def _score(values: list, i: int, default: float) -> float:
    v = values[i] if i < len(values) else None
    return default if v is None or v != v else v


def _complete_trials(study: str, tracker, storage: str | None) -> list:
    """[{number, value, run_id, baseline, folds, classes, policy: () -> Policy}] of complete trials."""
    from ..policy import Policy
    out = []
    if storage:
        from .optuna_driver import complete_trials
        for t in complete_trials(study, storage):
            attrs = t.user_attrs
            out.append({"number": t.number, "value": t.value, "run_id": attrs.get("mlflow_run_id"),
                        "hash": attrs.get("policy_hash"),
                        "baseline": attrs.get("baseline", ""), "folds": attrs.get("fold_accuracy", []),
                        "classes": attrs.get("class_accuracy", []),
                        "policy": lambda d=attrs["policy"]: Policy.from_dict(d)})
        return out
    for run in tracker.trial_runs():
        tags, metrics = run.data.tags, run.data.metrics
        value = metrics.get("val_accuracy_final")
        if tags.get("autoaug.state") != "complete" or value is None or value != value:
            continue
        out.append({"number": int(tags.get("autoaug.trial", -1)), "value": value,
                    "run_id": run.info.run_id, "hash": run.data.params.get("policy_hash"),
                    "baseline": tags.get("autoaug.baseline", ""),
                    "folds": _indexed(metrics, "fold"), "classes": _indexed(metrics, "class"),
                    "policy": lambda r=run.info.run_id: Policy.from_json(tracker.read_text(r, "policy.json"))})
    return out


def _indexed(metrics: dict, prefix: str) -> list:
    """[metrics['<prefix>0_accuracy'], ...] up to the highest index logged (None for gaps)."""
    found = {}
    for key, value in metrics.items():
        m = re.fullmatch(rf"{prefix}(\d+)_accuracy", key)
        if m:
            found[int(m.group(1))] = value
    return [found.get(i) for i in range(max(found, default=-1) + 1)]
