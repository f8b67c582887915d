"""The LLM stages of a build: persona, Big Five, situations, queries, inspection.

Each stage is prepared as a :class:`StageCall` for one key: the rendered
prompt (``prompts/build_*.txt`` through :mod:`attunement.render`), the JSON
schema generated from the stage's answer model, the parser with the stage's
own rules, and the model that answers. A call has a :attr:`StageCall.fingerprint`
(model, prompt version, rendered messages, schema, settings, seed) computed
before any request, so a resumed build can tell a finished record from a stale
one without calling anything. Running the call gives one :class:`StageRecord`:
``ok`` with the output, or ``rejected`` with a ``reason_code`` (for counting)
and a ``reason`` (for reading). A rejection is either a verdict of the model
(the persona gate, a failed inspection gate, no situation supported by the
evidence) or an answer that stayed invalid after the bounded retries; nothing
is ever filled in by hand.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from attunement.building.config import INSPECTION_CHECKS, BuildConfig
from attunement.building.language import language_code, language_name, text_units
from attunement.building.llm_io import (
    MEMORY_ID,
    Answer,
    Asked,
    InvalidOutput,
    StageSettings,
    answer_schema,
    ask_json,
    json_example,
)
from attunement.llm import ChatModel, Message
from attunement.prompts import PromptTemplate, load_prompt
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

T = TypeVar("T")


class StageRecord(BaseModel):
    """One line of ``stages/<stage>.jsonl``: the outcome of a stage for one key.

    ``model``, ``prompt_version`` and ``fingerprint`` say what produced it: a
    resumed build compares the fingerprint with the one it would use now.
    ``next_sample`` is the first sample number not used yet (a redo starts
    there, so a cache never serves the old answer again).
    """

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
    model: str | None = None
    prompt_version: str | None = None
    fingerprint: str | None = None
    next_sample: int = 0
    failure_kinds: list[str] = Field(default_factory=list)

    @classmethod
    def from_call(
        cls, call: StageCall[Any], status: str, asked: Asked[Any] | None, **fields: Any
    ) -> StageRecord:
        samples = asked.samples if asked is not None else []
        return cls(
            stage=call.stage,
            key=call.key,
            user_id=call.user_id,
            status=status,
            attempts=asked.attempts if asked is not None else 0,
            failures=asked.failures if asked is not None else [],
            failure_kinds=asked.kinds if asked is not None else [],
            model=call.model.name,
            prompt_version=call.template.version,
            fingerprint=call.fingerprint,
            next_sample=(max(samples) + 1) if samples else call.sample_base,
            **fields,
        )

    @classmethod
    def ok(cls, call: StageCall[Any], asked: Asked[Any], output: dict[str, Any]) -> StageRecord:
        """The record of a call whose answer was accepted."""
        return cls.from_call(call, "ok", asked, output=output)

    @classmethod
    def rejected(
        cls,
        call: StageCall[Any],
        code: str,
        reason: str,
        asked: Asked[Any] | None = None,
        output: dict[str, Any] | None = None,
    ) -> StageRecord:
        """The record of a rejection: ``code`` is prefixed with the stage's name."""
        return cls.from_call(
            call,
            "rejected",
            asked,
            reason_code=f"{call.stage}.{code}",
            reason=reason,
            output=output or {},
        )


def _digest(doc: Any) -> str:
    blob = json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def instructions_of(template: PromptTemplate) -> str:
    """The template's own wording (what an answer must not simply repeat)."""
    return "\n".join(body for _, body in template.messages)


