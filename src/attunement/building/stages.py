"""The LLM stages of a build: persona, Big Five, situations, queries, inspection.

Each stage function renders its prompt template (``prompts/build_*.txt``)
through :mod:`attunement.render`, asks for JSON constrained by a schema, checks
the answer with pydantic and the stage's own rules, and returns one
:class:`StageRecord`: ``ok`` with the output, or ``rejected`` with a
``reason_code`` (for counting) and a ``reason`` (for reading). A rejection is
either a verdict of the model (the persona gate, a failed inspection, no
situation supported by the evidence) or an answer that stayed invalid after
the bounded retries; nothing is ever filled in by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from attunement.building.config import INSPECTION_CHECKS, BuildConfig
from attunement.building.llm_io import (
    InvalidOutput,
    StageSettings,
    array,
    ask_json,
    enum,
    obj,
    text,
)
from attunement.llm import ChatModel
from attunement.prompts import load_prompt
from attunement.records import (
    BIG_FIVE_TRAITS,
    BigFive,
    Category,
    MemoryItem,
    Persona,
    Query,
    Situation,
    UserHistory,
)
from attunement.render import fence, render_memories, render_persona, render_situation

LANGUAGE_NAMES = {
    "en": "English", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ru": "Russian",
    "es": "Spanish", "fr": "French", "de": "German", "it": "Italian", "pt": "Portuguese",
    "ar": "Arabic", "he": "Hebrew", "el": "Greek", "hi": "Hindi", "th": "Thai",
    "tr": "Turkish", "nl": "Dutch", "pl": "Polish", "uk": "Ukrainian", "vi": "Vietnamese",
}

CATEGORY_GOALS = {
    Category.ES: "comfort and being understood",
    Category.HEQ: "a tactful, emotionally aware way through a delicate moment with someone",
    Category.SS: "practical advice on how to act or what to say to other people",
}

#: the prompt template of each LLM stage (their versions go into the manifest)
STAGE_PROMPTS = {
    "extract": "build_extract",
    "persona": "build_persona",
    "bigfive": "build_bigfive",
    "situations": "build_situations",
    "queries": "build_query",
    "inspect": "build_inspect",
}


class StageRecord(BaseModel):
    """One line of ``stages/<stage>.jsonl``: the outcome of a stage for one key."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    key: str
    user_id: str
    status: Literal["ok", "rejected"]
    reason_code: str | None = None
    reason: str | None = None
    attempts: int = 0
    output: dict[str, Any] = Field(default_factory=dict)
    failures: list[str] = Field(default_factory=list)


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code.split("-")[0].lower(), code)


def user_turns_excerpt(user: UserHistory, max_chars: int, turn_chars: int) -> str:
    """The user's own turns, each cut to ``turn_chars``, until ``max_chars`` are used."""
    lines: list[str] = []
    used = 0
    for session in user.sessions:
        for turn in session.turns:
            if turn.role != "user" or not turn.text.strip():
                continue
            body = " ".join(turn.text.split())
            if len(body) > turn_chars:
                body = body[:turn_chars].rstrip() + " ..."
            line = f"- {body}"
            if used + len(line) > max_chars:
                return "\n".join(lines)
            lines.append(line)
            used += len(line) + 1
    return "\n".join(lines)


def _memories_text(memories: Sequence[MemoryItem], config: BuildConfig) -> str:
    return render_memories(memories, limit=config.max_prompt_memories) or "(none)"


def _known_ids(ids: Sequence[str], known: set[str], what: str) -> list[str]:
    out: list[str] = []
    for mid in ids:
        mid = mid.strip()
        if mid not in known:
            raise InvalidOutput(f"{what} cites unknown memory id {mid!r}")
        if mid not in out:
            out.append(mid)
    return out


