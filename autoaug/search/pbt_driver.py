"""The population-based driver (``driver.name: pbt``): Population Based Augmentation.

P members train the experiment's training in lockstep, ``driver.interval_epochs`` (k) epochs
at a time. At every barrier the members are ranked by validation accuracy; each member of
the bottom ``quantile`` copies the weights, optimizer state and policy of a member of the top
``quantile`` (truncation selection), then explores: per sub-policy step, with probability
``resample_probability`` its op, probability and level are drawn again, else its probability
and level move by 0..``max_shift_bins`` bins of the space's grids (PBA, Ho et al. 2019). A
member's result is the policy it trained with in each interval, through the members it
copied from (its lineage): a step schedule, which `autoaug best` freezes and `autoaug
evaluate` replays from scratch.

Coordination is the Optuna study alone: one trial per member per generation (a *segment*,
user attributes ``pbt_member`` and ``pbt_generation``), all queued when the study is created,
after the baselines. A worker claims a queued segment (WAITING -> RUNNING is atomic in every
Optuna storage) once the previous generation is complete, so any number of ``autoaug worker``
processes on journal or PostgreSQL storage share one population; one process trains it all
with any storage. Checkpoints (`autoaug.train.save_checkpoint`) live in the member's MLflow
run (``checkpoints/genNNN.npz``) or, with ``driver.checkpoint_dir``, in that folder; both must
be readable by every worker. A killed worker's segment is failed (journal: by a worker on the
same host that finds its process gone; PostgreSQL: by its heartbeat) and queued again; it
then trains again from the last checkpoints. The search space's structural choices (stage
order, optional stages, RandAugment's N) stay as each initial draw made them: a member's
lineage keeps one augmentation graph.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

from ..config import ConfigError, Experiment
from ..policy import Policy
from ..signals import on_interrupt
from ..tracking import TrialRecord
from .optuna_driver import (KILLED, PARENT_ATTR, PARENT_WAIT_S, WORKER_ATTR, enqueue_baselines, make_storage,
                            recover_killed_trials, storage_kind, worker_id)
from .study import INTERRUPTED, StudyContext, TrialOutcome, failure_reason

PBT_ATTR = "pbt"  # study user attribute: the population's settings and its members' MLflow runs
MEMBER, GENERATION = "pbt_member", "pbt_generation"
RETRYABLE = (INTERRUPTED, KILLED)  # fail reasons after which a segment is queued again
POLL_S = 1.0  # how often a worker waiting at the barrier reads the study
_STRUCTURAL = re.compile(r"^(order|n|stage\.[^.]+)$")  # parameters that change the graph's structure
_STEP = re.compile(r"^(.*sp\d+\.step\d+)\.(op|p|level)$")


# --------------------------------------------------------------------------- policies as parameters
@dataclass(frozen=True)
class Param:
    """One parameter of the search space: categorical ``choices``, or an int/float range."""
    name: str
    kind: str  # categorical | int | float
    choices: tuple = ()
    low: float = 0
    high: float = 0


class _Recording:
    """A Suggest that answers from `values` (or from `fallback` for a missing name) and records
    every parameter the space asked for, with its choices."""

    def __init__(self, values: dict | None = None, fallback=None):
        self.values, self.fallback = dict(values or {}), fallback
        self.params: dict[str, Param] = {}

    def _answer(self, param: Param, draw):
        self.params[param.name] = param
        if param.name not in self.values:
            if self.fallback is None:
                raise ConfigError(f"parameter {param.name!r} is missing from a member's policy")
            self.values[param.name] = draw()
        return self.values[param.name]

    def categorical(self, name, choices):
        return self._answer(Param(name, "categorical", tuple(choices)),
                            lambda: self.fallback.categorical(name, choices))

    def int(self, name, low, high):
        return self._answer(Param(name, "int", low=low, high=high), lambda: self.fallback.int(name, low, high))

    def float(self, name, low, high):
        return self._answer(Param(name, "float", low=low, high=high), lambda: self.fallback.float(name, low, high))


def initial_params(space, seed: int, num_classes: int) -> dict:
    """A member's first policy, as the space's parameters: a uniform draw (`SearchSpace.random_policy`)."""
    from .space import RandomSuggest
    rec = _Recording(fallback=RandomSuggest(seed))
    space.sample(rec, num_classes)
    return rec.values


def policy_of(space, params: dict, num_classes: int) -> Policy:
    """The policy that the space's parameters `params` describe."""
    return space.sample(_Recording(params), num_classes)


