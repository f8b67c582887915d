"""Intervals and tests for evaluation reports, as small pure functions.

- :func:`bootstrap_ci`: percentile bootstrap of a statistic (default the mean)
  over examples, with a fixed seed so a report is reproducible.
- :func:`paired_difference`: mean of per-example differences ``a_i - b_i`` on
  the examples both sides scored, its bootstrap interval, and a Wilcoxon
  signed-rank test (scipy) plus the exact sign test (binomial), both two-sided.
- :func:`wilson_ci`: the Wilson score interval of a proportion (accuracies),
  which behaves at 0 and 1 where the normal approximation does not.

Every function takes plain sequences and returns plain numbers; missing values
are the caller's business (drop unscorable items first and report how many).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval at ``level``."""

    estimate: float | None
    low: float | None
    high: float | None
    n: int
    level: float = 0.95

    def as_dict(self) -> dict:
        return asdict(self)


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of nothing")
    return sum(values) / len(values)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of already sorted values (numpy's default).

    >>> _quantile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.5
    """
    if not sorted_values:
        raise ValueError("quantile of nothing")
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] * (1 - frac) + sorted_values[hi] * frac


def bootstrap_ci(
    values: Sequence[float],
    *,
    statistic: Callable[[Sequence[float]], float] = mean,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over ``values``.

    One value gives a zero-width interval; no values give ``None`` everywhere.

    >>> ci = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> ci.estimate, ci.low < 3.0 < ci.high, ci.n
    (3.0, True, 5)
    """
    vals = [float(v) for v in values]
    if not vals:
        return Interval(None, None, None, 0, level)
    point = statistic(vals)
    if len(vals) == 1:
        return Interval(point, point, point, 1, level)
    rng = random.Random(seed)
    n = len(vals)
    stats = sorted(statistic([vals[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    alpha = (1 - level) / 2
    return Interval(point, _quantile(stats, alpha), _quantile(stats, 1 - alpha), n, level)


@dataclass(frozen=True)
class PairedComparison:
    """``a`` against ``b`` on the examples both scored: ``diff`` is mean(a - b)."""

    diff: Interval
    n: int
    wins: int
    losses: int
    ties: int
    wilcoxon_p: float | None
    sign_p: float | None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["diff"] = self.diff.as_dict()
        return out


def sign_test_p(wins: int, losses: int) -> float | None:
    """Exact two-sided sign test (ties dropped); None when there is nothing to test.

    >>> round(sign_test_p(9, 1), 4)
    0.0215
    """
    n = wins + losses
    if n == 0:
        return None
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def wilcoxon_p(diffs: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value (zero differences dropped), or None
    when fewer than one non-zero difference exists."""
    nonzero = [d for d in diffs if d != 0]
    if not nonzero:
        return None
    from scipy.stats import wilcoxon

    return float(wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided").pvalue)


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare two systems scored on the same examples (``a[i]`` and ``b[i]`` pair up).

    >>> cmp = paired_difference([4, 5, 4, 5], [3, 4, 4, 3])
    >>> cmp.diff.estimate, cmp.wins, cmp.losses, cmp.ties
    (1.0, 3, 0, 1)
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    wins = sum(1 for d in diffs if d > 0)
    losses = sum(1 for d in diffs if d < 0)
    return PairedComparison(
        diff=bootstrap_ci(diffs, resamples=resamples, level=level, seed=seed),
        n=len(diffs),
        wins=wins,
        losses=losses,
        ties=len(diffs) - wins - losses,
        wilcoxon_p=wilcoxon_p(diffs),
        sign_p=sign_test_p(wins, losses),
    )


def wilson_ci(successes: int, n: int, *, level: float = 0.95) -> Interval:
    """Wilson score interval of ``successes / n``.

    >>> ci = wilson_ci(8, 10)
    >>> ci.estimate, round(ci.low, 3), round(ci.high, 3)
    (0.8, 0.49, 0.943)
    """
    if n == 0:
        return Interval(None, None, None, 0, level)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in 0..{n}, got {successes}")
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n, level)
