"""The Optuna driver: samplers and pruners with their settings written out, any storage.

Storage URLs: None (in memory), ``sqlite:///file.db`` (one worker), ``journal:path/to/file``
(a JournalFileBackend: the choice for parallel workers on one host), or any SQLAlchemy
RDB URL such as ``postgresql://user:pass@host/db`` (across hosts).

Every ``run`` is one worker; any number of them may share a journal or RDB study.
The worker that creates the study enqueues the baselines and creates the study's MLflow
parent run, and records its id in the study (``mlflow_parent_run_id``); the others adopt it.
A worker starts a trial only while the study has fewer than ``n_trials`` trials complete,
pruned or running, so parallel workers stop at exactly ``n_trials``. A killed worker's
trial ends FAILED and its parameters are queued once more: with RDB storage through
heartbeats (``driver.heartbeat_s``; stale after three beats), with journal or SQLite
storage when a worker on the same host finds the trial's process gone. Its MLflow run
is then closed as failed ("worker killed").
"""
from __future__ import annotations

import copy
import math
import os
import socket
import time
import warnings
import zlib

import optuna
from optuna.trial import TrialState

from ..config import ConfigError, DriverConfig, Experiment
from ..policy import Policy
from ..signals import as_interrupt, on_interrupt
from ..tracking import TrialRecord, redact
from .study import INTERRUPTED, StudyContext, failure_reason

PARENT_ATTR = "mlflow_parent_run_id"
WORKER_ATTR = "worker"  # host:pid of the process running the trial
KILLED = "worker killed"
PARENT_WAIT_S = 60  # how long a worker waits for the study's creator to record the parent run
ALIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
RETRY_ATTRS = ("baseline", "pbt_member", "pbt_generation")  # what a re-queued trial keeps


def storage_kind(url: str | None) -> str:
    """memory | journal | sqlite | rdb (any other SQLAlchemy URL: heartbeats, across hosts)."""
    if not url:
        return "memory"
    return "journal" if url.startswith("journal:") else "sqlite" if url.startswith("sqlite") else "rdb"


def check_shared(url: str | None, who: str) -> None:
    """Parallel workers (`who`) need a storage that processes can share safely."""
    kind = storage_kind(url)
    if kind in ("memory", "sqlite"):
        what = "an in-memory study" if kind == "memory" else "SQLite storage (not for parallel workers)"
        raise ConfigError(f"{who} cannot share {what}; use --storage journal:FILE on one host "
                          f"or --storage postgresql://... across hosts")


