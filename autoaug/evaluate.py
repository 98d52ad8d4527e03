"""`autoaug evaluate`: policies x seeds in full training, paired by seed, with 95% intervals.

Every policy is trained with the experiment's full training on its train split and scored
on the test split, once per seed. Seed s gives every policy the same initial weights and the
same data order (``train_model`` seeds Keras and the shuffle from it), so for a seed two
policies differ by their augmentation only: the per-seed differences carry the verdict, and
their Student-t interval says how sure it is. Each finished run is appended to a CSV at once;
an evaluation started again skips the (policy, seed) pairs that the CSV already holds for the
same setting (data, split, model, schedule), so a killed one resumes where it stopped.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field

from .config import ConfigError, Experiment
from .policy import Policy
from .stats import PairedGap, paired_gap
from .stores import file_of

FIDELITY_OK = 0.5  # below this, the proxy's ranking is no guide to full training
CSV_COLUMNS = ["policy", "seed", "test_accuracy", "val_accuracy", "train_s", "policy_hash", "setting",
               "run_id", "finished_at"]


@dataclass(frozen=True)
class PolicySummary:
    policy: str
    n: int
    mean: float  # test accuracy, percent
    std: float
    gap: PairedGap | None  # against the reference; None for the reference itself


@dataclass
class Evaluation:
    """The runs of an evaluation and their paired summary against `reference`."""
    runs: list[dict]
    reference: str
    summaries: list[PolicySummary] = field(default_factory=list)
    parent_run_id: str | None = None
    # proxy fidelity: Spearman between the study's search scores and the test accuracies of
    # the evaluated policies that the study scored, and how many those were
    fidelity: float = math.nan
    fidelity_n: int = 0

    def summary(self, policy: str) -> PolicySummary:
        return next(s for s in self.summaries if s.policy == policy)

    def table(self) -> str:
        """A fixed-width table: per policy n, mean, std and the paired gap with its interval."""
        head = f"{'policy':<44} {'n':>2} {'test %':>7} {'std':>5}   paired gap to {self.reference} [95% CI]"
        lines = [head, "-" * len(head)]
        for s in self.summaries:
            gap = "(reference)" if s.gap is None else _gap_text(s.gap)
            lines.append(f"{s.policy[:44]:<44} {s.n:>2} {s.mean:>7.2f} {s.std:>5.2f}   {gap}")
        if self.reference != "none" and any(s.policy == "none" for s in self.summaries):
            # the question a first run asks too: does augmenting beat not augmenting at all?
            _, to_none = summarize(self.runs, "none")
            lines.append("paired gap to none: " + "; ".join(f"{s.policy} {_gap_text(s.gap)}"
                                                           for s in to_none if s.gap is not None))
        if self.fidelity_n:
            lines.append(self.fidelity_text())
        shrink = self.pairing_shrink()
        if shrink is not None:
            # a paired sd of 0 (a policy against itself, e.g. a search that froze the reference)
            # gives no ratio worth printing
            ratio = f" ({shrink[1] / shrink[0]:.1f}x narrower intervals)" if shrink[0] >= 0.005 else ""
            lines.append(f"pairing by seed: sd of the differences {shrink[0]:.2f} points paired, "
                         f"{shrink[1]:.2f} unpaired{ratio}")
        return "\n".join(lines)

    def fidelity_text(self) -> str:
        if self.fidelity_n < 3:
            return f"proxy fidelity: {self.fidelity_n} policies of the study, too few to rank (3 or more)"
        text = (f"proxy fidelity: Spearman {self.fidelity:+.2f} between search score and test accuracy "
                f"over {self.fidelity_n} policies")
        if not self.fidelity >= FIDELITY_OK:
            return text + " - the search's proxy cannot rank these policies; its scores say little about full training"
        return text

    def pairing_shrink(self) -> tuple[float, float] | None:
        """(mean paired sd, mean unpaired sd) of the differences over every compared policy."""
        gaps = [s.gap for s in self.summaries if s.gap is not None and s.gap.n >= 2
                and not math.isnan(s.gap.sd_unpaired)]
        if not gaps:
            return None
        return statistics.fmean(g.sd for g in gaps), statistics.fmean(g.sd_unpaired for g in gaps)


def _gap_text(g: PairedGap) -> str:
    if g.n >= 2:
        return f"{g.mean:+.2f} [{g.low:+.2f}, {g.high:+.2f}] {g.verdict}"
    return f"{g.mean:+.2f} ({g.verdict})"


def parse_seeds(text: str | int | list) -> list[int]:
    """``5`` -> seeds 0..4; ``"0,3,4"`` -> those seeds."""
    if isinstance(text, (list, tuple)):
        seeds = [int(s) for s in text]
    else:
        text = str(text).strip()
        try:
            seeds = list(range(int(text))) if "," not in text else [int(s) for s in text.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds expects a count (5) or a list (0,3,4), got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds needs distinct non-negative seeds, got {text!r}")
    return seeds


def summarize(runs: list[dict], reference: str | None = None, baselines: tuple = ()) -> tuple[str, list]:
    """(reference, [PolicySummary]) from rows {policy, seed, test_accuracy}, in first-seen order.

    The default reference is the baseline (a policy named in `baselines`) with the best mean,
    else the first policy.
    """
    by_policy: dict[str, dict[int, float]] = {}
    for r in runs:
        by_policy.setdefault(r["policy"], {})[int(r["seed"])] = 100.0 * float(r["test_accuracy"])
    if not by_policy:
        raise ConfigError("no finished run to summarize")
    if reference is None:
        candidates = [p for p in by_policy if p in baselines] or list(by_policy)[:1]
        reference = max(candidates, key=lambda p: statistics.fmean(by_policy[p].values()))
    if reference not in by_policy:
        raise ConfigError(f"reference policy {reference!r} is not among the evaluated: {', '.join(by_policy)}")
    out = []
    for name, acc in by_policy.items():
        values = list(acc.values())
        out.append(PolicySummary(name, len(values), statistics.fmean(values),
                                 statistics.stdev(values) if len(values) > 1 else math.nan,
                                 None if name == reference else paired_gap(acc, by_policy[reference])))
    out.sort(key=lambda s: -s.mean)
    return reference, out


def setting_key(exp: Experiment) -> str:
    """What makes two runs of one (policy, seed) the same run: data, split, model, schedule.
    (The forbidden ops change policies, which the rows' policy_hash already tells apart; how
    often a run validates does not change it.)"""
    data = {k: v for k, v in exp.to_dict()["data"].items() if k != "forbidden_ops"}
    train = {k: v for k, v in exp.train_args().items() if k not in ("seed", "validate_every")}
    spec = {"data": data, "train": train}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def read_rows(path: str) -> list[dict]:
    """The CSV's rows (none when the file does not exist yet)."""
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def finished_runs(path: str, exp: Experiment, pairs: list[tuple[str, Policy]]) -> dict:
    """{(label, seed): row} of the CSV's finished runs of `pairs` in `exp`'s setting; a row of
    another policy under the same label (another ``policy_hash``) is not one of them."""
    setting, digests, rows = setting_key(exp), {label: policy.digest() for label, policy in pairs}, read_rows(path)
    if rows and set(CSV_COLUMNS) - set(rows[0]):
        raise ConfigError(f"{path} is not a CSV of autoaug evaluate (it has other columns); use another --csv")
    return {(r["policy"], int(r["seed"])): r for r in rows if r["setting"] == setting
            and r["test_accuracy"] and r["policy_hash"] == digests.get(r["policy"])}


