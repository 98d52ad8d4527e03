"""Selection after the search: a verdict from paired seeds, not from one lucky trial.

A search trial trains once; the seed-to-seed noise of that single score is as large as the
differences between good policies. Selection re-trains the `selection.top_k` distinct
searched policies with the best scores and the best baseline with `selection.seeds` more
seeds each, every candidate with the same seeds (common random numbers), and freezes the
candidate with the best mean. Under ``trial_seeds: common`` the search's own score is one
more paired seed. The winner's gap to the baseline comes with its 95% t-interval.
Selection runs are child runs of the study (role ``selection``), so a resumed or repeated
selection trains only what is missing.
"""
from __future__ import annotations

import statistics

from .. import tracking
from ..policy import Policy, builtin
from ..stats import paired_gap
from .study import StudyContext

SEED_OFFSET = 1000  # selection seeds are seed + 1000 + j: never a trial's own seed


def candidates(records: list[tracking.TrialRecord], top_k: int) -> list[list[tracking.TrialRecord]]:
    """The trials of the `top_k` best distinct searched policies, then of the best baseline."""
    groups: dict[str, list] = {}
    for r in sorted(records, key=lambda r: r.number):
        if r.complete:
            groups.setdefault(r.policy_hash or f"trial{r.number}", []).append(r)

    def score(g):
        return (statistics.fmean(r.value for r in g), -g[0].number)

    searched = sorted((g for g in groups.values() if not g[0].baseline), key=score, reverse=True)[:top_k]
    baselines = [g for g in groups.values() if g[0].baseline]
    return searched + ([max(baselines, key=score)] if baselines else [])


def select(ctx: StudyContext, log=print) -> dict | None:
    """Run (or complete) the selection of a finished study and log it to its parent run."""
    exp, sel = ctx.exp, ctx.exp.selection
    if sel.top_k == 0:
        return None
    if exp.evaluation != "proxy-training":
        log("selection: skipped (density matching scores are deterministic per policy)")
        return None
    groups = candidates(ctx.tracker.trial_records(), sel.top_k)
    if len(groups) < 2:
        return None
    seeds = [exp.seed + SEED_OFFSET + j for j in range(sel.seeds)]
    done = {(r.policy_hash, r.seed): r.value for r in ctx.tracker.trial_records(tracking.SELECTION) if r.complete}
    todo = [(s, g) for s in seeds for g in groups if (g[0].policy_hash, s) not in done]
    if todo:
        log(f"selection: {len(groups)} candidates x {len(seeds)} more seeds, {len(todo)} trainings")
    for seed, group in todo:
        head = group[0]
        policy = builtin(head.baseline) if head.baseline else Policy.from_json(
            ctx.tracker.read_text(head.run_id, "policy.json"))
        try:
            outcome = ctx.run_trial(head.number, policy, {}, baseline=head.baseline or None, seed=seed)
        except Exception as e:  # logged as failed; the candidate is judged on its other seeds
            log(f"selection: trial {head.number} seed {seed} failed: {e}")
            continue
        done[(head.policy_hash, seed)] = outcome.value
    common = exp.selection.trial_seeds == "common"
    rows = []
    for group in groups:
        head = group[0]
        values = {s: done[(head.policy_hash, s)] for s in seeds if (head.policy_hash, s) in done}
        if common:
            values[exp.seed] = head.value  # every trial trained with the experiment's seed
        rows.append({"trial": head.number, "policy_hash": head.policy_hash, "run_id": head.run_id,
                     "baseline": head.baseline, "values": {str(s): v for s, v in sorted(values.items())},
                     "mean": statistics.fmean(values.values()), "search_value": head.value})
    winner = max(rows, key=lambda r: (r["mean"], -r["trial"]))
    reference = rows[-1] if rows[-1]["baseline"] else None
    result = {"seeds": seeds + ([exp.seed] if common else []), "candidates": rows, "winner": winner,
              "reference": reference}
    if reference is None or winner is reference:
        gap = paired_gap({}, {})
        sentence = (f"the best baseline `{reference['baseline']}` wins the selection" if reference
                    else "no baseline to compare with")
    else:
        pct = {k: {int(s): 100 * v for s, v in r["values"].items()} for k, r in (("w", winner), ("r", reference))}
        gap = paired_gap(pct["w"], pct["r"])
        sentence = gap.sentence(f"trial {winner['trial']}", reference["baseline"]) + " on validation"
    result["gap"] = {"n": gap.n, "mean": gap.mean, "low": gap.low, "high": gap.high, "verdict": gap.verdict}
    result["sentence"] = sentence
    ctx.tracker.log_selection(result, table(result))
    log(f"selection: {sentence}")
    return result


def table(selection: dict) -> str:
    """The candidates with their per-seed validation accuracies, best mean first."""
    seeds = [str(s) for s in selection["seeds"]]
    lines = [f"{'trial':>5} {'policy':<14} {'mean':>7} " + " ".join(f"{'s' + s:>7}" for s in seeds)]
    for r in sorted(selection["candidates"], key=lambda r: -r["mean"]):
        vals = " ".join(f"{100 * r['values'][s]:>7.2f}" if s in r["values"] else f"{'-':>7}" for s in seeds)
        lines.append(f"{r['trial']:>5} {(r['baseline'] or 'searched'):<14} {100 * r['mean']:>7.2f} {vals}")
    return "\n".join(lines + [selection["sentence"]])