def explore(space, params: dict, rng: np.random.Generator, num_classes: int, *,
            resample_probability: float = 0.2, max_shift_bins: int = 3) -> dict:
    """PBA's explore, within the space: new parameters near `params`.

    Per sub-policy step: with probability `resample_probability` its op, probability and level
    are drawn again uniformly; else its probability and level move by a uniform 0..`max_shift_bins`
    bins of their grids, up or down (clipped at the ends). Other numeric parameters (a stage's
    searched level, RandAugment's M) do the same alone; other choices (TrivialAugment's op set)
    are drawn again with `resample_probability`. Structural ones (stage order, optional stages,
    RandAugment's N) stay. The same `rng` state gives the same result.
    """
    rec = _Recording(params)
    space.sample(rec, num_classes)
    out = dict(params)
    groups: dict[str, list[Param]] = {}
    for name, param in rec.params.items():
        if _STRUCTURAL.match(name):
            continue
        m = _STEP.match(name)
        groups.setdefault(m.group(1) if m else name, []).append(param)
    for key in sorted(groups):
        members = groups[key]
        resample = rng.random() < resample_probability
        for param in members:
            if resample:
                out[param.name] = _draw(param, rng)
            elif _numeric(param):
                out[param.name] = _shift(param, out[param.name], rng, max_shift_bins)
    return out


def _numeric(param: Param) -> bool:
    return param.kind != "categorical" or all(
        isinstance(c, (int, float)) and not isinstance(c, bool) for c in param.choices)


def _draw(param: Param, rng) -> object:
    if param.kind == "categorical":
        return param.choices[int(rng.integers(len(param.choices)))]
    if param.kind == "int":
        return int(rng.integers(param.low, param.high + 1))
    return float(rng.uniform(param.low, param.high))


def _shift(param: Param, value, rng, max_bins: int):
    step = int(rng.integers(0, max_bins + 1)) * (1 if rng.random() < 0.5 else -1)
    if param.kind == "categorical":  # the grid is the choices, in the order the space lists them
        ordered = sorted(range(len(param.choices)), key=lambda i: param.choices[i])
        i = ordered.index(param.choices.index(value))
        return param.choices[ordered[min(max(i + step, 0), len(ordered) - 1)]]
    if param.kind == "int":
        return int(min(max(value + step, param.low), param.high))
    return float(min(max(value + step * (param.high - param.low) / 10, param.low), param.high))


# --------------------------------------------------------------------------- the population's plan
@dataclass(frozen=True)
class Plan:
    """The population's shape, fixed when the study is created."""
    population: int
    interval_epochs: int
    epochs: int

    @property
    def generations(self) -> int:
        return math.ceil(self.epochs / self.interval_epochs)

    def epochs_of(self, generation: int) -> tuple[int, int]:
        """[start, stop) of a generation's epochs."""
        k = self.interval_epochs
        return generation * k, min(self.epochs, (generation + 1) * k)

    def quartile(self, quantile: float) -> int:
        """How many members are copied over (and copied from) at a barrier: at least one."""
        return min(self.population // 2, max(1, int(quantile * self.population)))


def exploit(plan: Plan, quantile: float, scores: dict[int, float | None], seed: int,
            generation: int) -> dict[int, int]:
    """{member: the member it copies from} for the bottom `quantile` at the barrier before
    `generation` (truncation selection by `scores`; None = failed, which always copies).
    Each copier draws its source among the top quantile with a generator of its own."""
    n = plan.quartile(quantile)
    ranked = sorted(scores, key=lambda m: (-math.inf if scores[m] is None else scores[m], -m))
    top = [m for m in ranked[-n:] if scores[m] is not None]
    if not top:
        raise RuntimeError(f"every member of the population failed before generation {generation}")
    copiers = set(ranked[:n]) | {m for m, v in scores.items() if v is None}
    return {m: top[int(_rng(seed, generation, m, 0).integers(len(top)))]
            for m in sorted(copiers) if m not in top}


def _rng(seed: int, generation: int, member: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, generation, member, purpose])