@dataclass
class StageCall(Generic[T]):
    """Everything one stage needs to answer one key, prepared before any request."""

    stage: str
    key: str
    user_id: str
    model: ChatModel
    template: PromptTemplate
    messages: list[Message]
    schema: dict[str, Any]
    parse: Callable[[dict[str, Any]], T]
    settings: StageSettings
    decide: Callable[[StageCall[T], Asked[T]], StageRecord]
    seed: int | None = None
    rules: dict[str, Any] = field(default_factory=dict)  # settings the parser applies
    sample_base: int = 0

    @property
    def fingerprint(self) -> str:
        """Hash of what determines the answer: model, prompt, messages, schema, settings."""
        return _digest(
            {
                "stage": self.stage,
                "model": self.model.name,
                "prompt": [self.template.name, self.template.version],
                "messages": self.messages,
                "schema": self.schema,
                "settings": self.settings.model_dump(),
                "seed": self.seed,
                "rules": self.rules,
            }
        )

    async def run(self) -> StageRecord:
        asked = await ask_json(
            self.model,
            self.messages,
            self.schema,
            self.parse,
            self.settings,
            seed=self.seed,
            sample_base=self.sample_base,
            instructions=instructions_of(self.template),
        )
        return self.decide(self, asked)

    def ok(self, asked: Asked[Any], output: dict[str, Any]) -> StageRecord:
        return StageRecord.ok(self, asked, output)

    def rejected(
        self,
        code: str,
        reason: str,
        asked: Asked[Any] | None = None,
        output: dict[str, Any] | None = None,
    ) -> StageRecord:
        return StageRecord.rejected(self, code, reason, asked, output)

    def invalid(self, asked: Asked[Any]) -> StageRecord:
        """The record of an answer that stayed invalid after every attempt."""
        code = "template_echo" if asked.last_kind == "template_echo" else "invalid_output"
        return self.rejected(code, asked.reason or "invalid output", asked)


def _ok_or_invalid(
    to_output: Callable[[Any], dict[str, Any]],
) -> Callable[[StageCall[Any], Asked[Any]], StageRecord]:
    def decide(call: StageCall[Any], asked: Asked[Any]) -> StageRecord:
        return call.ok(asked, to_output(asked.value)) if asked.ok else call.invalid(asked)

    return decide


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


def _min_units(text: str, minimum: int, what: str) -> str:
    body = " ".join(text.split())
    if text_units(body) < minimum:
        raise InvalidOutput(f"{what} too short: {body!r}")
    return body


def _stage_call(
    stage: str,
    key: str,
    user: UserHistory,
    model: ChatModel,
    config: BuildConfig,
    schema: dict[str, Any],
    parse: Callable[[dict[str, Any]], T],
    decide: Callable[[StageCall[T], Asked[T]], StageRecord],
    seed: int | None,
    rules: dict[str, Any] | None = None,
    **values: Any,
) -> StageCall[T]:
    template = load_prompt(STAGE_PROMPTS[stage])
    messages = template.render(answer_format=json_example(schema), **values)
    return StageCall(
        stage=stage,
        key=key,
        user_id=user.user_id,
        model=model,
        template=template,
        messages=messages,
        schema=schema,
        parse=parse,
        settings=config.stage_settings(stage),
        decide=decide,
        seed=seed,
        rules=rules or {},
    )


Text = Annotated[str, Field(min_length=1, max_length=160)]
MemoryId = Annotated[str, Field(max_length=64, json_schema_extra=MEMORY_ID)]


# --------------------------------------------------------------------------- persona


class PersonaAnswer(Answer):
    model_config = ConfigDict(title="persona")

    profile: Annotated[str, Field(min_length=20, max_length=500)]
    topics: Annotated[list[Annotated[str, Field(min_length=1, max_length=40)]], Field(max_length=5)]
    is_deep: bool
    gate_reason: Text


def persona_call(
    user: UserHistory, model: ChatModel, config: BuildConfig, *, seed: int | None = None
) -> StageCall[Persona]:
    """Persona profile, topics and the depth gate (is there enough for empathy queries?)."""

    def parse(data: dict[str, Any]) -> Persona:
        out = PersonaAnswer.model_validate(data)
        profile = _min_units(out.profile, 5, "profile")
        topics: list[str] = []
        for t in out.topics:
            t = t.strip()
            if t and t.lower() not in (x.lower() for x in topics):
                topics.append(t)
        return Persona(
            profile=profile, is_deep=out.is_deep, gate_reason=out.gate_reason.strip(), topics=topics
        )

    def decide(call: StageCall[Persona], asked: Asked[Persona]) -> StageRecord:
        if not asked.ok:
            return call.invalid(asked)
        if not asked.value.is_deep:
            return call.rejected(
                "gate", f"persona gate: {asked.value.gate_reason}", asked, asked.value.model_dump()
            )
        return call.ok(asked, asked.value.model_dump())

    return _stage_call(
        "persona",
        user.user_id,
        user,
        model,
        config,
        answer_schema(PersonaAnswer),
        parse,
        decide,
        seed,
        memories=_memories_text(user.memories, config),
        user_turns=fence(
            "user_messages",
            user_turns_excerpt(user, config.user_text_chars, config.turn_chars) or "(none)",
        ),
    )


