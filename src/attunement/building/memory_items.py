"""Annotated memory items (both AlpsBench formats) as :class:`MemoryItem` records.

An item the builder cannot use is dropped and listed in the user's
``meta["dropped_memories"]`` with the reason: an ``[ERROR: ...]`` tag of the
annotator (``ImportOptions.error_tags``: ``drop`` by default, ``strip`` the tag
and keep the item, or ``keep`` the text as it is) or an empty value. Fields the
builder never reads (a ``confidence`` outside 0..1, a ``type`` other than
direct/indirect, a non-text ``time_scope``, ``emotion`` or
``preference_attitude``, a non-integer ``utterance_index``) are dropped from
the item with a warning; ids, values and evidence texts must be right.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from attunement.building.reading import LineContext, get_field, validate_as
from attunement.records import Evidence, MemoryItem

_ERROR_TAG = re.compile(r"\s*\[ERROR:[^\]]*\]?", re.IGNORECASE)


def error_tag(text: str | None) -> str | None:
    """The ``[ERROR: ...]`` annotation inside ``text``, if any."""
    if not text:
        return None
    m = _ERROR_TAG.search(text)
    return m.group(0).strip() if m else None


def strip_error_tags(text: str) -> str:
    """``text`` without its ``[ERROR: ...]`` annotations."""
    return _ERROR_TAG.sub("", text).strip()


def _evidence(ctx: LineContext, raw: Any, where: str, session_id: str | None) -> list[Evidence]:
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, ev in enumerate(items):
        name = f"{where}[{i}]" if isinstance(raw, list) else where
        if isinstance(ev, str):
            out.append(Evidence(session_id=session_id, text=ev))
            continue
        if not isinstance(ev, dict):
            raise ctx.error(name, f"expected an object, got {type(ev).__name__}")
        index = ev.get("utterance_index")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            if isinstance(index, str) and index.strip().isdigit():
                index = int(index)
            else:
                ctx.warn(f"{name}.utterance_index", f"not an integer ({index!r}); dropped")
                index = None
        text = ev.get("text")
        data = {
            "session_id": ev.get("session_id") or session_id,
            "utterance_index": index,
            "text": text if isinstance(text, str) else "",
        }
        out.append(validate_as(ctx, name, Evidence, data))
    return out


def _memory(
    ctx: LineContext,
    raw: Any,
    where: str,
    index: int,
    session_id: str | None,
    dropped: list[dict[str, Any]],
) -> MemoryItem | None:
    """Map one raw AlpsBench memory item onto :class:`MemoryItem` (None when dropped)."""
    if not isinstance(raw, dict):
        raise ctx.error(where, f"expected an object, got {type(raw).__name__}")
    memory_id = raw.get("memory_id")
    memory_id = str(memory_id) if memory_id not in (None, "") else f"m{index + 1}"
    value = get_field(ctx, raw, "value", where, str)
    evidence = _evidence(ctx, raw.get("evidence"), f"{where}.evidence", session_id)
    if not evidence and isinstance(raw.get("evidence_text"), str):
        evidence = [Evidence(session_id=session_id, text=raw["evidence_text"])]
    label_suggestion = raw.get("label_suggestion")

    tag = error_tag(value) or error_tag(
        label_suggestion if isinstance(label_suggestion, str) else None
    )
    policy = ctx.options.error_tags
    if tag and policy == "drop":
        dropped.append({"memory_id": memory_id, "value": value, "reason": tag})
        return None
    if tag and policy == "strip":
        value = strip_error_tags(value)
        if isinstance(label_suggestion, str):
            label_suggestion = strip_error_tags(label_suggestion) or None
        if not value:
            dropped.append(
                {
                    "memory_id": memory_id,
                    "value": raw.get("value"),
                    "reason": f"{tag} (nothing left after stripping)",
                }
            )
            return None
    if not value.strip():
        dropped.append({"memory_id": memory_id, "value": value, "reason": "empty value"})
        return None
    data = {
        "memory_id": memory_id,
        "value": value.strip(),
        "label": _text_field(ctx, raw, "label", where),
        "label_suggestion": label_suggestion if isinstance(label_suggestion, str) else None,
        "type": _unused(
            ctx, raw, "type", where, lambda v: v in ("direct", "indirect"), "not direct or indirect"
        ),
        "confidence": _unused(
            ctx,
            raw,
            "confidence",
            where,
            lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0,
            "not a number in 0..1",
        ),
        "evidence": evidence,
        "time_scope": _text_field(ctx, raw, "time_scope", where),
        "emotion": _text_field(ctx, raw, "emotion", where),
        "preference_attitude": _text_field(ctx, raw, "preference_attitude", where),
    }
    return validate_as(ctx, where, MemoryItem, data)


def _unused(
    ctx: LineContext,
    raw: dict[str, Any],
    key: str,
    where: str,
    valid: Callable[[Any], bool],
    problem: str,
) -> Any:
    """A field the builder does not use: kept when valid, else dropped with a warning."""
    value = raw.get(key)
    if value is None or valid(value):
        return value
    ctx.warn(f"{where}.{key}", f"{problem} ({value!r}); dropped")
    return None


def _text_field(ctx: LineContext, raw: dict[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is None or isinstance(value, str):
        return value or None
    ctx.warn(f"{where}.{key}", f"not text ({value!r}); dropped")
    return None


def memory_items(
    ctx: LineContext, raw: Any, where: str, session_id: str | None
) -> tuple[list[MemoryItem], list[dict[str, Any]]]:
    """The items of one annotation list, in order (dropped ones listed apart); a
    duplicate ``memory_id`` is an error."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        raise ctx.error(where, f"expected a list, got {type(raw).__name__}")
    dropped: list[dict[str, Any]] = []
    items = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        mem = _memory(ctx, item, f"{where}[{i}]", i, session_id, dropped)
        if mem is None:
            continue
        if mem.memory_id in seen:
            raise ctx.error(f"{where}[{i}].memory_id", f"duplicate memory_id {mem.memory_id!r}")
        seen.add(mem.memory_id)
        items.append(mem)
    return items, dropped
