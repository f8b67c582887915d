"""The one place that turns records into prompt text.

Every prompt (policy, judges, builder stages) renders persona, Big Five,
memories and situations through these functions, so the three never drift
apart. Renderers return ``""`` for missing data and :func:`sections` drops empty
sections, so a prompt never shows a heading with nothing under it.

:func:`fence` wraps untrusted text (a reply being judged, a user's dialogue)
in a tagged block that the text itself cannot close early.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from attunement.records import BIG_FIVE_TRAITS, BigFive, Example, MemoryItem, Persona, Situation


def render_big_five(big_five: BigFive | None, *, with_reasons: bool = False) -> str:
    if big_five is None:
        return ""
    lines = []
    for trait in BIG_FIVE_TRAITS:
        line = f"- {trait.capitalize()}: {getattr(big_five, trait)}"
        why = big_five.justifications.get(trait)
        if with_reasons and why:
            line += f" ({why})"
        lines.append(line)
    return "\n".join(lines)


def render_persona(persona: Persona | None, *, with_big_five: bool = True) -> str:
    """Demographics (when known), the profile text, topics and Big Five levels."""
    if persona is None:
        return ""
    parts = []
    facts = [f"{label}: {value}" for label, value in (
        ("Name", persona.name), ("Age", persona.age), ("Gender", persona.gender),
        ("Occupation", persona.occupation)) if value not in (None, "")]
    if facts:
        parts.append("; ".join(facts))
    if persona.profile.strip():
        parts.append(persona.profile.strip())
    if persona.topics:
        parts.append("Recurring topics: " + ", ".join(persona.topics))
    if with_big_five and persona.big_five is not None:
        parts.append("Big Five personality:\n" + render_big_five(persona.big_five))
    return "\n".join(parts)


def render_memory_item(item: MemoryItem) -> str:
    label = item.label if item.label and item.label != "UNMAPPED" else item.label_suggestion
    text = f"[{item.memory_id}] {item.value.strip()}"
    return f"{text} ({label})" if label else text


def render_memories(memories: Sequence[MemoryItem], *, limit: int | None = None) -> str:
    """One bullet per memory item, with its id so answers can cite it."""
    items = list(memories)[:limit] if limit else list(memories)
    return "\n".join(f"- {render_memory_item(m)}" for m in items)


def render_situation(situation: Situation | None) -> str:
    if situation is None:
        return ""
    text = f"{situation.category.title}: {situation.description.strip()}"
    if situation.emotion:
        text += f"\nFeeling: {situation.emotion}"
    return text


def sections(pairs: Iterable[tuple[str, str]], *, level: str = "##") -> str:
    """Join ``(heading, body)`` pairs as Markdown sections, skipping empty bodies."""
    return "\n\n".join(f"{level} {head}\n{body.strip()}" for head, body in pairs
                       if body and body.strip())


def render_user_context(example: Example, *, memories: Sequence[MemoryItem] | None = None,
                        memory_heading: str = "What you remember about the user") -> str:
    """Persona, memories and situation of an example as prompt sections.

    ``memories`` overrides the example's own memory list (memory modes use it).
    """
    mem = example.memories if memories is None else memories
    return sections([
        ("User persona", render_persona(example.persona)),
        (memory_heading, render_memories(mem)),
        ("Situation", render_situation(example.situation)),
    ])


_TAG = re.compile(r"[^A-Za-z0-9_]")


def fence(label: str, text: str) -> str:
    """Wrap untrusted ``text`` in ``<label>...</label>`` that it cannot escape.

    Any occurrence of the opening or closing tag inside the text is defused by
    inserting a zero-width marker, so the judged text cannot end its own fence
    and continue as if it were the instructions.
    """
    tag = _TAG.sub("_", label).lower() or "data"
    # also catch spaced or decorated variants a model would still read as the tag
    pattern = re.compile(rf"<\s*(/?)\s*{re.escape(tag)}\b[^<>]*>", re.I)
    safe = pattern.sub(lambda m: f"<{m.group(1)}{tag}\u200b>", text)
    return f"<{tag}>\n{safe}\n</{tag}>"