def _record(stage: str, key: str, user: UserHistory, asked: Any, *, reject_code: str,
            output: dict[str, Any] | None = None) -> StageRecord:
    if asked.ok:
        return StageRecord(stage=stage, key=key, user_id=user.user_id, status="ok",
                           attempts=asked.attempts, output=output or {},
                           failures=asked.failures)
    return StageRecord(stage=stage, key=key, user_id=user.user_id, status="rejected",
                       reason_code=reject_code, reason=asked.reason, attempts=asked.attempts,
                       failures=asked.failures)


class _Lenient(BaseModel):
    """Stage answers: extra keys from servers without schema support are ignored."""

    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------------- persona


class _PersonaOut(_Lenient):
    profile: str
    topics: list[str] = Field(default_factory=list)
    is_deep: bool
    gate_reason: str


def persona_schema() -> dict[str, Any]:
    return obj({
        "profile": text(500, 20),
        "topics": array(text(40), max_items=5),
        "is_deep": {"type": "boolean"},
        "gate_reason": text(160),
    })


async def run_persona(model: ChatModel, user: UserHistory, config: BuildConfig,
                      *, seed: int | None = None) -> StageRecord:
    """Persona profile, topics and the depth gate (is there enough for empathy queries?)."""
    template = load_prompt(STAGE_PROMPTS["persona"])
    messages = template.render(
        memories=_memories_text(user.memories, config),
        user_turns=fence("user_messages", user_turns_excerpt(
            user, config.user_text_chars, config.turn_chars) or "(none)"),
    )

    def parse(data: dict[str, Any]) -> Persona:
        out = _PersonaOut.model_validate(data)
        profile = out.profile.strip()
        if len(profile.split()) < 5:
            raise InvalidOutput(f"profile too short: {profile!r}")
        if not out.gate_reason.strip():
            raise InvalidOutput("gate_reason is empty")
        topics = []
        for t in out.topics:
            t = t.strip()
            if t and t.lower() not in (x.lower() for x in topics):
                topics.append(t)
        return Persona(profile=profile, is_deep=out.is_deep,
                       gate_reason=out.gate_reason.strip(), topics=topics)

    asked = await ask_json(model, messages, persona_schema(), parse, config.persona, seed=seed)
    if asked.ok and not asked.value.is_deep:
        return StageRecord(stage="persona", key=user.user_id, user_id=user.user_id,
                           status="rejected", reason_code="persona.gate",
                           reason=f"persona gate: {asked.value.gate_reason}",
                           attempts=asked.attempts, output=asked.value.model_dump(),
                           failures=asked.failures)
    return _record("persona", user.user_id, user, asked, reject_code="persona.invalid_output",
                   output=asked.value.model_dump() if asked.ok else None)


# --------------------------------------------------------------------------- Big Five


class _TraitOut(_Lenient):
    level: Literal["low", "medium", "high"]
    reason: str


def bigfive_schema() -> dict[str, Any]:
    trait = obj({"level": enum(["low", "medium", "high"]), "reason": text(120)})
    return obj({t: trait for t in BIG_FIVE_TRAITS})


async def run_bigfive(model: ChatModel, user: UserHistory, persona: Persona,
                      config: BuildConfig, *, seed: int | None = None) -> StageRecord:
    """Each Big Five trait low / medium / high with a reason grounded in memory."""
    template = load_prompt(STAGE_PROMPTS["bigfive"])
    messages = template.render(persona=render_persona(persona, with_big_five=False),
                               memories=_memories_text(user.memories, config))

    def parse(data: dict[str, Any]) -> BigFive:
        levels: dict[str, str] = {}
        reasons: dict[str, str] = {}
        for trait in BIG_FIVE_TRAITS:
            if trait not in data:
                raise InvalidOutput(f"missing trait {trait!r}")
            out = _TraitOut.model_validate(data[trait])
            if not out.reason.strip():
                raise InvalidOutput(f"{trait}: empty reason")
            levels[trait] = out.level
            reasons[trait] = out.reason.strip()
        return BigFive(**levels, justifications=reasons)

    asked = await ask_json(model, messages, bigfive_schema(), parse, config.bigfive, seed=seed)
    return _record("bigfive", user.user_id, user, asked, reject_code="bigfive.invalid_output",
                   output=asked.value.model_dump() if asked.ok else None)


