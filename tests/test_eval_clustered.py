"""evaluation.clustered: intervals over users that hold their level, p-values, Holm.

The coverage tests simulate what ``attune evaluate`` meets: users with one to
three queries each, a user effect shared by their queries, and judge scores
rounded to 1-5. The truth (the population mean of a score) is known in closed
form, so the share of 95% intervals that contain it can be counted.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from attunement.evaluation.clustered import cluster_column_means, cluster_paired, holm
from attunement.evaluation.stats import MIN_CLUSTERS, Stat

CENTRE, USER_SD, QUERY_SD = 3.6, 0.6, 0.8


def users_scores(rng, users: int, shift: float = 0.0):
    """Scores (1-5) of ``users`` users with 1-3 queries each, and each score's user."""
    sizes = rng.integers(1, 4, size=users)
    effect = rng.normal(0, USER_SD, size=users)
    who = np.repeat(np.arange(users), sizes)
    latent = CENTRE + shift + effect[who] + rng.normal(0, QUERY_SD, size=who.size)
    return np.clip(np.round(latent), 1, 5), who


def true_mean() -> float:
    """E[clip(round(CENTRE + u + e), 1, 5)] with u + e normal (sd 1 here)."""
    sd = (USER_SD**2 + QUERY_SD**2) ** 0.5
    cdf = NormalDist(CENTRE, sd).cdf
    cuts = [float("-inf"), 1.5, 2.5, 3.5, 4.5, float("inf")]
    return sum(k * (cdf(cuts[k]) - cdf(cuts[k - 1])) for k in range(1, 6))


def coverage(users: int, reps: int = 1000) -> float:
    rng = np.random.default_rng(users)
    truth, hits = true_mean(), 0
    for _ in range(reps):
        scores, who = users_scores(rng, users)
        iv = cluster_column_means(
            [[s] for s in scores], list(who), resamples=999, seed=int(rng.integers(2**31))
        ).columns[0]
        hits += iv.low <= truth <= iv.high
    return hits / reps


@pytest.mark.parametrize("users", [10, 30])
def test_95_percent_intervals_over_users_cover_the_truth(users):
    assert coverage(users) >= 0.93


def test_below_ten_users_there_is_an_estimate_and_no_interval():
    rng = np.random.default_rng(0)
    scores, who = users_scores(rng, MIN_CLUSTERS - 1)
    col = cluster_column_means([[s] for s in scores], list(who)).columns[0]
    assert col.estimate == pytest.approx(scores.mean())
    assert (col.low, col.high, col.note, col.clusters) == (None, None, "n too small", 9)
    assert col.n == len(scores)  # n counts the values, clusters the users
    # one user with many queries is still one user
    many = cluster_column_means([[s] for s in scores], [0] * len(scores)).columns[0]
    assert many.clusters == 1 and many.low is None
    # the same values as independent users get an interval
    apart = cluster_column_means([[s] for s in range(12)]).columns[0]
    assert apart.clusters == 12 and apart.low < apart.estimate < apart.high
    stat = Stat.of(col)
    assert stat.note == "n too small" and stat.clusters == 9


def test_clusters_widen_the_interval_of_correlated_queries():
    """Queries of one user moving together carry less information than as many users."""
    rng = np.random.default_rng(1)
    per_user = rng.normal(3, 1, size=15)
    rows = [[v] for v in np.repeat(per_user, 4)]
    as_users = cluster_column_means(rows, list(np.repeat(np.arange(15), 4))).columns[0]
    as_queries = cluster_column_means(rows).columns[0]
    assert as_users.estimate == pytest.approx(as_queries.estimate)
    assert (as_users.high - as_users.low) > 1.6 * (as_queries.high - as_queries.low)


def test_columns_average_and_missing_values():
    rows = [[4, 2, 80], [5, None, 60], [3, 4, None], [4, 3, 70]] * 3
    out = cluster_column_means(rows, average_of=[0, 1])
    assert [c.estimate for c in out.columns] == [4.0, 3.0, 70.0]
    assert [c.n for c in out.columns] == [12, 9, 9]
    assert out.average.estimate == pytest.approx(3.5) and out.average.n == 9
    assert out.columns[1].clusters == 9 and out.columns[1].note == "n too small"
    assert out.columns[0].low < 4.0 < out.columns[0].high
    # an interval never leaves the range of the values it averages
    assert 3 <= out.columns[0].low and out.columns[0].high <= 5
    with pytest.raises(ValueError, match="cluster labels"):
        cluster_column_means(rows, clusters=[0, 1])


def test_paired_p_matches_the_interval_and_holds_its_level_under_the_null():
    rng = np.random.default_rng(7)
    rejected = 0
    reps = 600
    for _ in range(reps):
        a, who = users_scores(rng, 20)
        # the other system: as good on average, with its own user effect and noise
        b = a + rng.normal(0, 0.5, size=20)[who] + rng.normal(0, 0.7, size=a.size)
        cmp = cluster_paired(list(b), list(a), list(who), resamples=499, seed=int(rng.integers(99)))
        rejected += cmp.p < 0.05
        # a p below 5% goes with a 95% interval without 0, and the other way round
        excludes_zero = not (cmp.diff.low <= 0 <= cmp.diff.high)
        assert excludes_zero == (cmp.p < 0.05) or 0.03 < cmp.p < 0.07
    assert rejected / reps <= 0.075
    a, who = users_scores(rng, 30)
    better = cluster_paired(list(a + 0.5 + rng.normal(0, 0.3, a.size)), list(a), list(who))
    assert better.p < 0.01 and better.diff.low > 0
    same_lead = cluster_paired(list(a + 0.5), list(a), list(who))  # no spread at all
    assert same_lead.p < 0.01 and (same_lead.diff.low, same_lead.diff.high) == (0.5, 0.5)
    few = cluster_paired([4.0, 5.0, 4.0], [3.0, 3.0, 3.0])
    assert few.p is None and few.diff.note == "n too small" and few.wilcoxon_p is not None


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 of m = 3: 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert holm([0.01, 0.04, None, 0.03]) == [
        pytest.approx(0.03),
        pytest.approx(0.06),
        None,
        pytest.approx(0.06),
    ]
    assert holm([0.5, 0.9]) == [pytest.approx(1.0), pytest.approx(1.0)]
    assert holm([]) == [] and holm([None]) == [None]


def test_holm_keeps_the_family_error_rate_that_raw_p_values_lose():
    """Four null comparisons: some raw p < 0.05 in about 19% of reports, an adjusted
    one in at most 5%."""
    rng = np.random.default_rng(3)
    reports = rng.random((20000, 4))
    raw = (reports < 0.05).any(axis=1).mean()
    adjusted = np.mean([min(p for p in holm(list(r))) < 0.05 for r in reports[:4000]])
    assert raw == pytest.approx(1 - 0.95**4, abs=0.01)
    assert adjusted <= 0.055
