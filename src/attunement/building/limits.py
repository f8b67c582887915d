"""Length limits of an answer: stated in the prompt, checked, asked again, trimmed.

A stage's JSON schema bounds every string (``maxLength``) and list
(``maxItems``). Three kinds of endpoint treat those bounds differently: one
that enforces them during decoding cuts the text at the bound, mid-word; one
that ignores them returns longer text, which the answer model then refuses; a
good one stays inside because the prompt said so. So the limits are handled in
one place, from the schema itself (one source for the words and the checks):

- :func:`limits_text` writes the limits as lines for the prompt
  (``- "profile": 20 to 500 characters (about 80 words)``), so the words can
  never disagree with the schema;
- :func:`over_limits` finds the values at or over a limit (a string exactly at
  its ``maxLength`` is taken as cut off by the server);
- :func:`limit_note` asks again once, naming each limit broken;
- :func:`trim_to_limits` then cuts what is still too long at the last sentence
  end inside the limit (else the last word boundary), and the caller flags the
  answer as trimmed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: characters per word assumed when a limit is also given in words
CHARS_PER_WORD = 6

_SENTENCE_END = re.compile(
    r"[.!?\u2026\u3002\uff01\uff1f](?=[\s\"'\u201d\u2019)\]]|$)|[\u3002\uff01\uff1f]"
)


@dataclass(frozen=True)
class Broken:
    """One value at or over its limit: where, the limit, the actual size."""

    path: str  # "profile", "topics.0", "ES.situations.0.description"
    kind: str  # "characters" or "items"
    limit: int
    size: int

    def describe(self) -> str:
        what = "has" if self.size > self.limit else "reached the limit at"
        return f'"{self.path}" {what} {self.size} {self.kind} (limit {self.limit})'


def _children(node: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from node.get("properties", {}).items()
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        yield "[]", node["items"]


def _limit_words(node: dict[str, Any]) -> str | None:
    """The limit of one schema node in words, or None when it has none."""
    if node.get("type") == "string" and "maxLength" in node and "enum" not in node:
        lo, hi = node.get("minLength", 0), node["maxLength"]
        span = f"{lo} to {hi}" if lo > 1 else f"at most {hi}"
        words = f" (about {hi // CHARS_PER_WORD} words)" if hi >= 4 * CHARS_PER_WORD else ""
        return f"{span} characters{words}"
    if node.get("type") == "array" and "maxItems" in node:
        lo, hi = node.get("minItems", 0), node["maxItems"]
        return f"{lo} to {hi} items" if lo > 0 else f"at most {hi} items"
    return None


def limits_text(schema: dict[str, Any]) -> str:
    """The schema's length limits as prompt lines, one per field name and limit.

    >>> print(limits_text({"type": "object", "properties": {
    ...     "profile": {"type": "string", "minLength": 20, "maxLength": 500},
    ...     "topics": {"type": "array", "maxItems": 5,
    ...                "items": {"type": "string", "minLength": 1, "maxLength": 40}}}}))
    - "profile": 20 to 500 characters (about 83 words)
    - "topics": at most 5 items, each at most 40 characters (about 6 words)
    """
    lines: dict[str, None] = {}

    def walk(node: dict[str, Any], name: str | None) -> None:
        words = _limit_words(node)
        if name is not None and words is not None:
            if node.get("type") == "array":
                item = _limit_words(node.get("items", {}))
                words += f", each {item}" if item else ""
            lines[f'- "{name}": {words}'] = None
        for key, sub in _children(node):
            if key == "[]":
                if not (node.get("type") == "array" and _limit_words(sub)):
                    walk(sub, name)  # a list of objects: their fields by their own names
            else:
                walk(sub, key)

    walk(schema, None)
    return "\n".join(lines) or "(no length limits)"


def over_limits(data: Any, schema: dict[str, Any], path: str = "") -> list[Broken]:
    """Every value of ``data`` at or over its limit in ``schema``."""
    found: list[Broken] = []
    kind = schema.get("type")
    if kind == "string" and isinstance(data, str) and "maxLength" in schema:
        if len(data) >= schema["maxLength"] and "enum" not in schema:
            found.append(Broken(path, "characters", schema["maxLength"], len(data)))
    elif kind == "array" and isinstance(data, list):
        if "maxItems" in schema and len(data) > schema["maxItems"]:
            found.append(Broken(path, "items", schema["maxItems"], len(data)))
        for i, item in enumerate(data):
            found += over_limits(item, schema.get("items", {}), f"{path}.{i}" if path else str(i))
    elif kind == "object" and isinstance(data, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in data:
                found += over_limits(data[key], sub, f"{path}.{key}" if path else key)
    return found


def limit_note(broken: list[Broken]) -> str:
    """The follow-up message that asks once more, naming every limit broken."""
    items = "; ".join(b.describe() for b in broken)
    return (
        f"Your answer does not fit the length limits: {items}. Send the whole JSON object "
        "again, with those values rewritten shorter so that each is well inside its limit "
        "(end with a complete sentence); keep everything else as it was."
    )


def trim_text(text: str, limit: int) -> str:
    """``text`` cut to fewer than ``limit`` characters at the last sentence end,
    else at the last word boundary, else hard.

    >>> trim_text("She lost her job. She is scared of telling her father.", 40)
    'She lost her job.'
    >>> trim_text("one two three four five", 12)
    'one two'
    """
    if len(text) < limit:
        return text
    head = text[: limit - 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= len(head) // 3:
        return head[: ends[-1]].rstrip()
    space = head.rstrip().rfind(" ")
    if space > 0:
        return head[:space].rstrip(" ,;:-")
    return head


def trim_to_limits(data: Any, schema: dict[str, Any]) -> tuple[Any, list[str]]:
    """A copy of ``data`` with every value at or over its limit trimmed, and the
    paths trimmed (lists keep their first items)."""
    out = copy.deepcopy(data)
    broken = over_limits(out, schema)
    for b in sorted(broken, key=lambda b: -b.path.count(".")):  # innermost first
        parts = b.path.split(".") if b.path else []
        parent, last = _parent(out, parts)
        value = parent[last] if parts else out
        value = trim_text(value, b.limit) if b.kind == "characters" else value[: b.limit]
        if parts:
            parent[last] = value
        else:
            out = value
    return out, [b.path for b in broken]


def _parent(data: Any, parts: list[str]) -> tuple[Any, Any]:
    node = data
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if not parts:
        return None, None
    last = parts[-1]
    return node, int(last) if isinstance(node, list) else last
