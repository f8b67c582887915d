"""Intervals and tests for evaluation reports, as small pure functions.

- :func:`bootstrap_ci`: percentile bootstrap of a statistic (default the mean)
  over examples, with a fixed seed so a report is reproducible.
- :func:`paired_difference`: mean of per-example differences ``a_i - b_i`` on
  the examples both sides scored, its bootstrap interval, and a Wilcoxon
  signed-rank test (scipy) plus the exact sign test (binomial), both two-sided.
- :func:`wilson_ci`: the Wilson score interval of a proportion (accuracies),
  which behaves at 0 and 1 where the normal approximation does not.
- :func:`bootstrap_column_means`: every column's mean and their average from the
  same resamples (table 1's Res / Exp / Rec / Avg), vectorised.

The intervals and tests ``attune evaluate`` prints (resampled over users, and
studentized) are in :mod:`~attunement.evaluation.clustered`, with Holm's
adjustment; the records they fill (:class:`Interval`, :class:`Stat`,
:class:`PairedComparison`) are here.

Every function takes plain sequences and returns plain numbers; missing values
are the caller's business (drop unscorable items first and report how many).
Every interval a report prints is computed here or in
:mod:`~attunement.evaluation.clustered`, so a method is changed (or a
new one added) in this one module. :class:`Stat` is an interval as the results
files record it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from pydantic import BaseModel, Field

#: fewer independent units (users) than this get an estimate but no interval and no
#: p-value: measured in tests/test_eval_stats.py, no bootstrap holds its level below
MIN_CLUSTERS = 10
N_TOO_SMALL = "n too small"


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval at ``level``.

    ``clusters`` is the number of independent units the interval was resampled
    over (users), when they are not the ``n`` values themselves; ``note`` says
    why an estimate has no interval (:data:`N_TOO_SMALL`).
    """

    estimate: float | None
    low: float | None
    high: float | None
    n: int
    level: float = 0.95
    clusters: int | None = None
    note: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class Stat(BaseModel):
    """An estimate with its interval, as ``results.json`` records it (None when
    nothing was scored)."""

    mean: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0
    clusters: int | None = Field(None, description="users the interval resampled (if not n)")
    note: str | None = Field(None, description="why there is no interval ('n too small')")

    @classmethod
    def of(cls, interval: Interval, scale: float = 1.0) -> Stat:
        """The interval's figures, each multiplied by ``scale`` (e.g. 5 for 0-20 -> 0-100).

        >>> Stat.of(Interval(3.0, 2.0, 4.0, 7), scale=5)
        Stat(mean=15.0, low=10.0, high=20.0, n=7, clusters=None, note=None)
        """
        scaled = [
            None if v is None else v * scale
            for v in (interval.estimate, interval.low, interval.high)
        ]
        return cls(
            mean=scaled[0],
            low=scaled[1],
            high=scaled[2],
            n=interval.n,
            clusters=interval.clusters,
            note=interval.note,
        )


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
    p: float | None = None  # the clustered bootstrap-t test (cluster_paired), else None

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
    diffs = paired_differences(a, b)
    return compare_differences(
        diffs, bootstrap_ci(diffs, resamples=resamples, level=level, seed=seed)
    )


def paired_differences(a: Sequence[float], b: Sequence[float]) -> list[float]:
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    return [float(x) - float(y) for x, y in zip(a, b)]


def compare_differences(diffs: Sequence[float], diff: Interval) -> PairedComparison:
    """The comparison of paired differences, given the interval of their mean."""
    wins = sum(1 for d in diffs if d > 0)
    losses = sum(1 for d in diffs if d < 0)
    return PairedComparison(
        diff=diff,
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
    # rounding must never put the estimate outside its own interval (0% and 100%)
    return Interval(p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)), n, level)


# --------------------------------------------------------------------------- vectorised


@dataclass(frozen=True)
class ColumnMeans:
    """Intervals of each column's mean and of the mean of (some) column means."""

    columns: tuple[Interval, ...]
    average: Interval

    def as_dict(self) -> dict:
        return {"columns": [c.as_dict() for c in self.columns], "average": self.average.as_dict()}