# --------------------------------------------------------------------------- Big Five


class TraitAnswer(Answer):
    level: Literal["low", "medium", "high"]
    reason: Annotated[str, Field(min_length=1, max_length=120)]


class BigFiveAnswer(Answer):
    model_config = ConfigDict(title="bigfive")

    openness: TraitAnswer
    conscientiousness: TraitAnswer
    extraversion: TraitAnswer
    agreeableness: TraitAnswer
    neuroticism: TraitAnswer


def bigfive_call(
    user: UserHistory,
    persona: Persona,
    model: ChatModel,
    config: BuildConfig,
    *,
    seed: int | None = None,
) -> StageCall[BigFive]:
    """Each Big Five trait low / medium / high with a reason grounded in memory."""

    def parse(data: dict[str, Any]) -> BigFive:
        out = BigFiveAnswer.model_validate(data)
        traits = {t: getattr(out, t) for t in BIG_FIVE_TRAITS}
        return BigFive(
            **{t: a.level for t, a in traits.items()},
            justifications={t: a.reason.strip() for t, a in traits.items()},
        )

    return _stage_call(
        "bigfive",
        user.user_id,
        user,
        model,
        config,
        answer_schema(BigFiveAnswer),
        parse,
        _ok_or_invalid(lambda v: v.model_dump()),
        seed,
        persona=render_persona(persona, with_big_five=False),
        memories=_memories_text(user.memories, config),
    )


# --------------------------------------------------------------------------- situations


class SituationAnswer(Answer):
    description: Annotated[str, Field(min_length=20, max_length=450)]
    emotion: Annotated[str, Field(max_length=24)]
    relevant_memory_ids: Annotated[list[MemoryId], Field(min_length=1, max_length=4)]


@lru_cache(maxsize=64)
def situations_answer(categories: tuple[Category, ...], per_category: int) -> type[BaseModel]:
    """The answer model: one explicit decision per category, with up to N situations."""
    decision = create_model(
        "CategoryDecision",
        __base__=Answer,
        supported=(bool, ...),
        why_not=(Annotated[str, Field(max_length=160)], ...),
        situations=(Annotated[list[SituationAnswer], Field(max_length=per_category)], ...),
    )
    return create_model(
        "SituationsAnswer",
        __base__=_SituationsBase,
        **{c.value: (decision, ...) for c in categories},
    )


class _SituationsBase(Answer):
    model_config = ConfigDict(title="situations")


@dataclass(frozen=True)
class Situations:
    """The situations stage's answer: situations per category, reasons for the rest."""

    by_category: dict[Category, list[Situation]]
    unsupported: dict[str, str]

    def as_output(self) -> dict[str, Any]:
        return {
            "situations": [
                s.model_dump(mode="json") for sits in self.by_category.values() for s in sits
            ],
            "unsupported": dict(self.unsupported),
        }