# --------------------------------------------------------------------------- situations


class _SupportedOut(_Lenient):
    supported: Literal[True]
    description: str
    emotion: str = ""
    relevant_memory_ids: list[str]


class _UnsupportedOut(_Lenient):
    supported: Literal[False]
    why_not: str


def situations_schema(memory_ids: Sequence[str], categories: Sequence[Category]
                      ) -> dict[str, Any]:
    """One explicit decision per category: a grounded situation, or why there is none."""
    decision = {"anyOf": [
        obj({"supported": {"const": True},
             "description": text(450, 20),
             "emotion": text(24),
             "relevant_memory_ids": array(enum(memory_ids), min_items=1, max_items=4)}),
        obj({"supported": {"const": False}, "why_not": text(160)}),
    ]}
    return obj({c.value: decision for c in categories})


async def run_situations(model: ChatModel, user: UserHistory, persona: Persona,
                         config: BuildConfig, *, seed: int | None = None) -> StageRecord:
    """Up to one situation per category, only where the evidence supports it.

    The model decides for each category explicitly; an unsupported category is
    recorded with the model's reason, never filled in.
    """
    template = load_prompt(STAGE_PROMPTS["situations"])
    messages = template.render(persona=render_persona(persona),
                               memories=_memories_text(user.memories, config))
    known = {m.memory_id for m in user.memories}
    unsupported: dict[str, str] = {}

    def parse(data: dict[str, Any]) -> list[Situation]:
        unsupported.clear()
        result: list[Situation] = []
        for cat in config.categories:
            raw = data.get(cat.value)
            if not isinstance(raw, dict):
                raise InvalidOutput(f"no decision for category {cat.value}")
            if raw.get("supported") is False:
                why = _UnsupportedOut.model_validate(raw).why_not.strip()
                unsupported[cat.value] = why or "(no reason given)"
                continue
            s = _SupportedOut.model_validate(raw)
            description = " ".join(s.description.split())
            if len(description.split()) < 8:
                raise InvalidOutput(f"{cat.value}: description too short: {description!r}")
            ids = _known_ids(s.relevant_memory_ids, known, cat.value)
            if not ids:
                raise InvalidOutput(f"{cat.value}: the situation cites no memory item")
            result.append(Situation(category=cat, description=description,
                                    emotion=s.emotion.strip() or None, relevant_memory_ids=ids))
        return result

    schema = situations_schema(sorted(known), config.categories)
    asked = await ask_json(model, messages, schema, parse, config.situations, seed=seed)
    if not asked.ok:
        return _record("situations", user.user_id, user, asked,
                       reject_code="situations.invalid_output")
    output = {"situations": [s.model_dump(mode="json") for s in asked.value],
              "unsupported": dict(unsupported)}
    if not asked.value:
        return StageRecord(stage="situations", key=user.user_id, user_id=user.user_id,
                           status="rejected", reason_code="situations.none_supported",
                           reason="no category is supported by the evidence: " + "; ".join(
                               f"{k}: {v}" for k, v in unsupported.items()),
                           attempts=asked.attempts, output=output, failures=asked.failures)
    return StageRecord(stage="situations", key=user.user_id, user_id=user.user_id, status="ok",
                       attempts=asked.attempts, output=output, failures=asked.failures)


# --------------------------------------------------------------------------- queries


class _QueryOut(_Lenient):
    query: str
    relevant_memory_ids: list[str] = Field(default_factory=list)
    reasoning: str = ""


def query_schema(memory_ids: Sequence[str]) -> dict[str, Any]:
    return obj({
        "query": text(450, 10),
        "relevant_memory_ids": array(enum(memory_ids), min_items=1, max_items=5),
        "reasoning": text(160),
    })


def item_key(user_id: str, category: Category) -> str:
    """The id of a user's situation, query and example for one category."""
    return f"{user_id}:{category.value}"