class OptunaSuggest:
    """Adapts an Optuna trial to the search space's Suggest protocol."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def categorical(self, name, choices):
        return self.trial.suggest_categorical(name, choices)

    def int(self, name, low, high):
        return self.trial.suggest_int(name, low, high)

    def float(self, name, low, high):
        return self.trial.suggest_float(name, low, high)


def make_sampler(driver: DriverConfig, seed: int) -> optuna.samplers.BaseSampler:
    name = driver.sampler
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        # CMA-ES models the numeric parameters; categorical ones fall back to random sampling.
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=driver.n_startup_trials,
                                            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                                            warn_independent_sampling=False)
    # Optuna 5 changed TPE's defaults; every setting that matters here is explicit.
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=driver.n_startup_trials, n_ei_candidates=24,
        multivariate=True, group=False, constant_liar=True)


def make_pruner(driver: DriverConfig, steps: int, warmup: int) -> optuna.pruners.BasePruner:
    """Steps are epochs (proxy training) or folds (density matching)."""
    name = driver.pruner
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warmup, interval_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=steps, reduction_factor=3)
    if name == "threshold":  # stop any trial whose validation accuracy is below prune_below
        return optuna.pruners.ThresholdPruner(lower=float(driver.prune_below), n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def check_storage(url: str | None, must_exist: bool = False) -> None:
    """Refuse, before anything is written, a storage that is another program's database (an
    MLflow store), a file that is no storage, an unreachable server, or with `must_exist`
    one that is not there (reading never creates a storage)."""
    if storage_kind(url) == "memory":
        return
    from ..stores import StoreError, check_kind
    try:
        check_kind(url, "optuna", "--storage", must_exist=must_exist)
    except StoreError as e:
        raise ConfigError(f"cannot open Optuna storage {redact(url)}: {e}") from None


def make_storage(url: str | None, heartbeat_s: int = 20, must_exist: bool = False):
    """An Optuna storage from a URL (see the module docstring); None = in memory.

    A storage that cannot be opened, or that is an MLflow store, is a ConfigError naming the
    URL without its password; with `must_exist`, so is a storage that does not exist yet.
    """
    kind = storage_kind(url)
    if kind == "journal":
        folder = os.path.dirname(os.path.abspath(url[len("journal:"):]))
        if not os.path.isdir(folder):
            raise ConfigError(f"cannot open Optuna storage {redact(url)}: folder {folder} does not exist; "
                              f"create it or fix --storage")
    check_storage(url, must_exist)
    try:
        if kind == "memory":
            return None
        if kind == "journal":
            from optuna.storages.journal import JournalFileBackend, JournalStorage
            return JournalStorage(JournalFileBackend(url[len("journal:"):]))
        if kind == "sqlite":
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                _with_driver(url), heartbeat_interval=heartbeat_s, grace_period=3 * heartbeat_s,
                heartbeat_stale_trial_callback=_retry)
    except ConfigError:
        raise
    except Exception as e:  # unreachable server, missing folder, bad URL, missing driver...
        text = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ConfigError(f"cannot open Optuna storage {redact(url)}: {redact(text)}; "
                          f"check --storage") from None


def _with_driver(url: str) -> str:
    """`postgresql://` names no driver; SQLAlchemy 2.1 then wants psycopg 3: use what is installed."""
    from ..stores import StoreError, with_driver
    try:
        return with_driver(url)
    except StoreError as e:
        raise ConfigError(str(e)) from None


def _retry(study: optuna.Study, trial) -> None:
    """Queue a killed trial's parameters (and baseline) once more, without its worker and run."""
    trial = copy.deepcopy(trial)
    trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k in RETRY_ATTRS}
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, trial)


def open_study(exp: Experiment) -> tuple[optuna.Study, bool]:
    """(study, True if this call created it). Exactly one of several racing workers creates it."""
    driver = exp.driver
    if exp.evaluation == "density-matching":  # a step is a fold: judge from the first one
        steps, warmup = exp.density.folds, 1
    else:  # the first epoch is too noisy to judge a policy by: from epoch 2 (or a third in)
        steps = exp.training.epochs
        warmup = max(2, steps // 3)
    kwargs = dict(study_name=exp.name, storage=make_storage(exp.storage, driver.heartbeat_s),
                  direction="maximize", sampler=make_sampler(driver, exp.seed),
                  pruner=make_pruner(driver, steps, warmup))
    try:
        return optuna.create_study(**kwargs), True
    except optuna.exceptions.DuplicatedStudyError:
        # Joining: a seed of this worker's own, or every worker would propose the same policies.
        seed = (exp.seed + zlib.crc32(worker_id().encode())) % 2**31
        kwargs["sampler"] = make_sampler(driver, seed)
        return optuna.create_study(load_if_exists=True, **kwargs), False


def enqueue_baselines(study: optuna.Study, names: tuple[str, ...]) -> None:
    """Baselines run first, as ordinary trials of the study (once, even when resumed)."""
    present = {t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False)}
    for name in names:
        if name not in present:
            study.enqueue_trial({}, user_attrs={"baseline": name})


