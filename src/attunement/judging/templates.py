"""Judge prompts: template loading, user context, fencing and output schemas.

Prompt text lives in ``attunement/prompts/*.txt`` (``perm_*``, ``peregrm_*``,
``judge_*``). Small pieces that several prompts share (the answer-format
instructions, PereGRM's dimension definitions) are one-message files loaded
with :func:`snippet`, so each piece exists once and has its own version hash.

The JSON schemas are used when a judge is asked for structured output; they
bound every free-text string with ``maxLength`` so that a small model cannot
run on until ``max_tokens`` and leave an unterminated object.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from attunement.judging.parsing import BYSTANDER_KEYS, FENCE_LABELS, OutputFormat
from attunement.llm.base import ChatModel
from attunement.prompts import PromptTemplate, load_prompt
from attunement.records import Example
from attunement.render import fence, render_user_context

OutputChoice = Literal["auto", "text", "json"]

MEMORY_HEADING = "Memories from the user's earlier conversations"
NO_CONTEXT = "(no persona, memories or situation were given)"
NO_ANALYSIS = "(the assistant wrote no analysis)"
NO_RESPONSE = "(the assistant wrote no response)"


def template(name: str) -> PromptTemplate:
    return load_prompt(name)


def snippet(name: str) -> str:
    """The text of a one-message prompt file (a shared prompt piece)."""
    tpl = load_prompt(name)
    if len(tpl.messages) != 1:
        raise ValueError(f"prompt piece {name!r} must hold exactly one message")
    return tpl.messages[0][1].strip()


def versions(names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``{prompt name: version hash}`` for a manifest."""
    return {name: load_prompt(name).version for name in sorted(set(names))}


def resolve_output(choice: OutputChoice, judge: ChatModel) -> OutputFormat:
    """``auto`` asks the embedded model for JSON (its grammar sampler makes it
    parseable) and every other judge for the papers' text formats."""
    if choice == "auto":
        return "json" if judge.name.startswith("local") else "text"
    return choice


def render_context(example: Example, *, include_memories: bool) -> str:
    """Persona, (optionally) memories and situation, through the one renderer."""
    text = render_user_context(example, memories=None if include_memories else [],
                               memory_heading=MEMORY_HEADING)
    return text or NO_CONTEXT


_ANY_FENCE = re.compile(r"<(/?)\s*(" + "|".join(FENCE_LABELS) + r")\s*>", re.I)


def defuse_fences(text: str) -> str:
    """Defuse every judge fence tag in untrusted text, not only its own fence's tag,
    so that no echoed copy can open or close a block the parser strips."""
    return _ANY_FENCE.sub(lambda m: f"<{m.group(1)}{m.group(2)}\u200b>", text)


def fenced_message(example: Example) -> str:
    return fence("message", defuse_fences(example.query))


def fenced_judged(label: Literal["analysis", "response"], text: str) -> str:
    """The judged text as data, in a fence it cannot close."""
    if not text.strip():
        text = NO_ANALYSIS if label == "analysis" else NO_RESPONSE
    return fence(label, defuse_fences(text))


# --------------------------------------------------------------------------- schemas

_SCORE = {"type": "integer", "enum": [1, 2, 3, 4, 5]}
_PART = {"type": "integer", "enum": list(range(21))}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


REASON_SCORE_SCHEMA = _object({
    "reason": {"type": "string", "maxLength": 400},
    "score": _SCORE,
})

INLINE_SCHEMA = _object({
    "criteria": {"type": "array", "minItems": 3, "maxItems": 5,
                 "items": {"type": "string", "maxLength": 160}},
    "analysis": {"type": "string", "maxLength": 400},
    "score": _SCORE,
})

SCORE_SCHEMA = _object({
    "analysis": {"type": "string", "maxLength": 400},
    "score": _SCORE,
})

CRITERIA_SCHEMA = _object({
    "criteria": {"type": "array", "minItems": 4, "maxItems": 6,
                 "items": _object({
                     "name": {"type": "string", "maxLength": 60},
                     "weight": {"type": "integer", "enum": list(range(5, 65, 5))},
                     "description": {"type": "string", "maxLength": 220},
                 })},
})

BYSTANDER_SCHEMA = _object({
    "assessment": {"type": "string", "maxLength": 300},
    **{key: _PART for key in BYSTANDER_KEYS},
})
