"""Selection inside the search: common seeds, paired re-training of the top policies, the verdict."""
import math
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

import autoaug
from autoaug.config import ConfigError, load_experiment
from autoaug.search import run_search
from autoaug.search.selection import SEED_OFFSET, candidates
from autoaug.stats import paired_gap
from autoaug.tracking import TrialRecord, open_study
from helpers import tiny_overrides


def _record(number, value, policy_hash, baseline=""):
    return TrialRecord(number=number, state="complete", value=value, run_id=f"r{number}",
                       policy_hash=policy_hash, baseline=baseline)


def test_candidates_are_the_top_distinct_searched_policies_then_the_best_baseline():
    records = [_record(0, 0.80, "n", "none"), _record(1, 0.85, "s", "standard"), _record(2, 0.84, "a"),
               _record(3, 0.90, "b"), _record(4, 0.70, "b"), _record(5, 0.83, "c"),
               TrialRecord(6, "pruned", math.nan, "r6", "d")]
    groups = candidates(records, top_k=2)
    # b's two trials average 0.80: a (0.84) and c (0.83) are the best two searched policies
    assert [[r.number for r in g] for g in groups] == [[2], [5], [1]]


def test_the_sentence_says_when_the_interval_holds_zero():
    gap = paired_gap({0: 66.0, 1: 64.0, 2: 65.5}, {0: 65.0, 1: 65.0, 2: 65.0})
    assert gap.low < 0 < gap.high
    assert "`trial 3` is not distinguishable from `standard`" in gap.sentence("trial 3", "standard")
    better = paired_gap({0: 67.0, 1: 66.0, 2: 66.5}, {0: 65.0, 1: 65.0, 2: 65.0})
    assert better.sentence("x", "standard").startswith("`x` beats `standard`: +1.50 points [")


def test_trials_share_the_experiments_seed_unless_told_otherwise():
    exp = load_experiment(None, ["seed=7"])
    assert [exp.trial_seed(n) for n in (0, 5)] == [7, 7]
    per_trial = exp.with_overrides(["selection.trial_seeds=per-trial"])
    assert [per_trial.trial_seed(n) for n in (0, 5)] == [7, 12]
    for bad in ("selection.top_k=-1", "selection.seeds=0", "selection.trial_seeds=some"):
        with pytest.raises(ConfigError, match="selection"):
            load_experiment(None, [bad])


