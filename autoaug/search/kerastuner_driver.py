"""The KerasTuner driver: the same space and objective as the Optuna driver, KerasTuner's oracles.

``driver.tuner``: ``bayesian`` (Gaussian process), ``hyperband`` (successive halving over
``training.epochs``; each trial trains from scratch for its ``tuner/epochs``) or ``random``.
KerasTuner has no enqueue, so the baselines run first as trials 0..B-1 outside the oracle;
the oracle's trials follow as B, B+1, ... Project files live in
``runs/kerastuner/<study name>`` under the working directory; running again resumes there.
A failed trial is logged as failed in MLflow and reported to KerasTuner; the search goes on.
"""
from __future__ import annotations

import os

import keras_tuner as kt

from ..config import Experiment
from .study import INTERRUPTED, StudyContext, failure_reason

OBJECTIVE = kt.Objective("val_accuracy", direction="max")


class KerasTunerSuggest:
    """Adapts a ``keras_tuner.HyperParameters`` to the search space's Suggest protocol."""

    def __init__(self, hp: kt.HyperParameters):
        self.hp = hp

    def categorical(self, name, choices):
        # hp.Choice wants one type; numbers that mix int and float become floats.
        kinds = {type(c) for c in choices}
        if len(kinds) > 1 and kinds <= {int, float}:
            choices = [float(c) for c in choices]
        return self.hp.Choice(name, list(choices))

    def int(self, name, low, high):
        return self.hp.Int(name, low, high)

    def float(self, name, low, high):
        return self.hp.Float(name, low, high)


def declare_space(ctx: StudyContext) -> kt.HyperParameters:
    """Every parameter of the space, registered up front so the first trial is already sampled."""
    hp = kt.HyperParameters()
    ctx.space.sample(KerasTunerSuggest(hp), ctx.num_classes)
    return hp


def make_oracle(exp: Experiment, hp: kt.HyperParameters, max_trials: int) -> kt.Oracle:
    # KerasTuner takes seed 0 as "no seed" (and some oracles need a non-negative one).
    common = dict(objective=OBJECTIVE, hyperparameters=hp, seed=exp.seed % (2**31 - 1) + 1,
                  # failures never stop the search (as with Optuna's catch=Exception)
                  max_consecutive_failed_trials=max_trials + 1)
    name = exp.driver.tuner
    if name == "hyperband":
        oracle = kt.oracles.HyperbandOracle(max_epochs=exp.training.epochs, factor=3,
                                            hyperband_iterations=None, **common)
        oracle.max_trials = max_trials  # brackets repeat until the trial budget is spent
        return oracle
    if name == "random":
        return kt.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    return kt.oracles.BayesianOptimizationOracle(max_trials=max_trials, **common)


class PolicyTuner(kt.Tuner):
    """Each KerasTuner trial: values -> Policy -> ``StudyContext.run_trial`` -> val_accuracy."""

    def __init__(self, ctx: StudyContext, first_number: int, **kwargs):
        super().__init__(**kwargs)
        self.ctx, self.first_number = ctx, first_number

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        policy = self.ctx.space.sample(KerasTunerSuggest(hp), self.ctx.num_classes)
        try:
            outcome = self.ctx.run_trial(self.first_number + int(trial.trial_id), policy,
                                         dict(hp.values), epochs=hp.values.get("tuner/epochs"))
        except Exception as e:  # already logged as failed in MLflow
            raise kt.errors.FailedTrialError(failure_reason(e)) from e
        return {OBJECTIVE.name: outcome.value}


def run_baselines(ctx: StudyContext) -> None:
    """Baselines as trials 0..B-1 of the same parent run (once, even when resumed)."""
    frame = ctx.tracker.trials_frame()
    if len(frame):  # an interrupted baseline runs again
        frame = frame[~((frame["state"] == "failed") & (frame["reason"] == INTERRUPTED))]
    done = set(frame["baseline"]) if len(frame) else set()
    for number, name in enumerate(ctx.exp.baselines):
        if name in done:
            continue
        try:
            ctx.run_trial(number, ctx.baseline_policy(name), {}, baseline=name)
        except Exception:  # logged as failed in MLflow; the search goes on
            pass


def run(ctx: StudyContext, progress: bool = True) -> tuple[dict, bool]:
    """The study's one worker: parent run, baselines, then the oracle's trials.
    Returns (figures for the parent run: none, the study is complete: always)."""
    exp = ctx.exp
    ctx.track()
    ctx.prepare_evaluation()
    run_baselines(ctx)
    n_baselines = len(exp.baselines)
    max_trials = exp.n_trials - n_baselines
    if max_trials > 0:
        tuner = PolicyTuner(ctx, n_baselines, oracle=make_oracle(exp, declare_space(ctx), max_trials),
                            directory=os.path.join("runs", "kerastuner"), project_name=exp.name,
                            overwrite=False)
        tuner.search(verbose=1 if progress else 0)
    return {}, True