# --------------------------------------------------------------------------- reading the study
def _segments(study: optuna.Study) -> tuple[dict, dict, list]:
    """({(member, generation): its latest trial}, {baseline: its latest trial}, every trial)."""
    trials = study.get_trials(deepcopy=False)
    segments, baselines = {}, {}
    for t in trials:  # in number order: a retry replaces what it retries, nothing replaces a complete one
        key = _key(t)
        found = segments if MEMBER in t.user_attrs else baselines if key is not None else None
        if found is not None and not (key in found and found[key].state == TrialState.COMPLETE):
            found[key] = t
    return segments, baselines, trials


def _key(t):
    """(member, generation) of a segment, the name of a baseline, or None."""
    a = t.user_attrs
    return (a[MEMBER], a[GENERATION]) if MEMBER in a else a.get("baseline")


def _final(t) -> bool:
    """Done for good: complete, or failed for a reason that is not retried."""
    reason = t.user_attrs.get("fail_reason")
    return t.state == TrialState.COMPLETE or (
        t.state == TrialState.FAIL and reason is not None and reason not in RETRYABLE)


def _score(t) -> float | None:
    return t.value if t.state == TrialState.COMPLETE else None


def lineage(segments: dict, member: int, generation: int) -> list[dict]:
    """The intervals that made `member`'s weights after `generation`, oldest first:
    [{generation, member (whose run trained it), source, start_epoch, stop_epoch, params,
    policy, val_accuracy}], following the members it copied from."""
    out = []
    m = member
    for g in range(generation, -1, -1):
        t = segments[(m, g)]
        a = t.user_attrs
        out.append({"generation": g, "member": m, "copied_from": a.get("source"),
                    "start_epoch": a["start_epoch"], "stop_epoch": a["stop_epoch"], "params": a["params"],
                    "policy": a["policy"], "val_accuracy": _score(t)})
        if a.get("source") is not None:
            m = a["source"]
    return out[::-1]


def schedule_of(lineage_: list[dict], epochs: int, name: str = "", meta: dict | None = None) -> Policy:
    """A lineage as a step schedule: each interval's policy from its start epoch."""
    intervals = [(iv["start_epoch"], Policy.from_dict(iv["policy"])) for iv in lineage_]
    return Policy.from_intervals(intervals, epochs, name=name, meta=meta)


def history_json(plan: Plan, member: int, lineage_: list[dict]) -> dict:
    """What a member's `policy_history.json` holds: its intervals and the policy of every epoch."""
    per_epoch = []
    for iv in lineage_:
        digest = Policy.from_dict(iv["policy"]).digest()
        per_epoch += [{"epoch": e, "policy_hash": digest, "generation": iv["generation"]}
                      for e in range(iv["start_epoch"], iv["stop_epoch"])]
    return {"member": member, "population": plan.population, "interval_epochs": plan.interval_epochs,
            "epochs": plan.epochs, "intervals": lineage_, "per_epoch": per_epoch}


def member_records(study: optuna.Study) -> tuple[list[TrialRecord], object]:
    """(records of the finished members and baselines, a function that gives a record's policy)
    for `autoaug best --storage` on a population study."""
    info = study.user_attrs[PBT_ATTR]
    plan = Plan(info["population"], info["interval_epochs"], info["epochs"])
    segments, baselines, _ = _segments(study)
    records, policies = [], {}
    last = plan.generations - 1
    for m in range(plan.population):
        t = segments.get((m, last))
        if t is None or t.state != TrialState.COMPLETE:
            continue
        number = info["first_number"] + m
        policies[number] = lambda m=m: schedule_of(lineage(segments, m, last), plan.epochs)
        records.append(TrialRecord(number=number, state="complete", value=t.value,
                                   run_id=info["member_runs"][m], policy_hash=policies[number]().digest()))
    for name, t in baselines.items():
        if t.state == TrialState.COMPLETE:
            policies[t.number] = lambda t=t: Policy.from_dict(t.user_attrs["policy"])
            records.append(TrialRecord(number=t.number, state="complete", value=t.value,
                                       run_id=t.user_attrs.get("mlflow_run_id"),
                                       policy_hash=t.user_attrs.get("policy_hash", ""), baseline=name))
    return records, lambda record: policies[record.number]()


