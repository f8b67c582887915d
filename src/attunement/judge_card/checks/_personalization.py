"""Personalization: does the judge score a reply lower with another user's context?

A good reply is judged with its own user's persona and memories, and again
with parts of another user's context (query and situation kept):

- ``user``: persona and memories both swapped;
- ``memories``: the memories swapped alone (own persona kept);
- ``persona``: the persona swapped alone (own memories kept).

A judge fit to reward *personalized* empathy scores each swapped copy lower.
Swapping persona and memories together cannot tell a judge that reads the
memories from one that reads only the persona: the single swaps can, and a
judge that ignores the memories fails the memory swap, however well it reads
the persona. Each swap's change is tested with Student's t over replies (one
sided: a drop), and the check takes the worst swap's status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, get_args

from pydantic import BaseModel, Field

from attunement.judge_card.checks._measures import (
    MIN_PAIRS,
    Key,
    PairedRow,
    Status,
    paired_rows,
)
from attunement.records import RewardBreakdown

SwapName = Literal["user", "memories", "persona"]
SWAPS: tuple[SwapName, ...] = get_args(SwapName)
#: what each swap replaces, as the verdicts say it
SWAPPED: dict[str, str] = {
    "user": "another user's context",
    "memories": "another user's memories",
    "persona": "another user's persona",
}
#: how a verdict names the part a judge is (in)sensitive to
ABOUT: dict[str, str] = {"user": "", "memories": " to memories", "persona": " to the persona"}
#: the significance level of a drop (one-sided)
ALPHA = 0.05
_RANK = {"fail": 0, "warn": 1, "pass": 2, "info": 3, "n/a": 4}


class Swap(BaseModel):
    """One swap: the change from the reply's own user to the swapped context."""

    swap: SwapName
    status: Status
    verdict: str
    pairs: int = Field(description="replies judged both with their own context and swapped")
    unscorable_pairs: int = 0
    skipped: int = Field(0, description="replies this swap does not apply to")
    rows: list[PairedRow] = Field(default_factory=list)


class Personalization(BaseModel):
    """The personalization check: the change from a reply's own user to another's."""

    status: Status
    verdict: str
    pairs: int = Field(description="replies judged both with their own user and another")
    unscorable_pairs: int
    skipped: int = Field(0, description="base replies whose user has no persona or memories")
    rows: list[PairedRow] = Field(
        description="change from the own user to another user (persona and memories): "
        "a personalized judge gives a negative change (a drop)"
    )
    swaps: list[Swap] = Field(
        default_factory=list, description="the memories and the persona swapped alone"
    )
    note: str | None = Field(
        None, description="how the judges saw the memories during this check, when it matters"
    )

    def swap(self, name: SwapName) -> Swap | None:
        return next((s for s in self.swaps if s.swap == name), None)


def swap_result(
    name: SwapName,
    pairs: Sequence[tuple[Key, Key]],
    scored: Mapping[Key, RewardBreakdown],
    measures: Sequence[str],
    *,
    skipped: int = 0,
) -> Swap:
    """One swap's rows and verdict (``n/a`` when it applied to no reply)."""
    if not pairs:
        return Swap(
            swap=name, status="n/a", verdict="applied to no reply", pairs=0, skipped=skipped
        )
    rows, dropped = paired_rows(pairs, scored, measures)
    status, verdict = personalization_verdict(rows[0], swap=name)
    return Swap(
        swap=name,
        status=status,
        verdict=verdict,
        pairs=len(pairs),
        unscorable_pairs=dropped,
        skipped=skipped,
        rows=rows,
    )


def personalization(
    pairs: Sequence[tuple[Key, Key]],
    scored: Mapping[Key, RewardBreakdown],
    measures: Sequence[str],
    *,
    skipped: int = 0,
    swaps: Mapping[str, Sequence[tuple[Key, Key]]] | None = None,
    swap_skipped: Mapping[str, int] | None = None,
    note: str | None = None,
) -> Personalization:
    """The same reply judged with its own user (first key) and another user
    (second key), and with the memories or the persona swapped alone (``swaps``).

    A personalized judge scores every swapped copy lower: each swap's reward row
    has a negative mean change with a one-sided t test below 5%. The check's
    status is the worst swap's; its verdict names that swap.
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
    user = swap_result("user", pairs, scored, measures, skipped=skipped)
    singles = [
        swap_result(name, (swaps or {}).get(name, ()), scored, measures, skipped=n)
        for name in ("memories", "persona")
        for n in [(swap_skipped or {}).get(name, 0)]
        if name in (swaps or {})
    ]
    judged = [s for s in (user, *singles) if s.status != "n/a"]
    worst = min(judged, key=lambda s: _RANK[s.status])
    return Personalization(
        status=worst.status,
        verdict=worst.verdict,
        pairs=len(pairs),
        unscorable_pairs=user.unscorable_pairs,
        skipped=skipped,
        rows=user.rows,
        swaps=singles,
        note=note,
    )


def personalization_verdict(reward: PairedRow, *, swap: SwapName = "user") -> tuple[Status, str]:
    """The reward's change from the own context to the ``swap``: a personalized judge
    drops, significantly (one-sided t, 5%) over at least :data:`MIN_PAIRS` pairs."""
    if reward.n == 0:
        return "fail", "no pair could be scored"
    drops = reward.p_drop is not None and reward.p_drop < ALPHA
    mean = reward.change.estimate or 0.0
    swapped, about = SWAPPED[swap], ABOUT[swap]
    if drops and reward.n >= MIN_PAIRS:
        return "pass", f"sensitive{about}: scores drop with {swapped}"
    if mean < 0 and reward.n < MIN_PAIRS:
        return "warn", f"weakly sensitive{about}: scores drop, but over {reward.n} pair(s) only"
    if mean < 0:
        return "warn", f"weakly sensitive{about}: drops on average, within the interval"
    if reward.p_rise is not None and reward.p_rise < ALPHA:
        return "fail", f"inverted{about}: scores rise with {swapped}"
    verb = "change" if swap == "memories" else "changes"
    return "fail", f"insensitive{about}: {swapped} {verb} nothing"
