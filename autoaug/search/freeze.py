"""Freezing a study's answer: the best policy by the mean of its trials, or the top-N merge."""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

from .. import tracking
from ..config import ConfigError
from ..policy import ClassPolicy, Policy
from ..tracking import TrialRecord


def best_by_policy(trials: list[TrialRecord]) -> tuple[TrialRecord, float, list] | None:
    """(first trial, mean value, trial numbers) of the policy with the best mean value
    (None when no trial has a value).

    A policy evaluated by several trials (TPE proposes a promising categorical point again;
    each trial trains with its own seed) is scored by the mean of its trials, not by its
    luckiest one: the seed-to-seed noise of a proxy is as large as the differences sought.
    """
    groups: dict = {}
    for t in sorted(trials, key=lambda t: t.number):
        if not math.isnan(t.value) and t.same_as is None:  # a reused score is no new evidence
            groups.setdefault(t.policy_hash or f"trial{t.number}", []).append(t)
    if not groups:
        return None
    best = max(groups.values(), key=lambda g: (sum(t.value for t in g) / len(g), -g[0].number))
    return best[0], sum(t.value for t in best) / len(best), [t.number for t in best]


def best_policy(study: str, tracking_uri: str, storage: str | None = None, top: int = 1) -> Policy:
    """The best complete trial's policy, with its provenance in ``policy.meta``.

    When the study made a selection (``selection.top_k``), its winner by the mean over its
    paired seeds, with the gap to the best baseline in ``meta["paired_selection"]``. Otherwise a
    policy that several trials evaluated is ranked by their mean (`best_by_policy`);
    its meta then lists them (``evaluations``, ``trials``). From the Optuna storage when one
    is given, else from the study's MLflow runs. With ``top`` N > 1, the union of the
    sub-policies of the N best searched trials of every fold (Fast AutoAugment's final
    policy); for a per-class search, of the N best trials of every class, by that class's
    own score.

    Args:
        study: the study name.
        tracking_uri: the MLflow store the study logged to.
        storage: read the trials from this Optuna storage instead of MLflow.
        top: 1 for the best policy, N > 1 for the top-N merge.

    Returns:
        The frozen `Policy`; ``policy.meta`` holds study, trial, run id, score, space hash
        and code version.

    Raises:
        ConfigError: ``top`` < 1, or the study has no complete trial.
        TrackingError: no such study in the store.

    >>> from autoaug.config import load_experiment
    >>> from autoaug.search import run_search
    >>> exp = load_experiment(None, ["name=doc", "n_trials=2", "baselines=[none]", "data.n_train=60",
    ...                              "data.n_val=30", "training.epochs=1", "driver.pruner=none",
    ...                              "tracking_uri=sqlite:///" + tmp + "/mlflow.db"])
    >>> _ = run_search(exp, progress=False, log=lambda line: None)
    >>> policy = best_policy("doc", exp.tracking_uri)
    >>> policy.meta["study"], policy.meta["trial"] in (0, 1)
    ('doc', True)
    """
    if top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}")
    tracker = tracking.open_study(tracking_uri, study)
    parent = tracker.parent.data
    trials, policy_of = _complete_trials(study, tracker, storage)
    ranked = best_by_policy(trials)
    if ranked is None:
        raise ConfigError(f"study {study!r} has no complete trial yet")
    best, mean, numbers = ranked
    selection = tracker.read_selection() if top == 1 else None
    if selection is not None:  # paired seeds decided: the selection's winner, by its mean
        winner = selection["winner"]
        best = next(t for t in trials if t.number == winner["trial"])
        mean, numbers = winner["mean"], [best.number]
    meta = {"study": study, "trial": best.number, "run_id": best.run_id, "val_accuracy": mean,
            "search_space_hash": parent.params.get("search_space_hash", ""),
            "code_version": parent.tags.get("autoaug.code_version", ""),
            "tracking_uri": tracking.redact(tracking_uri), "source": "optuna" if storage else "mlflow"}
    if top > 1:
        return merge_top(trials, policy_of, top, f"{study}-top{top}", meta)
    if len(numbers) > 1:
        meta.update(evaluations=len(numbers), trials=numbers)
    if selection is not None:
        meta["paired_selection"] = {k: selection[k] for k in ("seeds", "gap", "sentence")}
        meta["paired_selection"]["reference"] = (selection["reference"] or {}).get("baseline")
    policy = policy_of(best)  # everything of it (a schedule too); the stored meta under the provenance
    return dataclasses.replace(policy, name=policy.name or f"{study}-trial{best.number}",
                               meta={**policy.meta, **meta})


def merge_top(trials: list[TrialRecord], policy_of: Callable[[TrialRecord], Policy], n: int, name: str,
              meta: dict) -> Policy:
    """Union of the sub-policies of the `n` best searched trials per fold (or per class)."""
    searched = [t for t in trials if not t.baseline]
    if not searched:
        raise ConfigError("no complete searched trial to merge (only baselines so far)")
    head = max(searched, key=lambda t: (t.value, -t.number))
    policies: dict = {}

    def policy(t: TrialRecord) -> Policy:
        if t.number not in policies:
            policies[t.number] = policy_of(t)
        return policies[t.number]

    def top_by(score) -> list:
        return sorted(searched, key=lambda t: (-score(t), t.number))[:n]

    def union(groups) -> tuple:
        return tuple(dict.fromkeys(sp for subs in groups for sp in subs))

    first = policy(head)
    if first.schedule is not None:  # sub-policies of schedules do not add up to one schedule
        raise ConfigError(f"trial {head.number} holds a schedule: --top merges fixed policies; use --top 1")
    chosen: dict = {}
    if first.per_class:
        classes = sorted({c for g in first.class_policies for c in g.classes})
        groups = []
        for c in classes:
            picked = top_by(lambda t: _score(t.classes, c, t.value))
            chosen.update({t.number: None for t in picked})
            groups.append(ClassPolicy((c,), union(g.sub_policies for t in picked
                                                  for g in policy(t).class_policies if c in g.classes)))
        subs, selection = (), "per-class"
    else:
        folds = max((len(t.folds) for t in searched), default=0) or 1
        picked_subs = []
        for k in range(folds):
            picked = top_by(lambda t: _score(t.folds, k, t.value))
            chosen.update({t.number: None for t in picked})
            picked_subs += [policy(t).sub_policies for t in picked]
        subs, groups, selection = union(picked_subs), [], "per-fold"
    meta = dict(meta, trial=head.number, run_id=head.run_id, val_accuracy=head.value,
                merged_top=n, merged_trials=sorted(chosen), selection=selection)
    return Policy(subs, first.stages, first.ranges, name, meta, class_policies=tuple(groups))


def _score(values: tuple, i: int, default: float) -> float:
    v = values[i] if i < len(values) else None
    return default if v is None or math.isnan(v) else v


def _complete_trials(study: str, tracker: tracking.Tracker, storage: str | None):
    """(complete trial records, a function that loads a record's policy)."""
    if storage:
        from .optuna_driver import complete_trials
        return complete_trials(study, storage)
    trials = [t for t in tracker.trial_records() if t.complete]
    return trials, lambda t: Policy.from_json(tracker.read_text(t.run_id, "policy.json"))