def attach_tracking(ctx: StudyContext, study: optuna.Study, created: bool) -> None:
    """The study's one MLflow parent run: the creator makes it, the other workers adopt it."""
    if created:
        try:
            parent_id = ctx.track(new=True)
        except BaseException:  # e.g. an unreachable tracking server: leave no half-made study
            optuna.delete_study(study_name=study.study_name, storage=study._storage)
            raise
        enqueue_baselines(study, ctx.exp.baselines)  # before the others may start trials
        study.set_user_attr(PARENT_ATTR, parent_id)
        return
    deadline = time.monotonic() + PARENT_WAIT_S
    while PARENT_ATTR not in study.user_attrs and time.monotonic() < deadline:
        time.sleep(0.5)  # the creator is enqueuing the baselines and creating the parent
    parent_id = study.user_attrs.get(PARENT_ATTR)
    ctx.track(parent_id)
    if not parent_id:  # a study from before parent ids were recorded, or its creator died
        enqueue_baselines(study, ctx.exp.baselines)
        study.set_user_attr(PARENT_ATTR, ctx.tracker.parent_id)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def recover_killed_trials(study: optuna.Study, kind: str) -> None:
    """End the RUNNING trials of killed workers as FAILED and queue their parameters again.

    RDB storage: trials whose heartbeat stopped. Journal/SQLite (no heartbeats): trials
    whose worker ran on this host and is gone.
    """
    if kind == "rdb":
        optuna.storages.fail_stale_trials(study)
        return
    host, storage = socket.gethostname(), study._storage
    for t in study.get_trials(states=(TrialState.RUNNING,)):
        h, _, pid = t.user_attrs.get(WORKER_ATTR, "").rpartition(":")
        if h != host or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_reason", KILLED)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        _retry(study, t)


def requeue_interrupted(study: optuna.Study, shared: bool) -> bool:
    """SIGINT/SIGTERM: this worker's trial ends FAILED ("interrupted") and its parameters (and
    baseline) are queued again, so a resume runs it and stops at exactly n_trials. Returns
    whether other workers still run trials."""
    me, storage = worker_id(), study._storage
    others = False
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        owner = t.user_attrs.get(WORKER_ATTR)
        mine = owner == me or (owner is None and not shared)
        if t.state == TrialState.RUNNING and not mine:
            others = True
            continue
        if not mine or t.number in retried:
            continue
        if t.state == TrialState.RUNNING:
            try:
                storage.set_trial_user_attr(t._trial_id, "fail_reason", INTERRUPTED)
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass
        elif not (t.state == TrialState.FAIL and t.user_attrs.get("fail_reason") == INTERRUPTED):
            continue
        baseline = t.user_attrs.get("baseline")
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, **({"baseline": baseline} if baseline else {})})
    return others


