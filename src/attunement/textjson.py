"""JSON objects inside model text: the one extractor every part of attunement uses.

A model asked for JSON may answer with the object alone, wrap it in a Markdown
code fence, write a sentence before it, or (a judge) quote other JSON it was
shown before writing its own. So extraction is a scan, not a single
``json.loads``: :func:`json_objects` finds every top-level JSON object in the
text, in order, with where it starts and ends, and the callers choose (the last
object with a given key, the only object, ...). Literal newlines inside strings
are accepted (``strict=False``): small models write them and they carry no
ambiguity.

Nothing here guesses: a truncated or malformed object is skipped, never
repaired. The one exception is asked for by name: ``lenient=True`` also reads
the outermost braces with trailing commas removed, for benchmarks whose
upstream parser accepts that (EQ-Bench 3's judge answers).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_DECODER = json.JSONDecoder(strict=False)


@dataclass(frozen=True)
class Found:
    """One JSON object found in text: ``text[start:end]`` decodes to ``value``."""

    start: int
    end: int
    value: dict[str, Any]


def json_objects(text: str) -> list[Found]:
    """Every top-level JSON object in ``text``, in order of appearance.

    >>> [f.value for f in json_objects('x {"a": 1} y {"b": {"c": 2}} {bad')]
    [{'a': 1}, {'b': {'c': 2}}]
    """
    found: list[Found] = []
    pos = 0
    while True:
        start = text.find("{", pos)
        if start < 0:
            return found
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            pos = start + 1
            continue
        if isinstance(value, dict):
            found.append(Found(start, end, value))
            pos = end
        else:  # pragma: no cover - raw_decode at "{" always yields a dict
            pos = start + 1


def last_json_object(text: str, *, with_key: str | None = None) -> Found | None:
    """The last JSON object in ``text`` (with ``with_key``: the last that has that key).

    >>> last_json_object('{"score": 2} then {"note": 1}', with_key="score").value
    {'score': 2}
    """
    for found in reversed(json_objects(text)):
        if with_key is None or with_key in found.value:
            return found
    return None


class NotJSONError(ValueError):
    """The text is not the one JSON object that was asked for."""


_CODE_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def sole_json_object(text: str) -> dict[str, Any]:
    """The whole text as one JSON object, a Markdown code fence around it allowed
    (servers without schema support sometimes add one); anything else raises
    :class:`NotJSONError` with what was wrong and how the answer began.

    >>> sole_json_object('```json {"a": 1} ```')
    {'a': 1}
    >>> sole_json_object('Sure! {"a": 1}')
    Traceback (most recent call last):
    attunement.textjson.NotJSONError: not valid JSON (Expecting value at char 0); answer began 'Sure! {"a": 1}'
    """
    body = text.strip()
    fenced = _CODE_FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        value = json.loads(body, strict=False)
    except json.JSONDecodeError as exc:
        raise NotJSONError(
            f"not valid JSON ({exc.msg} at char {exc.pos}); answer began {body[:80]!r}"
        ) from None
    if not isinstance(value, dict):
        raise NotJSONError(f"expected a JSON object, got {type(value).__name__}")
    return value


def lenient_json_object(text: str) -> dict[str, Any] | None:
    """The last well-formed object, else the outermost braces read with trailing
    commas removed; None when neither reads.

    >>> lenient_json_object('Scores: {"a": 1, "b": 2,}')
    {'a': 1, 'b': 2}
    """
    found = last_json_object(text)
    if found is not None:
        return found.value
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(_TRAILING_COMMA.sub(r"\1", text[start : end + 1]), strict=False)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
