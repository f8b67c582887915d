"""The judge card's figures, computed from breakdowns alone.

Every function here is pure: it takes :class:`~attunement.records.RewardBreakdown`
records (already scored, read back from the card's JSONL files) and the way
they pair up, and returns a pydantic result with its figures and a status.
Nothing here calls a model, so each rule can be checked by hand on a few
numbers, and a card can be recomputed from its files without a judge.

A *measure* is what a figure is computed on: ``"reward"`` (the total a
trainer would receive) or one dimension's value on the judge's own scale
(``resonation``, ..., ``bystander``). Unscorable values (``None``) are left
out of every figure and counted.

Statuses: ``pass`` (the check shows what a reward needs), ``warn`` (the
evidence is weak or something is off), ``fail`` (the judge does not do what
the check asks), ``info`` (a measurement with no verdict), ``n/a`` (no data).
The thresholds are rules of thumb, each written next to its figure in
docs/judge-card.md.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from pydantic import BaseModel, Field

from attunement.evaluation.stats import Interval, bootstrap_ci, sign_test_p, wilson_ci
from attunement.records import EMPATHY_DIMENSIONS, RewardBreakdown, Usage

Status = Literal["pass", "warn", "fail", "info", "n/a"]
Key = tuple[str, str]  # (example_id, reply_id)

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


def _ties_equal(a: float, b: float) -> bool:
    return abs(a - b) <= TIE_EPS


# --------------------------------------------------------------------------- discrimination


@dataclass(frozen=True)
class ChoiceGroup:
    """One multiple-choice item: its candidate replies and which one is right."""

    example_id: str
    reply_ids: tuple[str, ...]
    correct: str


class DiscriminationRow(BaseModel):
    measure: str
    items: int = Field(description="items with every candidate scored")
    top1: Estimate = Field(
        description="share of items whose right reply scored strictly "
        "above every other; Wilson interval"
    )
    top1_ties: int = Field(description="items where the right reply tied for the top")
    top1_tie_split: Estimate = Field(
        description="top-1 with ties broken at random (a tie of m counts 1/m); Wilson "
        "interval of that proportion"
    )
    pairs: int
    pairwise: Estimate = Field(
        description="share of (right, wrong) pairs where the right "
        "reply scored strictly higher; Wilson interval"
    )
    pair_wins: int
    pair_ties: int
    pair_losses: int
    pairwise_tie_split: Estimate = Field(
        description="pairwise with a tie as half a win; Wilson interval of that proportion "
        "(the verdict's figure)"
    )


class Discrimination(BaseModel):
    status: Status
    verdict: str
    chance_top1: float | None
    chance_pairwise: float = 0.5
    items: int
    unscorable_items: int = Field(description="items left out: a candidate was unscorable")
    rows: list[DiscriminationRow]
    note: str | None = None

    def row(self, measure: str) -> DiscriminationRow | None:
        return next((r for r in self.rows if r.measure == measure), None)


def _discrimination_row(
    groups: Sequence[ChoiceGroup], scored: Mapping[Key, RewardBreakdown], measure: str
) -> DiscriminationRow:
    items = top_wins = top_ties = 0
    split = 0.0
    wins = ties = losses = 0
    for g in groups:
        values = {rid: value(scored.get((g.example_id, rid)), measure) for rid in g.reply_ids}
        if any(v is None for v in values.values()):
            continue
        items += 1
        right = values[g.correct]
        others = [v for rid, v in values.items() if rid != g.correct]
        best = max(others)
        tied = sum(1 for v in others if _ties_equal(v, right))
        if right > best + TIE_EPS:
            top_wins += 1
            split += 1.0
        elif tied and right >= best - TIE_EPS:
            top_ties += 1
            split += 1.0 / (1 + tied)
        for v in others:
            if _ties_equal(right, v):
                ties += 1
            elif right > v:
                wins += 1
            else:
                losses += 1
    pairs = wins + ties + losses
    return DiscriminationRow(
        measure=measure,
        items=items,
        top1=Estimate.of(wilson_ci(top_wins, items)),
        top1_ties=top_ties,
        top1_tie_split=fractional_wilson(split, items),
        pairs=pairs,
        pairwise=Estimate.of(wilson_ci(wins, pairs)),
        pair_wins=wins,
        pair_ties=ties,
        pair_losses=losses,
        pairwise_tie_split=fractional_wilson(wins + ties / 2, pairs),
    )


def fractional_wilson(successes: float, n: int) -> Estimate:
    """The Wilson interval of a proportion whose successes include fractions (a tie
    counted as half a win); the interval's formula needs only the proportion and n.

    >>> e = fractional_wilson(4.5, 9)
    >>> e.estimate, round(e.low, 3), round(e.high, 3)
    (0.5, 0.227, 0.773)
    """
    return Estimate.of(wilson_ci(successes, n))  # type: ignore[arg-type]


def discrimination(
    groups: Sequence[ChoiceGroup], scored: Mapping[Key, RewardBreakdown], measures: Sequence[str]
) -> Discrimination:
    """Top-1 and pairwise accuracy of picking the right candidate, per measure.

    Ties count as misses in ``top1`` and ``pairwise`` (a judge that scores
    everything alike picks nothing), and are reported on their own; the
    ``tie_split`` figures break them at random instead, so a judge that gives
    every candidate the same score sits exactly at chance there. The verdict
    reads the reward's pairwise figure with ties as half a win, against 50%: a
    judge that ties everything is *near chance*, not *below* it.
    """
    if not groups:
        return Discrimination(
            status="n/a",
            verdict="no EmoBench items",
            chance_top1=None,
            items=0,
            unscorable_items=0,
            rows=[],
        )
    rows = [_discrimination_row(groups, scored, m) for m in measures]
    reward = rows[0]
    chance_top1 = statistics.fmean(1 / len(g.reply_ids) for g in groups)
    if reward.pairs == 0:
        status: Status = "fail"
        verdict = "no item could be scored"
    else:
        where = reward.pairwise_tie_split.against(0.5)
        point = reward.pairwise_tie_split.estimate or 0.0
        if where == "above chance":
            status, verdict = "pass", "above chance"
        elif where == "below chance":
            status, verdict = "fail", "below chance"
        elif point > 0.5:
            status, verdict = "warn", "not clearly above chance"
        else:
            status, verdict = "fail", "near chance"
        if reward.pair_ties > reward.pairs / 2:
            verdict += f"; {reward.pair_ties} of {reward.pairs} pairs tied"
    return Discrimination(
        status=status,
        verdict=verdict,
        chance_top1=chance_top1,
        items=len(groups),
        unscorable_items=len(groups) - reward.items,
        rows=rows,
    )


# --------------------------------------------------------------------------- paired changes


class PairedRow(BaseModel):
    """``after - before`` over pairs both scored: its mean, interval and signs."""

    measure: str
    n: int
    mean_before: float | None
    mean_after: float | None
    change: Estimate = Field(
        description="mean of after - before; bootstrap interval (none where not asked for)"
    )
    raised: int
    lowered: int
    unchanged: int
    share_raised: float | None
    share_lowered: float | None
    sign_p: float | None = Field(description="exact two-sided sign test (ties dropped)")


def paired_rows(
    pairs: Sequence[tuple[Key, Key]],
    scored: Mapping[Key, RewardBreakdown],
    measures: Sequence[str],
    *,
    seed: int = 0,
    intervals: Sequence[str] | None = None,
) -> tuple[list[PairedRow], int]:
    """Per measure, the change from the first key of each pair to the second.

    The bootstrap interval and sign test are computed for the measures in
    ``intervals`` (default: all); the others get the mean change and the signs.
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
        if intervals is None or m in intervals:
            change = Estimate.of(bootstrap_ci(diffs, seed=seed))
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
            )
        )
    return rows, dropped


