"""Personalization: does the judge score a reply lower with another user's context?

A good reply is judged twice: with its own user's persona and memories, and
with another user's (query and situation kept). A judge fit to reward
*personalized* empathy scores the second lower; one that does not is scoring
generic empathy, and a policy trained on it has no reason to use the memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field

from attunement.judge_card.checks._measures import (
    MIN_PAIRS,
    Key,
    PairedRow,
    Status,
    paired_rows,
)
from attunement.records import RewardBreakdown


class Personalization(BaseModel):
    """The personalization check: the change from a reply's own user to another's."""

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
    status, verdict = personalization_verdict(rows[0])
    return Personalization(
        status=status,
        verdict=verdict,
        pairs=len(pairs),
        unscorable_pairs=dropped,
        skipped=skipped,
        rows=rows,
    )


def personalization_verdict(reward: PairedRow) -> tuple[Status, str]:
    """The reward's change from the own user to another: a personalized judge drops,
    with the interval below zero over at least :data:`MIN_PAIRS` pairs."""
    if reward.n == 0:
        return "fail", "no pair could be scored"
    c = reward.change
    if c.high is not None and c.high < 0 and reward.n >= MIN_PAIRS:
        return "pass", "sensitive: scores drop with another user's context"
    if c.high is not None and c.high < 0:
        return "warn", f"weakly sensitive: scores drop, but over {reward.n} pair(s) only"
    if (c.estimate or 0.0) < 0:
        return "warn", "weakly sensitive: drops on average, within the interval"
    if c.low is not None and c.low > 0:
        return "fail", "inverted: scores rise with another user's context"
    return "fail", "insensitive: another user's context changes nothing"
