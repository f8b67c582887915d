"""evaluation.stats: intervals and tests against hand-computed values."""

from __future__ import annotations

import math
import random

import pytest

from attunement.evaluation.stats import (
    Interval,
    _quantile,
    bootstrap_ci,
    bootstrap_column_means,
    compare_paired,
    mean,
    paired_difference,
    sign_test_p,
    wilcoxon_p,
    wilson_ci,
)


def test_quantile_interpolates_linearly():
    assert _quantile([1.0, 2.0, 3.0, 4.0], 0.0) == 1.0
    assert _quantile([1.0, 2.0, 3.0, 4.0], 1.0) == 4.0
    # position (4-1)*0.25 = 0.75 -> 1 + 0.75*(2-1)
    assert _quantile([1.0, 2.0, 3.0, 4.0], 0.25) == pytest.approx(1.75)
    assert _quantile([10.0], 0.3) == 10.0
    with pytest.raises(ValueError):
        _quantile([], 0.5)


def test_mean_of_nothing_is_an_error():
    assert mean([1, 2, 6]) == 3
    with pytest.raises(ValueError):
        mean([])


def test_bootstrap_edge_cases():
    assert bootstrap_ci([]) == Interval(None, None, None, 0)
    assert bootstrap_ci([3.5]) == Interval(3.5, 3.5, 3.5, 1)
    constant = bootstrap_ci([4.0] * 7)
    assert (constant.estimate, constant.low, constant.high, constant.n) == (4.0, 4.0, 4.0, 7)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = [1, 2, 2, 3, 5, 5, 4, 1, 2, 3]
    a, b = bootstrap_ci(values, seed=3), bootstrap_ci(values, seed=3)
    assert a == b
    assert a.estimate == pytest.approx(2.8)
    assert a.low < 2.8 < a.high
    noisy = _normal_sample(30, sd=1.0)
    assert bootstrap_ci(noisy, seed=4) != bootstrap_ci(noisy, seed=5)


def _normal_sample(n: int, sd: float, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(3.0, sd) for _ in range(n)]


def test_bootstrap_width_matches_normal_theory():
    """For the mean of n draws the 95% interval is about 2 * 1.96 * sd / sqrt(n)."""
    values = _normal_sample(400, sd=1.0)
    sd = math.sqrt(sum((v - mean(values)) ** 2 for v in values) / (len(values) - 1))
    expected = 2 * 1.96 * sd / math.sqrt(len(values))
    ci = bootstrap_ci(values)
    assert ci.high - ci.low == pytest.approx(expected, rel=0.15)
    assert ci.low < ci.estimate < ci.high
    # a narrower level gives a narrower interval
    narrow = bootstrap_ci(values, level=0.5)
    assert narrow.high - narrow.low < (ci.high - ci.low) / 2


def test_sign_test_by_hand():
    # 9 wins of 10: P(X <= 1) = (1 + 10) / 1024, two-sided doubles it
    assert sign_test_p(9, 1) == pytest.approx(22 / 1024)
    assert sign_test_p(1, 9) == pytest.approx(22 / 1024)
    assert sign_test_p(3, 0) == pytest.approx(2 / 8)
    assert sign_test_p(5, 5) == 1.0  # capped
    assert sign_test_p(0, 0) is None


def test_wilcoxon_by_hand():
    # three positive differences: only one of 2^3 sign patterns is as extreme each way
    assert wilcoxon_p([1, 2, 3]) == pytest.approx(2 / 8)
    # ranks 1..5, the negative one has rank 2: subsets of ranks with sum <= 2 are
    # {}, {1}, {2}: 3 of 32, two-sided 6/32
    assert wilcoxon_p([1, -2, 3, 4, 5]) == pytest.approx(6 / 32)
    # zero differences are dropped before ranking
    assert wilcoxon_p([0, 0, 1, -2, 3, 4, 5]) == pytest.approx(6 / 32)
    assert wilcoxon_p([0, 0]) is None