async def run_query(model: ChatModel, user: UserHistory, persona: Persona, situation: Situation,
                    config: BuildConfig, *, seed: int | None = None) -> StageRecord:
    """One query in the user's own voice and language for one situation."""
    template = load_prompt(STAGE_PROMPTS["queries"])
    key = item_key(user.user_id, situation.category)
    known = {m.memory_id for m in user.memories}
    language = language_name(user.language)
    messages = template.render(
        persona=render_persona(persona),
        memories=_memories_text(user.memories, config),
        user_turns=fence("user_messages", user_turns_excerpt(
            user, config.user_text_chars // 2, config.turn_chars) or "(none)"),
        category_title=situation.category.title,
        category_goal=CATEGORY_GOALS[situation.category],
        situation=situation.description,
        language=language,
    )

    def parse(data: dict[str, Any]) -> Query:
        out = _QueryOut.model_validate(data)
        body = out.query.strip()
        if len(body.split()) < config.query_min_words:
            raise InvalidOutput(f"query too short: {body!r}")
        if body.lower() == situation.description.lower():
            raise InvalidOutput("query repeats the situation description")
        ids = _known_ids(out.relevant_memory_ids, known, "query")
        if not ids:
            raise InvalidOutput("query cites no memory item")
        return Query(query_id=key, category=situation.category, text=body, situation=situation,
                     relevant_memory_ids=ids, reasoning=out.reasoning.strip() or None,
                     language=user.language)

    asked = await ask_json(model, messages, query_schema(sorted(known)), parse, config.queries,
                           seed=seed)
    return _record("queries", key, user, asked, reject_code="queries.invalid_output",
                   output=asked.value.model_dump(mode="json") if asked.ok else None)


# --------------------------------------------------------------------------- inspection


class _InspectOut(_Lenient):
    reason: str
    emotional_need: bool
    logical_consistency: bool
    role_awareness: bool
    language: bool


def inspect_schema() -> dict[str, Any]:
    return obj({"reason": text(200), **{c: {"type": "boolean"} for c in INSPECTION_CHECKS}})


async def run_inspect(model: ChatModel, user: UserHistory, persona: Persona, query: Query,
                      config: BuildConfig, *, seed: int | None = None) -> StageRecord:
    """Check emotional need, logical consistency, role awareness and language."""
    template = load_prompt(STAGE_PROMPTS["inspect"])
    messages = template.render(
        persona=render_persona(persona),
        memories=_memories_text(user.memories, config),
        category_title=query.category.title,
        situation=render_situation(query.situation),
        query=fence("message", query.text),
        language=language_name(query.language),
    )

    def parse(data: dict[str, Any]) -> _InspectOut:
        out = _InspectOut.model_validate(data)
        if not out.reason.strip():
            raise InvalidOutput("empty reason")
        return out

    asked = await ask_json(model, messages, inspect_schema(), parse, config.inspect, seed=seed)
    if not asked.ok:
        return _record("inspect", query.query_id, user, asked,
                       reject_code="inspect.invalid_output")
    out = asked.value
    checks = {c: bool(getattr(out, c)) for c in INSPECTION_CHECKS}
    failed = [c for c in INSPECTION_CHECKS if not checks[c]]
    output = {"checks": checks, "reason": out.reason.strip(), "passed": not failed}
    if failed:
        return StageRecord(stage="inspect", key=query.query_id, user_id=user.user_id,
                           status="rejected", reason_code=f"inspect.{failed[0]}",
                           reason=f"failed {', '.join(failed)}: {out.reason.strip()}",
                           attempts=asked.attempts, output=output, failures=asked.failures)
    return StageRecord(stage="inspect", key=query.query_id, user_id=user.user_id, status="ok",
                       attempts=asked.attempts, output=output, failures=asked.failures)


__all__ = [
    "LANGUAGE_NAMES", "STAGE_PROMPTS", "StageRecord", "StageSettings", "item_key",
    "language_name", "run_bigfive", "run_inspect", "run_persona", "run_query", "run_situations",
    "user_turns_excerpt",
]
