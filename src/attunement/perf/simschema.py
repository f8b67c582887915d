"""How a simulated server treats the length limits of a JSON schema.

Kept apart from :mod:`attunement.perf.simserver` so the server stays small: a
server whose decoder enforces ``maxLength`` (a grammar built from the schema)
stops a string at its bound, mid-word, and the answer is still valid JSON; the
client never learns that text was lost unless it looks.
"""

from __future__ import annotations

import json
from typing import Any


def cut_strings(node: Any, schema: dict[str, Any]) -> Any:
    """``node`` with every string cut at its ``maxLength`` in ``schema``.

    >>> cut_strings({"a": "abcdef", "b": ["xyz"]}, {"type": "object", "properties": {
    ...     "a": {"type": "string", "maxLength": 4},
    ...     "b": {"type": "array", "items": {"type": "string", "maxLength": 2}}}})
    {'a': 'abcd', 'b': ['xy']}
    """
    if isinstance(node, str) and "maxLength" in schema:
        return node[: schema["maxLength"]]
    if isinstance(node, list):
        return [cut_strings(v, schema.get("items") or {}) for v in node]
    if isinstance(node, dict):
        props = schema.get("properties") or {}
        return {k: cut_strings(v, props.get(k) or {}) for k, v in node.items()}
    return node


def enforce_max_length(text: str, payload: dict[str, Any]) -> str:
    """The answer ``text`` as a server that enforces the request's ``maxLength``
    bounds while decoding sends it (unchanged when it is not JSON or the request
    has no ``json_schema`` response format)."""
    fmt = payload.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if isinstance(fmt, dict) else None
    if not isinstance(schema, dict):
        return text
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text
    return json.dumps(cut_strings(data, schema), ensure_ascii=False)
