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
repaired.
"""

from __future__ import annotations

import json
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