@pytest.mark.slow
def test_selection_retrains_the_top_policies_with_paired_seeds_and_best_states_the_gap(tmp_path):
    exp = load_experiment(None, tiny_overrides(tmp_path, name="sel", n_trials=4, storage=f"journal:{tmp_path}/s.journal", **{
        "training.epochs": 1, "driver.pruner": "none", "selection.top_k": 2, "selection.seeds": 2}))
    lines = []
    run_search(exp, progress=False, log=lines.append)
    tracker = open_study(exp.tracking_uri, "sel")
    trials = {t.number: t for t in tracker.trial_records()}
    runs = tracker.trial_records("selection")
    seeds = [SEED_OFFSET, SEED_OFFSET + 1]
    # the (at most) 2 distinct searched policies + the best baseline, each with 2 more seeds
    distinct = len({t.policy_hash for t in trials.values() if not t.baseline})
    assert len(runs) == 2 * (min(2, distinct) + 1) and sorted({r.seed for r in runs}) == seeds
    assert all(r.policy_hash == trials[r.number].policy_hash for r in runs)
    best_baseline = max((t for t in trials.values() if t.baseline), key=lambda t: (t.value, -t.number))
    assert best_baseline.number in {r.number for r in runs}
    # the verdict, recomputed from the runs: the winner has the best mean over 3 paired seeds
    values = {}
    for r in runs:
        values.setdefault(r.number, {})[r.seed] = r.value
    for number in values:
        values[number][exp.seed] = trials[number].value  # common seeds: the trial is one more
    means = {n: sum(v.values()) / 3 for n, v in values.items()}
    winner = max(means, key=lambda n: (means[n], -n))
    selection = tracker.read_selection()
    assert selection["winner"]["trial"] == winner and math.isclose(selection["winner"]["mean"], means[winner])
    policy = autoaug.search.best_policy("sel", exp.tracking_uri)
    assert policy.meta["trial"] == winner and math.isclose(policy.meta["val_accuracy"], means[winner])
    sentence = policy.meta["paired_selection"]["sentence"]
    if winner == best_baseline.number:
        assert sentence == f"the best baseline `{best_baseline.baseline}` wins the selection"
    else:
        gap = paired_gap({s: 100 * v for s, v in values[winner].items()},
                         {s: 100 * v for s, v in values[best_baseline.number].items()})
        words = {"better": "beats", "worse": "is worse than",
                 "not distinguishable": "is not distinguishable from"}[gap.verdict]
        assert sentence.startswith(f"`trial {winner}` {words} `{best_baseline.baseline}`")
    assert any(line.startswith("selection: ") for line in lines)
    parent = MlflowClient(exp.tracking_uri).get_run(tracker.parent_id)
    assert parent.data.tags["autoaug.selection"] == selection["sentence"]
    note = parent.data.tags["mlflow.note.content"]  # the run's description: the final table
    assert note.startswith("| trial | policy | val accuracy |") and selection["sentence"] in note
    assert f"| {best_baseline.number} | {best_baseline.baseline} | {best_baseline.value:.4f} |" in note
    # one line per finished trial, in autoaug's words, with the best so far
    assert any(line.startswith("t00 none: 0.") and "best so far" in line for line in lines)
    assert int(parent.data.tags["autoaug.best_trial"]) == winner
    # the CLI says it in words, and compare shows the selection table
    out = subprocess.run([sys.executable, "-m", "autoaug.cli", "best", "--study", "sel", "--tracking-uri",
                          exp.tracking_uri, "--out", str(tmp_path / "p.json")], capture_output=True, text=True)
    assert out.returncode == 0 and sentence in out.stdout
    out = subprocess.run([sys.executable, "-m", "autoaug.cli", "compare", "--study", "sel", "--tracking-uri",
                          exp.tracking_uri], capture_output=True, text=True)
    assert out.returncode == 0 and "Selection (validation accuracy %, paired seeds)" in out.stdout
    # a repeated selection trains nothing more
    lines = []
    run_search(exp, progress=False, log=lines.append)
    assert len(open_study(exp.tracking_uri, "sel").trial_records("selection")) == len(runs)
    assert not any("trainings" in line for line in lines)
    # proxy fidelity: the study's policies in full training, ranked against their search scores
    from scipy import stats

    from autoaug.evaluate import evaluate, resolve_policies
    pairs = resolve_policies([], exp, from_study=True, study_top=1)
    assert [label for label, _ in pairs][:3] == ["searched", "none", "standard"]
    ev = evaluate(exp, pairs, [0], csv_path=str(tmp_path / "ev.csv"), study="sel", log=lambda *_: None)
    score = {c["policy_hash"]: c["mean"] for c in selection["candidates"]}
    for t in trials.values():
        score.setdefault(t.policy_hash, t.value)
    digest = {label: p.digest() for label, p in pairs}
    xs = [score[digest[s.policy]] for s in ev.summaries]
    ys = [s.mean for s in ev.summaries]
    assert ev.fidelity_n == len(pairs) >= 3
    assert math.isclose(ev.fidelity, stats.spearmanr(xs, ys).statistic, abs_tol=1e-12) or (
        math.isnan(ev.fidelity) and math.isnan(stats.spearmanr(xs, ys).statistic))
    assert "proxy fidelity: Spearman" in ev.table()
    metrics = MlflowClient(exp.tracking_uri).get_run(tracker.parent_id).data.metrics
    assert metrics["proxy_fidelity_policies"] == len(pairs)


def test_a_repeated_proposal_under_common_seeds_reuses_its_twins_score(tmp_path):
    """A space with one point: every searched trial proposes the same policy. Under common
    seeds the repeat would replay the same training, so its score is reused, not retrained."""
    space = tmp_path / "one.yaml"
    space.write_text("ops: [Rotate]\nsub_policies: 1\nsteps: 1\nprobabilities: [0.3]\nlevels: [5]\n"
                     "stages: [policy]\nsearch_order: false\n")
    exp = load_experiment(None, tiny_overrides(tmp_path, name="twin", n_trials=3, search_space=str(space),
                                               baselines="[none]", **{"training.epochs": 1, "driver.pruner": "none"}))
    lines = []
    run_search(exp, progress=False, log=lines.append)
    trials = {t.number: t for t in open_study(exp.tracking_uri, "twin").trial_records()}
    assert trials[1].same_as is None and trials[2].same_as == 1
    assert trials[2].value == trials[1].value and trials[2].policy_hash == trials[1].policy_hash
    assert "as t01 (same policy and seed: not trained again)" in lines[2]
    frozen = autoaug.search.best_policy("twin", exp.tracking_uri)
    assert "evaluations" not in frozen.meta  # a reused score is no second evaluation
