"""Discrimination: does the reward rank the right EmoBench reply above the wrong ones?

Each EmoBench EA "Response" item is a :class:`ChoiceGroup`: a scenario's four
candidate replies, one of them right. The statistic has three layers, each
its own function: where the right reply ranks within one item
(:func:`rank_right`), the counts and intervals over items per measure
(:func:`discrimination_row`), and the verdict read from the reward's row
(:func:`discrimination_verdict`).

Two choices keep a bad judge from passing. The unit is the **item**, not the
pair: the three pairs of an item share its scenario and its right reply, so
they are not three independent trials, and an interval over pairs is too
narrow (a random judge passed 5-7% of the time). Each item's share of pairs
won is one value in [0, 1]; the interval is Wilson's over items, which is
conservative for such values (their variance is at most p (1 - p)). And
chance is not the only bar: in EmoBench the right reply is often the longest,
so a judge that prefers the longer reply scores well above 50% without
reading anything (58% of pairs in EA). The **length baseline**
(:func:`length_baseline`) is the figure that judge gets on the same items,
and a pass needs the interval's lower bound above both.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

from attunement.evaluation.stats import wilson_ci
from attunement.judge_card.checks._measures import (
    TIE_EPS,
    Estimate,
    Key,
    Status,
    ties_equal,
    value,
)
from attunement.records import RewardBreakdown


@dataclass(frozen=True)
class ChoiceGroup:
    """One multiple-choice item: its candidate replies and which one is right, and
    (for the length baseline) each candidate's length in characters."""

    example_id: str
    reply_ids: tuple[str, ...]
    correct: str
    lengths: tuple[int, ...] | None = None


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
        "interval over items"
    )
    pairs: int
    pairwise: Estimate = Field(
        description="mean over items of the share of (right, wrong) pairs where the right "
        "reply scored strictly higher; Wilson interval over items"
    )
    pair_wins: int
    pair_ties: int
    pair_losses: int
    pairwise_tie_split: Estimate = Field(
        description="pairwise with a tie as half a win; Wilson interval over items "
        "(the verdict's figure)"
    )


class Discrimination(BaseModel):
    status: Status
    verdict: str
    chance_top1: float | None
    chance_pairwise: float = 0.5
    length_baseline: float | None = Field(
        None,
        description="pairwise (ties as half) of a judge that prefers the longer reply, "
        "on the same items",
    )
    length_top1: float | None = Field(
        None, description="top-1 (ties split) of that judge on the same items"
    )
    bar: float = Field(0.5, description="what the lower bound must clear to pass")
    items: int
    unscorable_items: int = Field(description="items left out: a candidate was unscorable")
    rows: list[DiscriminationRow]
    note: str | None = None

    def row(self, measure: str) -> DiscriminationRow | None:
        return next((r for r in self.rows if r.measure == measure), None)


@dataclass(frozen=True)
class ItemRank:
    """Where an item's right reply stands among the others under one measure."""

    first: bool  # strictly above every other
    tied_first: int  # others tied with it at the top (0: not tied for the top)
    wins: int  # others it scores strictly above
    ties: int
    losses: int

    @property
    def top_share(self) -> float:
        """Top-1 with ties broken at random: 1 when first, 1/m when tied with m - 1
        others at the top, else 0."""
        if self.first:
            return 1.0
        return 1.0 / (1 + self.tied_first) if self.tied_first else 0.0


def rank_right(right: float, others: Sequence[float]) -> ItemRank:
    """The right reply's score against the other candidates' scores.

    >>> rank_right(0.5, [0.5, 0.1, 0.2])
    ItemRank(first=False, tied_first=1, wins=2, ties=1, losses=0)
    >>> rank_right(0.3, [0.5, 0.1, 0.3]).top_share, rank_right(0.9, [0.5]).top_share
    (0.0, 1.0)
    """
    best = max(others)
    tied = sum(1 for v in others if ties_equal(v, right))
    first = right > best + TIE_EPS
    tied_first = tied if not first and tied and right >= best - TIE_EPS else 0
    wins = ties = losses = 0
    for v in others:
        if ties_equal(right, v):
            ties += 1
        elif right > v:
            wins += 1
        else:
            losses += 1
    return ItemRank(first, tied_first, wins, ties, losses)


