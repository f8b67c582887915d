"""What every check computes on: keys, measures, estimates and paired changes.

A *measure* is what a figure is computed on: ``"reward"`` (the total a
trainer would receive) or one dimension's value on the judge's own scale
(``resonation``, ..., ``bystander``). Unscorable values (``None``) are left
out of every figure and counted. Replies are joined by their key
``(example_id, reply_id)``, never by position.

Statuses: ``pass`` (the check shows what a reward needs), ``warn`` (the
evidence is weak or something is off), ``fail`` (the judge does not do what
the check asks), ``info`` (a measurement with no verdict), ``n/a`` (no data).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from attunement.evaluation.stats import Interval, sign_test_p
from attunement.records import EMPATHY_DIMENSIONS, RewardBreakdown

Status = Literal["pass", "warn", "fail", "info", "n/a"]
Key = tuple[str, str]  # (example_id, reply_id)

#: fewer pairs than this never make a probe *gain* or a judge *sensitive*: an interval
#: of one or two pairs says nothing about replies in general
MIN_PAIRS = 3
TIE_EPS = 1e-9


def key_of(b: RewardBreakdown) -> Key:
    return (b.example_id, b.reply_id)


def value(b: RewardBreakdown | None, measure: str) -> float | None:
    """The reward (``"reward"``) or a dimension's judge-scale value of a breakdown."""
    if b is None:
        return None
    if measure == "reward":
        return b.reward
    return b.dimensions.get(measure)


def measures_of(breakdowns: Iterable[RewardBreakdown]) -> list[str]:
    """``reward`` then every dimension present, in the canonical order."""
    present: set[str] = set()
    for b in breakdowns:
        present.update(b.dimensions)
    order = (*EMPATHY_DIMENSIONS, "bystander")
    return ["reward", *[d for d in order if d in present]]


class Estimate(BaseModel):
    """A point estimate with its interval (95% unless ``level`` says otherwise)."""

    estimate: float | None
    low: float | None
    high: float | None
    n: int
    level: float = 0.95

    @classmethod
    def of(cls, interval: Interval) -> Estimate:
        return cls(
            estimate=interval.estimate,
            low=interval.low,
            high=interval.high,
            n=interval.n,
            level=interval.level,
        )

    def against(self, chance: float) -> Literal["above chance", "near chance", "below chance"]:
        """Where the interval lies relative to ``chance``."""
        if self.low is not None and self.low > chance:
            return "above chance"
        if self.high is not None and self.high < chance:
            return "below chance"
        return "near chance"


def ties_equal(a: float, b: float) -> bool:
    """Two scores the card counts as the same (float noise aside)."""
    return abs(a - b) <= TIE_EPS


# --------------------------------------------------------------------------- paired changes


class PairedRow(BaseModel):
    """``after - before`` over pairs both scored: its mean, interval, tests and signs."""

    measure: str
    n: int
    mean_before: float | None
    mean_after: float | None
    change: Estimate = Field(
        description="mean of after - before; Student t 95% interval (none where not asked for)"
    )
    raised: int
    lowered: int
    unchanged: int
    share_raised: float | None
    share_lowered: float | None
    sign_p: float | None = Field(description="exact two-sided sign test (ties dropped)")
    p_rise: float | None = Field(
        None, description="one-sided t test that the mean change is above 0 (n >= 2)"
    )
    p_drop: float | None = Field(
        None, description="one-sided t test that the mean change is below 0 (n >= 2)"
    )
    upper: float | None = Field(
        None, description="one-sided 95% upper bound of the mean change (n >= 2)"
    )


@dataclass(frozen=True)
class MeanTest:
    """A mean change with its two-sided t interval, one-sided p-values and upper bound."""

    interval: Interval
    p_rise: float | None
    p_drop: float | None
    upper: float | None


def t_test(diffs: Sequence[float], level: float = 0.95) -> MeanTest:
    """Student's t on paired changes: interval, both one-sided p-values and the
    one-sided upper bound at ``level``. With no spread at all the interval is the
    mean itself and a nonzero mean is certain (p = 0); one change has no test.

    >>> t = t_test([0.1, 0.2, 0.3])
    >>> round(t.interval.estimate, 3), round(t.interval.low, 3), round(t.p_rise, 4)
    (0.2, -0.048, 0.0371)
    >>> t_test([-0.2, -0.2, -0.2]).p_drop, t_test([0.5]).p_rise
    (0.0, None)
    """
    n = len(diffs)
    if n == 0:
        return MeanTest(Interval(None, None, None, 0, level), None, None, None)
    mean = statistics.fmean(diffs)
    if n == 1:
        return MeanTest(Interval(mean, None, None, 1, level), None, None, None)
    from scipy.stats import t as student

    se = statistics.stdev(diffs) / math.sqrt(n)
    if se <= TIE_EPS:
        certain = lambda side: 0.0 if side else 1.0
        return MeanTest(
            Interval(mean, mean, mean, n, level), certain(mean > 0), certain(mean < 0), mean
        )
    two = float(student.ppf(1 - (1 - level) / 2, n - 1))
    one = float(student.ppf(level, n - 1))
    stat = mean / se
    return MeanTest(
        Interval(mean, mean - two * se, mean + two * se, n, level),
        float(student.sf(stat, n - 1)),
        float(student.cdf(stat, n - 1)),
        mean + one * se,
    )


def paired_rows(
    pairs: Sequence[tuple[Key, Key]],
    scored: Mapping[Key, RewardBreakdown],
    measures: Sequence[str],
    *,
    intervals: Sequence[str] | None = None,
) -> tuple[list[PairedRow], int]:
    """Per measure, the change from the first key of each pair to the second.

    The t interval, the one-sided tests and the sign test are computed for the
    measures in ``intervals`` (default: all); the others get the mean change and
    the signs.
    Returns the rows and the number of pairs left out of the reward row
    because a side was missing or unscorable.
    """
    rows = []
    dropped = 0
    for m in measures:
        before, after = [], []
        for a, b in pairs:
            va, vb = value(scored.get(a), m), value(scored.get(b), m)
            if va is None or vb is None:
                continue
            before.append(va)
            after.append(vb)
        if m == "reward":
            dropped = len(pairs) - len(before)
        n = len(before)
        diffs = [y - x for x, y in zip(before, after)]
        raised = sum(1 for d in diffs if d > TIE_EPS)
        lowered = sum(1 for d in diffs if d < -TIE_EPS)
        unchanged = n - raised - lowered
        test = MeanTest(Interval(None, None, None, 0), None, None, None)
        if intervals is None or m in intervals:
            test = t_test(diffs)
            change = Estimate.of(test.interval)
            sign_p = sign_test_p(raised, lowered)
        else:
            mean = statistics.fmean(diffs) if n else None
            change, sign_p = Estimate(estimate=mean, low=None, high=None, n=n), None
        rows.append(
            PairedRow(
                measure=m,
                n=n,
                mean_before=statistics.fmean(before) if n else None,
                mean_after=statistics.fmean(after) if n else None,
                change=change,
                raised=raised,
                lowered=lowered,
                unchanged=unchanged,
                share_raised=raised / n if n else None,
                share_lowered=lowered / n if n else None,
                sign_p=sign_p,
                p_rise=test.p_rise,
                p_drop=test.p_drop,
                upper=test.upper,
            )
        )
    return rows, dropped


# --------------------------------------------------------------------------- rank correlation


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho, or None when fewer than 3 pairs or a side is constant."""
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    from scipy.stats import spearmanr

    rho = float(spearmanr(a, b).statistic)
    return None if math.isnan(rho) else rho
