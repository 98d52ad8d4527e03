"""What every driver shares: the data, the objective, the MLflow logging of one trial.

A driver turns its trial into a Policy (through the search space) and calls
``StudyContext.run_trial``. This module knows nothing of Optuna or KerasTuner; the
driver passes in the exception class it uses for "pruned".
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from .. import tracking
from ..config import ConfigError, Experiment
from ..data import load_experiment_data
from ..labels import forbidden_ops, policy_for
from ..policy import Policy, builtin
from ..quiet import one_line
from ..signals import as_interrupt
from .space import SearchSpace, load_space


INTERRUPTED = "interrupted"  # the fail reason of a trial stopped by SIGINT or SIGTERM


def failure_reason(e: BaseException) -> str:
    """One line: the exception type and what its message says went wrong."""
    if as_interrupt(e) is not None:
        return INTERRUPTED
    return one_line(e)


@dataclass
class TrialOutcome:
    number: int
    state: str  # complete | pruned | failed
    value: float | None
    policy: Policy
    run_id: str
    seconds: float
    baseline: str | None = None
    reason: str | None = None
    scores: dict = field(default_factory=dict)  # density matching: per-fold and per-class accuracy


@dataclass
class StudyContext:
    exp: Experiment
    space: SearchSpace
    tracker: tracking.Tracker | None = None  # set by `track`, once the Optuna storage is open
    arrays: tuple = ()
    num_classes: int = 0
    outcomes: list = field(default_factory=list)
    evaluator: object | None = None  # a DensityEvaluator under `evaluation: density-matching`
    allow_forbidden_ops: bool = False  # baselines run as written, even with ops that change labels
    open_runs: set = field(default_factory=set)  # MLflow trial runs this process has open
    others_running: bool = False  # set by a driver that stops while other workers still run trials
    log: Callable[[str], None] = print  # one line per finished trial, in autoaug's words
    screen: dict | None = None  # the table of the screen that narrowed the space (`screen:`)

    @classmethod
    def create(cls, exp: Experiment, allow_forbidden_ops: bool = False) -> "StudyContext":
        """Preflight: check the space, the baselines, the data, the model and the stores; write
        nothing yet (`autoaug.preflight`).

        The space leaves out the ops that change the dataset's labels (`autoaug.labels`). Under
        ``screen:`` it is then narrowed by the data (`autoaug.search.screen`), which trains one
        model the first time and writes the screen's cache file.
        """
        from .. import preflight
        from .optuna_driver import check_storage
        preflight.check_stores_apart(exp)
        tracking.check_uri(exp.tracking_uri)
        if exp.driver.name in ("optuna", "pbt"):
            check_storage(exp.storage)
        space = load_space(exp.space_source).honouring(forbidden_ops(exp))
        if space.schedule is not None and exp.evaluation == "density-matching":
            raise ConfigError(f"search space {space.name or 'inline'} asks for a schedule, which changes over "
                              "training: use evaluation: proxy-training (density matching trains nothing)")
        screen_reference = (exp.screen.reference,) if exp.screen.reference else ()
        for name in exp.baselines + (exp.density.train_policy,) + screen_reference:
            builtin(name)  # a bad policy name fails now, before anything is written
        ds, arrays = load_experiment_data(exp)
        preflight.check_space(space, ds.num_classes)
        preflight.check_training(exp, arrays, ds.num_classes, ds.image_shape)
        screen = None
        if exp.screen.reference:  # the only step here that trains (once; then cached)
            from .screen import screened_space
            space, screen = screened_space(exp, space, arrays, ds.num_classes,
                                           policy_for(exp.screen.reference, forbidden_ops(exp)))
        return cls(exp, space, None, arrays, ds.num_classes, allow_forbidden_ops=allow_forbidden_ops,
                   screen=screen)

    def track(self, parent_id: str | None = None, new: bool = False) -> str:
        """Open the MLflow store and adopt (or create) the study's parent run; its id."""
        exp = self.exp
        self.tracker = tracking.Tracker(exp.tracking_uri, exp.name)
        self.tracker.dataset = tracking.dataset_input(exp.data.source, self.arrays, self.num_classes)
        parent = self.tracker.start_study(exp.name, exp.to_dict(), self.space.to_dict(), self.space.digest(),
                                          exp.storage, parent_id=parent_id, new=new, screen=self.screen)
        return parent

    def prepare_evaluation(self, log=print) -> None:
        """Density matching: load (or train once, or fetch from the parent run) the K models."""
        if self.exp.evaluation == "density-matching" and self.evaluator is None:
            from .density import DensityEvaluator
            self.evaluator = DensityEvaluator(self.exp, self.arrays, self.num_classes).prepare(self.tracker, log)

    def baseline_policy(self, name: str) -> Policy:
        """A built-in adapted to the dataset (on digits `standard` is the crop alone)."""
        return policy_for(name, forbidden_ops(self.exp), allow=self.allow_forbidden_ops)

    def run_trial(self, number: int, policy: Policy, driver_params: dict, *,
                  report: Callable[[int, float], None] | None = None,
                  pruned: type[BaseException] = (), baseline: str | None = None,
                  epochs: int | None = None, seed: int | None = None,
                  on_start: Callable[[str], None] | None = None) -> TrialOutcome:
        """Evaluate `policy`, log everything to a child run, return the outcome.

        Proxy training trains the proxy model; density matching scores the policy with the
        study's K models (steps are folds, not epochs). `report(step, val_accuracy)` is
        the driver's pruning hook; it raises `pruned`. A `seed` makes it a selection run:
        trial `number`'s policy trained again with that seed (logged with role selection).
        Exceptions propagate after the run is closed as failed (or pruned).
        """
        from ..preview import grid_image
        from ..pipeline import augmented_samples
        from ..train import train_model

        exp = self.exp
        x_tr, y_tr, x_val, y_val = self.arrays
        tags = {"autoaug.baseline": baseline} if baseline else {}
        if seed is not None:
            tags.update({"autoaug.role": tracking.SELECTION, "autoaug.seed": seed})
        run_id = self.tracker.start_trial(number, policy, driver_params, tags)
        self.open_runs.add(run_id)
        start = time.perf_counter()

        def on_epoch(epoch: int, metrics: dict) -> None:
            self.tracker.log_metrics(run_id, metrics, step=epoch)
            if report is not None and "val_accuracy" in metrics:  # (training.validate_every)
                report(epoch, metrics["val_accuracy"])

        try:
            if on_start is not None:
                on_start(run_id)
            samples = augmented_samples(x_tr, policy, n=exp.preview_samples, copies=4,
                                        seed=exp.seed, y=y_tr)
            self.tracker.log_image(run_id, grid_image(samples), "samples.png")
            if self.evaluator is not None:
                score = self.evaluator.score(policy, on_fold=on_epoch)
                scores = {"fold_accuracy": score.fold_accuracy, "class_accuracy": score.class_accuracy}
                final = {"val_accuracy_final": score.accuracy, "best_val_accuracy": score.accuracy,
                         "density_loss": score.loss, "score_s": score.seconds, "augment_s": score.augment_s,
                         **{f"fold{k}_accuracy": v for k, v in enumerate(score.fold_accuracy)},
                         **{f"class{c}_accuracy": v for c, v in enumerate(score.class_accuracy)
                            if math.isfinite(v)}}
            else:
                result = train_model(x_tr, y_tr, x_val, y_val, policy, num_classes=self.num_classes,
                                     on_epoch=on_epoch, **exp.train_args(seed=exp.trial_seed(number) if seed is None else seed, epochs=epochs))
                scores = {}
                final = {"val_accuracy_final": result.val_accuracy,
                         "best_val_accuracy": result.best_val_accuracy, "train_s": result.seconds,
                         "augment_images_per_sec": result.augment_images_per_sec}
        except BaseException as e:
            stop = as_interrupt(e)  # Ctrl-C or SIGTERM: the run is closed, then we stop
            state = "pruned" if pruned and isinstance(e, pruned) and stop is None else "failed"
            reason = None if state == "pruned" else failure_reason(e)
            seconds = time.perf_counter() - start
            self.tracker.end_trial(run_id, state, {"duration_s": seconds}, reason=reason)
            self.open_runs.discard(run_id)
            self.outcomes.append(TrialOutcome(number, state, None, policy, run_id, seconds, baseline, reason))
            self._say(self.outcomes[-1], seed)
            if stop is not None:
                raise stop
            raise
        seconds = time.perf_counter() - start
        value = float(final["val_accuracy_final"])
        if not math.isfinite(value):
            value = float("nan")
        self.tracker.end_trial(run_id, "complete", {**final, "duration_s": seconds})
        self.open_runs.discard(run_id)
        outcome = TrialOutcome(number, "complete", value, policy, run_id, seconds, baseline, scores=scores)
        self.outcomes.append(outcome)
        self._say(outcome, seed)
        return outcome

    def reuse_trial(self, number: int, policy: Policy, driver_params: dict, twin: int,
                    value: float) -> TrialOutcome:
        """Trial `number` proposed the policy that trial `twin` already trained with the same
        seed (common random numbers): the same seed and policy train to the same weights, so
        its score is `twin`'s and nothing is trained. The child run says so (tag
        ``autoaug.same_as``)."""
        start = time.perf_counter()
        run_id = self.tracker.start_trial(number, policy, driver_params, {"autoaug.same_as": twin})
        seconds = time.perf_counter() - start
        self.tracker.end_trial(run_id, "complete", {"val_accuracy_final": value, "best_val_accuracy": value,
                                                    "duration_s": seconds})
        outcome = TrialOutcome(number, "complete", value, policy, run_id, seconds)
        self.outcomes.append(outcome)
        self._say(outcome, None, twin)
        return outcome

    def _say(self, o: TrialOutcome, seed: int | None, twin: int | None = None) -> None:
        """`t03 randaugment+standard: 0.9040 in 31 s; best so far 0.9540 (t00 none)`."""
        name = tracking.trial_run_name(o.number, o.policy, o.baseline, seed)
        if o.state != "complete":
            self.log(f"{name}: {o.state}" + (f" ({o.reason})" if o.reason else ""))
            return
        done = [x for x in self.outcomes if x.state == "complete" and not math.isnan(x.value)]
        best = max(done, key=lambda x: x.value) if done else o
        cost = f"as t{twin:02d} (same policy and seed: not trained again)" if twin is not None else f"in {o.seconds:.0f} s"
        self.log(f"{name}: {o.value:.4f} {cost}; best so far {best.value:.4f} "
                 f"({tracking.trial_run_name(best.number, best.policy, best.baseline)})")

    def interrupted(self) -> None:
        """SIGINT/SIGTERM: close every MLflow run this process opened (trials as failed,
        "interrupted"; the parent as KILLED unless other workers still run trials)."""
        if self.tracker is None:
            return
        for run_id in list(self.open_runs):
            self.tracker.close_orphan(run_id, INTERRUPTED)
            self.open_runs.discard(run_id)
        if self.tracker.parent_id and not self.others_running:
            self.tracker.stop_study()

    def finish(self, best: dict | None, figures: dict | None = None, done: bool = True) -> None:
        """Tag the parent with the best trial (from MLflow, so all workers count)."""
        if best is not None:
            best["policy"] = Policy.from_json(self.tracker.read_text(best["run_id"], "policy.json"))
            best["policy_hash"] = best["policy"].digest()
        self.tracker.finish_study(best, figures, done)
