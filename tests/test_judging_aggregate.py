"""Every reward formula against values computed by hand."""

from __future__ import annotations

import math

import pytest

from attunement.judging.aggregate import (
    aggregate,
    arithmetic_mean,
    geometric_mean,
    harmonic_mean,
    mean,
    softmin,
)
from attunement.judging.perm import bystander_penalty, length_penalty
from attunement.judging.scale import normalize


def test_normalize_max_divides_by_five():
    assert [normalize(s) for s in (1, 2, 3, 4, 5)] == [0.2, 0.4, 0.6, 0.8, 1.0]


def test_normalize_minmax_maps_one_to_zero():
    assert [normalize(s, method="minmax") for s in (1, 2, 3, 4, 5)] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_normalize_rejects_out_of_range_and_unknown():
    with pytest.raises(ValueError):
        normalize(0)
    with pytest.raises(ValueError):
        normalize(5.5)
    with pytest.raises(ValueError):
        normalize(3, method="zscore")  # type: ignore[arg-type]


def test_harmonic_mean_by_hand():
    # 3 / (1/0.8 + 1/0.6 + 1/1.0) = 3 / (1.25 + 1.666.. + 1) = 36/47
    assert harmonic_mean([0.8, 0.6, 1.0]) == pytest.approx(36 / 47)
    assert harmonic_mean([0.5, 0.5]) == pytest.approx(0.5)
    assert harmonic_mean([0.0, 1.0, 1.0]) == 0.0


def test_softmin_by_hand_with_beta():
    vals = [0.8, 0.6, 1.0]
    for beta in (1.0, 5.0):
        expected = (
            -1
            / beta
            * math.log((math.exp(-beta * 0.8) + math.exp(-beta * 0.6) + math.exp(-beta * 1.0)) / 3)
        )
        assert softmin(vals, beta) == pytest.approx(expected)
    # lies between the minimum and the mean, approaching the minimum as beta grows
    assert 0.6 < softmin(vals, 1.0) < 0.8
    assert softmin(vals, 200.0) == pytest.approx(0.6 + math.log(3) / 200, abs=1e-6)
    assert softmin([0.7, 0.7, 0.7], 3.0) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        softmin(vals, 0.0)


def test_arithmetic_and_geometric_by_hand():
    assert arithmetic_mean([0.8, 0.6, 1.0]) == pytest.approx(0.8)
    assert geometric_mean([0.8, 0.6, 1.0]) == pytest.approx((0.8 * 0.6 * 1.0) ** (1 / 3))
    assert geometric_mean([0.0, 0.9]) == 0.0


def test_aggregate_dispatches_and_rejects_bad_input():
    vals = [0.4, 0.8]
    assert aggregate(vals, "harmonic") == pytest.approx(2 / (2.5 + 1.25))
    assert aggregate(vals, "arithmetic") == pytest.approx(0.6)
    assert aggregate(vals, "geometric") == pytest.approx(math.sqrt(0.32))
    assert aggregate(vals, "softmin", beta=2.0) == pytest.approx(softmin(vals, 2.0))
    with pytest.raises(ValueError):
        aggregate(vals, "median")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        aggregate([], "harmonic")
    with pytest.raises(ValueError):
        aggregate([1.2], "harmonic")


def test_bystander_penalty_by_hand():
    assert bystander_penalty(1.0, 0.5) == 0.0
    assert bystander_penalty(0.0, 0.5) == -0.5
    assert bystander_penalty(0.72, 0.5) == pytest.approx(-0.14)
    assert bystander_penalty(0.72, 1.0) == pytest.approx(-0.28)
    with pytest.raises(ValueError):
        bystander_penalty(72, 0.5)
    with pytest.raises(ValueError):
        bystander_penalty(1.5, 0.5)
    with pytest.raises(ValueError):
        bystander_penalty(-0.1, 0.5)


def test_length_penalty_by_hand():
    assert length_penalty(768) == 0.0
    assert length_penalty(100) == 0.0
    assert length_penalty(1000) == pytest.approx(-0.232)
    assert length_penalty(600, limit=500, coef=0.01) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        length_penalty(-1)


def test_mean_refuses_empty():
    assert mean([3, 4]) == 3.5
    with pytest.raises(ValueError):
        mean([])
