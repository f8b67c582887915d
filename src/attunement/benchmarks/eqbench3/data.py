"""EQ-Bench 3's published files (Paech, MIT licence), read and checked.

The files are read from the folder the user passes (``--data``; nothing is
bundled):

- ``scenario_prompts.txt``: scenarios, each a header ``######## ID | category | title``
  and ``####### PromptN`` blocks holding the user turns;
- ``scenario_master_prompt*.txt``: how each user turn is wrapped for the tested
  model (role-play, message drafting, analysis), at ``{scenario_prompt}``;
- ``debrief_prompt.txt``: the last, out-of-character turn of role-play and
  drafting scenarios;
- ``rubric_scoring_prompt*.txt`` and ``rubric_scoring_criteria*.txt``: the
  judge's prompt and the criteria it scores 0-20.

A scenario's kind follows upstream's id ranges: 201-209 message drafting,
401-420 analysis (one turn, no debrief), 8/10/12/14 plain conversation (no
wrapping), every other id role-play. Every file and placeholder is checked
before any model is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from attunement.jsonl import file_sha256

ScenarioKind = Literal["roleplay", "drafting", "analysis", "no_rp"]

#: upstream's id sets (utils/constants.py at commit 3c21bcc)
DRAFTING_IDS = frozenset(str(i) for i in range(201, 210))
ANALYSIS_IDS = frozenset(str(i) for i in range(401, 421))
NO_RP_IDS = frozenset({"8", "10", "12", "14"})

#: criteria that count toward a role-play or drafting task's score (upstream's
#: STANDARD_ALLOWED_RUBRIC_CRITERIA; the last four are only ever asked of analyses)
STANDARD_SCORED = (
    "demonstrated_empathy",
    "pragmatic_ei",
    "depth_of_insight",
    "social_dexterity",
    "emotional_reasoning",
    "message_tailoring",
    "theory_of_mind",
    "subtext_identification",
    "intellectual_grounding",
    "correctness",
)

FILES = {
    "scenarios": "scenario_prompts.txt",
    "master_roleplay": "scenario_master_prompt.txt",
    "master_drafting": "scenario_master_prompt_message_drafting.txt",
    "master_analysis": "scenario_master_prompt_analysis.txt",
    "debrief": "debrief_prompt.txt",
    "rubric_prompt": "rubric_scoring_prompt.txt",
    "rubric_prompt_analysis": "rubric_scoring_prompt_analysis.txt",
    "criteria": "rubric_scoring_criteria.txt",
    "criteria_analysis": "rubric_scoring_criteria_analysis.txt",
}


def scenario_kind(scenario_id: str) -> ScenarioKind:
    """The kind of a scenario, by upstream's id sets.

    >>> [scenario_kind(i) for i in ("1", "208", "401", "12")]
    ['roleplay', 'drafting', 'analysis', 'no_rp']
    """
    if scenario_id in ANALYSIS_IDS:
        return "analysis"
    if scenario_id in DRAFTING_IDS:
        return "drafting"
    if scenario_id in NO_RP_IDS:
        return "no_rp"
    return "roleplay"


class Scenario(BaseModel):
    """One scripted scenario: its user turns, unwrapped."""

    model_config = ConfigDict(extra="forbid")

    id: str
    category: str = ""
    title: str = ""
    prompts: list[str] = Field(min_length=1)

    @property
    def kind(self) -> ScenarioKind:
        return scenario_kind(self.id)


_SCENARIO = re.compile(r"^########\s*(\S+)(.*)$")
_PROMPT = re.compile(r"^#######\s*Prompt(\d+)")


def parse_scenarios(
    text: str, *, source: str = "scenario_prompts.txt", skipped: dict[str, str] | None = None
) -> list[Scenario]:
    """Scenarios of a ``scenario_prompts.txt`` text, in file order.

    A prompt is the text between its ``####### PromptN`` line and the next
    delimiter, with surrounding blank lines removed (inner lines are kept as
    written). Text before a scenario's first prompt is ignored and a scenario
    without any ``PromptN`` block is left out, as upstream does (the published
    file has one: 409 numbers its block ``####### 1``); its id and the reason go
    to ``skipped``. A repeated id or a prompt outside any scenario is an error
    naming the line.

    >>> s = parse_scenarios("######## 7 | Friend Issue | Dinner\\n####### Prompt1\\nHi.\\n\\n"
    ...                     "####### Prompt2\\n  Then?\\n")
    >>> s[0].id, s[0].category, s[0].title, s[0].prompts
    ('7', 'Friend Issue', 'Dinner', ['Hi.', 'Then?'])
    """
    scenarios: list[Scenario] = []
    current: dict[str, Any] | None = None
    lines: list[str] | None = None
    seen: set[str] = set()

    def close_prompt() -> None:
        nonlocal lines
        if current is not None and lines is not None:
            body = "\n".join(lines).strip()
            if body:
                current["prompts"].append(body)
        lines = None

    def close_scenario() -> None:
        close_prompt()
        if current is not None:
            if not current["prompts"]:
                if skipped is not None:
                    skipped[current["id"]] = (
                        f"{source}:{current['line']}: no '####### PromptN' block"
                    )
                return
            scenarios.append(
                Scenario(
                    id=current["id"],
                    category=current["category"],
                    title=current["title"],
                    prompts=current["prompts"],
                )
            )

    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        head = _SCENARIO.match(stripped)
        if head and not stripped.startswith("#########"):
            close_scenario()
            sid = head.group(1)
            if sid in seen:
                raise ValueError(f"{source}:{lineno}: scenario {sid} appears twice")
            seen.add(sid)
            fields = [f.strip() for f in head.group(2).split("|")]
            current = {
                "id": sid,
                "category": fields[1] if len(fields) > 1 else "",
                "title": fields[2] if len(fields) > 2 else "",
                "prompts": [],
                "line": lineno,
            }
            continue
        if _PROMPT.match(stripped):
            if current is None:
                raise ValueError(f"{source}:{lineno}: a prompt before any scenario header")
            close_prompt()
            lines = []
            continue
        if lines is not None:
            lines.append(raw.rstrip("\r"))
    close_scenario()
    if not scenarios:
        raise ValueError(f"{source}: no scenario found")
    return scenarios


def read_criteria(text: str) -> list[str]:
    """Criteria names, one a line (blank lines and ``#`` comments skipped)."""
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


@dataclass
class EQBenchData:
    """The published files of one EQ-Bench 3 folder, checked."""

    folder: Path
    scenarios: list[Scenario]
    master: dict[str, str]  # kind -> template with {scenario_prompt}
    debrief: str
    rubric_prompt: dict[str, str]  # "standard" / "analysis" -> template
    criteria: dict[str, list[str]]  # "standard" / "analysis" -> names
    hashes: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # scenario id -> why

    def scored_criteria(self, kind: ScenarioKind) -> tuple[str, ...]:
        """The criteria whose scores make a task's score."""
        return tuple(self.criteria["analysis"]) if kind == "analysis" else STANDARD_SCORED

    def asked_criteria(self, kind: ScenarioKind) -> list[str]:
        return self.criteria["analysis" if kind == "analysis" else "standard"]


def load_eqbench_data(folder: Path | str) -> EQBenchData:
    """Read and check an EQ-Bench 3 folder (every file and placeholder present)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (give the EQ-Bench 3 data folder)")
    text: dict[str, str] = {}
    for key, name in FILES.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: missing (an EQ-Bench 3 folder holds {', '.join(FILES.values())})"
            )
        text[key] = path.read_text(encoding="utf-8")
    for key in ("master_roleplay", "master_drafting", "master_analysis"):
        if "{scenario_prompt}" not in text[key]:
            raise ValueError(f"{folder / FILES[key]}: no {{scenario_prompt}} placeholder")
    for key, needed in (
        ("rubric_prompt", ("{transcript}", "{debrief}", "{output_format}")),
        ("rubric_prompt_analysis", ("{transcript}", "{output_format}")),
    ):
        missing = [p for p in needed if p not in text[key]]
        if missing:
            raise ValueError(f"{folder / FILES[key]}: missing placeholder(s) {missing}")
    criteria = {
        "standard": read_criteria(text["criteria"]),
        "analysis": read_criteria(text["criteria_analysis"]),
    }
    for key, names in criteria.items():
        if not names:
            raise ValueError(f"{folder}: no {key} rubric criteria")
    skipped: dict[str, str] = {}
    return EQBenchData(
        folder=folder,
        scenarios=parse_scenarios(
            text["scenarios"], source=str(folder / FILES["scenarios"]), skipped=skipped
        ),
        skipped=skipped,
        master={
            "roleplay": text["master_roleplay"],
            "drafting": text["master_drafting"],
            "analysis": text["master_analysis"],
        },
        debrief=text["debrief"].strip(),
        rubric_prompt={
            "standard": text["rubric_prompt"],
            "analysis": text["rubric_prompt_analysis"],
        },
        criteria=criteria,
        hashes={name: file_sha256(folder / name) for name in FILES.values()},
    )
