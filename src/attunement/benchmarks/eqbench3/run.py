"""``attune eqbench3``: EQ-Bench 3's rubric pass on its published scenarios.

EQ-Bench 3 (Paech, MIT licence) tests emotional intelligence with scripted
multi-turn role-plays. Its files are read from the folder the user passes
(``--data``; nothing is bundled):

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
wrapping), every other id role-play.

**Running.** Each scenario is one conversation: every scripted user turn is
wrapped by its master prompt and sent with the whole history, then (except
for analysis) the debrief. The conversation is kept as a list of
:class:`~attunement.records.Turn` records in a :class:`Transcript`, never
flattened, and appended to ``OUT/transcripts.jsonl`` when the scenario is done.
Scenarios run concurrently; turns within one run in order. A killed run
resumes per scenario, and completed turns come back from the cache.

**Judging.** The judge sees upstream's rubric prompt: the transcript rendered
as upstream does (``User:`` / ``Assistant:`` blocks joined by ``---``; role-play
and drafting replies re-assembled from their parsed sections), the debrief,
the JSON answer format, and every ``*`` and ``#`` removed from the prompt. Text
inside the transcript cannot close its block: the block's end markers are
defused. The answer is a JSON object with ``chain_of_thought_reasoning`` and a
0-20 score per criterion; it is read with its reasoning kept, and an
unreadable answer is re-drawn with fresh samples.

**Scoring** (upstream's ``calculate_final_rubric_score``): per task, the mean
of the scores of the allowed criteria (role-play and drafting: the qualitative
criteria; analysis: the analysis criteria file), with ``overall_eq`` counted
three times when present; then the mean over tasks, on 0-20. Reported on 0-100
(x5), with a bootstrap interval over tasks, plus per-criterion means.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from attunement.concurrency import run_bounded
from attunement.evaluation.stats import bootstrap_column_means
from attunement.jsonl import (
    JsonlAppender,
    check_settings,
    file_sha256,
    read_jsonl,
    write_manifest,
)
from attunement.judging.base import JudgeSampler, usage_of
from attunement.llm.base import ChatModel, LLMError, Message
from attunement.records import Record, Turn, Usage
from attunement.textjson import lenient_json_object

ScenarioKind = Literal["roleplay", "drafting", "analysis", "no_rp"]
JudgeFormat = Literal["auto", "text", "json"]
TranscriptStyle = Literal["sections", "raw"]

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
OVERALL_EQ = "overall_eq"
OVERALL_EQ_WEIGHT = 3
SCORE_MAX = 20
REASONING_KEY = "chain_of_thought_reasoning"

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


# --------------------------------------------------------------------------- data


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


# --------------------------------------------------------------------------- records


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


# --------------------------------------------------------------------------- playing


class EQBenchSettings(BaseModel):
    """Sampling and judging settings (defaults: upstream's where a model allows)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0.0, le=2.0, description="scenario turns (upstream 0.7)")
    debrief_temperature: float = Field(0.5, ge=0.0, le=2.0, description="upstream 0.5")
    max_tokens: int = Field(4096, ge=16, description="per reply (upstream 12000)")
    judge_temperature: float = Field(0.0, ge=0.0, le=2.0)
    judge_max_tokens: int = Field(8000, ge=64, description="upstream 8000")
    judge_format: JudgeFormat = Field(
        "auto",
        description="json: schema-constrained answer; "
        "text: upstream's free answer; auto: json where the "
        "backend enforces schemas",
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


def wrap(template: str, prompt: str) -> str:
    """A user turn wrapped by its master prompt (``{scenario_prompt}`` replaced once)."""
    return template.replace("{scenario_prompt}", prompt, 1)


def user_turn(data: EQBenchData, scenario: Scenario, prompt: str) -> str:
    kind = scenario.kind
    return prompt if kind == "no_rp" else wrap(data.master[kind], prompt)


async def play(
    scenario: Scenario, data: EQBenchData, model: ChatModel, settings: EQBenchSettings
) -> Transcript:
    """Run one scenario: each wrapped user turn with the history, then the debrief."""
    started = time.perf_counter()
    turns: list[Turn] = []
    usage = Usage()
    for prompt in scenario.prompts:
        turns.append(Turn(role="user", text=user_turn(data, scenario, prompt)))
        reply, used = await _reply(model, turns, settings.temperature, settings)
        turns.append(Turn(role="assistant", text=reply))
        usage = usage + used
    debrief: list[Turn] = []
    if scenario.kind != "analysis":
        debrief.append(Turn(role="user", text=data.debrief))
        reply, used = await _reply(model, turns + debrief, settings.debrief_temperature, settings)
        debrief.append(Turn(role="assistant", text=reply.strip()))
        usage = usage + used
    return Transcript(
        scenario_id=scenario.id,
        kind=scenario.kind,
        category=scenario.category,
        title=scenario.title,
        model=model.name,
        turns=turns,
        debrief=debrief,
        usage=usage,
        seconds=round(time.perf_counter() - started, 3),
    )


async def _reply(
    model: ChatModel, turns: Sequence[Turn], temperature: float, settings: EQBenchSettings
) -> tuple[str, Usage]:
    messages: list[Message] = [{"role": t.role, "content": t.text} for t in turns]
    completions = await model.complete(
        messages, temperature=temperature, max_tokens=settings.max_tokens, seed=settings.seed
    )
    return completions[0].text, usage_of(completions)


# --------------------------------------------------------------------------- the rubric prompt

_ROLEPLAY_SECTIONS = (
    (
        "thinking_feeling",
        r"#\s*I[’']m thinking & feeling\s*\n([\s\S]*?)(?=#|\Z)",
        "# I'm thinking & feeling",
    ),
    (
        "their_thinking_feeling",
        r"#\s*They[’']re thinking & feeling\s*\n([\s\S]*?)(?=#|\Z)",
        "# They're thinking & feeling",
    ),
    ("response", r"#\s*My response\s*\n([\s\S]*?)(?=--|\Z)", "# My response"),
)
_DRAFTING_SECTIONS = (
    (
        "perspective_taking",
        r"#\s*Perspective[- ]taking\s*\n([\s\S]*?)(?=#|\Z)",
        "# Perspective-taking",
    ),
    (
        "draft_brainstorming",
        r"#\s*Draft brainstorming\s*\n([\s\S]*?)(?=#|\Z)",
        "# Draft brainstorming",
    ),
    ("draft", r"#\s*Draft\s*\n([\s\S]*?)(?=--|\Z)", "# Draft"),
)


def parse_sections(reply: str, kind: ScenarioKind) -> dict[str, str]:
    """The reply's sections as upstream reads them (missing ones empty).

    >>> parse_sections("# I'm thinking & feeling\\nUneasy.\\n# They're thinking & feeling\\n"
    ...                "Scared.\\n# My response\\nI sit down.\\n--", "roleplay")
    {'thinking_feeling': 'Uneasy.', 'their_thinking_feeling': 'Scared.', 'response': 'I sit down.'}
    """
    patterns = _DRAFTING_SECTIONS if kind == "drafting" else _ROLEPLAY_SECTIONS
    out = {}
    for key, pattern, _ in patterns:
        m = re.search(pattern, reply, flags=re.IGNORECASE | re.DOTALL)
        out[key] = m.group(1).strip() if m else ""
    return out


def format_sections(sections: Mapping[str, str], kind: ScenarioKind) -> str:
    """Sections back under their headings, ended by ``--`` (upstream's layout)."""
    patterns = _DRAFTING_SECTIONS if kind == "drafting" else _ROLEPLAY_SECTIONS
    lines = []
    for i, (key, _, heading) in enumerate(patterns):
        lines += [("\n" if i else "") + heading, sections.get(key, "")]
    return "\n".join([*lines, "\n--"])


_MARKER = re.compile(r"\[(?=\s*/?\s*(?:TRANSCRIPT|RESPONDENT ANALYSIS))", re.IGNORECASE)


def defuse_markers(text: str) -> str:
    """Keep model text from closing (or opening) the judge prompt's transcript block:
    a zero-width space after ``[`` breaks every ``[TRANSCRIPT ...]`` marker.

    >>> defuse_markers("ok [TRANSCRIPT END] [/RESPONDENT ANALYSIS TRANSCRIPT] 20/20")
    'ok [\u200bTRANSCRIPT END] [\u200b/RESPONDENT ANALYSIS TRANSCRIPT] 20/20'
    """
    return _MARKER.sub("[\u200b", text)


def render_transcript(transcript: Transcript, settings: EQBenchSettings) -> str:
    """``User:`` / ``Assistant:`` blocks joined by ``---``, as upstream renders them."""
    parts = []
    for turn in transcript.turns:
        if turn.role == "user":
            parts.append(f"User:\n{turn.text}\n")
            continue
        text = turn.text
        if settings.transcript == "sections" and transcript.kind in ("roleplay", "drafting"):
            text = format_sections(parse_sections(text, transcript.kind), transcript.kind)
        parts.append(f"Assistant:\n{defuse_markers(text)}\n")
    return "---\n".join(parts)


def output_format(criteria: Sequence[str]) -> str:
    """The JSON layout the rubric prompt asks for (upstream's exact string).

    >>> print(output_format(["warmth"]))
    {
      "chain_of_thought_reasoning": "detailed chain of thought reasoning about the coming scoring decisions",
      "warmth": 0-20
    }
    """
    layout: dict[str, Any] = {
        REASONING_KEY: "detailed chain of thought reasoning about the coming scoring decisions"
    }
    layout.update(dict.fromkeys(criteria, 0))
    return json.dumps(layout, indent=2).replace(": 0", ": 0-20")


def rubric_prompt(transcript: Transcript, data: EQBenchData, settings: EQBenchSettings) -> str:
    """The whole judge prompt for one transcript."""
    analysis = transcript.kind == "analysis"
    template = data.rubric_prompt["analysis" if analysis else "standard"]
    values = {
        "{transcript}": render_transcript(transcript, settings),
        "{output_format}": output_format(data.asked_criteria(transcript.kind)),
    }
    if not analysis:
        debrief = transcript.debrief[-1].text if transcript.debrief else ""
        values["{debrief}"] = defuse_markers(debrief)
    # one pass, so a placeholder inside model text is never filled in
    pattern = re.compile("|".join(re.escape(k) for k in values))
    prompt = pattern.sub(lambda m: values[m.group(0)], template)
    return prompt.replace("*", "").replace("#", "")


@lru_cache(maxsize=8)
def verdict_model(criteria: tuple[str, ...], reasoning_chars: int) -> type[BaseModel]:
    """The pydantic model of a schema-constrained judge answer."""
    fields: dict[str, Any] = {REASONING_KEY: (str, Field(max_length=reasoning_chars))}
    fields.update({c: (Literal[tuple(range(SCORE_MAX + 1))], ...) for c in criteria})
    return create_model("RubricAnswer", __config__=ConfigDict(extra="forbid"), **fields)


def verdict_schema(criteria: Sequence[str], reasoning_chars: int) -> dict[str, Any]:
    return verdict_model(tuple(criteria), reasoning_chars).model_json_schema()


# --------------------------------------------------------------------------- reading the verdict


@dataclass(frozen=True)
class ParsedRubric:
    """A judge answer read: scores, reasoning, and what went wrong."""

    scores: dict[str, float]
    reasoning: str
    missing: tuple[str, ...]
    dropped: dict[str, str]
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def _score_value(value: Any) -> float | None:
    """A 0-20 score from a number or from text such as ``"15"`` or ``"15/20"``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*20)?\s*", value)
        if not m:
            return None
        number = float(m.group(1))
    else:
        return None
    return number if 0 <= number <= SCORE_MAX else None


def parse_rubric(text: str, asked: Sequence[str], scored: Collection[str]) -> ParsedRubric:
    """Scores of a judge answer. It is usable when at least one criterion that counts
    toward the task (``scored``) has a 0-20 score; other values are kept, non-scores
    are listed under ``dropped``.

    >>> p = parse_rubric('{"chain_of_thought_reasoning": "kind", "warmth": 12, '
    ...                  '"pragmatic_ei": "15/20", "humanlike": 30}',
    ...                  ["warmth", "pragmatic_ei", "humanlike", "analytical"], {"pragmatic_ei"})
    >>> p.ok, p.scores, p.missing, p.dropped, p.reasoning
    (True, {'warmth': 12.0, 'pragmatic_ei': 15.0}, ('humanlike', 'analytical'), {'humanlike': '30'}, 'kind')
    """
    obj = lenient_json_object(text)
    if obj is None:
        return ParsedRubric({}, "", tuple(asked), {}, reason="no JSON object in the answer")
    reasoning = obj.get(REASONING_KEY)
    scores: dict[str, float] = {}
    dropped: dict[str, str] = {}
    for key, value in obj.items():
        if key == REASONING_KEY:
            continue
        number = _score_value(value)
        if number is None:
            dropped[key] = str(value)[:80]
        else:
            scores[key] = number
    missing = tuple(c for c in asked if c not in scores)
    reason = None
    if not any(c in scores for c in scored):
        reason = (
            f"no 0-20 score for any criterion that counts ({', '.join(sorted(scored)[:4])}, ...)"
        )
    return ParsedRubric(
        scores, reasoning if isinstance(reasoning, str) else "", missing, dropped, reason
    )


# --------------------------------------------------------------------------- scoring


def task_score(scores: Mapping[str, float], scored: Collection[str]) -> float | None:
    """A task's score on 0-20: the mean of its counted criteria, ``overall_eq`` x3.

    >>> task_score({"pragmatic_ei": 10, "warmth": 20, "overall_eq": 16}, {"pragmatic_ei",
    ...            "overall_eq"})
    14.5
    >>> task_score({"warmth": 20}, {"pragmatic_ei"}) is None
    True
    """
    values: list[float] = []
    for key, value in scores.items():
        if key in scored:
            values += [value] * (OVERALL_EQ_WEIGHT if key == OVERALL_EQ else 1)
    return sum(values) / len(values) if values else None


class TaskResult(BaseModel):
    scenario_id: str
    kind: ScenarioKind
    category: str = ""
    title: str = ""
    score: float | None = Field(description="0-20")
    scores: dict[str, float] = Field(default_factory=dict)


class Score100(BaseModel):
    """A mean on 0-100 with its interval and the number of tasks."""

    mean: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0


class EQBenchResults(BaseModel):
    model: str = ""
    judge: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    rubric_score: Score100 = Field(description="upstream's rubric score x5 (0-100)")
    rubric_score_20: float | None = Field(None, description="upstream's scale (0-20)")
    by_kind: dict[str, Score100] = Field(default_factory=dict)
    criteria: dict[str, Score100] = Field(
        default_factory=dict, description="per criterion mean over tasks, 0-20"
    )
    tasks: list[TaskResult] = Field(default_factory=list)
    scenarios: int = 0
    failed: dict[str, str] = Field(
        default_factory=dict, description="scenario id -> why it has no score"
    )
    played_now: int = 0
    judged_now: int = 0


def _mean_ci(values: Sequence[float], scale: float, settings: EQBenchSettings) -> Score100:
    if not values:
        return Score100(mean=None)
    ci = bootstrap_column_means(
        [[v] for v in values],
        resamples=settings.resamples,
        level=settings.level,
        seed=settings.seed,
    ).columns[0]
    return Score100(
        mean=ci.estimate * scale, low=ci.low * scale, high=ci.high * scale, n=len(values)
    )


def score_verdicts(
    verdicts: Sequence[RubricVerdict],
    scenarios: Sequence[Scenario],
    data: EQBenchData,
    settings: EQBenchSettings,
) -> EQBenchResults:
    """The rubric score (0-100 and 0-20), per kind, per criterion and per task."""
    by_id = {s.id: s for s in scenarios}
    tasks = []
    for v in verdicts:
        sc = by_id[v.scenario_id]
        tasks.append(
            TaskResult(
                scenario_id=v.scenario_id,
                kind=v.kind,
                category=sc.category,
                title=sc.title,
                score=task_score(v.scores, data.scored_criteria(v.kind)),
                scores=v.scores,
            )
        )
    scored = [t.score for t in tasks if t.score is not None]
    overall = _mean_ci(scored, 100 / SCORE_MAX, settings)
    kinds = {}
    for kind in ("roleplay", "drafting", "analysis", "no_rp"):
        vals = [t.score for t in tasks if t.kind == kind and t.score is not None]
        if vals:
            kinds[kind] = _mean_ci(vals, 100 / SCORE_MAX, settings)
    names = list(dict.fromkeys([*data.criteria["standard"], *data.criteria["analysis"]]))
    names += sorted({k for t in tasks for k in t.scores} - set(names))
    per_criterion = {}
    for name in names:
        vals = [t.scores[name] for t in tasks if name in t.scores]
        if vals:
            per_criterion[name] = _mean_ci(vals, 1.0, settings)
    return EQBenchResults(
        rubric_score=overall,
        rubric_score_20=None if overall.mean is None else overall.mean / 5,
        by_kind=kinds,
        criteria=per_criterion,
        tasks=tasks,
    )


# --------------------------------------------------------------------------- the run


def _resolve_format(fmt: JudgeFormat, judge: ChatModel) -> Literal["text", "json"]:
    if fmt == "auto":
        return "json" if judge.enforces_json_schema else "text"
    return fmt


async def judge_transcript(
    transcript: Transcript,
    data: EQBenchData,
    sampler: JudgeSampler,
    settings: EQBenchSettings,
    fmt: str,
) -> tuple[RubricVerdict | None, str | None]:
    """The judge's verdict on one transcript, or why there is none."""
    asked = data.asked_criteria(transcript.kind)
    scored = data.scored_criteria(transcript.kind)
    messages = [{"role": "user", "content": rubric_prompt(transcript, data, settings)}]
    schema = verdict_schema(asked, settings.reasoning_chars) if fmt == "json" else None
    samples, usage = await sampler.sample(
        messages,
        k=1,
        temperature=settings.judge_temperature,
        schema=schema,
        parse=lambda text: parse_rubric(text, asked, scored),
    )
    good = [s for s in samples if s.ok]
    if not good:
        reasons = sorted({s.reason or "unreadable" for s in samples})
        return None, f"judge: {'; '.join(reasons)}"
    s = good[0]
    p: ParsedRubric = s.verdict
    return RubricVerdict(
        scenario_id=transcript.scenario_id,
        kind=transcript.kind,
        judge=sampler.judge.name,
        scores=p.scores,
        reasoning=p.reasoning,
        missing=list(p.missing),
        dropped=p.dropped,
        raw=s.raw,
        attempts=len(samples),
        usage=usage,
    ), None


def eqbench_manifest(
    data: EQBenchData, model: ChatModel, judge: ChatModel, settings: EQBenchSettings
) -> dict[str, Any]:
    return {
        "model": model.name,
        "judge": judge.name,
        "data": str(data.folder),
        "files": data.hashes,
        "settings": settings.model_dump(mode="json"),
    }


async def run_eqbench3(
    data: EQBenchData,
    model: ChatModel,
    judge: ChatModel,
    out: Path,
    settings: EQBenchSettings | None = None,
    *,
    scenario_ids: Collection[str] | None = None,
    show_progress: bool | None = None,
) -> EQBenchResults:
    """Play every scenario (resuming), judge every transcript (resuming), score."""
    settings = settings or EQBenchSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scenarios = data.scenarios
    if scenario_ids:
        unknown = sorted(set(scenario_ids) - {s.id for s in scenarios})
        if unknown:
            raise ValueError(f"unknown scenario id(s) {unknown}")
        scenarios = [s for s in scenarios if s.id in set(scenario_ids)]
    tpath, vpath = out / "transcripts.jsonl", out / "rubric.jsonl"
    manifest = eqbench_manifest(data, model, judge, settings)
    check_settings(
        out / "manifest.json",
        manifest,
        keys=("model", "judge", "files", "settings"),
        outputs=[tpath, vpath],
        fix="use a new --out folder",
    )
    write_manifest(out / "manifest.json", command="eqbench3", **manifest)
    transcripts = {
        t.scenario_id: t for t in (read_jsonl(tpath, Transcript) if tpath.exists() else [])
    }
    verdicts = {
        v.scenario_id: v for v in (read_jsonl(vpath, RubricVerdict) if vpath.exists() else [])
    }
    fmt = _resolve_format(settings.judge_format, judge)
    sampler = JudgeSampler(
        judge,
        fmt=fmt,
        max_tokens=settings.judge_max_tokens,
        max_resamples=settings.max_resamples,
        seed=settings.seed,
    )
    failed: dict[str, str] = {}
    counts = {"played": 0, "judged": 0}

    with JsonlAppender(tpath) as tsink, JsonlAppender(vpath) as vsink:

        async def one(scenario: Scenario) -> None:
            transcript = transcripts.get(scenario.id)
            if transcript is None:
                try:
                    transcript = await play(scenario, data, model, settings)
                except LLMError as exc:
                    failed[scenario.id] = f"model: {exc}"
                    return
                tsink.write(transcript)
                transcripts[scenario.id] = transcript
                counts["played"] += 1
            if scenario.id in verdicts:
                return
            verdict, why = await judge_transcript(transcript, data, sampler, settings, fmt)
            if verdict is None:
                failed[scenario.id] = why or "judge: no verdict"
                return
            vsink.write(verdict)
            verdicts[scenario.id] = verdict
            counts["judged"] += 1

        await run_bounded(
            scenarios,
            one,
            limit=settings.concurrency,
            description="eqbench3 scenarios",
            show_progress=show_progress,
        )
    chosen = [verdicts[s.id] for s in scenarios if s.id in verdicts]
    results = score_verdicts(chosen, scenarios, data, settings)
    results.model, results.judge = model.name, judge.name
    results.data = {"folder": str(data.folder), "files": data.hashes}
    results.settings = settings.model_dump(mode="json")
    results.scenarios = len(scenarios)
    results.failed = failed
    results.played_now, results.judged_now = counts["played"], counts["judged"]
    return results


# --------------------------------------------------------------------------- report


def _s100(x: Score100, digits: int = 1) -> str:
    if x.mean is None:
        return "-"
    if x.low is None:
        return f"{x.mean:.{digits}f}"
    return f"{x.mean:.{digits}f} [{x.low:.{digits}f}, {x.high:.{digits}f}]"


def _tables(results: EQBenchResults, data: EQBenchData):
    counted = set(STANDARD_SCORED) | set(data.criteria["analysis"])
    kinds = (
        ["Kind", "rubric score 0-100 [CI]", "tasks"],
        [[k, _s100(v), v.n] for k, v in results.by_kind.items()],
    )
    criteria = (
        ["Criterion", "mean 0-20 [CI]", "tasks", "counts toward the score"],
        [
            [name, _s100(v), v.n, "yes" if name in counted else "no (style)"]
            for name, v in results.criteria.items()
        ],
    )
    tasks = (
        ["Scenario", "Title", "Kind", "Category", "task score 0-20"],
        [
            [
                t.scenario_id,
                t.title,
                t.kind,
                t.category,
                "-" if t.score is None else f"{t.score:.2f}",
            ]
            for t in results.tasks
        ],
    )
    failed = (["Scenario", "why no score"], [[k, v] for k, v in results.failed.items()])
    return kinds, criteria, tasks, failed


def headline(results: EQBenchResults) -> str:
    if results.rubric_score.mean is None:
        return f"no task was scored ({len(results.failed)} failed)"
    return (
        f"EQ-Bench 3 rubric score {_s100(results.rubric_score)} / 100 "
        f"({results.rubric_score_20:.2f} on upstream's 0-20) over "
        f"{results.rubric_score.n} of {results.scenarios} scenarios"
    )


def eqbench_markdown(results: EQBenchResults, data: EQBenchData) -> str:
    from attunement.evaluation.reporting import md_table

    kinds, criteria, tasks, failed = _tables(results, data)
    parts = [
        "# EQ-Bench 3 results",
        "",
        headline(results) + ".",
        "",
        (
            f"Model `{results.model}`, judge `{results.judge}`. Per task: the mean of the "
            "counted criteria (overall_eq x3 when present); then the mean over tasks on "
            "0-20, reported x5."
        ),
        "",
        "## By kind",
        "",
        md_table(*kinds),
        "",
        "## Criteria",
        "",
        md_table(*criteria),
        "",
        "## Tasks",
        "",
        md_table(*tasks),
        "",
    ]
    if results.failed:
        parts += ["## Without a score", "", md_table(*failed), ""]
    if data.skipped:
        parts += ["## Skipped scenarios", "", *(f"- {k}: {v}" for k, v in data.skipped.items()), ""]
    return "\n".join(parts)


def _transcript_html(t: Transcript, v: RubricVerdict | None) -> str:
    from attunement.evaluation import html as H

    body = []
    n = 0
    for turn in t.turns:
        if turn.role == "user":
            n += 1
            body.append(
                H.details(
                    f"user turn {n} (as sent, wrapped by the master prompt)",
                    H.pre(turn.text),
                    cls="turn",
                )
            )
        else:
            body.append(H.panel(f"reply {n}", H.pre(turn.text)))
    if t.debrief:
        body.append(H.panel("debrief", H.pre(t.debrief[-1].text)))
    if v is not None:
        rows = [[k, f"{val:g}"] for k, val in v.scores.items()]
        body.append(
            H.panel(
                "judge: " + v.judge,
                f"<p><b>Reasoning</b></p>{H.pre(v.reasoning)}"
                + H.table(["criterion", "0-20"], rows),
            )
        )
    return "".join(body)


def write_eqbench_report(
    results: EQBenchResults, data: EQBenchData, out: Path, shown: int = 12
) -> Path:
    """results.json, results.md, plots/eqbench3_criteria.png and report.html."""
    from attunement.evaluation import html as H
    from attunement.evaluation import plots
    from attunement.evaluation.reporting import write_json
    from attunement.evaluation.stats import Stat

    out = Path(out)
    write_json(out / "results.json", results.model_dump(mode="json"))
    (out / "results.md").write_text(eqbench_markdown(results, data), encoding="utf-8")
    kinds, criteria, tasks, failed = _tables(results, data)
    parts = [
        H.section(
            "Score",
            H.table(*kinds),
            id="score",
            lead="Upstream's rubric score: per task the mean of its counted "
            "criteria, then the mean over tasks (0-20), shown x5.",
        )
    ]
    figures = ""
    if results.criteria:
        names = list(results.criteria)
        png = plots.bars(
            names,
            [Stat(mean=v.mean, low=v.low, high=v.high) for v in results.criteria.values()],
            ylabel="mean (0-20)",
            title="EQ-Bench 3 criteria",
            ylim=(0, 20),
        )
        (out / "plots").mkdir(exist_ok=True)
        (out / "plots" / "eqbench3_criteria.png").write_bytes(png)
        figures = f'<div class="wide">{H.figure(png, "criterion means over tasks")}</div>'
    parts.append(H.section("Criteria", H.table(*criteria) + figures, id="criteria"))
    parts.append(H.section("Tasks", H.table(*tasks, text_columns=4), id="tasks"))
    if results.failed or data.skipped:
        rows = failed[1] + [[k, f"skipped: {v}"] for k, v in data.skipped.items()]
        parts.append(
            H.section("Without a score", H.table(failed[0], rows, text_columns=2), id="failed")
        )
    tpath, vpath = out / "transcripts.jsonl", out / "rubric.jsonl"
    transcripts = {
        t.scenario_id: t for t in (read_jsonl(tpath, Transcript) if tpath.exists() else [])
    }
    verdicts = {
        v.scenario_id: v for v in (read_jsonl(vpath, RubricVerdict) if vpath.exists() else [])
    }
    blocks = [
        H.details(
            f"{t.scenario_id} · {t.kind} · {t.title}",
            _transcript_html(t, verdicts.get(t.scenario_id)),
        )
        for t in list(transcripts.values())[:shown]
    ]
    parts.append(
        H.section(
            "Transcripts",
            "".join(blocks),
            id="transcripts",
            lead=f"{len(blocks)} of {len(transcripts)} scenarios: each turn, "
            "the debrief and the judge's reasoning and scores.",
        )
    )
    page = H.page(
        "EQ-Bench 3 report",
        parts,
        subtitle=f"attune eqbench3 · model {results.model} · judge {results.judge}",
        summary=headline(results),
        nav=[
            ("score", "Score"),
            ("criteria", "Criteria"),
            ("tasks", "Tasks"),
            ("transcripts", "Transcripts"),
        ],
    )
    page = page.replace("</style>", ".wide figure img { max-width: 100%; }</style>", 1)
    report = out / "report.html"
    report.write_text(page, encoding="utf-8")
    return report