# --------------------------------------------------------------------------- checkpoints
class Checkpoints:
    """Members' checkpoints: in ``driver.checkpoint_dir``/<study>/memberMM/genNNN.npz, or as
    ``checkpoints/genNNN.npz`` artifacts of the member's MLflow run."""

    def __init__(self, ctx: StudyContext):
        folder = ctx.exp.driver.checkpoint_dir
        self.tracker = ctx.tracker
        self.folder = os.path.join(ctx.exp.resolve(folder), ctx.exp.name) if folder else None

    def where(self) -> str:
        return self.folder or "the members' MLflow runs (checkpoints/)"

    def save(self, local: str, member: int, generation: int, run_id: str) -> None:
        if self.folder:
            import shutil
            from ..files import atomic_path
            with atomic_path(os.path.join(self.folder, f"member{member:02d}", f"gen{generation:03d}.npz")) as tmp:
                shutil.copyfile(local, tmp)
        else:
            self.tracker.log_checkpoint(run_id, local, f"checkpoints/gen{generation:03d}.npz")

    def fetch(self, member: int, generation: int, run_id: str, tmp: str) -> str:
        if self.folder:
            path = os.path.join(self.folder, f"member{member:02d}", f"gen{generation:03d}.npz")
            if not os.path.exists(path):
                raise FileNotFoundError(f"checkpoint {path} is missing: every worker needs the same "
                                        f"driver.checkpoint_dir")
            return path
        return self.tracker.fetch_artifact(run_id, f"checkpoints/gen{generation:03d}.npz", tmp)


# --------------------------------------------------------------------------- the driver
def _open(ctx: StudyContext, plan: Plan) -> optuna.Study:
    """Create (and fill: baselines, then P x G segments, one MLflow run per member) or join the study."""
    exp = ctx.exp
    storage = make_storage(exp.storage, exp.driver.heartbeat_s)
    kwargs = dict(study_name=exp.name, storage=storage, direction="maximize",
                  sampler=optuna.samplers.RandomSampler(seed=exp.seed))
    try:
        study = optuna.create_study(**kwargs)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.create_study(load_if_exists=True, **kwargs)
        deadline = time.monotonic() + PARENT_WAIT_S
        while PARENT_ATTR not in study.user_attrs and time.monotonic() < deadline:
            time.sleep(0.5)  # the creator is queuing the population and creating the runs
        info = study.user_attrs.get(PBT_ATTR)
        if info is None or PARENT_ATTR not in study.user_attrs:
            raise ConfigError(f"study {exp.name!r} exists but is not a complete population study "
                              f"(another driver's, or its creator died): use another study name")
        mine = {"population": plan.population, "interval_epochs": plan.interval_epochs, "epochs": plan.epochs}
        theirs = {k: info[k] for k in mine}
        if mine != theirs:
            raise ConfigError(f"study {exp.name!r} was started with {theirs}, not {mine}: use its "
                              f"settings or another study name")
        ctx.track(study.user_attrs[PARENT_ATTR])
        return study
    try:
        parent_id = ctx.track(new=True)
    except BaseException:  # e.g. an unreachable tracking server: leave no half-made study
        optuna.delete_study(study_name=study.study_name, storage=study._storage)
        raise
    enqueue_baselines(study, exp.baselines)
    first = len(study.get_trials(deepcopy=False))
    runs = [ctx.tracker.start_member(first + m, m) for m in range(plan.population)]
    for g in range(plan.generations):
        for m in range(plan.population):
            study.enqueue_trial({}, user_attrs={MEMBER: m, GENERATION: g})
    study.set_user_attr(PBT_ATTR, {"population": plan.population, "interval_epochs": plan.interval_epochs,
                                   "epochs": plan.epochs, "quantile": exp.driver.quantile,
                                   "first_number": first, "member_runs": runs})
    study.set_user_attr(PARENT_ATTR, parent_id)
    return study


def _claim(study: optuna.Study, t) -> bool:
    """WAITING -> RUNNING for this worker; False when another worker took it first."""
    try:
        won = study._storage.set_trial_state_values(t._trial_id, TrialState.RUNNING)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    if won:
        study._storage.set_trial_user_attr(t._trial_id, WORKER_ATTR, worker_id())
    return won