def situations_call(
    user: UserHistory,
    persona: Persona,
    model: ChatModel,
    config: BuildConfig,
    *,
    seed: int | None = None,
) -> StageCall[Situations]:
    """Situations per category, only where the evidence supports them.

    The model decides for each category explicitly; an unsupported category is
    recorded with the model's reason, never filled in.
    """
    known = {m.memory_id for m in user.memories}
    categories = tuple(config.categories)
    answer = situations_answer(categories, config.situations_per_category)

    def parse(data: dict[str, Any]) -> Situations:
        out = answer.model_validate(data)
        by_category: dict[Category, list[Situation]] = {}
        unsupported: dict[str, str] = {}
        for cat in categories:
            decision = getattr(out, cat.value)
            if not decision.supported:
                unsupported[cat.value] = decision.why_not.strip() or "(no reason given)"
                continue
            if not decision.situations:
                raise InvalidOutput(f"{cat.value}: supported, but no situation given")
            sits = []
            for s in decision.situations:
                description = _min_units(s.description, 8, f"{cat.value}: description")
                ids = _known_ids(s.relevant_memory_ids, known, cat.value)
                sits.append(
                    Situation(
                        category=cat,
                        description=description,
                        emotion=s.emotion.strip() or None,
                        relevant_memory_ids=ids,
                    )
                )
            by_category[cat] = sits
        return Situations(by_category, unsupported)

    def decide(call: StageCall[Situations], asked: Asked[Situations]) -> StageRecord:
        if not asked.ok:
            return call.invalid(asked)
        if not asked.value.by_category:
            return call.rejected(
                "none_supported",
                "no category is supported by the evidence: "
                + "; ".join(f"{k}: {v}" for k, v in asked.value.unsupported.items()),
                asked,
                asked.value.as_output(),
            )
        return call.ok(asked, asked.value.as_output())

    kinds = "\n".join(f'- "{c.value}" ({c.title}): {_CATEGORY_MOMENTS[c]}' for c in categories)
    return _stage_call(
        "situations",
        user.user_id,
        user,
        model,
        config,
        answer_schema(answer, memory_ids=sorted(known)),
        parse,
        decide,
        seed,
        persona=render_persona(persona, with_big_five=config.big_five_in_prompts),
        memories=_memories_text(user.memories, config),
        kinds=kinds,
        per_category=config.situations_per_category,
    )


_CATEGORY_MOMENTS = {
    Category.ES: "they are hurting, stressed, lonely or overwhelmed and want to feel "
    "understood and comforted.",
    Category.HEQ: "a delicate moment with someone else (a tension, a conflict, a relationship "
    "to mend or protect) where a tactful, emotionally aware response matters.",
    Category.SS: "they need a concrete way to act or phrase things with other people "
    "(etiquette, persuasion, setting a boundary, how to bring something up).",
}


def item_key(user_id: str, category: Category, index: int = 0) -> str:
    """The id of a user's situation, query and example: ``user:CAT`` for the first
    situation of a category, ``user:CAT:2``, ``user:CAT:3``... for further ones."""
    base = f"{user_id}:{category.value}"
    return base if index == 0 else f"{base}:{index + 1}"


def situation_items(user_id: str, output: dict[str, Any]) -> list[tuple[str, Situation]]:
    """(item key, situation) for each situation in a situations record's output."""
    seen: dict[Category, int] = {}
    items = []
    for raw in output.get("situations", []):
        s = Situation.model_validate(raw)
        index = seen.get(s.category, 0)
        seen[s.category] = index + 1
        items.append((item_key(user_id, s.category, index), s))
    return items


# --------------------------------------------------------------------------- queries


class QueryAnswer(Answer):
    model_config = ConfigDict(title="queries")

    query: Annotated[str, Field(min_length=2, max_length=450)]
    relevant_memory_ids: Annotated[list[MemoryId], Field(min_length=1, max_length=5)]
    reasoning: Text


