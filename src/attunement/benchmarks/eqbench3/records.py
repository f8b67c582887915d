"""The run's settings and the two records it appends to its folder.

A scenario played by the tested model is a :class:`Transcript`, kept as its
list of :class:`~attunement.records.Turn` records (never flattened) and
appended to ``OUT/transcripts.jsonl`` when the scenario is done; the judge's
verdict on a transcript is a :class:`RubricVerdict` in ``OUT/rubric.jsonl``.
Both files are keyed by scenario id, so a run resumes per scenario.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from attunement.benchmarks.eqbench3.data import ScenarioKind
from attunement.jsonl import read_jsonl
from attunement.records import Record, Turn, Usage

JudgeFormat = Literal["auto", "text", "json"]
TranscriptStyle = Literal["sections", "raw"]
TRANSCRIPTS = "transcripts.jsonl"
VERDICTS = "rubric.jsonl"


class EQBenchSettings(BaseModel):
    """Sampling and judging settings (defaults: upstream's where a model allows)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0.0, le=2.0, description="scenario turns (upstream 0.7)")
    debrief_temperature: float = Field(0.5, ge=0.0, le=2.0, description="upstream 0.5")
    max_tokens: int = Field(4096, ge=16, description="per reply (upstream 12000)")
    judge_temperature: float = Field(0.0, ge=0.0, le=2.0)
    judge_max_tokens: int = Field(8000, ge=64, description="upstream 8000")
    judge_format: JudgeFormat = Field(
        "json",
        description="json: the JSON layout the rubric prompt asks for, sent as a schema "
        "(servers without schemas fall back to JSON mode); text: upstream's free answer, no "
        "schema; auto: json where the backend enforces schemas",
    )
    reasoning_chars: int = Field(2000, ge=20, description="maxLength of the reasoning in json mode")
    max_resamples: int = Field(2, ge=0, description="fresh judge draws for unreadable answers")
    transcript: TranscriptStyle = Field(
        "sections",
        description="how replies reach the judge: upstream re-assembles the "
        "parsed sections; raw sends the reply as written",
    )
    seed: int = 0
    concurrency: int = Field(4, ge=1, description="scenarios in flight")
    resamples: int = Field(2000, ge=100)
    level: float = Field(0.95, gt=0.5, lt=1.0)


class Transcript(Record):
    """One scenario played by the tested model, turn by turn."""

    scenario_id: str
    kind: ScenarioKind
    category: str = ""
    title: str = ""
    model: str
    turns: list[Turn] = Field(description="wrapped user turns and the model's replies, in order")
    debrief: list[Turn] = Field(
        default_factory=list, description="the debrief prompt and reply (none for analysis)"
    )
    usage: Usage = Field(default_factory=Usage)
    seconds: float = 0.0

    @property
    def replies(self) -> list[str]:
        return [t.text for t in self.turns if t.role == "assistant"]


class RubricVerdict(Record):
    """The judge's rubric scores of one transcript, with its reasoning."""

    scenario_id: str
    kind: ScenarioKind
    judge: str
    scores: dict[str, float] = Field(description="criterion -> 0-20, as read")
    reasoning: str = ""
    missing: list[str] = Field(default_factory=list, description="asked criteria not scored")
    dropped: dict[str, str] = Field(
        default_factory=dict, description="values that were not a 0-20 number"
    )
    raw: str = ""
    attempts: int = 1
    usage: Usage = Field(default_factory=Usage)


def read_transcripts(out: Path) -> dict[str, Transcript]:
    """The transcripts of a run folder by scenario id (none when the file is absent)."""
    path = out / TRANSCRIPTS
    return {t.scenario_id: t for t in (read_jsonl(path, Transcript) if path.exists() else [])}


def read_verdicts(out: Path) -> dict[str, RubricVerdict]:
    """The judge's verdicts of a run folder by scenario id."""
    path = out / VERDICTS
    return {v.scenario_id: v for v in (read_jsonl(path, RubricVerdict) if path.exists() else [])}