def _fail(study: optuna.Study, t, reason: str, requeue: bool) -> None:
    storage = study._storage
    try:
        storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return  # another worker ended it first (and queued it again)
    if requeue:
        keep = {k: v for k, v in t.user_attrs.items() if k in (MEMBER, GENERATION, "baseline")}
        study.enqueue_trial({}, user_attrs={**keep, "retry_of": t.number})


class _Worker:
    """One worker's loop over the study: claim what is ready, train it, repeat until done."""

    def __init__(self, ctx: StudyContext, study: optuna.Study, plan: Plan):
        self.ctx, self.study, self.plan = ctx, study, plan
        self.exp, self.driver = ctx.exp, ctx.exp.driver
        self.info = study.user_attrs[PBT_ATTR]
        self.runs = self.info["member_runs"]
        self.kind = storage_kind(self.exp.storage)
        self.checkpoints = Checkpoints(ctx)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        self.ctx.tracker.reopen_runs([self.runs[m] for m in range(self.plan.population)
                                      if not self._member_done(m)])
        while True:
            recover_killed_trials(self.study, self.kind)
            segments, baselines, trials = _segments(self.study)
            self._requeue_lost(segments, baselines)
            if all(_final(t) for t in list(segments.values()) + list(baselines.values())) \
                    and not any(t.state == TrialState.WAITING for t in trials):
                return
            work = self._ready(segments, baselines, trials)
            if not any(self._do(t, segments) for t in work):
                if self.kind == "memory":
                    raise RuntimeError("the population is stuck: nothing to train and nobody training")
                time.sleep(POLL_S)

    def _member_done(self, m: int) -> bool:
        segments, _, _ = _segments(self.study)
        t = segments.get((m, self.plan.generations - 1))
        return t is not None and _final(t)

    def _requeue_lost(self, segments, baselines) -> None:
        """A segment failed as interrupted or killed whose retry was never queued (its worker died
        in between): queue it now (a duplicate is dropped when claimed)."""
        for t in list(segments.values()) + list(baselines.values()):  # the latest of each: no retry queued
            if t.state == TrialState.FAIL and not _final(t):
                keep = {k: v for k, v in t.user_attrs.items() if k in (MEMBER, GENERATION, "baseline")}
                self.study.enqueue_trial({}, user_attrs={**keep, "retry_of": t.number})

    def _ready(self, segments, baselines, trials) -> list:
        """Queued trials this worker may start now: baselines, duplicates to drop, then segments
        whose previous generation is complete, in order."""
        done_gen = {g: all((m, g) in segments and _final(segments[(m, g)]) for m in range(self.plan.population))
                    for g in range(self.plan.generations)}
        ready = []
        for t in trials:
            if t.state != TrialState.WAITING:
                continue
            g = t.user_attrs.get(GENERATION)
            if g is None or g == 0 or done_gen.get(g - 1) or self._duplicate(t, segments, baselines):
                ready.append(t)
        return ready

    @staticmethod
    def _duplicate(t, segments, baselines) -> bool:
        key = _key(t)
        latest = segments.get(key) if MEMBER in t.user_attrs else baselines.get(key)
        return latest is not None and latest.number != t.number and _final(latest)

    def _do(self, t, segments) -> bool:
        """Claim and run `t`; False when another worker claimed it first."""
        if not _claim(self.study, t):
            return False
        segments, baselines, _ = _segments(self.study)
        if self._duplicate(t, segments, baselines):
            _fail(self.study, t, "duplicate: already done", requeue=False)
            return True
        from optuna.storages._heartbeat import get_heartbeat_thread

        def requeue():
            _fail(self.study, t, INTERRUPTED, requeue=True)
            running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            self.ctx.others_running = bool(running)
            if not running:  # nobody trains the members any more: their runs stop with the study
                self.ctx.tracker.stop_runs(self.runs)
        with on_interrupt(requeue), get_heartbeat_thread(t._trial_id, self.study._storage):
            if MEMBER in t.user_attrs:
                self._segment(t, segments)
            else:
                self._baseline(t)
        return True

    # ------------------------------------------------------------------ trials
    def _baseline(self, t) -> None:
        name = t.user_attrs["baseline"]
        policy = self.ctx.baseline_policy(name)
        storage = self.study._storage
        storage.set_trial_user_attr(t._trial_id, "policy", policy.to_dict())
        storage.set_trial_user_attr(t._trial_id, "policy_hash", policy.digest())
        try:
            outcome = self.ctx.run_trial(t.number, policy, {}, baseline=name,
                                         on_start=lambda run_id: storage.set_trial_user_attr(
                                             t._trial_id, "mlflow_run_id", run_id))
        except Exception as e:  # logged as failed in MLflow; the population goes on
            _fail(self.study, t, failure_reason(e), requeue=False)
            return
        self.study.tell(t.number, outcome.value)

    def _segment(self, t, segments) -> None:
        plan, exp, ctx = self.plan, self.exp, self.ctx
        m, g = t.user_attrs[MEMBER], t.user_attrs[GENERATION]
        start, stop = plan.epochs_of(g)
        source = None
        if g == 0:
            params = initial_params(ctx.space, exp.seed * 1000 + m, ctx.num_classes)
        else:
            scores = {j: _score(segments[(j, g - 1)]) for j in range(plan.population)}
            source = exploit(plan, self.driver.quantile, scores, exp.seed, g).get(m)
            params = segments[(m if source is None else source, g - 1)].user_attrs["params"]
            if source is not None:
                params = explore(ctx.space, params, _rng(exp.seed, g, m, 1), ctx.num_classes,
                                 resample_probability=self.driver.resample_probability,
                                 max_shift_bins=self.driver.max_shift_bins)
        policy = policy_of(ctx.space, params, ctx.num_classes)
        storage, run_id = self.study._storage, self.runs[m]
        for key, value in {"source": source, "params": params, "policy": policy.to_dict(),
                           "policy_hash": policy.digest(), "start_epoch": start, "stop_epoch": stop}.items():
            storage.set_trial_user_attr(t._trial_id, key, value)
        began = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                resume = None
                if g > 0:
                    owner = m if source is None else source
                    resume = self.checkpoints.fetch(owner, g - 1, self.runs[owner], tmp)
                saved = os.path.join(tmp, "out.npz")
                value = self._train(policy, run_id, start, stop, resume, saved, m)
                self.checkpoints.save(saved, m, g, run_id)
            except Exception as e:  # e.g. the loss diverged: this member is copied over next time
                reason = failure_reason(e)
                _fail(self.study, t, reason, requeue=False)
                ctx.outcomes.append(TrialOutcome(t.number, "failed", None, policy, run_id,
                                                 time.perf_counter() - began, reason=reason))
                ctx.log(f"generation {g + 1}/{plan.generations} member {m}: failed ({reason})")
                if g == plan.generations - 1:
                    ctx.tracker.end_trial(run_id, "failed", reason=reason)
                return
        seconds = time.perf_counter() - began
        storage.set_trial_user_attr(t._trial_id, "seconds", seconds)
        self.study.tell(t.number, value)
        ctx.outcomes.append(TrialOutcome(t.number, "complete", value, policy, run_id, seconds))
        segments, _, _ = _segments(self.study)
        history = lineage(segments, m, g)
        ctx.tracker.log_member_history(run_id, history_json(plan, m, history))
        copied = f" (copied member {source}, explored)" if source is not None else ""
        ctx.log(f"generation {g + 1}/{plan.generations} member {m}{copied}: {value:.4f} after epoch {stop} "
                f"in {time.perf_counter() - began:.0f} s")
        if g == plan.generations - 1:
            schedule = schedule_of(history, plan.epochs, f"{exp.name}-member{m}",
                                   {"pbt": {"member": m, "population": plan.population,
                                            "interval_epochs": plan.interval_epochs,
                                            "lineage": [iv["member"] for iv in history]}})
            ctx.tracker.finish_member(run_id, schedule, {"val_accuracy_final": value,
                                                         "best_val_accuracy": value})

    def _train(self, policy: Policy, run_id: str, start: int, stop: int, resume, saved: str, member: int) -> float:
        from ..train import train_model
        x_tr, y_tr, x_val, y_val = self.ctx.arrays
        tracker = self.ctx.tracker

        def on_epoch(epoch: int, metrics: dict) -> None:
            tracker.log_metrics(run_id, metrics, step=epoch)

        result = train_model(x_tr, y_tr, x_val, y_val, policy, num_classes=self.ctx.num_classes,
                             on_epoch=on_epoch, start_epoch=start, stop_epoch=stop, resume_from=resume,
                             save_to=saved, **self.exp.train_args(seed=self.exp.trial_seed(member)))
        value = float(result.val_accuracy)
        if not math.isfinite(value):
            raise FloatingPointError(f"validation accuracy {value}")
        return value