def _append_row(path: str, row: dict) -> None:
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def resolve_policies(specs: list, exp: Experiment | None = None, from_study: bool = False,
                     study_top: int = 0, baselines: str = "all",
                     allow_forbidden_ops: bool = False) -> list[tuple[str, Policy]]:
    """[(label, Policy)] from built-in names, JSON files, runs:/ URIs or Policy objects.

    ``from_study``: the study's frozen winner (``autoaug best``) labelled ``searched``,
    then the experiment's baselines, then `specs`. ``study_top`` K: also the study's K best
    distinct searched policies (``trial-N``), e.g. to measure proxy fidelity. ``baselines``
    ``best``: of the study's baselines only the one it scored best. A policy named twice
    (the same label and policy) is evaluated once. Built-ins are adapted to the dataset
    (`autoaug.labels.policy_for`: on digits `standard` is the crop alone) unless
    `allow_forbidden_ops`; `evaluate` refuses the others if they change labels.
    """
    from .labels import ForbiddenOps, forbidden_ops, policy_for
    rules = forbidden_ops(exp) if exp is not None else ForbiddenOps()

    def load_policy(source):
        return policy_for(source, rules, allow=allow_forbidden_ops,
                          tracking_uri=exp.tracking_uri if exp is not None else None)
    out: list[tuple[str, Policy]] = []
    if from_study or study_top:
        from . import tracking
        from .search.freeze import best_by_policy, best_policy
        winner = best_policy(exp.name, exp.tracking_uri)
        out.append(("searched", winner))
        tracker = tracking.open_study(exp.tracking_uri, exp.name)
        records = [t for t in tracker.trial_records() if t.complete]
        names = list(exp.baselines)
        if baselines == "best" and any(t.baseline for t in records):
            names = [best_by_policy([t for t in records if t.baseline])[0].baseline]
        out += [(name, load_policy(name)) for name in names]
        searched = [t for t in records if not t.baseline]
        seen = {winner.digest()}
        while study_top and searched:
            head, _, numbers = best_by_policy(searched)
            searched = [t for t in searched if t.number not in numbers]
            policy = Policy.from_json(tracker.read_text(head.run_id, "policy.json"))
            if policy.digest() not in seen:
                seen.add(policy.digest())
                out.append((f"trial-{head.number}", policy))
                study_top -= 1
    for spec in specs:
        if isinstance(spec, tuple):
            out.append(spec)
        elif isinstance(spec, Policy):
            out.append((spec.name or spec.digest()[:8], spec))
        else:
            label = os.path.splitext(os.path.basename(spec))[0] if spec.endswith(".json") else spec
            out.append((label, load_policy(spec)))
    out = [pair for i, pair in enumerate(out)
           if not any(pair[0] == o[0] and pair[1].digest() == o[1].digest() for o in out[:i])]
    labels = [label for label, _ in out]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise ConfigError(f"policies listed twice: {', '.join(duplicated)}")
    if not out:
        raise ConfigError("no policy to evaluate: name some with --policies or use --from-study")
    return out


