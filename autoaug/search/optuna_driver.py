"""The Optuna driver: samplers and pruners with their settings written out, any storage.

Storage URLs: None (in memory), ``sqlite:///file.db``, ``journal:path/to/file`` (a
JournalFileBackend: the choice for parallel workers on one host), or any SQLAlchemy
RDB URL such as ``postgresql://user:pass@host/db`` (across hosts; heartbeats re-queue
the trials of killed workers).
"""
from __future__ import annotations

import optuna
from optuna.trial import TrialState

from ..policy import Policy
from .study import StudyContext, failure_reason

HEARTBEAT_S = 20


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


def make_sampler(driver: dict, seed: int) -> optuna.samplers.BaseSampler:
    name = driver["sampler"]
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        # CMA-ES models the numeric parameters; categorical ones fall back to random sampling.
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=driver["n_startup_trials"],
                                            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                                            warn_independent_sampling=False)
    # Optuna 5 changed TPE's defaults; every setting that matters here is explicit.
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=driver["n_startup_trials"], n_ei_candidates=24,
        multivariate=True, group=False, constant_liar=True)


def make_pruner(driver: dict, epochs: int) -> optuna.pruners.BasePruner:
    name = driver["pruner"]
    if name == "median":
        # The first epoch is too noisy to judge a policy by: prune from epoch 2 (or a third in).
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(2, epochs // 3),
                                           interval_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    if name == "threshold":  # stop any trial whose validation accuracy is below prune_below
        return optuna.pruners.ThresholdPruner(lower=float(driver["prune_below"]), n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def make_storage(url: str | None):
    """An Optuna storage from a URL (see the module docstring); None = in memory."""
    if not url:
        return None
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        return JournalStorage(JournalFileBackend(url[len("journal:"):]))
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.storages.RDBStorage(
        url, heartbeat_interval=HEARTBEAT_S, grace_period=3 * HEARTBEAT_S,
        failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1))


def open_study(cfg: dict) -> optuna.Study:
    driver = cfg["driver"]
    return optuna.create_study(
        study_name=cfg["name"], storage=make_storage(cfg["storage"]), direction="maximize",
        sampler=make_sampler(driver, cfg["seed"]),
        pruner=make_pruner(driver, cfg["training"]["epochs"]), load_if_exists=True)


def enqueue_baselines(study: optuna.Study, names: list[str]) -> None:
    """Baselines run first, as ordinary trials of the study (once, even when resumed)."""
    present = {t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False)}
    for name in names:
        if name not in present:
            study.enqueue_trial({}, user_attrs={"baseline": name})


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def run(ctx: StudyContext, progress: bool = True) -> optuna.Study:
    cfg = ctx.cfg
    study = open_study(cfg)
    enqueue_baselines(study, cfg["baselines"])
    target = cfg["n_trials"]

    def objective(trial: optuna.Trial) -> float:
        baseline = trial.user_attrs.get("baseline")
        policy: Policy = (ctx.baseline_policy(baseline) if baseline
                          else ctx.space.sample(OptunaSuggest(trial)))
        trial.set_user_attr("policy", policy.to_dict())
        trial.set_user_attr("policy_hash", policy.digest())

        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if not baseline and trial.should_prune():  # baselines are the reference: never pruned
                raise optuna.TrialPruned(f"pruned at epoch {epoch} (val_accuracy {value:.4f})")

        try:
            outcome = ctx.run_trial(trial.number, policy, trial.params, report=report,
                                    pruned=optuna.TrialPruned, baseline=baseline,
                                    on_start=lambda run_id: trial.set_user_attr("mlflow_run_id", run_id))
        except optuna.TrialPruned:
            raise
        except Exception as e:
            trial.set_user_attr("fail_reason", failure_reason(e))
            raise
        return outcome.value

    remaining = target - finished(study)
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, catch=(Exception,),
                       callbacks=[optuna.study.MaxTrialsCallback(
                           target, states=(TrialState.COMPLETE, TrialState.PRUNED))],
                       show_progress_bar=progress, gc_after_trial=True)
    return study


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


def best_trial(study_name: str, storage: str):
    """(number, value, policy dict, MLflow run id) of a stored study's best trial."""
    from ..config import ConfigError
    try:
        study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
    except KeyError:
        raise ConfigError(f"no study {study_name!r} in Optuna storage") from None
    try:
        best = study.best_trial
    except ValueError:
        raise ConfigError(f"study {study_name!r} has no complete trial yet") from None
    return best.number, best.value, best.user_attrs["policy"], best.user_attrs.get("mlflow_run_id")
