"""The arithmetic of PERM and PereGRM rewards, as small pure functions.

Notation (docs/rewards.md writes it out in full): ``s_d`` is a judge score on
a 1-5 scale for dimension ``d``, ``r_d`` its normalised value in [0, 1],
``R_bys`` the bystander total divided by 100.

- normalisation ``"max"``: ``r = s / 5`` (the authors' code; 1 -> 0.2);
  ``"minmax"``: ``r = (s - 1) / 4`` (1 -> 0, 5 -> 1);
- ``r_emp`` = harmonic mean (default), softmin with temperature ``beta``,
  arithmetic mean or geometric mean of the enabled ``r_d``;
- bystander penalty ``lambda_bys * (R_bys - 1)`` in ``[-lambda_bys, 0]``;
- length penalty ``-coef * max(tokens - limit, 0)``.

None of these functions accepts a missing value: a dimension with no valid
judge sample makes the reply unscorable upstream, it is never replaced by a
constant here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Aggregation = Literal["harmonic", "softmin", "arithmetic", "geometric"]
Normalization = Literal["max", "minmax"]
AGGREGATIONS: tuple[Aggregation, ...] = ("harmonic", "softmin", "arithmetic", "geometric")
NORMALIZATIONS: tuple[Normalization, ...] = ("max", "minmax")


def normalize(
    score: float, *, low: float = 1.0, high: float = 5.0, method: Normalization = "max"
) -> float:
    """Map a judge score to [0, 1].

    >>> normalize(4), normalize(4, method="minmax"), normalize(1), normalize(1, method="minmax")
    (0.8, 0.75, 0.2, 0.0)
    """
    if not low <= score <= high:
        raise ValueError(f"score {score} is outside {low}-{high}")
    if method == "max":
        return score / high
    if method == "minmax":
        return (score - low) / (high - low)
    raise ValueError(f"unknown normalization {method!r}; expected one of {NORMALIZATIONS}")


def _check(values: Sequence[float]) -> list[float]:
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("nothing to aggregate")
    for v in vals:
        if not (0.0 <= v <= 1.0):
            raise ValueError(f"normalised scores must lie in [0, 1], got {v}")
    return vals


def harmonic_mean(values: Sequence[float]) -> float:
    """``n / sum(1 / r_i)``; 0 when any value is 0 (its limit).

    >>> round(harmonic_mean([0.8, 0.6, 1.0]), 6)
    0.765957
    """
    vals = _check(values)
    if any(v == 0.0 for v in vals):
        return 0.0
    return len(vals) / sum(1.0 / v for v in vals)


def softmin(values: Sequence[float], beta: float = 1.0) -> float:
    """``-(1/beta) * log((1/n) * sum(exp(-beta * r_i)))`` (PERM eq. 7, bracket fixed).

    Lies between min(r) and the mean; large ``beta`` approaches the minimum.

    >>> round(softmin([0.8, 0.6, 1.0], beta=1.0), 6)
    0.786711
    """
    vals = _check(values)
    if beta <= 0:
        raise ValueError(f"softmin beta must be > 0, got {beta}")
    # log-sum-exp shifted by the minimum for stability at large beta
    m = min(vals)
    mean_exp = sum(math.exp(-beta * (v - m)) for v in vals) / len(vals)
    return m - math.log(mean_exp) / beta


def arithmetic_mean(values: Sequence[float]) -> float:
    vals = _check(values)
    return sum(vals) / len(vals)


def geometric_mean(values: Sequence[float]) -> float:
    """``(prod r_i) ** (1/n)``; 0 when any value is 0."""
    vals = _check(values)
    if any(v == 0.0 for v in vals):
        return 0.0
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def aggregate(
    values: Sequence[float], method: Aggregation = "harmonic", *, beta: float = 1.0
) -> float:
    """Combine the normalised empathy scores into ``r_emp``."""
    if method == "harmonic":
        return harmonic_mean(values)
    if method == "softmin":
        return softmin(values, beta)
    if method == "arithmetic":
        return arithmetic_mean(values)
    if method == "geometric":
        return geometric_mean(values)
    raise ValueError(f"unknown aggregation {method!r}; expected one of {AGGREGATIONS}")


def bystander_penalty(r_bys: float, lambda_bys: float) -> float:
    """``lambda_bys * (R_bys - 1)``: 0 for a perfect bystander score, ``-lambda`` for 0.

    >>> bystander_penalty(0.8, 0.5)
    -0.09999999999999998
    """
    if not 0.0 <= r_bys <= 1.0:
        raise ValueError(f"normalised bystander score must lie in [0, 1], got {r_bys}")
    return lambda_bys * (r_bys - 1.0)


def length_penalty(tokens: int, *, limit: int = 768, coef: float = 0.001) -> float:
    """``-coef * max(tokens - limit, 0)`` (PERM appendix A.1).

    >>> length_penalty(800), length_penalty(700)
    (-0.032, 0.0)
    """
    if tokens < 0:
        raise ValueError("tokens must be >= 0")
    excess = max(tokens - limit, 0)
    return -coef * excess if excess else 0.0


def mean(values: Sequence[float]) -> float:
    vals = list(values)
    if not vals:
        raise ValueError("mean of nothing")
    return sum(vals) / len(vals)