def evaluate(exp: Experiment, policies: list, seeds: list[int], *, csv_path: str,
             tracking_uri: str | None = None, reference: str | None = None, study: str | None = None,
             log=print, allow_forbidden_ops: bool = False) -> Evaluation:
    """Train every policy with every seed (paired), score on the test split, summarize.

    Args:
        exp: the experiment: data, split, model and schedule of the full training.
        policies: [(label, Policy)] (see `resolve_policies`), or names, files and URIs.
        seeds: training seeds; seed s gives every policy the same initialisation and data order.
        csv_path: the resumable CSV; rows already there (same setting, same policy) are not
            trained again.
        tracking_uri: the MLflow store (default: the experiment's); one parent run
            ``<name>-evaluate`` with a child per (policy, seed).
        reference: the policy every gap is measured to (default: the best baseline).
        study: a study (in the same store) whose trials scored some of these policies: the
            Spearman correlation of its scores with their test accuracy (proxy fidelity) is
            reported and logged to the study's parent run.
        allow_forbidden_ops: run every policy as written, even one that uses an op that
            changes the dataset's labels (`autoaug.labels`); else such a policy is refused
            (ForbiddenOpError) and built-in names are adapted.

    Returns:
        An `Evaluation` with its runs and summaries; ``table()`` prints it.

    Raises:
        ConfigError, DataError, PolicyError, TrackingError: bad input, before any training.

    >>> from autoaug.config import load_experiment
    >>> exp = load_experiment(None, ["data.n_train=60", "data.n_val=30", "training.epochs=1",
    ...                              "tracking_uri=sqlite:///" + tmp + "/mlflow.db"])
    >>> result = evaluate(exp, ["none", "standard"], [0, 1], csv_path=tmp + "/ev.csv", log=lambda *_: None)
    >>> [(s.policy, s.n) for s in sorted(result.summaries, key=lambda s: s.policy)]
    [('none', 2), ('standard', 2)]
    """
    from . import tracking
    from .data import load_experiment_data
    from .train import train_model
    pairs = policies if all(isinstance(p, tuple) for p in policies) else resolve_policies(
        policies, exp, allow_forbidden_ops=allow_forbidden_ops)
    if not allow_forbidden_ops:  # a policy that changes the dataset's labels: one line, nothing trained
        from .labels import forbidden_ops
        rules = forbidden_ops(exp)
        for label, policy in pairs:
            rules.check(policy, label)
    uri = tracking_uri or exp.tracking_uri
    from .files import check_output
    from .preflight import check_stores_apart, check_training, inputs_of
    check_stores_apart(exp)  # preflight: nothing is trained or written before it passes
    check_output(csv_path, {**inputs_of(exp, [p for p in policies if isinstance(p, str)]),
                            "MLflow tracking store": file_of(uri)}, "--csv")
    tracking.check_uri(uri)
    ds, (x_tr, y_tr, x_val, y_val) = load_experiment_data(exp)
    check_training(exp, (x_tr, y_tr, x_val, y_val), ds.num_classes, ds.image_shape)
    setting = setting_key(exp)
    done = finished_runs(csv_path, exp, pairs)
    todo = [(label, policy, seed) for seed in seeds for label, policy in pairs if (label, seed) not in done]
    log(f"evaluate {len(pairs)} policies x {len(seeds)} seeds on {exp.name}: {exp.model.name}, "
        f"{exp.training.epochs} epochs, {len(x_tr)} train / {len(ds.x_test)} test images; "
        f"{len(todo)} runs to train, {len(pairs) * len(seeds) - len(todo)} already in {csv_path}")
    log_run = tracking.EvaluationLog(uri, exp.name, setting, exp.to_dict())
    for i, (label, policy, seed) in enumerate(todo):
        start = time.perf_counter()
        result = train_model(x_tr, y_tr, x_val, y_val, policy, num_classes=ds.num_classes,
                             x_test=ds.x_test, y_test=ds.y_test,
                             **exp.train_args(seed=seed, validate_every=exp.training.epochs))  # once, at the end
        run_id = log_run.run(label, seed, policy, result.history,
                             {"test_accuracy": result.test_accuracy, "val_accuracy_final": result.val_accuracy,
                              "train_s": result.seconds})
        row = {"policy": label, "seed": seed, "test_accuracy": f"{result.test_accuracy:.6f}",
               "val_accuracy": f"{result.val_accuracy:.6f}", "train_s": f"{time.perf_counter() - start:.1f}",
               "policy_hash": policy.digest(), "setting": setting, "run_id": run_id,
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _append_row(csv_path, row)
        done[(label, seed)] = row
        log(f"[{i + 1}/{len(todo)}] {label} seed {seed}: test {100 * result.test_accuracy:.2f}%")
    runs = [done[(label, seed)] for seed in seeds for label, _ in pairs]
    ref, summaries = summarize(runs, reference, exp.baselines)
    evaluation = Evaluation(runs, ref, summaries, log_run.parent_id)
    if study:
        _proxy_fidelity(evaluation, pairs, tracking.open_study(uri, study))
    log_run.finish(evaluation.table(), _per_seed_figure(evaluation), {
        f"{s.policy}.test_accuracy_mean": s.mean for s in summaries})
    return evaluation


def _proxy_fidelity(evaluation: Evaluation, pairs: list, tracker) -> None:
    """Spearman between the study's score of each evaluated policy it scored (the mean of its
    trials, or its selection mean) and the policy's mean test accuracy; logged to the study."""
    from .stats import spearman
    scores: dict[str, list] = {}
    for t in tracker.trial_records():
        if t.complete:
            scores.setdefault(t.policy_hash, []).append(t.value)
    selection = tracker.read_selection() or {}
    for c in selection.get("candidates", []):
        scores[c["policy_hash"]] = [c["mean"]]
    hashes = {label: policy.digest() for label, policy in pairs}
    matched = [(statistics.fmean(scores[hashes[s.policy]]), s.mean) for s in evaluation.summaries
               if hashes.get(s.policy) in scores]
    evaluation.fidelity_n = len(matched)
    evaluation.fidelity = spearman([m[0] for m in matched], [m[1] for m in matched])
    if len(matched) >= 3:
        tracker.log_fidelity(evaluation.fidelity, len(matched))


def _per_seed_figure(evaluation: Evaluation):
    """Test accuracy per policy, one point per seed, the seeds joined across policies."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [s.policy for s in evaluation.summaries]
    by_seed: dict[int, dict] = {}
    for r in evaluation.runs:
        by_seed.setdefault(int(r["seed"]), {})[r["policy"]] = 100.0 * float(r["test_accuracy"])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names)), 4))
    for seed, acc in sorted(by_seed.items()):
        xs = [i for i, n in enumerate(names) if n in acc]
        ax.plot(xs, [acc[names[i]] for i in xs], marker="o", alpha=0.7, label=f"seed {seed}")
    ax.set_xticks(range(len(names)), [n[:24] for n in names], rotation=30, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"paired by seed; reference {evaluation.reference}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