def query_call(
    user: UserHistory,
    persona: Persona,
    key: str,
    situation: Situation,
    model: ChatModel,
    config: BuildConfig,
    *,
    seed: int | None = None,
) -> StageCall[Query]:
    """One query in the user's own voice and language for one situation."""
    known = {m.memory_id for m in user.memories}

    def parse(data: dict[str, Any]) -> Query:
        out = QueryAnswer.model_validate(data)
        body = out.query.strip()
        _min_units(body, config.query_min_words, "query")
        if body.lower() == situation.description.lower():
            raise InvalidOutput("query repeats the situation description")
        ids = _known_ids(out.relevant_memory_ids, known, "query")
        return Query(
            query_id=key,
            category=situation.category,
            text=body,
            situation=situation,
            relevant_memory_ids=ids,
            reasoning=out.reasoning.strip() or None,
            language=user.language,
        )

    return _stage_call(
        "queries",
        key,
        user,
        model,
        config,
        answer_schema(QueryAnswer, memory_ids=sorted(known)),
        parse,
        _ok_or_invalid(lambda v: v.model_dump(mode="json")),
        seed,
        rules={"query_min_words": config.query_min_words},
        persona=render_persona(persona, with_big_five=config.big_five_in_prompts),
        memories=_memories_text(user.memories, config),
        user_turns=fence(
            "user_messages",
            user_turns_excerpt(user, config.user_text_chars // 2, config.turn_chars) or "(none)",
        ),
        category_title=situation.category.title,
        category_goal=CATEGORY_GOALS[situation.category],
        situation=situation.description,
        language=f"{language_name(user.language)} ({user.language})",
    )


# --------------------------------------------------------------------------- inspection


class InspectAnswer(Answer):
    model_config = ConfigDict(title="inspect")

    reason: Annotated[str, Field(min_length=1, max_length=200)]
    emotional_support: bool
    logical_consistency: bool
    role_awareness: bool
    language: Annotated[str, Field(min_length=2, max_length=24)]


@dataclass(frozen=True)
class Verdict:
    checks: dict[str, bool]
    reason: str
    language_label: str


def inspect_call(
    user: UserHistory,
    persona: Persona,
    query: Query,
    model: ChatModel,
    config: BuildConfig,
    *,
    seed: int | None = None,
) -> StageCall[Verdict]:
    """Check emotional support, logical consistency, role awareness; label the language.

    The inspector sees what the authors' inspector sees: the persona, the
    situation, the user's own messages, the memories the query relies on apart
    from the others, the query and the generator's reasoning. Its language
    label is compared with the user's language (the ``language`` check); the
    checks listed in ``config.inspection_gates`` decide.
    """
    relevant = set(query.relevant_memory_ids)
    used = [m for m in user.memories if m.memory_id in relevant]
    other = [m for m in user.memories if m.memory_id not in relevant]
    expected = query.language.split("-")[0].lower()

    def parse(data: dict[str, Any]) -> Verdict:
        out = InspectAnswer.model_validate(data)
        label = out.language.strip()
        code = language_code(label)
        checks = {
            "emotional_support": out.emotional_support,
            "logical_consistency": out.logical_consistency,
            "role_awareness": out.role_awareness,
            "language": code == expected,
        }
        return Verdict(checks=checks, reason=out.reason.strip(), language_label=code or label)

    def decide(call: StageCall[Verdict], asked: Asked[Verdict]) -> StageRecord:
        if not asked.ok:
            return call.invalid(asked)
        v = asked.value
        failed = [c for c in config.inspection_gates if not v.checks[c]]
        output = {
            "checks": v.checks,
            "reason": v.reason,
            "passed": not failed,
            "language": v.language_label,
            "gates": list(config.inspection_gates),
        }
        if failed:
            return call.rejected(
                failed[0], f"failed {', '.join(failed)}: {v.reason}", asked, output
            )
        return call.ok(asked, output)

    return _stage_call(
        "inspect",
        query.query_id,
        user,
        model,
        config,
        answer_schema(InspectAnswer),
        parse,
        decide,
        seed,
        rules={"gates": list(config.inspection_gates)},
        persona=render_persona(persona, with_big_five=config.big_five_in_prompts),
        relevant_memories=_memories_text(used, config),
        other_memories=_memories_text(other, config),
        user_turns=fence(
            "user_messages",
            user_turns_excerpt(user, config.user_text_chars // 2, config.turn_chars) or "(none)",
        ),
        category_title=query.category.title,
        situation=render_situation(query.situation),
        query=fence("message", query.text),
        reasoning=fence("reasoning", query.reasoning or "(none given)"),
        language=f"{language_name(query.language)} ({query.language})",
    )


__all__ = [
    "CATEGORY_GOALS",
    "INSPECTION_CHECKS",
    "STAGE_PROMPTS",
    "StageCall",
    "StageRecord",
    "StageSettings",
    "bigfive_call",
    "inspect_call",
    "item_key",
    "persona_call",
    "query_call",
    "situation_items",
    "situations_call",
    "user_turns_excerpt",
]
