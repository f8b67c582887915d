"""The data model of an evaluation: its results, its systems and the finished run.

:mod:`~attunement.evaluation.tables` computes these rows from score files,
:mod:`~attunement.evaluation.evaluate` gathers them into an :class:`EvalRun`, and
:mod:`~attunement.evaluation.report` and :mod:`~attunement.evaluation.views`
write them out. Living below all of them, the model lets the writer read a run
without importing the code that produced it (and the producer call the writer
without a cycle). ``results.json`` is :class:`Results` dumped as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from attunement.evaluation.stats import PairedComparison, Stat
from attunement.records import Example, Reply, RewardBreakdown

# --------------------------------------------------------------------------- rows


class Row(BaseModel):
    """One system under one judge on one split (optionally one group of examples)."""

    judge: str
    split: str
    system: str
    memory_mode: str | None = None
    group: dict[str, str] = Field(
        default_factory=dict,
        description="e.g. {'category': 'ES'} or {'trait': 'openness', 'level': 'low'}",
    )
    examples: int = Field(description="examples with at least one reply of this system")
    replies: int
    unscorable: int = Field(description="replies with some dimension the judge never scored")
    columns: dict[str, Stat] = Field(description="per dimension, on the judge's scale")
    avg: Stat = Field(description="mean of the empathy dimensions' means (table 1's Avg)")
    delta: float | None = Field(None, description="memory view: Avg minus the full-memory Avg")
    relative: float | None = Field(None, description="memory view: delta / full-memory Avg")


class Paired(BaseModel):
    """``system`` minus ``baseline`` on the examples both scored."""

    view: Literal["baseline", "memory", "dialogue"] = "baseline"
    judge: str
    split: str
    system: str
    baseline: str
    metric: str = Field(description="a dimension, or 'avg'")
    diff: Stat = Field(description="mean difference, interval over users ('n too small' below 10)")
    n: int
    wins: int
    losses: int
    ties: int
    wilcoxon_p: float | None = Field(description="for reference: treats queries as independent")
    sign_p: float | None = Field(description="for reference: treats queries as independent")
    p: float | None = Field(
        None, description="two-sided studentized bootstrap over users (None below 10 users)"
    )
    p_holm: float | None = Field(
        None, description="p adjusted by Holm over every comparison of the report"
    )

    @classmethod
    def of(cls, cmp: PairedComparison, **where: Any) -> Paired:
        """The row of a comparison (``where``: view, judge, split, system, baseline, metric)."""
        return cls(
            **where,
            diff=Stat.of(cmp.diff),
            n=cmp.n,
            wins=cmp.wins,
            losses=cmp.losses,
            ties=cmp.ties,
            wilcoxon_p=cmp.wilcoxon_p,
            sign_p=cmp.sign_p,
            p=cmp.p,
        )


class ScalingPoint(BaseModel):
    """PereGRM@k from the first k samples of a PereGRM@K run."""

    judge: str
    split: str
    system: str
    k: int
    columns: dict[str, Stat]
    avg: Stat
    samples_per_reply: float = Field(
        description="judge samples per reply: scoring samples "
        "drawn (re-draws included) plus the criteria samples of "
        "its example shared by the example's replies"
    )
    tokens_per_reply: float | None = Field(
        None,
        description="judge tokens per reply, estimated as samples x the run's measured "
        "tokens per sample",
    )


class Cost(BaseModel):
    """Judge usage recorded in one score file (or several whose work was shared)."""

    judge: str
    system: str = Field(description="a system, or '(all systems)' for shared work")
    what: str = "scoring"
    replies: int
    samples: int = Field(
        0, description="judge samples behind the replies, spent now, earlier or by the cache"
    )
    calls: int
    cached_calls: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float


class Results(BaseModel):
    """Every number of an evaluation, with what produced it."""

    settings: dict[str, Any] = Field(default_factory=dict)
    judges: list[dict[str, Any]] = Field(default_factory=list)
    systems: list[dict[str, Any]] = Field(default_factory=list)
    splits: list[dict[str, Any]] = Field(default_factory=list)
    criteria: dict[str, Any] = Field(default_factory=dict)
    dimensions: list[str] = Field(default_factory=list)
    table: list[Row] = Field(default_factory=list)
    paired: list[Paired] = Field(default_factory=list)
    by_category: list[Row] = Field(default_factory=list)
    by_big_five: list[Row] = Field(default_factory=list)
    memory: list[Row] = Field(default_factory=list)
    k_scaling: list[ScalingPoint] = Field(default_factory=list)
    cost: list[Cost] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    dialogues: dict[str, Any] | None = Field(
        None,
        description="systems compared on simulated talks (evaluation.dialogues.DialogueResults)",
    )


@dataclass(frozen=True)
class System:
    """A set of replies analysed as one column of results."""

    label: str
    source: str  # the replies file's label
    memory_mode: str | None
    reply_keys: frozenset[tuple[str, str]]  # (example_id, reply_id)
    policy: str | None = None


# --------------------------------------------------------------------------- the run


@dataclass
class EvalRun:
    """A finished evaluation: its numbers and what the report shows."""

    out: Path
    results: Results
    examples: dict[str, Example]
    systems: list[System]
    #: judge label -> (example_id, reply_id) -> breakdown
    breakdowns: dict[str, dict[tuple[str, str], RewardBreakdown]]
    #: (example_id, reply_id) -> reply
    reply_index: dict[tuple[str, str], Reply] = field(default_factory=dict)
    report: Path | None = None
    #: the talks of each dialogue system (evaluation.dialogues.DialogueSet), for the page
    dialogue_sets: list[Any] = field(default_factory=list)


def safe_name(label: str) -> str:
    """A label as a file name (score files, plot files).

    >>> safe_name("Qwen/Qwen3 8B[full]")
    'Qwen_Qwen3_8B_full'
    """
    return re.sub(r"[^\w.@+-]+", "_", label).strip("._") or "x"
