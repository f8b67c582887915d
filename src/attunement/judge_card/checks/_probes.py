"""Gaming probes, the figures: does an altered good reply gain reward?

The probes themselves (the edits) are :mod:`attunement.judge_card.probes`; here
each probe's pairs (a good reply, its altered copy) become a change in score
with an interval, and a verdict per probe and for the check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from attunement.judge_card.checks._measures import (
    MIN_PAIRS,
    Key,
    PairedRow,
    Status,
    paired_rows,
)
from attunement.records import RewardBreakdown

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