def test_paired_difference_by_hand():
    cmp = paired_difference([4, 5, 4, 5, 2], [3, 4, 4, 3, 3])
    # differences 1, 1, 0, 2, -1
    assert cmp.diff.estimate == pytest.approx(0.6)
    assert (cmp.n, cmp.wins, cmp.losses, cmp.ties) == (5, 3, 1, 1)
    assert cmp.sign_p == pytest.approx(2 * (1 + 4) / 16)
    assert cmp.diff.low <= 0.6 <= cmp.diff.high
    assert cmp.as_dict()["diff"]["estimate"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1, 2], [1])


def test_compare_paired_agrees_with_the_reference():
    a = _normal_sample(120, sd=1.0, seed=5)
    b = [x - 0.3 + d for x, d in zip(a, _normal_sample(120, sd=0.5, seed=6))]
    slow, fast = paired_difference(a, b), compare_paired(a, b)
    assert fast.diff.estimate == pytest.approx(slow.diff.estimate)
    assert (fast.wins, fast.losses, fast.ties) == (slow.wins, slow.losses, slow.ties)
    assert fast.wilcoxon_p == pytest.approx(slow.wilcoxon_p)
    assert fast.sign_p == pytest.approx(slow.sign_p)
    width = slow.diff.high - slow.diff.low
    assert fast.diff.low == pytest.approx(slow.diff.low, abs=0.1 * width)
    assert fast.diff.high == pytest.approx(slow.diff.high, abs=0.1 * width)
    assert compare_paired([], []).diff.estimate is None
    with pytest.raises(ValueError):
        compare_paired([1.0], [])


def test_wilson_by_hand():
    z = 1.959963984540054
    ci = wilson_ci(8, 10)
    centre = (0.8 + z * z / 20) / (1 + z * z / 10)
    half = z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / (1 + z * z / 10)
    assert (ci.low, ci.high) == (pytest.approx(centre - half), pytest.approx(centre + half))
    none = wilson_ci(0, 10)
    assert none.estimate == 0 and none.low == pytest.approx(0, abs=1e-12)
    assert none.high == pytest.approx(z * z / (10 + z * z))
    every = wilson_ci(10, 10)
    assert every.low == pytest.approx(10 / (10 + z * z)) and every.high == pytest.approx(1)
    assert wilson_ci(0, 0).estimate is None
    with pytest.raises(ValueError):
        wilson_ci(11, 10)


def test_column_means_drop_missing_values_per_column():
    rows = [[4, 2, 80], [5, None, 60], [3, 4, None], [4, 3, 70]]
    out = bootstrap_column_means(rows, average_of=[0, 1])
    assert [c.estimate for c in out.columns] == [4.0, 3.0, 70.0]
    assert [c.n for c in out.columns] == [4, 3, 3]
    assert out.average.estimate == pytest.approx(3.5)  # (4 + 3) / 2, column 2 left out
    assert out.average.n == 3  # rows with both averaged columns present
    for c in (*out.columns, out.average):
        assert c.low <= c.estimate <= c.high
    assert out.as_dict()["average"]["estimate"] == pytest.approx(3.5)


def test_column_means_edge_cases():
    empty = bootstrap_column_means([], average_of=[])
    assert empty.columns == () and empty.average.estimate is None
    one = bootstrap_column_means([[2.0, 4.0]])
    assert one.average == Interval(3.0, 3.0, 3.0, 1)
    constant = bootstrap_column_means([[3, 5]] * 6)
    assert (constant.average.low, constant.average.high) == (4.0, 4.0)
    missing = bootstrap_column_means([[1, None], [2, None]])
    assert missing.columns[1].estimate is None and missing.average.estimate is None
    with pytest.raises(ValueError):
        bootstrap_column_means([[1, 2], [3]])


def test_column_means_interval_matches_the_scalar_bootstrap():
    values = _normal_sample(300, sd=0.8, seed=9)
    col = bootstrap_column_means([[v] for v in values]).columns[0]
    ref = bootstrap_ci(values)
    width = ref.high - ref.low
    assert col.estimate == pytest.approx(ref.estimate)
    assert col.low == pytest.approx(ref.low, abs=0.1 * width)
    assert col.high == pytest.approx(ref.high, abs=0.1 * width)
    assert bootstrap_column_means([[v] for v in values], seed=1) != bootstrap_column_means(
        [[v] for v in values], seed=2
    )
