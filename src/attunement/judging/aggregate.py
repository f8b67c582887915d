"""How the empathy dimensions combine into ``r_emp``, as small pure functions.

Notation (docs/rewards.md writes it out in full): ``s_d`` is a judge score on
the rating scale of :mod:`attunement.judging.scale` (1-5) for dimension ``d``,
``r_d`` its normalised value in [0, 1] (:func:`attunement.judging.scale.normalize`),
``R_bys`` the bystander total divided by its maximum (100).

- ``r_emp`` = harmonic mean (default), softmin with temperature ``beta``,
  arithmetic mean or geometric mean of the enabled ``r_d``.

The penalties PERM adds to ``r_emp`` (bystander, length) are PERM's own
arithmetic and live with it, in :mod:`attunement.judging.perm`.

None of these functions accepts a missing value: a dimension with no valid
judge sample makes the reply unscorable upstream, it is never replaced by a
constant here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

from attunement.judging.scale import Normalization  # re-exported: the CLI reads it here

__all__ = [
    "AGGREGATIONS",
    "Aggregation",
    "Normalization",
    "aggregate",
    "arithmetic_mean",
    "geometric_mean",
    "harmonic_mean",
    "mean",
    "softmin",
]

Aggregation = Literal["harmonic", "softmin", "arithmetic", "geometric"]
AGGREGATIONS: tuple[Aggregation, ...] = get_args(Aggregation)


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


def mean(values: Sequence[float]) -> float:
    vals = list(values)
    if not vals:
        raise ValueError("mean of nothing")
    return sum(vals) / len(vals)