def plan_of(exp: Experiment) -> Plan:
    return Plan(exp.driver.population, exp.driver.interval_epochs, exp.training.epochs)


def run(ctx: StudyContext, progress: bool = True) -> tuple[dict, bool]:
    """One worker of the population: open (or create, or join) the study, then train segments
    until every member has trained every generation. Returns (figures for the parent run:
    the population's schedules, whether no other worker still trains)."""
    plan = plan_of(ctx.exp)
    if ctx.space.schedule is not None:
        raise ConfigError(f"search space {ctx.space.name or 'inline'} asks for a schedule, but driver pbt "
                          f"learns its own: use a space without 'schedule'")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _open(ctx, plan)
    _Worker(ctx, study, plan).run()
    still_running = bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return figures(study), not still_running


# --------------------------------------------------------------------------- the population's plot
def lineages(study: optuna.Study) -> tuple[Plan, dict[int, list[dict]], dict[int, float]]:
    """(plan, {member: its lineage}, {member: final validation accuracy}) of the finished members."""
    info = study.user_attrs[PBT_ATTR]
    plan = Plan(info["population"], info["interval_epochs"], info["epochs"])
    segments, _, _ = _segments(study)
    last = plan.generations - 1
    out, final = {}, {}
    for m in range(plan.population):
        t = segments.get((m, last))
        if t is not None and t.state == TrialState.COMPLETE:
            out[m], final[m] = lineage(segments, m, last), t.value
    return plan, out, final


