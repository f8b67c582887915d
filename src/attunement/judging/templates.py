"""Judge prompts: rendering (with the names recorded), user context, fences, schemas.

Prompt text lives in ``attunement/prompts/*.txt`` (``perm_*``, ``peregrm_*``,
``judge_*``). Small pieces that several prompts share (the answer-format
instructions, PereGRM's dimension definitions) are one-message files loaded
with :func:`prompt_piece`, so each piece exists once and has its own version
hash.

Every judge prompt is rendered by :func:`render_prompt`, and every piece read
by :func:`prompt_piece`; both note the file's name in the active
:func:`recording`, so a reward's manifest lists exactly the files its message
builders use (:meth:`attunement.judging.base.JudgeReward.prompt_names` renders
each of them once on a probe example) instead of a hand-typed list.

What a judge sees of the user (``judge_context``):

``authors`` (default)
    What the authors' judges saw: the persona's profile text (PERM also its
    demographics, which its augmented personas consisted of), the memories as
    plain values, and the situation's description; no Big Five levels, topics,
    memory labels, category or emotion.
``full``
    Everything the record holds.

Every piece of it is fenced by the renderers of :mod:`attunement.render`; the
earlier turns of a multi-turn example are shown, fenced, before the user's
latest message, which is the one the judged reply answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from pydantic import BaseModel

from attunement.judging.answers import answer_schema
from attunement.judging.settings import JSON_TEXT_CHARS, JudgeContext, OutputChoice, OutputFormat
from attunement.llm.base import ChatModel, Message
from attunement.prompts import load_prompt
from attunement.records import Example
from attunement.render import (
    fence,
    render_dialogue,
    render_memories,
    render_persona,
    render_situation,
    sections,
)

MEMORY_HEADING = "Memories from the user's earlier conversations"
NO_CONTEXT = "(no persona, memories or situation were given)"
NO_ANALYSIS = "(the assistant wrote no analysis)"
NO_RESPONSE = "(the assistant wrote no response)"
#: the headings of PereGRM's prompts that define several dimensions and show their sets
DIMENSIONS_HEADING = "# Dimensions"
DIMENSION_HEADING = "## {dimension}"
CRITERIA_HEADING = "# Criteria"
#: the heading of one criteria set in a prompt that shows several
CRITERIA_SET_HEADING = "## {dimension} criteria, set {number}"

# --------------------------------------------------------------------------- rendering

_RECORDING: ContextVar[set[str] | None] = ContextVar("attunement_prompt_recording", default=None)


@contextmanager
def recording() -> Iterator[set[str]]:
    """Collect the name of every prompt file rendered or read inside the block."""
    names: set[str] = set()
    token = _RECORDING.set(names)
    try:
        yield names
    finally:
        _RECORDING.reset(token)


def _note(name: str) -> None:
    names = _RECORDING.get()
    if names is not None:
        names.add(name)


def render_prompt(name: str, **values: object) -> list[Message]:
    """Render the judge prompt file ``name`` (noting its name in the active recording)."""
    _note(name)
    return load_prompt(name).render(**values)


def prompt_piece(name: str) -> str:
    """The text of a one-message prompt file (a shared prompt piece), noted like a prompt."""
    _note(name)
    tpl = load_prompt(name)
    if len(tpl.messages) != 1:
        raise ValueError(f"prompt piece {name!r} must hold exactly one message")
    return tpl.messages[0][1].strip()


def render_piece(name: str, **values: object) -> str:
    """A one-message prompt piece with its placeholders filled, noted like a prompt."""
    _note(name)
    messages = load_prompt(name).render(**values)
    if len(messages) != 1:
        raise ValueError(f"prompt piece {name!r} must hold exactly one message")
    return messages[0]["content"]


def versions(names: list[str] | tuple[str, ...] | set[str]) -> dict[str, str]:
    """``{prompt name: version hash}`` for a manifest."""
    return {name: load_prompt(name).version for name in sorted(set(names))}


def resolve_output(choice: OutputChoice, judge: ChatModel) -> OutputFormat:
    """``auto`` asks for JSON from a backend that enforces the schema itself (the
    embedded llama.cpp model's grammar sampler makes even a tiny model parseable)
    and for the papers' text formats from every other judge."""
    if choice == "auto":
        return "json" if judge.enforces_json_schema else "text"
    return choice


def schema(answer: type[BaseModel], chars: int = JSON_TEXT_CHARS) -> dict[str, Any]:
    """The JSON schema sent with a prompt whose answer ``answer`` validates."""
    return answer_schema(answer, chars)


# --------------------------------------------------------------------------- user context


def render_context(
    example: Example,
    *,
    judge_context: JudgeContext = "full",
    include_memories: bool = True,
    demographics: bool = True,
    include_persona: bool = True,
    include_situation: bool = True,
) -> str:
    """Persona, (optionally) memories and situation, fenced, as judge prompt sections.

    ``judge_context="authors"`` leaves out what the authors' judges never saw
    (Big Five, topics, memory labels, the situation's category and emotion, and
    with ``demographics=False`` the persona's demographic fields).
    """
    full = judge_context == "full"
    persona = render_persona(
        example.persona,
        with_big_five=full,
        with_topics=full,
        with_demographics=full or demographics,
    )
    text = sections(
        [
            ("Persona", persona if include_persona else ""),
            (
                MEMORY_HEADING,
                render_memories(example.memories, with_labels=full) if include_memories else "",
            ),
            (
                "Situation",
                render_situation(example.situation, with_category=full, with_emotion=full)
                if include_situation
                else "",
            ),
        ]
    )
    return text or NO_CONTEXT


def render_message(example: Example) -> str:
    """The user's latest message, fenced; after the earlier turns when there are any."""
    latest = fence("message", example.query)
    if not example.dialogue:
        return latest
    return (
        "Earlier turns of this conversation, oldest first:\n"
        f"{render_dialogue(example.dialogue)}\n\n"
        "The user's latest message (the reply being judged answers it, as the next turn "
        f"of this conversation):\n{latest}"
    )


def fenced_judged(label: Literal["analysis", "response"], text: str) -> str:
    """The judged text as data, in a fence it cannot close."""
    if not text.strip():
        text = NO_ANALYSIS if label == "analysis" else NO_RESPONSE
    return fence(label, text)


def render_definitions(definitions: Sequence[tuple[str, str]]) -> str:
    """The definitions of several dimensions, each under its heading: what the
    prompts of every group share, so they come before the user's record."""
    blocks = [f"{DIMENSION_HEADING.format(dimension=d)}\n{text}" for d, text in definitions]
    return "\n\n".join([DIMENSIONS_HEADING, *blocks])


def render_criteria_sets(sets: Mapping[str, Sequence[tuple[int, str]]]) -> str:
    """The criteria sets of a scoring prompt that shows several, dimension by
    dimension, each set under its heading and fenced.

    ``sets`` maps a dimension to its ``(number, criteria text)`` pairs in the
    order shown; the numbers are the ones :func:`named_set` names (a failed set
    is left out, the others keep their numbers).
    """
    blocks = [
        f"{CRITERIA_SET_HEADING.format(dimension=d, number=n)}\n{fence('criteria', text.strip())}"
        for d, shown in sets.items()
        for n, text in shown
    ]
    return "\n\n".join([CRITERIA_HEADING, *blocks])


def named_dimension(dimension: str) -> str:
    """The closing line of a criteria prompt: the dimension to write criteria for."""
    return render_piece("peregrm_named_dimension", dimension=dimension)


def named_set(dimension: str, number: int | str) -> str:
    """The closing line of a scoring prompt that shows several criteria sets."""
    return render_piece("peregrm_named_set", dimension=dimension, number=number)


def _unnoted(name: str, **values: object) -> str:
    """A piece rendered to read prompts back, not to send: not noted as sent."""
    return load_prompt(name).render(**values)[0]["content"]


def named_in(prompt: str) -> tuple[str, int] | None:
    """The (dimension, set number) the last line of a scoring prompt names, or None."""
    marker, digit = "\x00", "\x01"
    line = re.escape(_unnoted("peregrm_named_set", dimension=marker, number=digit))
    line = line.replace(re.escape(marker), r"(\w+)").replace(re.escape(digit), r"(\d+)")
    named = re.search(rf"\n{line}$", prompt)
    if named is None:
        return None
    return named.group(1), int(named.group(2))


def named_task(prompt: str) -> tuple[str, str, int | None] | None:
    """What a rendered PereGRM criteria-or-scoring prompt asks in its last line:
    ``("criteria", dimension, None)``, ``("score", dimension, set number)``, or
    None for any other prompt. (For simulated and scripted judges.)"""
    named = named_in(prompt)
    if named is not None:
        return "score", named[0], named[1]
    marker = "\x00"
    line = re.escape(_unnoted("peregrm_named_dimension", dimension=marker))
    line = line.replace(re.escape(marker), r"(\w+)")
    asked = re.search(rf"\n{line}$", prompt)
    return ("criteria", asked.group(1), None) if asked else None


def named_criteria(prompt: str) -> str | None:
    """The criteria of the set a rendered scoring prompt names in its last line, as
    shown in its fence; None for a prompt that names no set. (For simulated and
    scripted judges, which must answer by the named set.)"""
    named = named_in(prompt)
    if named is None:
        return None
    dimension, number = named
    heading = CRITERIA_SET_HEADING.format(dimension=dimension, number=number) + "\n<criteria>\n"
    if heading not in prompt:
        raise ValueError(f"the prompt names {dimension} criteria set {number}, not shown in it")
    return prompt.split(heading, 1)[1].split("\n</criteria>", 1)[0]
