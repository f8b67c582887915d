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
    """``auto`` asks for JSON from a backend that enforces the schema itself (the
    embedded llama.cpp model's grammar sampler makes even a tiny model parseable)
    and for the papers' text formats from every other judge."""
    if choice == "auto":
        return "json" if judge.enforces_json_schema else "text"
    return choice


def render_context(example: Example, *, include_memories: bool) -> str:
    """Persona, (optionally) memories and situation, through the one renderer."""
    text = render_user_context(example, memories=None if include_memories else [],
                               memory_heading=MEMORY_HEADING)
    return text or NO_CONTEXT


_ANY_FENCE = re.compile(r"<(/?)\s*(" + "|".join(FENCE_LABELS) + r")\s*>", re.IGNORECASE)


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


#: default maxLength of a free-text JSON field (characters)
JSON_TEXT_CHARS = 400


def reason_score_schema(chars: int = JSON_TEXT_CHARS) -> dict[str, Any]:
    """PERM's 1-5 judges: a short reason, then the score."""
    return _object({"reason": {"type": "string", "maxLength": chars}, "score": _SCORE})


def inline_schema(chars: int = JSON_TEXT_CHARS) -> dict[str, Any]:
    """PereGRM inline: 3-5 criteria, an analysis, then the score."""
    return _object({
        "criteria": {"type": "array", "minItems": 3, "maxItems": 5,
                     "items": {"type": "string", "maxLength": max(20, chars // 2)}},
        "analysis": {"type": "string", "maxLength": chars},
        "score": _SCORE,
    })


def score_schema(chars: int = JSON_TEXT_CHARS) -> dict[str, Any]:
    """PereGRM against given criteria: an analysis, then the score."""
    return _object({"analysis": {"type": "string", "maxLength": chars}, "score": _SCORE})


def criteria_schema(chars: int = JSON_TEXT_CHARS, *, min_items: int = 4,
                    max_items: int = 6) -> dict[str, Any]:
    """Weighted criteria (weights in steps of 5; their sum is checked after parsing)."""
    return _object({
        "criteria": {"type": "array", "minItems": min_items, "maxItems": max_items,
                     "items": _object({
                         "name": {"type": "string", "maxLength": max(12, min(60, chars // 4))},
                         "weight": {"type": "integer", "enum": list(range(5, 65, 5))},
                         "description": {"type": "string", "maxLength": max(20, chars // 2)},
                     })},
    })


def bystander_schema(chars: int = JSON_TEXT_CHARS) -> dict[str, Any]:
    """The bystander: a short assessment, then five 0-20 sub-scores."""
    return _object({"assessment": {"type": "string", "maxLength": chars},
                    **{key: _PART for key in BYSTANDER_KEYS}})
