"""The LLM stages of a build: persona, Big Five, situations, queries, inspection.

Each stage is defined once, here: its answer model (which generates the JSON
schema and validates the answer), the ``parse`` function with the checks a
schema cannot state, and the ``decide`` function that turns a parsed answer
into an ``ok`` or ``rejected`` :class:`~attunement.building.calls.StageRecord`.
``*_call`` builds the stage's :class:`~attunement.building.calls.StageCall`
for one key; the prompt is the stage's template in
:data:`~attunement.building.config.STAGE_PROMPTS`. Memory extraction
(:mod:`attunement.building.extraction`) and augmentation
(:mod:`attunement.building.augment`) are defined the same way in their modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model

from attunement.building.calls import (
    MemoryId,
    StageCall,
    StageRecord,
    Text,
    known_ids,
    memories_text,
    min_units,
    ok_or_invalid,
    user_call,
    user_turns_excerpt,
)
from attunement.building.config import DEFAULT_GATES, BuildConfig
from attunement.building.language import detect_text_language, language_code, language_name
from attunement.building.llm_io import Answer, Asked, InvalidOutput
from attunement.building.verdicts import failed_gates, regated
from attunement.llm import ChatModel
from attunement.records import (
    BIG_FIVE_TRAITS,
    BigFive,
    Category,
    Persona,
    Query,
    Situation,
    UserHistory,
)
from attunement.render import fence, render_persona, render_situation

CATEGORY_GOALS = {
    Category.ES: "comfort and being understood",
    Category.HEQ: "a tactful, emotionally aware way through a delicate moment with someone",
    Category.SS: "practical advice on how to act or what to say to other people",
}


def _user_turns(user: UserHistory, config: BuildConfig, last: int, share: int = 1) -> str:
    """The user's ``last`` own turns for a prompt, fenced (``share``: a part of the
    character budget), as the authors quote the end of the conversation."""
    excerpt = user_turns_excerpt(
        user, config.user_text_chars // share, config.turn_chars, last=last
    )
    return fence("user_messages", excerpt or "(none)")


# --------------------------------------------------------------------------- persona


class PersonaAnswer(Answer):
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
        profile = min_units(out.profile, 5, "profile")
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

    return user_call(
        "persona",
        user.user_id,
        user,
        model,
        config,
        PersonaAnswer,
        parse,
        decide,
        seed=seed,
        memories=memories_text(user.memories, config),
        user_turns=_user_turns(user, config, config.persona_turns),
    )


# --------------------------------------------------------------------------- Big Five


class TraitAnswer(Answer):
    level: Literal["low", "medium", "high"]
    reason: Annotated[str, Field(min_length=1, max_length=120)]


#: one level and reason per trait of :data:`~attunement.records.BIG_FIVE_TRAITS`
BigFiveAnswer: type[Answer] = create_model(
    "BigFiveAnswer", __base__=Answer, **{t: (TraitAnswer, ...) for t in BIG_FIVE_TRAITS}
)


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

    return user_call(
        "bigfive",
        user.user_id,
        user,
        model,
        config,
        BigFiveAnswer,
        parse,
        ok_or_invalid(lambda v: v.model_dump()),
        seed=seed,
        persona=render_persona(persona, with_big_five=False),
        memories=memories_text(user.memories, config),
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
        "SituationsAnswer", __base__=Answer, **{c.value: (decision, ...) for c in categories}
    )


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


def _category_situations(cat: Category, decision: Any, known: set[str]) -> list[Situation]:
    """The situations of one supported category, each checked."""
    if not decision.situations:
        raise InvalidOutput(f"{cat.value}: supported, but no situation given")
    return [
        Situation(
            category=cat,
            description=min_units(s.description, 8, f"{cat.value}: description"),
            emotion=s.emotion.strip() or None,
            relevant_memory_ids=known_ids(s.relevant_memory_ids, known, cat.value),
        )
        for s in decision.situations
    ]


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
            if decision.supported:
                by_category[cat] = _category_situations(cat, decision, known)
            else:
                unsupported[cat.value] = decision.why_not.strip() or "(no reason given)"
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
    return user_call(
        "situations",
        user.user_id,
        user,
        model,
        config,
        answer,
        parse,
        decide,
        seed=seed,
        memory_ids=sorted(known),
        persona=render_persona(persona, with_big_five=config.big_five_in_prompts),
        memories=memories_text(user.memories, config),
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
    """One query in the user's own voice and language for one situation; its
    ``language`` is the language the query is written in (detected), which the
    inspector's ``language`` check compares with the user's."""
    known = {m.memory_id for m in user.memories}

    def parse(data: dict[str, Any]) -> Query:
        out = QueryAnswer.model_validate(data)
        body = out.query.strip()
        min_units(body, config.query_min_words, "query")
        if body.lower() == situation.description.lower():
            raise InvalidOutput("query repeats the situation description")
        return Query(
            query_id=key,
            category=situation.category,
            text=body,
            situation=situation,
            relevant_memory_ids=known_ids(out.relevant_memory_ids, known, "query"),
            reasoning=out.reasoning.strip() or None,
            language=detect_text_language(body)[0],
        )

    return user_call(
        "queries",
        key,
        user,
        model,
        config,
        QueryAnswer,
        parse,
        ok_or_invalid(lambda v: v.model_dump(mode="json")),
        seed=seed,
        memory_ids=sorted(known),
        rules={"query_min_words": config.query_min_words},
        persona=render_persona(persona, with_big_five=config.big_five_in_prompts),
        memories=memories_text(user.memories, config),
        user_turns=_user_turns(user, config, config.query_turns, share=2),
        category_title=situation.category.title,
        category_goal=CATEGORY_GOALS[situation.category],
        situation=situation.description,
        language=f"{language_name(user.language)} ({user.language})",
    )


# --------------------------------------------------------------------------- inspection

#: the inspector's reason, one true/false per judged check, its label of the language
InspectAnswer: type[Answer] = create_model(
    "InspectAnswer",
    __base__=Answer,
    reason=(Annotated[str, Field(min_length=1, max_length=200)], ...),
    **{check: (bool, ...) for check in DEFAULT_GATES},
    language=(Annotated[str, Field(min_length=2, max_length=24)], ...),
)


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
    label (given no hint of the language expected) is compared with the user's
    language (the ``language`` check); the checks listed in
    ``config.inspection_gates`` decide, and decide again without a call when
    they change (:func:`~attunement.building.verdicts.regated`). A verdict is
    final for its text: the call has a verdict key, so the same text is never
    judged twice (:mod:`attunement.building.verdicts`).
    """
    relevant = set(query.relevant_memory_ids)
    used = [m for m in user.memories if m.memory_id in relevant]
    other = [m for m in user.memories if m.memory_id not in relevant]
    expected = user.language.split("-")[0].lower()

    def parse(data: dict[str, Any]) -> Verdict:
        out = InspectAnswer.model_validate(data)
        label = out.language.strip()
        code = language_code(label)
        checks = {check: getattr(out, check) for check in DEFAULT_GATES}
        checks["language"] = code == expected
        return Verdict(checks=checks, reason=out.reason.strip(), language_label=code or label)

    def decide(call: StageCall[Verdict], asked: Asked[Verdict]) -> StageRecord:
        if not asked.ok:
            return call.invalid(asked)
        v = asked.value
        failed = failed_gates(v.checks, config.inspection_gates)
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

    return user_call(
        "inspect",
        query.query_id,
        user,
        model,
        config,
        InspectAnswer,
        parse,
        decide,
        seed=seed,
        verdict_without="reasoning",
        review=lambda rec: regated(rec, config.inspection_gates),
        persona=render_persona(persona, with_big_five=config.big_five_in_prompts),
        relevant_memories=memories_text(used, config),
        other_memories=memories_text(other, config),
        user_turns=_user_turns(user, config, config.query_turns, share=2),
        category_title=query.category.title,
        situation=render_situation(query.situation),
        query=fence("message", query.text),
        reasoning=fence("reasoning", query.reasoning or "(none given)"),
    )


__all__ = [
    "CATEGORY_GOALS",
    "BigFiveAnswer",
    "InspectAnswer",
    "PersonaAnswer",
    "QueryAnswer",
    "bigfive_call",
    "inspect_call",
    "item_key",
    "persona_call",
    "query_call",
    "situation_items",
    "situations_call",
]
