"""The arithmetic of verdicts: paired gaps with Student-t intervals, rank correlation."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class PairedGap:
    """Per-seed differences `policy - reference` on their common seeds (accuracy points)."""
    n: int
    mean: float
    sd: float
    low: float  # 95% Student-t interval of the mean difference
    high: float
    sd_unpaired: float  # sd of the differences between runs of different seeds (no pairing)

    @property
    def verdict(self) -> str:
        if self.n < 2:
            return "one seed: no interval"
        return "better" if self.low > 0 else "worse" if self.high < 0 else "not distinguishable"

    def sentence(self, name: str, reference: str) -> str:
        """One line, e.g. "`x` is not distinguishable from `standard`: +0.30 [-0.52, +1.12] ..."."""
        if self.n < 2:
            return f"`{name}` vs `{reference}`: {self.mean:+.2f} points on one seed (no interval)"
        words = {"better": "beats", "worse": "is worse than", "not distinguishable": "is not distinguishable from"}
        return (f"`{name}` {words[self.verdict]} `{reference}`: {self.mean:+.2f} points "
                f"[{self.low:+.2f}, {self.high:+.2f}] (95% CI, {self.n} paired seeds)")


def mean_interval(values: list[float]) -> tuple[float, float, float, float]:
    """(mean, sd, low, high): the mean of two or more values with its 95% Student-t interval.

    >>> [round(x, 2) for x in mean_interval([1.0, 1.5, 0.5])]
    [1.0, 0.5, -0.24, 2.24]
    """
    from scipy import stats
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = float(stats.t.ppf(0.975, len(values) - 1)) * sd / math.sqrt(len(values))
    return mean, sd, mean - half, mean + half


def paired_gap(policy: dict, reference: dict) -> PairedGap:
    """The gap of `policy` to `reference` ({seed: accuracy}) on their common seeds.

    The unpaired sd is that of the differences between runs of *different* seeds: what the
    same comparison would see without common seeds.

    >>> g = paired_gap({0: 66.0, 1: 67.0, 2: 65.5}, {0: 65.0, 1: 65.5, 2: 65.0})
    >>> round(g.mean, 3), round(g.low, 2), round(g.high, 2), g.verdict
    (1.0, -0.24, 2.24, 'not distinguishable')
    """
    seeds = sorted(set(policy) & set(reference))
    diffs = [policy[s] - reference[s] for s in seeds]
    n = len(diffs)
    if n == 0:
        return PairedGap(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    if n < 2:
        return PairedGap(1, diffs[0], math.nan, math.nan, math.nan, math.nan)
    mean, sd, low, high = mean_interval(diffs)
    cross = [policy[a] - reference[b] for a in seeds for b in seeds if a != b]
    return PairedGap(n, mean, sd, low, high, statistics.stdev(cross))


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (ties share their mean rank); NaN below 3 points."""
    from scipy import stats
    if len(xs) < 3:
        return math.nan
    return float(stats.spearmanr(xs, ys).statistic)
