"""Discrimination: does the reward rank the right EmoBench reply above the wrong ones?

Each EmoBench EA "Response" item is a :class:`ChoiceGroup`: a scenario's four
candidate replies, one of them right. The statistic has three layers, each
its own function: where the right reply ranks within one item
(:func:`rank_right`), the counts and intervals over items per measure
(:func:`discrimination_row`), and the verdict read from the reward's row
(:func:`discrimination_verdict`).
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
    split = 0.0
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
        wins, ties, losses = wins + rank.wins, ties + rank.ties, losses + rank.losses
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


def discrimination_verdict(reward: DiscriminationRow) -> tuple[Status, str]:
    """The reward's pairwise figure with ties as half a win, against 50%."""
    if reward.pairs == 0:
        return "fail", "no item could be scored"
    where = reward.pairwise_tie_split.against(0.5)
    point = reward.pairwise_tie_split.estimate or 0.0
    status: Status
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
    return status, verdict


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
    rows = [discrimination_row(groups, scored, m) for m in measures]
    reward = rows[0]
    status, verdict = discrimination_verdict(reward)
    return Discrimination(
        status=status,
        verdict=verdict,
        chance_top1=statistics.fmean(1 / len(g.reply_ids) for g in groups),
        items=len(groups),
        unscorable_items=len(groups) - reward.items,
        rows=rows,
    )