def discrimination_row(
    groups: Sequence[ChoiceGroup], scored: Mapping[Key, RewardBreakdown], measure: str
) -> DiscriminationRow:
    """Top-1 and pairwise counts and intervals of one measure over the items whose
    every candidate was scored."""
    items = top_wins = top_ties = 0
    split = strict = halves = 0.0
    wins = ties = losses = 0
    for g in groups:
        values = {rid: value(scored.get((g.example_id, rid)), measure) for rid in g.reply_ids}
        if any(v is None for v in values.values()):
            continue
        items += 1
        others = [v for rid, v in values.items() if rid != g.correct]
        rank = rank_right(values[g.correct], others)  # type: ignore[arg-type]
        top_wins += rank.first
        top_ties += bool(rank.tied_first)
        split += rank.top_share
        strict += rank.wins / len(others)
        halves += (rank.wins + rank.ties / 2) / len(others)
        wins, ties, losses = wins + rank.wins, ties + rank.ties, losses + rank.losses
    return DiscriminationRow(
        measure=measure,
        items=items,
        top1=Estimate.of(wilson_ci(top_wins, items)),
        top1_ties=top_ties,
        top1_tie_split=fractional_wilson(split, items),
        pairs=wins + ties + losses,
        pairwise=fractional_wilson(strict, items),
        pair_wins=wins,
        pair_ties=ties,
        pair_losses=losses,
        pairwise_tie_split=fractional_wilson(halves, items),
    )


def length_baseline(groups: Sequence[ChoiceGroup]) -> tuple[float | None, float | None]:
    """Pairwise (ties as half) and top-1 (ties split) of a judge that scores every
    candidate by its length, over the items whose lengths are known.

    >>> g = ChoiceGroup("e", ("c0", "c1", "c2"), "c0", lengths=(30, 10, 30))
    >>> length_baseline([g])
    (0.75, 0.5)
    """
    pairwise, top1, n = 0.0, 0.0, 0
    for g in groups:
        if g.lengths is None or len(g.lengths) != len(g.reply_ids):
            continue
        right = g.lengths[g.reply_ids.index(g.correct)]
        others = [float(x) for rid, x in zip(g.reply_ids, g.lengths) if rid != g.correct]
        rank = rank_right(float(right), others)
        pairwise += (rank.wins + rank.ties / 2) / len(others)
        top1 += rank.top_share
        n += 1
    return (pairwise / n, top1 / n) if n else (None, None)


def fractional_wilson(successes: float, n: int) -> Estimate:
    """The Wilson interval of a proportion whose successes include fractions (a tie
    counted as half a win); the interval's formula needs only the proportion and n.

    >>> e = fractional_wilson(4.5, 9)
    >>> e.estimate, round(e.low, 3), round(e.high, 3)
    (0.5, 0.227, 0.773)
    """
    return Estimate.of(wilson_ci(successes, n))  # type: ignore[arg-type]


def discrimination_verdict(
    reward: DiscriminationRow, length: float | None = None
) -> tuple[Status, str]:
    """The reward's pairwise figure with ties as half a win, over items: a pass only
    when its interval's lower bound clears both 50% and the ``length`` baseline;
    anything less fails (a reward that cannot be shown to discriminate is not fit)."""
    if reward.pairs == 0:
        return "fail", "no item could be scored"
    e = reward.pairwise_tie_split
    point, low = e.estimate or 0.0, e.low or 0.0
    bar = max(0.5, length or 0.0)
    status: Status = "fail"
    if low > bar:
        status, verdict = "pass", "above chance" + (" and the length baseline" if length else "")
    elif e.against(0.5) == "below chance":
        verdict = "below chance"
    elif point <= 0.5:
        verdict = "near chance"
    elif length is not None and point <= length:
        verdict = "no better than preferring the longer reply"
    elif low > 0.5:
        verdict = "not clearly above the length baseline"
    else:
        verdict = "not clearly above chance"
    if reward.pair_ties > reward.pairs / 2:
        verdict += f"; {reward.pair_ties} of {reward.pairs} pairs tied"
    return status, verdict


def discrimination(
    groups: Sequence[ChoiceGroup], scored: Mapping[Key, RewardBreakdown], measures: Sequence[str]
) -> Discrimination:
    """Top-1 and pairwise accuracy of picking the right candidate, per measure.

    Ties count as misses in ``top1`` and ``pairwise`` (a judge that scores
    everything alike picks nothing), and are reported on their own; the
    ``tie_split`` figures break them at random instead, so a judge that gives
    every candidate the same score sits exactly at chance there. The verdict
    reads the reward's pairwise figure with ties as half a win, against 50% and
    the length baseline: a judge that ties everything is *near chance*, not
    *below* it.
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
    rows = [discrimination_row(groups, scored, m) for m in measures]
    reward = rows[0]
    length, length_top1 = length_baseline(groups)
    status, verdict = discrimination_verdict(reward, length)
    return Discrimination(
        status=status,
        verdict=verdict,
        chance_top1=statistics.fmean(1 / len(g.reply_ids) for g in groups),
        length_baseline=length,
        length_top1=length_top1,
        bar=max(0.5, length or 0.0),
        items=len(groups),
        unscorable_items=len(groups) - reward.items,
        rows=rows,
    )
