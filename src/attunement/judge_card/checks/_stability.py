"""Stability: are the judge's scores varied, parseable and repeatable?

Over every breakdown of the judge under test: failure rates (samples that did
not parse, replies left unscorable), the spread across the ``k`` samples of a
reply and across runs with other seeds, each dimension's score distribution
(a judge whose empathy dimensions never move is named *degenerate*), and the
reward spread inside GRPO-sized groups, which is what a GRPO step learns from.
The figures, the findings (:func:`stability_problems`) and the verdict
(:func:`stability_verdict`) are separate steps.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field

from attunement.judge_card.checks._measures import (
    TIE_EPS,
    Key,
    Status,
    key_of,
    spearman,
    value,
)
from attunement.records import RewardBreakdown

#: a dimension is *constant* when this share of replies or more get one score
CONSTANT_SHARE = 0.95
#: ... and at least this many replies were scored (fewer prove nothing)
CONSTANT_MIN_REPLIES = 5
#: rates above which stability warns / fails
PARSE_FAILURE_WARN, PARSE_FAILURE_FAIL = 0.05, 0.25
UNSCORABLE_WARN, UNSCORABLE_FAIL = 0.02, 0.10
#: share of GRPO groups with no reward spread at which stability warns
ZERO_SPREAD_WARN = 0.5
#: run-to-run noise relative to within-group spread at which stability warns / fails
NOISE_WARN, NOISE_FAIL = 0.5, 1.0


class SampleSpread(BaseModel):
    dimension: str
    replies: int = Field(description="replies with two or more valid samples")
    mean_sd: float | None = Field(
        description="mean over replies of the sample standard deviation (judge scale)"
    )
    share_disagreeing: float | None = Field(description="replies whose samples differ")


class Distribution(BaseModel):
    dimension: str
    replies: int
    shares: dict[str, float] = Field(
        description="share of replies at each (rounded) score; bystander in bins of 20"
    )
    top_share: float | None
    constant: bool


class GroupSpread(BaseModel):
    groups: int = Field(description="groups with two or more scorable replies")
    mean_sd: float | None = Field(
        description="mean within-group standard deviation of the "
        "reward (what GRPO normalises advantages by)"
    )
    zero_spread: int = Field(description="groups whose replies all got the same reward")
    share_zero_spread: float | None
    term_sd: dict[str, float] = Field(
        default_factory=dict, description="mean within-group sd of each reward term"
    )


class Repeats(BaseModel):
    runs: int
    replies: int = Field(description="replies scored in two or more runs")
    mean_sd: float | None = Field(description="mean over replies of the reward's sd across runs")
    mean_abs_change: float | None = Field(description="mean |reward run 2 - run 1|")
    spearman: float | None = Field(description="rank correlation of run 1 and run 2 rewards")


class Stability(BaseModel):
    status: Status
    verdict: str
    k: int
    replies: int
    judgements: int
    failed_judgements: int
    redrawn_judgements: int
    unscorable: int
    parse_failure_rate: float | None
    redraw_rate: float | None
    unscorable_rate: float | None
    unscorable_reasons: dict[str, int] = Field(default_factory=dict)
    sample_spread: list[SampleSpread]
    repeats: Repeats | None
    distribution: list[Distribution]
    constant_dimensions: list[str]
    degenerate: bool
    degenerate_reason: str | None
    groups: GroupSpread
    noise_ratio: float | None = Field(description="run-to-run sd / within-group sd")


def _bin(dimension: str, v: float) -> str:
    if dimension == "bystander":
        low = min(80, int(v // 20) * 20)
        return f"{low}-{low + 20 if low < 80 else 100}"
    return str(math.floor(v + 0.5))


def distribution(
    breakdowns: Sequence[RewardBreakdown],
    dimension: str,
    *,
    skip: set[Key] | frozenset[Key] = frozenset(),
) -> Distribution:
    """Share of replies at each score of one dimension (``skip``: keys left out)."""
    values = [value(b, dimension) for b in breakdowns if key_of(b) not in skip]
    present = [v for v in values if v is not None]
    counts = Counter(_bin(dimension, v) for v in present)
    n = len(present)
    order = sorted(counts, key=lambda s: float(s.split("-")[0]))
    shares = {s: counts[s] / n for s in order}
    top = max(shares.values()) if shares else None
    return Distribution(
        dimension=dimension,
        replies=n,
        shares=shares,
        top_share=top,
        constant=bool(top is not None and n >= CONSTANT_MIN_REPLIES and top >= CONSTANT_SHARE),
    )


def sample_spread(breakdowns: Sequence[RewardBreakdown], dimension: str) -> SampleSpread:
    sds = []
    for b in breakdowns:
        scores = [j.score for j in b.judgements if j.dimension == dimension and j.score is not None]
        if len(scores) >= 2:
            sds.append(statistics.stdev(scores))
    return SampleSpread(
        dimension=dimension,
        replies=len(sds),
        mean_sd=statistics.fmean(sds) if sds else None,
        share_disagreeing=(sum(1 for s in sds if s > TIE_EPS) / len(sds) if sds else None),
    )


def group_spread(
    groups: Sequence[Sequence[Key]], *runs: Mapping[Key, RewardBreakdown]
) -> GroupSpread:
    """The spread of rewards inside each group, as a GRPO step sees it, in every run.

    GRPO's advantage is ``(r - mean) / sd`` within a group; a group with no
    spread gives every reply a zero advantage and teaches nothing. The sd is the
    sample standard deviation (n - 1), as TRL computes it. Each run (a scoring
    of the same replies with another seed) counts as a step of its own.
    """
    sds: list[float] = []
    terms: dict[str, list[float]] = defaultdict(list)
    for scored, g in ((scored, g) for scored in runs for g in groups):
        rows = [scored[k] for k in g if k in scored and scored[k].reward is not None]
        if len(rows) < 2:
            continue
        sds.append(statistics.stdev([b.reward for b in rows]))  # type: ignore[misc]
        for term in rows[0].terms:
            vals = [b.terms.get(term) for b in rows]
            if all(v is not None for v in vals):
                terms[term].append(statistics.stdev(vals))  # type: ignore[arg-type]
    zero = sum(1 for s in sds if s <= TIE_EPS)
    return GroupSpread(
        groups=len(sds),
        mean_sd=statistics.fmean(sds) if sds else None,
        zero_spread=zero,
        share_zero_spread=zero / len(sds) if sds else None,
        term_sd={t: statistics.fmean(v) for t, v in terms.items()},
    )


def repeats(runs: Sequence[Mapping[Key, RewardBreakdown]], keys: Sequence[Key]) -> Repeats:
    """The reward of the same replies across runs that differ only in the seed."""
    sds, changes, first, second = [], [], [], []
    for k in keys:
        vals = [r[k].reward for r in runs if k in r and r[k].reward is not None]
        if len(vals) >= 2:
            sds.append(statistics.stdev(vals))  # type: ignore[arg-type]
        a, b = (
            value(runs[0].get(k), "reward"),
            value(runs[1].get(k), "reward") if len(runs) > 1 else None,
        )
        if a is not None and b is not None:
            changes.append(abs(b - a))
            first.append(a)
            second.append(b)
    return Repeats(
        runs=len(runs),
        replies=len(sds),
        mean_sd=statistics.fmean(sds) if sds else None,
        mean_abs_change=statistics.fmean(changes) if changes else None,
        spearman=spearman(first, second),
    )


def stability(
    breakdowns: Sequence[RewardBreakdown],
    *,
    k: int,
    dimensions: Sequence[str],
    empathy_dimensions: Sequence[str],
    groups: Sequence[Sequence[Key]],
    runs: Sequence[Mapping[Key, RewardBreakdown]],
    run_keys: Sequence[Key],
    skip: Mapping[str, set[Key]] | None = None,
    group_runs: Sequence[Mapping[Key, RewardBreakdown]] | None = None,
) -> Stability:
    """Sample and run spread, failure rates, score distributions, degeneracy and
    the within-group spread, over every breakdown of the judge under test.

    ``skip`` leaves replies out of one dimension's distribution: the card skips
    replies without an analysis for a resonation judge that reads the analysis
    (it sees a placeholder there, so its score says nothing about the judge).
    ``group_runs`` are the scorings the groups are read from, one per run
    (default: the breakdowns, one per key).
    """
    skip = skip or {}
    judgements = [j for b in breakdowns for j in b.judgements]
    failed = sum(1 for j in judgements if j.score is None)
    redrawn = sum(1 for j in judgements if j.attempts > 1)
    unscorable = [b for b in breakdowns if b.unscorable]
    reasons = Counter((b.reason or "unknown").split(":")[0] for b in unscorable)
    dists = [distribution(breakdowns, d, skip=skip.get(d, frozenset())) for d in dimensions]
    constant = [d.dimension for d in dists if d.constant]
    spread = group_spread(groups, *(group_runs or [{key_of(b): b for b in breakdowns}]))
    rep = repeats(runs, run_keys) if len(runs) >= 2 else None
    rewards = [b.reward for b in breakdowns if b.reward is not None]
    degenerate_reason = degeneracy(rewards, dists, dimensions, empathy_dimensions)
    n_j, n_b = len(judgements), len(breakdowns)
    pf = failed / n_j if n_j else None
    ur = len(unscorable) / n_b if n_b else None
    noise = None
    if rep is not None and rep.mean_sd is not None and spread.mean_sd:
        noise = rep.mean_sd / spread.mean_sd
    problems = stability_problems(
        degenerate_reason=degenerate_reason,
        dists=dists,
        parse_failure_rate=pf,
        unscorable_rate=ur,
        spread=spread,
        noise=noise,
    )
    status, verdict = stability_verdict(problems, scored=bool(breakdowns))
    return Stability(
        status=status,
        verdict=verdict,
        k=k,
        replies=n_b,
        judgements=n_j,
        failed_judgements=failed,
        redrawn_judgements=redrawn,
        unscorable=len(unscorable),
        parse_failure_rate=pf,
        redraw_rate=redrawn / n_j if n_j else None,
        unscorable_rate=ur,
        unscorable_reasons=dict(reasons),
        sample_spread=[sample_spread(breakdowns, d) for d in dimensions],
        repeats=rep,
        distribution=dists,
        constant_dimensions=constant,
        degenerate=degenerate_reason is not None,
        degenerate_reason=degenerate_reason,
        groups=spread,
        noise_ratio=noise,
    )


def degeneracy(
    rewards: Sequence[float],
    dists: Sequence[Distribution],
    dimensions: Sequence[str],
    empathy_dimensions: Sequence[str],
) -> str | None:
    """Why the judge is degenerate (its reward cannot tell replies apart), or None:
    the reward is nearly always the same, or every empathy dimension is constant."""
    constant = [d.dimension for d in dists if d.constant]
    empathy_constant = [d for d in empathy_dimensions if d in constant]
    if (
        rewards
        and len(rewards) >= CONSTANT_MIN_REPLIES
        and Counter(round(r, 6) for r in rewards).most_common(1)[0][1] / len(rewards)
        >= CONSTANT_SHARE
    ):
        return "the reward is the same for almost every reply"
    if empathy_dimensions and len(empathy_constant) == len(empathy_dimensions):
        scores = ", ".join(f"{d} {_mode_label(dists, d)}" for d in empathy_constant)
        rest = (
            " the reward moves only with the bystander"
            if "bystander" in dimensions and "bystander" not in constant
            else " the reward cannot move"
        )
        return f"every empathy dimension is constant ({scores}):{rest}"
    return None


def stability_problems(
    *,
    degenerate_reason: str | None,
    dists: Sequence[Distribution],
    parse_failure_rate: float | None,
    unscorable_rate: float | None,
    spread: GroupSpread,
    noise: float | None,
) -> list[tuple[Status, str]]:
    """Each finding that makes stability warn or fail, with its severity."""
    constant = [d.dimension for d in dists if d.constant]
    problems: list[tuple[Status, str]] = []
    if degenerate_reason:
        problems.append(("fail", f"degenerate: {degenerate_reason}"))
    elif constant:
        problems.append(
            ("warn", "constant: " + ", ".join(f"{d} {_mode_label(dists, d)}" for d in constant))
        )
    for rate, warn_at, fail_at, what in (
        (
            parse_failure_rate,
            PARSE_FAILURE_WARN,
            PARSE_FAILURE_FAIL,
            "judge samples failed to parse",
        ),
        (unscorable_rate, UNSCORABLE_WARN, UNSCORABLE_FAIL, "replies unscorable"),
    ):
        if rate is not None and rate > fail_at:
            problems.append(("fail", f"{rate:.0%} of {what}"))
        elif rate is not None and rate > warn_at:
            problems.append(("warn", f"{rate:.0%} of {what}"))
    if spread.groups and spread.zero_spread == spread.groups and spread.groups >= 2:
        problems.append(("fail", "no group has any reward spread: GRPO learns nothing"))
    elif spread.share_zero_spread is not None and spread.share_zero_spread >= ZERO_SPREAD_WARN:
        share = spread.share_zero_spread
        problems.append(("warn", f"{share:.0%} of groups have no reward spread"))
    if noise is not None and noise >= NOISE_FAIL:
        problems.append(("fail", f"run-to-run noise is {noise:.2f}x the within-group spread"))
    elif noise is not None and noise >= NOISE_WARN:
        problems.append(("warn", f"run-to-run noise is {noise:.2f}x the within-group spread"))
    return problems


def stability_verdict(
    problems: Sequence[tuple[Status, str]], *, scored: bool
) -> tuple[Status, str]:
    """``fail`` naming the failures if any, ``warn`` naming every problem, else ``pass``."""
    if not scored:
        return "n/a", "nothing scored"
    if any(s == "fail" for s, _ in problems):
        return "fail", "; ".join(t for s, t in problems if s == "fail")
    if problems:
        return "warn", "; ".join(t for _, t in problems)
    return "pass", "varied, parseable and repeatable scores"


def _mode_label(dists: Sequence[Distribution], dimension: str) -> str:
    d = next(x for x in dists if x.dimension == dimension)
    top = max(d.shares, key=lambda s: d.shares[s])
    scale = "/100" if dimension == "bystander" else "/5"
    always = "always" if d.top_share == 1.0 else f"{d.top_share:.0%} at"
    return f"{always} {top}{scale}"
