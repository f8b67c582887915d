"""attune evaluate's numbers with several queries per user: intervals over users, every
p-value of a report adjusted together (Holm), a headline that names a better system
only on adjusted evidence, and Big Five cells of a few users without error bars."""

from __future__ import annotations

import numpy as np
import pytest

from attunement.evaluation.clustered import cluster_column_means, holm
from attunement.evaluation.report import make_plots, results_markdown
from attunement.evaluation.runs import System
from attunement.evaluation.tables import ScoreSet, compute_tables
from attunement.evaluation.views import headline
from attunement.records import BigFive, Example, Persona, RewardBreakdown

DIMS = ["resonation", "expression", "reception"]


def examples(users: int, queries: int) -> list[Example]:
    return [
        Example(
            example_id=f"u{u}-q{q}",
            user_id=f"u{u}",
            query="q",
            persona=Persona(
                profile="p",
                big_five=BigFive(
                    openness="high" if u == 0 else "low",
                    conscientiousness="medium",
                    extraversion="low",
                    agreeableness="high",
                    neuroticism="high",
                ),
            ),
        )
        for u in range(users)
        for q in range(queries)
    ]


def scores(exs, lead: float, seed: int) -> dict[str, tuple[float, float, float]]:
    """1-5 scores with a user effect shared by a user's queries, plus ``lead``."""
    rng = np.random.default_rng(seed)
    users = sorted({e.user_id for e in exs})
    effect = dict(zip(users, rng.normal(0, 0.7, len(users))))
    out = {}
    for e in exs:
        vals = 3.2 + lead + effect[e.user_id] + rng.normal(0, 0.4, 3)
        out[e.example_id] = tuple(float(np.clip(np.round(v), 1, 5)) for v in vals)
    return out


def run(exs, leads: dict[str, float], *, splits=None):
    """compute_tables on systems whose scores lead the base by ``leads``."""
    systems, sets = [], []
    base = scores(exs, 0.0, seed=1)
    for i, (label, lead) in enumerate(leads.items()):
        mine = base if lead == 0 and i == 0 else scores(exs, lead, seed=10 + i)
        keys = frozenset((e.example_id, f"{label}:0") for e in exs)
        systems.append(System(label, label, None, keys))
        sets.append(
            ScoreSet(
                "J",
                label,
                [
                    RewardBreakdown(
                        example_id=eid,
                        reply_id=f"{label}:0",
                        reward_model="peregrm",
                        reward=sum(v) / 15,
                        dimensions=dict(zip(DIMS, v)),
                    )
                    for eid, v in mine.items()
                ],
            )
        )
    return compute_tables(
        splits=splits or {"test": exs},
        systems=systems,
        scores=sets,
        judges=["J"],
        dims=DIMS,
    )


def test_intervals_resample_users_not_queries():
    exs = examples(12, 3)
    results = run(exs, {"base": 0.0})
    row = results.table[0]
    assert row.examples == 36 and row.avg.clusters == 12 and row.avg.note is None
    base = scores(exs, 0.0, seed=1)
    rows = [list(base[e.example_id]) for e in exs]
    by_user = cluster_column_means(rows, [e.user_id for e in exs])
    assert (row.avg.low, row.avg.high) == (by_user.average.low, by_user.average.high)
    as_queries = cluster_column_means(rows)  # what treating queries as independent gives
    assert row.avg.high - row.avg.low > as_queries.average.high - as_queries.average.low


def test_every_p_value_of_a_report_is_adjusted_together():
    exs = examples(12, 2)
    half = len(exs) // 2
    splits = {"a": exs[:half] + exs[half:], "b": exs[half:]}
    results = run(exs, {"base": 0.0, "x": 0.1, "y": -0.1}, splits=splits)
    paired = results.paired
    assert len(paired) == 2 * 2 * 4  # systems x splits x (Avg, Res, Exp, Rec)
    assert all(p.p is not None for p in paired if p.diff.clusters >= 10)
    assert [p.p_holm for p in paired] == holm([p.p for p in paired])
    assert any(p.p_holm > p.p for p in paired if p.p is not None)
    md = results_markdown(results)
    assert "| p | Holm p |" in md and "studentized bootstrap over users" in md


def test_the_headline_names_a_better_system_only_on_adjusted_evidence():
    exs = examples(15, 2)
    clear = run(exs, {"base": 0.0, "tuned": 0.9})
    text = headline(clear)
    assert "tuned is better than base" in text and "Holm-adjusted p" in text
    same = run(exs, {"base": 0.0, "twin": 0.0})
    twin = next(p for p in same.paired if p.metric == "avg")
    assert twin.p_holm >= 0.05
    text = headline(same)
    assert "no system is shown to differ from base" in text and "better" not in text
    # a raw p below 5% that Holm lifts above it names nobody either
    twin.diff.mean, twin.p, twin.p_holm = 0.4, 0.01, 0.2
    assert "no system is shown to differ" in headline(same)
    twin.p_holm = 0.04
    assert "twin is better than base" in headline(same)
    # three users, however large the lead: no test, and the headline says why
    few = run(examples(3, 2), {"base": 0.0, "tuned": 1.5})
    text = headline(few)
    assert "no system is shown to differ" in text and "fewer than 10 users (3)" in text
    assert "highest" not in text


def test_big_five_levels_of_a_few_users_have_no_error_bars_and_say_why():
    exs = examples(12, 2)  # openness: 1 user high, 11 low
    results = run(exs, {"base": 0.0})
    cells = {r.group["level"]: r for r in results.by_big_five if r.group["trait"] == "openness"}
    assert cells["high"].avg.clusters == 1 and cells["high"].avg.low is None
    assert cells["low"].avg.clusters == 11 and cells["low"].avg.low is not None
    pytest.importorskip("matplotlib")
    captions = [cap for name, cap, _ in make_plots(results) if name.startswith("big_five")]
    assert captions and "fewer than 10 users have no error bar" in captions[0]
