"""The judge card as data: what ``card.json`` holds, its verdict and its summary line.

The model lives below both the run that fills it
(:mod:`~attunement.judge_card.run`) and the writer that prints it
(:mod:`~attunement.judge_card.report`), so neither imports the other's way.
The overall verdict (:func:`overall`) and the one-line summary
(:func:`summary_line`) are read from the checks' statuses and figures alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from attunement.evaluation.reporting import number, with_interval
from attunement.judge_card.checks import (
    Agreement,
    Cost,
    Discrimination,
    Estimate,
    Personalization,
    Probes,
    Stability,
    Status,
)
from attunement.judge_card.simulator import SimulatorCheck

CheckName = Literal["discrimination", "personalization", "probes", "stability", "cost", "agreement"]
CHECK_NAMES: tuple[CheckName, ...] = get_args(CheckName)
BaseSource = Literal["replies", "policy", "emobench"]
Verdict = Literal["fit", "use with care", "not fit", "incomplete"]
VERDICT_WORDS: dict[str, str] = {
    "fit": "FIT",
    "use with care": "USE WITH CARE",
    "not fit": "NOT FIT",
    "incomplete": "INCOMPLETE",
}


# --------------------------------------------------------------------------- the card's numbers


def pct(x: float | None) -> str:
    """A share as a whole percentage; ``-`` when missing.

    >>> pct(0.623), pct(None)
    ('62%', '-')
    """
    return number(x, 0, percent=True)


def num(x: float | None, digits: int = 3, *, sign: bool = False) -> str:
    return number(x, digits, sign=sign)


def ci_pct(e: Estimate) -> str:
    """``62% [41%, 79%]``.

    >>> ci_pct(Estimate(estimate=0.62, low=0.41, high=0.79, n=20))
    '62% [41%, 79%]'
    """
    return with_interval(e.estimate, e.low, e.high, digits=0, percent=True)


def ci_num(e: Estimate, digits: int = 3, *, sign: bool = True, negate: bool = False) -> str:
    """``+0.050 [-0.010, +0.120]`` (``negate`` flips the sign and the bounds).

    >>> ci_num(Estimate(estimate=-0.05, low=-0.12, high=0.01, n=9), negate=True)
    '+0.050 [-0.010, +0.120]'
    """
    est, low, high = e.estimate, e.low, e.high
    if negate:
        flip = lambda v: None if v is None else 0.0 - v
        est, low, high = flip(est), flip(high), flip(low)
    return with_interval(est, low, high, digits=digits, sign=sign)


class CheckSummary(BaseModel):
    name: CheckName | Literal["simulator"]
    status: Status
    verdict: str


class DataInfo(BaseModel):
    emobench: str | None
    emobench_items: int = Field(description="EA Response items judged (after --limit)")
    emobench_available: int
    data: str | None
    examples_available: int
    base_source: BaseSource | None
    base_replies: int
    base_description: str
    limit: int | None
    seed: int
    runs: int


class JudgeCard(BaseModel):
    """Everything the card says, as written to ``card.json``."""

    judge: str
    reward: str
    reference: str | None
    verdict: Verdict
    summary: str
    checks: list[CheckSummary]
    data: DataInfo
    discrimination: Discrimination
    personalization: Personalization
    probes: Probes
    stability: Stability
    cost: Cost
    agreement: Agreement
    simulator: SimulatorCheck | None = Field(
        None, description="the simulator check (judge_card.simulator), when it was run"
    )
    reward_manifest: dict[str, Any]
    files: dict[str, str] = Field(description="breakdown files, by name")
    created: str
    seconds: float


def overall(statuses: Sequence[Status], *, personalization: Status = "pass") -> Verdict:
    """``not fit`` if a check fails, ``use with care`` if one warns, ``fit`` when
    every judged check passes; ``incomplete`` when none could be judged, or when
    all would pass but ``personalization`` was not tested (a judge of personalized
    empathy is not fit until it is shown to read the user).

    >>> overall(["pass", "info", "n/a"]), overall(["pass", "warn"]), overall(["warn", "fail"])
    ('fit', 'use with care', 'not fit')
    >>> overall(["pass", "n/a"], personalization="n/a")
    'incomplete'
    """
    judged = [s for s in statuses if s in ("pass", "warn", "fail")]
    if not judged:
        return "incomplete"
    if "fail" in judged:
        return "not fit"
    if "warn" in judged:
        return "use with care"
    return "incomplete" if personalization == "n/a" else "fit"


def _drop(row) -> str:
    c = None if row is None or not row.rows else row.rows[0].change.estimate
    return "-" if c is None else f"{0.0 - c:+.3f}"


def summary_line(card: JudgeCard) -> str:
    """The card in one line, naming plainly what makes a judge unfit."""
    parts = []
    d = card.discrimination
    reward = d.row("reward")
    if reward is not None and reward.pairs:
        p = reward.pairwise_tie_split
        length = (
            f" and {pct(d.length_baseline)} for a judge preferring the longer reply"
            if d.length_baseline is not None
            else ""
        )
        parts.append(
            f"discrimination {d.verdict} (pairwise {pct(p.estimate)} "
            f"[{pct(p.low)}, {pct(p.high)}] over {reward.items} items vs 50% chance{length}, "
            f"ties as half; top-1 {pct(reward.top1_tie_split.estimate)} vs "
            f"{pct(d.chance_top1)})"
        )
    elif d.status != "n/a":
        parts.append(f"discrimination: {d.verdict}")
    s = card.stability
    if s.degenerate:
        parts.append(f"DEGENERATE: {s.degenerate_reason}")
    elif s.status in ("warn", "fail"):
        parts.append(f"stability: {s.verdict}")
    pz = card.personalization
    if pz.status != "n/a" and pz.rows:
        c = pz.rows[0].change
        drop = None if c.estimate is None else 0.0 - c.estimate
        alone = "".join(f"; {s.swap} alone {_drop(s)}" for s in pz.swaps if s.status != "n/a")
        shown = "; memories shown to the judge for this check" if pz.note else ""
        parts.append(
            f"personalization {pz.verdict.split(':')[0]} (mean drop "
            f"{'-' if drop is None else f'{drop:+.3f}'} with another user's context"
            f"{alone}{shown})"
        )
    else:
        parts.append(
            f"personalization untested ({pz.verdict}; give --data with --replies or --policy)"
        )
    pr = card.probes
    if pr.status != "n/a":
        parts.append(pr.verdict)
    a = card.agreement
    if a.status != "n/a":
        parts.append(f"agreement with {a.reference}: {a.verdict}")
    if card.cost.status == "fail":
        parts.append(f"cost: {card.cost.verdict}")
    head = f"{VERDICT_WORDS[card.verdict]} as a reward: {card.judge} with {card.reward}"
    return head + (": " + "; ".join(parts) if parts else "") + "."