def _strength(policy: dict) -> tuple[float, float, dict]:
    """(mean probability, mean level of the sub-policy steps, {op: mean p * level / 10})."""
    steps = [s for sp in policy.get("sub_policies", []) for s in sp]
    steps += [s for g in policy.get("class_policies", []) for sp in g["sub_policies"] for s in sp]
    if not steps:
        return 0.0, 0.0, {}
    per_op: dict[str, list] = {}
    for s in steps:
        per_op.setdefault(s["op"], []).append(s["p"] * s["level"] / 10)
    return (float(np.mean([s["p"] for s in steps])), float(np.mean([s["level"] for s in steps])),
            {op: float(np.mean(v)) for op, v in per_op.items()})


def schedule_figure(plan: Plan, members: dict[int, list[dict]], final: dict[int, float]):
    """Mean probability and level of every member's policy per epoch (the best member thick),
    and the best member's strength per op (probability x level / 10) per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if not members:
        return fig
    best = max(final, key=lambda m: (final[m], -m))
    edges = np.arange(plan.epochs + 1)  # interval e is epoch e: from e to e + 1

    def per_epoch(lin, pick):
        out = np.zeros(plan.epochs)
        for iv in lin:
            out[iv["start_epoch"]:iv["stop_epoch"]] = pick(_strength(iv["policy"]))
        return out

    for m, lin in sorted(members.items()):
        style = dict(lw=3, color="crimson", label=f"best: member {m} ({final[m]:.3f})", zorder=3) if m == best \
            else dict(lw=1, color="0.5", alpha=0.7)
        axes[0].stairs(per_epoch(lin, lambda s: s[0]), edges, baseline=None, **style)
        axes[1].stairs(per_epoch(lin, lambda s: s[1]), edges, baseline=None, **style)
    ops = sorted({op for iv in members[best] for op in _strength(iv["policy"])[2]})
    for op in ops:
        axes[2].stairs(per_epoch(members[best], lambda s, op=op: s[2].get(op, 0.0)), edges, baseline=None,
                       label=op, lw=2)
    for ax, title in zip(axes, ("mean probability per member", "mean level per member",
                                f"member {best}: probability x level / 10 per op")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
    axes[0].legend(loc="best", fontsize=8)
    if ops:
        axes[2].legend(loc="best", fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def figures(study: optuna.Study) -> dict:
    plan, members, final = lineages(study)
    return {"population_schedules": schedule_figure(plan, members, final)} if members else {}