def close_orphan_runs(ctx: StudyContext, study: optuna.Study) -> None:
    """MLflow runs left RUNNING by killed workers: their Optuna trial has ended; close them.

    A live worker closes its MLflow run before it ends the Optuna trial, so a run still
    RUNNING after its trial ended belongs to a dead worker.
    """
    runs = ctx.tracker.running_trial_runs()
    if not runs:
        return
    ended = {t.number: t for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    for number, run_id in runs.items():
        if number in ended:
            ctx.tracker.close_orphan(run_id, ended[number].user_attrs.get("fail_reason", KILLED))


def trained_twin(study: optuna.Study, exp: Experiment, policy_hash: str):
    """A complete trial that trained this policy with the seed a new trial would get, or None.

    Under common trial seeds TPE often proposes its favourite again; training it again
    would replay the same run bit for bit (on CPU), so its score is reused instead.
    """
    if exp.selection.trial_seeds != "common" or exp.evaluation != "proxy-training":
        return None  # density matching trains nothing per trial and scores folds and classes
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("policy_hash") == policy_hash and "same_as" not in t.user_attrs:
            return t
    return None


def claimed(study: optuna.Study, below: int | None = None) -> int:
    """Trials complete, pruned or running (with a number below `below`)."""
    trials = study.get_trials(deepcopy=False, states=ALIVE)
    return sum(1 for t in trials if below is None or t.number < below)


class SurplusTrial(Exception):
    """Parallel workers started more trials than the study needs; this one is not run."""


class _CloseOrphanRuns:
    """After each trial: close the MLflow runs of trials that killed workers left behind."""

    def __init__(self, ctx: StudyContext):
        self.ctx = ctx

    def __call__(self, study: optuna.Study, trial) -> None:
        close_orphan_runs(self.ctx, study)


def run(ctx: StudyContext, progress: bool = True) -> tuple[dict, bool]:
    """One worker: open (or create) the study, then run trials until it has `n_trials`
    complete, pruned or running. Returns (figures for the parent run, whether no other
    worker still runs a trial)."""
    exp = ctx.exp
    if progress:  # Optuna's INFO line per trial would cut through the progress bar
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, created = open_study(exp)
    attach_tracking(ctx, study, created)
    ctx.prepare_evaluation()
    recover_killed_trials(study, storage_kind(exp.storage))
    close_orphan_runs(ctx, study)
    target = exp.n_trials

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, worker_id())
        if claimed(study, below=trial.number) >= target:  # another worker took the last slot
            trial.set_user_attr("fail_reason", "surplus: the study already has its trials")
            raise SurplusTrial(f"the study already has {target} trials")
        baseline = trial.user_attrs.get("baseline")
        policy: Policy = (ctx.baseline_policy(baseline) if baseline
                          else ctx.space.sample(OptunaSuggest(trial), ctx.num_classes))
        trial.set_user_attr("policy", policy.to_dict())
        trial.set_user_attr("policy_hash", policy.digest())
        twin = None if baseline else trained_twin(study, exp, policy.digest())
        if twin is not None:
            trial.set_user_attr("same_as", twin.number)
            outcome = ctx.reuse_trial(trial.number, policy, trial.params, twin.number, twin.value)
            trial.set_user_attr("mlflow_run_id", outcome.run_id)
            return outcome.value

        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if not baseline and trial.should_prune():  # baselines are the reference: never pruned
                raise optuna.TrialPruned(f"pruned at epoch {epoch} (val_accuracy {value:.4f})")

        try:
            outcome = ctx.run_trial(trial.number, policy, trial.params, report=report,
                                    pruned=optuna.TrialPruned, baseline=baseline,
                                    on_start=lambda run_id: trial.set_user_attr("mlflow_run_id", run_id))
        except (Exception, KeyboardInterrupt) as e:
            stop = as_interrupt(e)
            if stop is None and isinstance(e, optuna.TrialPruned):
                raise
            trial.set_user_attr("fail_reason", failure_reason(e))
            if stop is not None:
                raise stop
            raise
        for name, values in outcome.scores.items():  # per fold / per class: for `best --top N`
            trial.set_user_attr(name, [None if math.isnan(v) else v for v in values])
        return outcome.value

    remaining = target - claimed(study)  # failed trials count as tried: run again to top up
    if remaining > 0:
        def requeue():
            ctx.others_running = requeue_interrupted(study, storage_kind(exp.storage) in ("journal", "rdb"))

        # Stop once the study has its target in every worker's trials, not only this one's.
        with on_interrupt(requeue):
            study.optimize(objective, n_trials=remaining, catch=(Exception,),
                           callbacks=[_CloseOrphanRuns(ctx), optuna.study.MaxTrialsCallback(target, states=ALIVE)],
                           show_progress_bar=progress, gc_after_trial=True)
    still_running = bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return figures(study), not still_running


def figures(study: optuna.Study) -> dict:
    """Optimization history and parameter importances as matplotlib figures (when computable)."""
    import warnings

    import matplotlib
    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    out = {}
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if done:
        out["optimization_history"] = ovm.plot_optimization_history(study).figure
    if sum(1 for t in done if t.params) >= 2:
        try:
            out["param_importances"] = ovm.plot_param_importances(study).figure
        except (ValueError, RuntimeError):  # e.g. every searched param constant so far
            pass
    return out


def complete_trials(study_name: str, storage: str):
    """(records of a stored study's complete trials, a function that gives a record's policy),
    for `autoaug best` reading Optuna instead of MLflow."""
    try:
        study = optuna.load_study(study_name=study_name, storage=make_storage(storage, must_exist=True))
    except KeyError:
        raise ConfigError(f"no study {study_name!r} in Optuna storage") from None
    from .pbt_driver import PBT_ATTR, member_records
    if PBT_ATTR in study.user_attrs:  # a population: its members' schedules, not its segments
        return member_records(study)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    policies = {t.number: t.user_attrs["policy"] for t in trials}
    records = [TrialRecord(number=t.number, state="complete", value=t.value,
                           run_id=t.user_attrs.get("mlflow_run_id"), policy_hash=t.user_attrs.get("policy_hash", ""),
                           baseline=t.user_attrs.get("baseline", ""),
                           folds=tuple(t.user_attrs.get("fold_accuracy", ())),
                           classes=tuple(t.user_attrs.get("class_accuracy", ())),
                           same_as=t.user_attrs.get("same_as")) for t in trials]
    return records, lambda record: Policy.from_dict(policies[record.number])