def _finite_quantiles(stats, level: float) -> tuple[float | None, float | None]:
    import numpy as np

    finite = stats[np.isfinite(stats)]
    if finite.size == 0:
        return None, None
    alpha = (1 - level) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])  # linear interpolation, as _quantile
    return float(low), float(high)


def value_matrix(rows: Sequence[Sequence[float | None]]):
    """Rows of values (None: missing) as a float array with NaN where missing; rows
    of different lengths are an error.

    >>> value_matrix([[1, None], [2, 3]]).tolist()
    [[1.0, nan], [2.0, 3.0]]
    """
    import numpy as np

    width = len(rows[0]) if rows else 0
    if any(len(r) != width for r in rows):
        raise ValueError("every row needs the same number of columns")
    return np.array(
        [[np.nan if v is None else float(v) for v in r] for r in rows], dtype=float
    ).reshape(len(rows), width)


def bootstrap_column_means(
    rows: Sequence[Sequence[float | None]],
    *,
    average_of: Sequence[int] | None = None,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> ColumnMeans:
    """Percentile bootstrap over rows (examples) of column means and their average.

    ``rows[i][j]`` is example ``i``'s value in column ``j`` (a judge dimension), or
    None when missing. A column's estimate is the mean of its present values (the
    authors drop unparseable scores per dimension); the average is the mean of the
    column means listed in ``average_of`` (default: every column), i.e. table 1's
    ``Avg``. Each bootstrap resample draws whole rows with replacement, so the
    columns' intervals and the average's come from the same resamples; a resample
    in which a column has no value is left out of that column's (and the
    average's) quantiles. numpy does the resampling, so thousands of resamples
    over hundreds of examples take milliseconds.

    >>> out = bootstrap_column_means([[4, 2], [5, None], [3, 4]])
    >>> [c.estimate for c in out.columns], out.average.estimate, out.columns[1].n
    ([4.0, 3.0], 3.5, 2)
    """
    import numpy as np

    if not rows:
        return ColumnMeans((), Interval(None, None, None, 0, level))
    values = value_matrix(rows)
    width = values.shape[1]
    average_of = list(range(width)) if average_of is None else list(average_of)
    present = ~np.isnan(values)
    counts = present.sum(axis=0)

    def column_means(sums, ns):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ns > 0, sums / np.maximum(ns, 1), np.nan)

    point = column_means(np.nansum(values, axis=0), counts)
    point_avg = (
        float(np.mean(point[average_of]))
        if average_of and np.all(np.isfinite(point[average_of]))
        else None
    )
    n = len(rows)
    if n >= 2:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(resamples, n))
        filled = np.where(present, values, 0.0)
        sums = filled[idx].sum(axis=1)  # resamples x columns
        ns = present[idx].sum(axis=1)
        boot = column_means(sums, ns)
        boot_avg = boot[:, average_of].mean(axis=1) if average_of else np.full(resamples, np.nan)
    columns = []
    for j in range(width):
        est = float(point[j]) if np.isfinite(point[j]) else None
        if est is None or n < 2:
            columns.append(Interval(est, est, est, int(counts[j]), level))
        else:
            columns.append(
                Interval(est, *_finite_quantiles(boot[:, j], level), int(counts[j]), level)
            )
    complete = int(present[:, average_of].all(axis=1).sum()) if average_of else 0
    if point_avg is None or n < 2:
        average = Interval(point_avg, point_avg, point_avg, complete, level)
    else:
        average = Interval(point_avg, *_finite_quantiles(boot_avg, level), complete, level)
    return ColumnMeans(tuple(columns), average)


def compare_paired(
    a: Sequence[float],
    b: Sequence[float],
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """:func:`paired_difference` with the bootstrap done by numpy (same fields, same
    tests; the interval differs only by the random draws). Use it for reports
    with many comparisons.

    >>> cmp = compare_paired([4, 5, 4, 5], [3, 4, 4, 3])
    >>> cmp.diff.estimate, cmp.wins, cmp.losses, cmp.ties, round(cmp.sign_p, 3)
    (1.0, 3, 0, 1, 0.25)
    """
    diffs = paired_differences(a, b)
    if diffs:
        diff = bootstrap_column_means(
            [[d] for d in diffs], resamples=resamples, level=level, seed=seed
        ).columns[0]
    else:
        diff = Interval(None, None, None, 0, level)
    return compare_differences(diffs, diff)