# --------------------------------------------------------------------------- personalization


class Personalization(BaseModel):
    status: Status
    verdict: str
    pairs: int = Field(description="replies judged both with their own user and another")
    unscorable_pairs: int
    skipped: int = Field(0, description="base replies whose user has no persona or memories")
    rows: list[PairedRow] = Field(
        description="change from the own user to another user: "
        "a personalized judge gives a negative change (a drop)"
    )


def personalization(
    pairs: Sequence[tuple[Key, Key]],
    scored: Mapping[Key, RewardBreakdown],
    measures: Sequence[str],
    *,
    skipped: int = 0,
    seed: int = 0,
) -> Personalization:
    """The same reply judged with its own user (first key) and another user (second).

    A personalized judge scores it lower with the wrong user: the reward row's
    mean change is negative and its interval stays below zero.
    """
    if not pairs:
        return Personalization(
            status="n/a",
            verdict="no PersonaEmp replies to judge",
            pairs=0,
            unscorable_pairs=0,
            skipped=skipped,
            rows=[],
        )
    rows, dropped = paired_rows(pairs, scored, measures, seed=seed)
    reward = rows[0]
    if reward.n == 0:
        status: Status = "fail"
        verdict = "no pair could be scored"
    else:
        c = reward.change
        if c.high is not None and c.high < 0 and reward.n >= MIN_PAIRS:
            status, verdict = "pass", "sensitive: scores drop with another user's context"
        elif c.high is not None and c.high < 0:
            status = "warn"
            verdict = f"weakly sensitive: scores drop, but over {reward.n} pair(s) only"
        elif (c.estimate or 0.0) < 0:
            status, verdict = "warn", "weakly sensitive: drops on average, within the interval"
        elif c.low is not None and c.low > 0:
            status, verdict = "fail", "inverted: scores rise with another user's context"
        else:
            status, verdict = "fail", "insensitive: another user's context changes nothing"
    return Personalization(
        status=status,
        verdict=verdict,
        pairs=len(pairs),
        unscorable_pairs=dropped,
        skipped=skipped,
        rows=rows,
    )


