"""The judge card's figures against values computed by hand (no model involved)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import statistics

import pytest

from attunement.evaluation.stats import wilson_ci
from attunement.judge_card import card as judge_card_card
from attunement.judge_card import checks as judge_card_checks
from attunement.judge_card import inputs as judge_card_inputs
from attunement.judge_card import probes as judge_card_probes
from attunement.judge_card import run as judge_card
from attunement.judge_card.checks import (
    ChoiceGroup,
    ProbeSet,
    agreement,
    cost,
    discrimination,
    fractional_wilson,
    group_spread,
    personalization,
    probes,
    stability,
)
from attunement.records import Judgement, RewardBreakdown, Usage


def bd(
    eid: str,
    rid: str,
    reward: float | None,
    *,
    dims: dict | None = None,
    judgements: list[Judgement] | None = None,
    usage: Usage | None = None,
    seconds: float = 0.0,
    terms: dict | None = None,
) -> RewardBreakdown:
    dims = (
        dims
        if dims is not None
        else ({} if reward is None else {"expression": 1 + 4 * reward, "bystander": 100 * reward})
    )
    return RewardBreakdown(
        example_id=eid,
        reply_id=rid,
        reward_model="perm",
        reward=reward,
        unscorable=reward is None,
        reason="expression: no valid sample" if reward is None else None,
        dimensions=dims,
        terms=terms or ({} if reward is None else {"r_emp": reward}),
        judgements=judgements or [],
        usage=usage or Usage(),
        seconds=seconds,
    )


def keyed(rows):
    return {(b.example_id, b.reply_id): b for b in rows}


def test_module_doctests():
    check_modules = [
        importlib.import_module(f"{judge_card_checks.__name__}.{m.name}")
        for m in pkgutil.iter_modules(judge_card_checks.__path__)
    ]
    modules = (judge_card, judge_card_inputs, judge_card_card, judge_card_checks, judge_card_probes)
    for module in (*modules, *check_modules):
        assert doctest.testmod(module).failed == 0, module.__name__


# --------------------------------------------------------------------------- discrimination


def choice_items():
    rewards = {
        "A": [0.9, 0.5, 0.4, 0.3],  # right c0 wins outright
        "B": [0.2, 0.5, 0.5, 0.1],  # right c1 ties c2 at the top
        "C": [0.6, 0.1, 0.2, 0.2],  # right c2 loses to c0, beats c1, ties c3
        "D": [0.9, None, 0.1, 0.1],  # a candidate unscorable: item left out
    }
    right = {"A": "c0", "B": "c1", "C": "c2", "D": "c0"}
    rows = [bd(e, f"c{i}", r) for e, rs in rewards.items() for i, r in enumerate(rs)]
    groups = [ChoiceGroup(e, tuple(f"c{i}" for i in range(4)), right[e]) for e in rewards]
    return groups, keyed(rows)


def test_discrimination_counts_ties_as_misses_and_reports_them():
    groups, scored = choice_items()
    d = discrimination(groups, scored, ["reward"])
    r = d.row("reward")
    assert (d.items, d.unscorable_items, r.items) == (4, 1, 3)
    assert (r.top1.estimate, r.top1_ties) == (pytest.approx(1 / 3), 1)
    assert r.top1_tie_split.estimate == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert (r.pairs, r.pair_wins, r.pair_ties, r.pair_losses) == (9, 6, 2, 1)
    # the interval is over the 3 items, not the 9 pairs (the pairs of an item share its
    # right reply): items win 3/3, 2/3 and 1/3 of their pairs, 2 "successes" of 3
    expected = wilson_ci(2, 3)
    assert (r.pairwise.estimate, r.pairwise.low, r.pairwise.high) == (
        pytest.approx(6 / 9),
        pytest.approx(expected.low),
        pytest.approx(expected.high),
    )
    assert r.pairwise.n == 3 and r.pairwise_tie_split.n == 3
    assert r.pairwise_tie_split.estimate == pytest.approx(7 / 9)  # (1 + 5/6 + 1/2) / 3
    assert r.pairwise_tie_split.low == pytest.approx(fractional_wilson(7 / 3, 3).low)
    assert r.pairwise_tie_split.low < wilson_ci(7, 9).low  # wider than over pairs
    assert d.chance_top1 == pytest.approx(0.25)
    # 7/9 over 3 items: the interval reaches below 50%: not shown, so not fit
    assert (d.status, d.verdict) == ("fail", "not clearly above chance")


def test_discrimination_verdicts_against_chance():
    def groups_with(right_reward: float, n: int = 12):
        rows, groups = [], []
        for i in range(n):
            rows += [
                bd(f"e{i}", "c0", right_reward),
                bd(f"e{i}", "c1", 0.5),
                bd(f"e{i}", "c2", 0.5),
                bd(f"e{i}", "c3", 0.5),
            ]
            groups.append(ChoiceGroup(f"e{i}", ("c0", "c1", "c2", "c3"), "c0"))
        return groups, keyed(rows)

    assert discrimination(*groups_with(0.9), ["reward"]).status == "pass"
    below = discrimination(*groups_with(0.1), ["reward"])
    assert (below.status, below.verdict) == ("fail", "below chance")
    flat = discrimination(*groups_with(0.5), ["reward"])  # every pair tied
    assert (flat.status, flat.verdict) == ("fail", "near chance; 36 of 36 pairs tied")
    assert flat.row("reward").pairwise_tie_split.estimate == pytest.approx(0.5)
    assert flat.row("reward").top1_tie_split.estimate == pytest.approx(0.25)
    assert discrimination([], {}, ["reward"]).status == "n/a"


# --------------------------------------------------------------------------- paired checks


def pairs_with(changes: list[float | None], prefix: str = "e"):
    rows, pairs = [], []
    for i, c in enumerate(changes):
        rows.append(bd(f"{prefix}{i}", "r", 0.6))
        rows.append(bd(f"{prefix}{i}~other", "r", None if c is None else 0.6 + c))
        pairs.append(((f"{prefix}{i}", "r"), (f"{prefix}{i}~other", "r")))
    return pairs, keyed(rows)


def test_personalization_reports_the_drop_and_its_share():
    pairs, scored = pairs_with([-0.2, -0.4, 0.0, -0.2, None])
    p = personalization(pairs, scored, ["reward"], skipped=2)
    r = p.rows[0]
    assert (p.pairs, p.unscorable_pairs, p.skipped, r.n) == (5, 1, 2, 4)
    assert r.change.estimate == pytest.approx(-0.2)
    assert (r.lowered, r.unchanged, r.raised) == (3, 1, 0)
    assert r.share_lowered == pytest.approx(0.75)
    assert r.mean_before == pytest.approx(0.6) and r.mean_after == pytest.approx(0.4)
    assert p.status == "pass"  # every bootstrap mean is below zero


@pytest.mark.parametrize(
    ("changes", "status", "word"),
    [
        ([0.0, 0.0, 0.0], "fail", "insensitive"),
        ([0.3, 0.2, 0.4], "fail", "inverted"),
        ([-0.5, 0.3, -0.2, 0.1], "warn", "weakly sensitive"),
    ],
)
def test_personalization_verdicts(changes, status, word):
    p = personalization(*pairs_with(changes), ["reward"])
    assert p.status == status and p.verdict.startswith(word)


def test_probe_verdicts_gain_may_gain_held():
    sets, scored = [], {}
    # twelve replies each (three pairs cannot survive the adjustment for three probes)
    for name, changes in (
        ("up", [0.1, 0.2, 0.1] * 4),
        ("mixed", [0.3, -0.1, 0.0] * 4),
        ("down", [-0.1, -0.1, 0.0] * 4),
    ):
        pairs, rows = pairs_with(changes, prefix=name)
        sets.append(ProbeSet(name, name, "", tuple(pairs), 0))
        scored.update(rows)
    result = probes(sets, scored, ["reward"], base_replies=12)
    assert [p.verdict for p in result.probes] == ["gains", "may gain", "held"]
    assert result.gaining == ["up"] and result.status == "fail"
    assert result.probes[0].reward.share_raised == pytest.approx(1.0)
    assert result.probes[0].reward.change.estimate == pytest.approx(0.4 / 3)
    calm = probes(sets[2:], scored, ["reward"], base_replies=12)
    assert calm.status == "pass" and calm.verdict == "every probe is held down"
    assert probes(sets[1:], scored, ["reward"], base_replies=12).status == "warn"


def test_probe_gains_survive_holm_over_every_probe_and_reach_the_declared_effect():
    """Eight probes, each with a one-sided p of 0.024: unadjusted every one would
    "gain"; adjusted together none does. A sure gain smaller than the declared effect
    is no gain, and a noisy but neutral judge is held when there are enough replies."""
    modest = [0.05, -0.02, 0.04, 0.01, 0.03, -0.01, 0.02, 0.00, 0.03, 0.01]
    sets, scored = [], {}
    for i in range(8):
        pairs, rows = pairs_with(modest, prefix=f"p{i}-")
        sets.append(ProbeSet(f"p{i}", f"p{i}", "", tuple(pairs), 0, effect=0.01))
        scored.update(rows)
    eight = probes(sets, scored, ["reward"], base_replies=10)
    assert all(p.p == pytest.approx(0.0244, abs=1e-3) for p in eight.probes)
    assert all(p.p_holm == pytest.approx(8 * 0.0244, abs=1e-2) for p in eight.probes)
    assert eight.gaining == [] and {p.verdict for p in eight.probes} == {"may gain"}
    alone = probes(sets[:1], scored, ["reward"], base_replies=10)
    assert alone.gaining == ["p0"]  # one hypothesis: no adjustment, the same data gain
    tiny, rows = pairs_with([0.005] * 12, prefix="t")
    scored.update(rows)
    small = ProbeSet("tiny", "tiny", "", tuple(tiny), 0, effect=0.01)
    result = probes([small], scored, ["reward"], base_replies=12)
    assert result.probes[0].p == 0.0 and result.probes[0].verdict == "held"
    noisy = [0.03, -0.02, 0.01, -0.03, 0.02, -0.01, 0.0, 0.01, -0.02, 0.02] * 6
    pairs, rows = pairs_with(noisy, prefix="n")
    scored.update(rows)
    neutral = probes(
        [ProbeSet("n", "n", "", tuple(pairs), 0, effect=0.01)], scored, ["reward"], base_replies=60
    )
    assert neutral.probes[0].verdict == "held" and neutral.status == "pass"
    few = probes(
        [ProbeSet("n", "n", "", tuple(pairs[:5]), 0, effect=0.01)],
        scored,
        ["reward"],
        base_replies=5,
    )
    assert few.probes[0].verdict == "may gain"  # five replies cannot rule a gain out


def test_one_or_two_pairs_never_make_a_gain_or_a_sensitive_judge():
    pairs, scored = pairs_with([0.1, 0.2])
    few = probes([ProbeSet("up", "up", "", tuple(pairs), 0)], scored, ["reward"], base_replies=2)
    assert few.probes[0].verdict == "may gain" and few.status == "warn"
    p = personalization(*pairs_with([-0.3]), ["reward"])
    assert p.status == "warn" and p.verdict.endswith("over 1 pair(s) only")


def test_group_spread_counts_each_run_as_a_step():
    run0 = keyed([bd("g", "a", 0.9), bd("g", "b", 0.1)])
    run1 = keyed([bd("g", "a", 0.5), bd("g", "b", 0.5)])
    g = group_spread([[("g", "a"), ("g", "b")]], run0, run1)
    assert (g.groups, g.zero_spread) == (2, 1)
    assert g.mean_sd == pytest.approx(statistics.stdev([0.9, 0.1]) / 2)


# --------------------------------------------------------------------------- stability


def test_group_spread_is_the_sample_sd_a_grpo_step_uses():
    rows = [
        bd("g1", "a", 0.2, terms={"r_emp": 0.4, "bystander_penalty": -0.2}),
        bd("g1", "b", 0.6, terms={"r_emp": 0.6, "bystander_penalty": 0.0}),
        bd("g2", "a", 0.5),
        bd("g2", "b", 0.5),
        bd("g3", "a", 0.3),
        bd("g3", "b", None),
    ]
    g = group_spread(
        [[("g1", "a"), ("g1", "b")], [("g2", "a"), ("g2", "b")], [("g3", "a"), ("g3", "b")]],
        keyed(rows),
    )
    assert g.groups == 2  # g3 has one scorable reply
    assert g.mean_sd == pytest.approx((statistics.stdev([0.2, 0.6]) + 0) / 2)
    assert (g.zero_spread, g.share_zero_spread) == (1, 0.5)
    assert g.term_sd["bystander_penalty"] == pytest.approx(statistics.stdev([-0.2, 0.0]))


def sample(dim: str, score: float | None, attempts: int = 1) -> Judgement:
    return Judgement(
        dimension=dim,
        score=score,
        attempts=attempts,
        reason=None if score is not None else "no score line",
    )


def test_stability_names_a_judge_whose_empathy_dimensions_never_move():
    rows = [
        bd(
            f"e{i}",
            "r",
            0.2 + i / 100,
            dims={
                "resonation": 1.0,
                "expression": 1.0,
                "reception": 1.0,
                "bystander": 40.0 + 5 * i,
            },
        )
        for i in range(6)
    ]
    s = stability(
        rows,
        k=1,
        dimensions=["resonation", "expression", "reception", "bystander"],
        empathy_dimensions=["resonation", "expression", "reception"],
        groups=[],
        runs=[keyed(rows)],
        run_keys=[],
    )
    assert s.degenerate and s.status == "fail"
    assert s.constant_dimensions == ["resonation", "expression", "reception"]
    assert s.degenerate_reason == (
        "every empathy dimension is constant (resonation always 1/5, expression always 1/5, "
        "reception always 1/5): the reward moves only with the bystander"
    )
    shares = {d.dimension: d.shares for d in s.distribution}
    assert shares["expression"] == {"1": 1.0}
    assert shares["bystander"] == {"40-60": pytest.approx(4 / 6), "60-80": pytest.approx(2 / 6)}


def test_stability_counts_failures_spread_and_run_noise():
    judgements = [
        sample("expression", 4),
        sample("expression", 2),
        sample("expression", None),
        sample("expression", 3, attempts=2),
    ]
    rows = [
        bd("e1", "a", 0.8, judgements=judgements),
        bd("e1", "b", 0.2),
        bd("e1", "c", None),
        bd("e2", "a", 0.6),
        bd("e2", "b", 0.4),
    ]
    run2 = [bd("e1", "a", 0.6), bd("e1", "b", 0.2), bd("e2", "a", 0.6), bd("e2", "b", 0.6)]
    keys = [("e1", "a"), ("e1", "b"), ("e2", "a"), ("e2", "b")]
    s = stability(
        rows,
        k=4,
        dimensions=["expression"],
        empathy_dimensions=["expression"],
        groups=[keys[:2], keys[2:]],
        runs=[keyed(rows), keyed(run2)],
        run_keys=keys,
    )
    assert (s.judgements, s.failed_judgements, s.redrawn_judgements) == (4, 1, 1)
    assert s.parse_failure_rate == pytest.approx(0.25)
    assert (s.unscorable, s.unscorable_rate) == (1, pytest.approx(0.2))
    assert s.unscorable_reasons == {"expression": 1}
    spread = s.sample_spread[0]
    assert spread.replies == 1 and spread.mean_sd == pytest.approx(statistics.stdev([4, 2, 3]))
    sds = [statistics.stdev([0.8, 0.6]), 0.0, 0.0, statistics.stdev([0.4, 0.6])]
    assert s.repeats.mean_sd == pytest.approx(statistics.fmean(sds))
    assert s.repeats.mean_abs_change == pytest.approx((0.2 + 0 + 0 + 0.2) / 4)
    group_sd = statistics.fmean([statistics.stdev([0.8, 0.2]), statistics.stdev([0.6, 0.4])])
    assert s.noise_ratio == pytest.approx(s.repeats.mean_sd / group_sd)
    assert s.status == "fail"  # 20% unscorable is over the 10% line
    assert "20% of replies unscorable" in s.verdict


def test_stability_skips_replies_from_one_dimension_only():
    rows = [
        bd(
            f"e{i}",
            "r",
            0.5,
            dims={"resonation": 1.0 if i < 5 else 4.0, "expression": float(1 + i % 5)},
        )
        for i in range(8)
    ]
    skip = {"resonation": {(f"e{i}", "r") for i in range(5)}}
    s = stability(
        rows,
        k=1,
        dimensions=["resonation", "expression"],
        empathy_dimensions=["resonation", "expression"],
        groups=[],
        runs=[keyed(rows)],
        run_keys=[],
        skip=skip,
    )
    res = next(d for d in s.distribution if d.dimension == "resonation")
    assert res.replies == 3 and not res.constant


# --------------------------------------------------------------------------- cost, agreement


def test_cost_counts_each_group_time_once_and_checks_the_budget():
    u = Usage(calls=4, cached_calls=1, prompt_tokens=1000, completion_tokens=100)
    files = {
        "a": [
            bd("e1", "x", 0.5, usage=u, seconds=2.0),
            bd("e1", "y", 0.5, seconds=2.0),
            bd("e2", "x", 0.5, usage=u, seconds=1.0),
        ],
        "b": [bd("e1", "x", 0.5, usage=u, seconds=3.0)],
    }
    c = cost(files, scored_now=2, wall_seconds_now=5.0)
    assert c.replies == 4 and c.usage.calls == 12
    assert c.calls_per_reply == 3.0 and c.prompt_tokens_per_reply == 750.0
    assert c.judge_seconds_per_reply == pytest.approx((2.0 + 1.0 + 3.0) / 4)
    assert c.cached_share == pytest.approx(3 / 15)
    assert c.wall_seconds_per_reply_now == 2.5 and c.status == "info"
    assert cost(files, scored_now=0, wall_seconds_now=0, budget_seconds=2.0).status == "pass"
    over = cost(files, scored_now=0, wall_seconds_now=0, budget_seconds=1.0)
    assert over.status == "fail" and "over the 1 s budget" in over.verdict


def test_agreement_orders_pairs_within_an_example():
    main = keyed(
        [
            bd("e1", "a", 0.9),
            bd("e1", "b", 0.5),
            bd("e1", "c", 0.1),
            bd("e2", "a", 0.4),
            bd("e2", "b", 0.4),
        ]
    )
    ref = keyed(
        [
            bd("e1", "a", 0.8),
            bd("e1", "b", 0.2),
            bd("e1", "c", 0.3),
            bd("e2", "a", 0.1),
            bd("e2", "b", 0.7),
        ]
    )
    a = agreement(main, ref, ["reward"], reference_name="big")
    r = a.rows[0]
    # e1: (a,b) agree, (a,c) agree, (b,c) disagree; e2: main ties
    assert (r.pairs, r.agree, r.disagree, r.ties) == (4, 2, 1, 1)
    assert r.agreement.estimate == pytest.approx(2 / 3)
    from scipy.stats import spearmanr

    xs, ys = [0.9, 0.5, 0.1, 0.4, 0.4], [0.8, 0.2, 0.3, 0.1, 0.7]
    assert r.spearman == pytest.approx(spearmanr(xs, ys).statistic)
    assert agreement(main, ref, ["reward"], reference_name=None).status == "n/a"