# --------------------------------------------------------------------------- probes


ProbeVerdict = Literal["gains", "may gain", "held", "n/a"]


class ProbeRow(BaseModel):
    probe: str
    title: str
    what: str
    applied: int = Field(description="base replies the probe could alter")
    not_applicable: int
    unscorable_pairs: int
    verdict: ProbeVerdict
    rows: list[PairedRow] = Field(description="change from the base reply to the altered one")

    @property
    def reward(self) -> PairedRow | None:
        return self.rows[0] if self.rows else None


class Probes(BaseModel):
    status: Status
    verdict: str
    base_replies: int
    probes: list[ProbeRow]

    @property
    def gaining(self) -> list[str]:
        return [p.probe for p in self.probes if p.verdict == "gains"]

    @property
    def maybe_gaining(self) -> list[str]:
        return [p.probe for p in self.probes if p.verdict == "may gain"]


def probe_verdict(row: PairedRow | None) -> ProbeVerdict:
    """``gains``: the interval of the change lies above 0 over at least
    :data:`MIN_PAIRS` pairs; ``may gain``: the mean change is positive otherwise;
    ``held``: the mean change is 0 or below."""
    if row is None or row.n == 0:
        return "n/a"
    c = row.change
    if c.low is not None and c.low > 0 and row.n >= MIN_PAIRS:
        return "gains"
    if (c.estimate or 0.0) > 0:
        return "may gain"
    return "held"


@dataclass(frozen=True)
class ProbeSet:
    """The pairs of one probe and how many base replies it did not apply to."""

    name: str
    title: str
    what: str
    pairs: tuple[tuple[Key, Key], ...]
    not_applicable: int


def probes(
    sets: Sequence[ProbeSet],
    scored: Mapping[Key, RewardBreakdown],
    measures: Sequence[str],
    *,
    base_replies: int,
    seed: int = 0,
) -> Probes:
    """Per probe, the change in score from a good reply to its altered copy (with an
    interval for the reward; the dimensions get their mean change)."""
    if base_replies == 0:
        return Probes(status="n/a", verdict="no good replies to alter", base_replies=0, probes=[])
    out = []
    for s in sets:
        rows, dropped = (
            paired_rows(s.pairs, scored, measures, seed=seed, intervals=["reward"])
            if s.pairs
            else ([], 0)
        )
        out.append(
            ProbeRow(
                probe=s.name,
                title=s.title,
                what=s.what,
                applied=len(s.pairs),
                not_applicable=s.not_applicable,
                unscorable_pairs=dropped,
                verdict=probe_verdict(rows[0] if rows else None),
                rows=rows,
            )
        )
    result = Probes(status="pass", verdict="", base_replies=base_replies, probes=out)
    if result.gaining:
        result.status = "fail"
        result.verdict = (
            f"{len(result.gaining)} of {len(out)} probes raise the reward: "
            + ", ".join(result.gaining)
        )
    elif result.maybe_gaining:
        result.status = "warn"
        result.verdict = (
            "no probe raises the reward for certain; on average "
            + ", ".join(result.maybe_gaining)
            + " raise it"
        )
    elif all(p.verdict == "n/a" for p in out):
        result.status, result.verdict = "fail", "no altered reply could be scored"
    else:
        result.verdict = "every probe is held down"
    return result


# --------------------------------------------------------------------------- stability


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


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho, or None when fewer than 3 pairs or a side is constant."""
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    from scipy.stats import spearmanr

    rho = float(spearmanr(a, b).statistic)
    return None if math.isnan(rho) else rho


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
        spearman=_spearman(first, second),
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

    degenerate_reason = None
    empathy_constant = [d for d in empathy_dimensions if d in constant]
    if (
        rewards
        and len(rewards) >= CONSTANT_MIN_REPLIES
        and Counter(round(r, 6) for r in rewards).most_common(1)[0][1] / len(rewards)
        >= CONSTANT_SHARE
    ):
        degenerate_reason = "the reward is the same for almost every reply"
    elif empathy_dimensions and len(empathy_constant) == len(empathy_dimensions):
        scores = ", ".join(f"{d} {_mode_label(dists, d)}" for d in empathy_constant)
        rest = (
            " the reward moves only with the bystander"
            if "bystander" in dimensions and "bystander" not in constant
            else " the reward cannot move"
        )
        degenerate_reason = f"every empathy dimension is constant ({scores}):{rest}"

    n_j, n_b = len(judgements), len(breakdowns)
    pf = failed / n_j if n_j else None
    ur = len(unscorable) / n_b if n_b else None
    noise = None
    if rep is not None and rep.mean_sd is not None and spread.mean_sd:
        noise = rep.mean_sd / spread.mean_sd
    problems: list[tuple[Status, str]] = []
    if degenerate_reason:
        problems.append(("fail", f"degenerate: {degenerate_reason}"))
    elif constant:
        problems.append(
            ("warn", "constant: " + ", ".join(f"{d} {_mode_label(dists, d)}" for d in constant))
        )
    for rate, warn_at, fail_at, what in (
        (pf, PARSE_FAILURE_WARN, PARSE_FAILURE_FAIL, "judge samples failed to parse"),
        (ur, UNSCORABLE_WARN, UNSCORABLE_FAIL, "replies unscorable"),
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
    if not breakdowns:
        status: Status = "n/a"
        verdict = "nothing scored"
    elif any(s == "fail" for s, _ in problems):
        status, verdict = "fail", "; ".join(t for s, t in problems if s == "fail")
    elif problems:
        status, verdict = "warn", "; ".join(t for _, t in problems)
    else:
        status, verdict = "pass", "varied, parseable and repeatable scores"
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


def _mode_label(dists: Sequence[Distribution], dimension: str) -> str:
    d = next(x for x in dists if x.dimension == dimension)
    top = max(d.shares, key=lambda s: d.shares[s])
    scale = "/100" if dimension == "bystander" else "/5"
    always = "always" if d.top_share == 1.0 else f"{d.top_share:.0%} at"
    return f"{always} {top}{scale}"


# --------------------------------------------------------------------------- cost


class Cost(BaseModel):
    status: Status
    verdict: str
    replies: int = Field(description="replies scored by the judge under test, every check")
    usage: Usage
    calls_per_reply: float | None
    prompt_tokens_per_reply: float | None
    completion_tokens_per_reply: float | None
    judge_seconds_per_reply: float | None = Field(
        description="scoring wall time of each group divided by its replies"
    )
    cached_share: float | None = Field(description="judge samples served by the cache")
    scored_now: int = Field(description="replies scored by this run (not resumed)")
    wall_seconds_now: float = Field(description="wall time of this run's scoring")
    wall_seconds_per_reply_now: float | None
    budget_seconds: float | None


def cost(
    files: Mapping[str, Sequence[RewardBreakdown]],
    *,
    scored_now: int,
    wall_seconds_now: float,
    budget_seconds: float | None = None,
) -> Cost:
    """Judge calls, tokens and time per scored reply, over every file of the card.

    Usage is what each breakdown recorded when it was scored (so a resumed card
    still reports the cost of its first run); samples served by the cache cost
    no call and no token and are reported as a share. The replies of one
    ``score`` call (one example in one file) share its wall time, counted once.
    """
    usage = Usage()
    group_seconds: dict[tuple[str, str], float] = {}
    breakdowns = [b for rows in files.values() for b in rows]
    for name, rows in files.items():
        for b in rows:
            usage = usage + b.usage
            group_seconds[(name, b.example_id)] = max(
                group_seconds.get((name, b.example_id), 0.0), b.seconds
            )
    n = len(breakdowns)
    per = (lambda x: x / n) if n else (lambda x: None)
    samples = usage.calls + usage.cached_calls
    judge_seconds = per(sum(group_seconds.values()))
    if budget_seconds is None or judge_seconds is None:
        status: Status = "info" if n else "n/a"
        verdict = (
            f"{judge_seconds:.2f} s of judge time per reply"
            if judge_seconds is not None
            else "nothing scored"
        )
    elif judge_seconds <= budget_seconds:
        status = "pass"
        verdict = f"{judge_seconds:.2f} s per reply, within the {budget_seconds:g} s budget"
    else:
        status = "fail"
        verdict = f"{judge_seconds:.2f} s per reply, over the {budget_seconds:g} s budget"
    return Cost(
        status=status,
        verdict=verdict,
        replies=n,
        usage=usage,
        calls_per_reply=per(usage.calls),
        prompt_tokens_per_reply=per(usage.prompt_tokens),
        completion_tokens_per_reply=per(usage.completion_tokens),
        judge_seconds_per_reply=judge_seconds,
        cached_share=usage.cached_calls / samples if samples else None,
        scored_now=scored_now,
        wall_seconds_now=round(wall_seconds_now, 3),
        wall_seconds_per_reply_now=(wall_seconds_now / scored_now if scored_now else None),
        budget_seconds=budget_seconds,
    )


# --------------------------------------------------------------------------- agreement


class AgreementRow(BaseModel):
    measure: str
    replies: int
    spearman: float | None = Field(description="None when < 3 replies or a side is constant")
    spearman_p: float | None
    pairs: int = Field(description="pairs of replies to the same example")
    agree: int
    disagree: int
    ties: int = Field(description="pairs tied by either judge (left out of the agreement)")
    agreement: Estimate = Field(description="agree / (agree + disagree); Wilson interval")


class Agreement(BaseModel):
    status: Status
    verdict: str
    reference: str | None
    rows: list[AgreementRow]


def _spearman_p(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None]:
    rho = _spearman(a, b)
    if rho is None:
        return None, None
    from scipy.stats import spearmanr

    return rho, float(spearmanr(a, b).pvalue)


def agreement(
    main: Mapping[Key, RewardBreakdown],
    reference: Mapping[Key, RewardBreakdown],
    measures: Sequence[str],
    *,
    reference_name: str | None,
) -> Agreement:
    """How the judge under test ranks replies compared with a reference judge.

    Spearman over every reply both judges scored; pairwise agreement over the
    pairs of replies to the same example (the comparisons GRPO makes), with
    pairs either judge ties counted apart.
    """
    if reference_name is None:
        return Agreement(status="n/a", verdict="no reference judge given", reference=None, rows=[])
    keys = sorted(set(main) & set(reference))
    by_example: dict[str, list[Key]] = defaultdict(list)
    for k in keys:
        by_example[k[0]].append(k)
    rows = []
    for m in measures:
        both = [(value(main[k], m), value(reference[k], m)) for k in keys]
        pairs_ok = [(a, b) for a, b in both if a is not None and b is not None]
        rho, p = _spearman_p([a for a, _ in pairs_ok], [b for _, b in pairs_ok])
        agree = disagree = ties = 0
        for group in by_example.values():
            for x, y in combinations(group, 2):
                ax, ay = value(main[x], m), value(main[y], m)
                bx, by = value(reference[x], m), value(reference[y], m)
                if None in (ax, ay, bx, by):
                    continue
                da, db = ax - ay, bx - by  # type: ignore[operator]
                if abs(da) <= TIE_EPS or abs(db) <= TIE_EPS:
                    ties += 1
                elif (da > 0) == (db > 0):
                    agree += 1
                else:
                    disagree += 1
        rows.append(
            AgreementRow(
                measure=m,
                replies=len(pairs_ok),
                spearman=rho,
                spearman_p=p,
                pairs=agree + disagree + ties,
                agree=agree,
                disagree=disagree,
                ties=ties,
                agreement=Estimate.of(wilson_ci(agree, agree + disagree)),
            )
        )
    reward = rows[0] if rows else None
    if reward is None or reward.agree + reward.disagree == 0:
        status: Status = "fail"
        verdict = "no pair both judges ordered"
    else:
        where = reward.agreement.against(0.5)
        point = reward.agreement.estimate or 0.0
        rho = "n/a" if reward.spearman is None else f"{reward.spearman:.2f}"
        if where == "above chance":
            status, verdict = "pass", f"ranks like the reference (Spearman {rho})"
        elif where == "below chance":
            status, verdict = "fail", f"ranks against the reference (Spearman {rho})"
        elif point > 0.5:
            status, verdict = "warn", f"agrees weakly with the reference (Spearman {rho})"
        else:
            status, verdict = "fail", f"does not rank like the reference (Spearman {rho})"
    return Agreement(status=status, verdict=verdict, reference=reference_name, rows=rows)
