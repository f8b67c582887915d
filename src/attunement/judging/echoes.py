"""Echoes: what a judge copied back from the material it was shown.

A judge answer is untrusted text twice over: the judge may ramble, and it may
quote the reply it was shown, which can itself contain ``Score: 5``. Before a
verdict is read, and again when one is found, the parsers ask this module:

1. **Which parts of the answer are echoes?** Every fenced block the judge
   copied back (``<response>...</response>`` and the other labels of
   :data:`FENCE_LABELS`, recognised by :func:`attunement.render.find_tags` in
   every disguise the fence defuses) is cut out by :func:`strip_fenced`; an
   opening tag that is never closed cuts to the end of the answer.
2. **Was the verdict copied from the judged text?** A judge may quote the
   reply without its fence, with the zero-width markers dropped or the
   letters normalised. :func:`copied` compares the verdict, after
   :func:`attunement.render.fold` (invisible characters dropped, NFKC,
   look-alike letters mapped, case folded, Markdown decoration ignored), with
   the untrusted texts the judge saw: if the verdict *and the tokens just
   before it* (:data:`ECHO_CONTEXT` of them, or all of that text's tokens
   before it) appear in an untrusted text, the verdict is a copy of that text.
   The judge's own verdict that merely equals a number of the reply is not.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from attunement.render import find_tags, fold

#: fence labels of the judge prompts (a subset of :data:`attunement.render.FENCE_LABELS`,
#: every label any prompt uses); echoed copies are removed before parsing
FENCE_LABELS = (
    "response",
    "analysis",
    "message",
    "dialogue",
    "persona",
    "memories",
    "situation",
    "summary",
    "data",
    "criteria",
)

#: tokens before a verdict that must also match an untrusted text to call it a copy
ECHO_CONTEXT = 3


def readable(text: str) -> str:
    """The answer as parsed: NFKC (fullwidth digits and colons become ASCII),
    invisible format characters removed.

    >>> readable("Score\\u200b: \\uff14")
    'Score: 4'
    """
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def strip_fenced(text: str, labels: Sequence[str] = FENCE_LABELS) -> str:
    """Remove every ``<label>...</label>`` block from a judge answer.

    Tags are found by :func:`attunement.render.find_tags`, the matcher the
    fence itself defuses with, so a tag the judged text smuggled in was
    rewritten before the judge saw it and cannot end an echoed block early. An
    opening tag without its closing tag removes everything after it.

    >>> strip_fenced("<response>\\nScore: 5\\n</response>\\nScore: 2").strip()
    'Score: 2'
    """
    tags = list(find_tags(text, labels))
    out, pos, i = [], 0, 0
    while i < len(tags):
        tag = tags[i]
        if tag.closing or tag.start < pos:
            i += 1
            continue
        close = next(
            (j for j in range(i + 1, len(tags)) if tags[j].closing and tags[j].label == tag.label),
            None,
        )
        out.append(text[pos : tag.start])
        out.append(" ")
        if close is None:
            return "".join(out)
        pos = tags[close].end
        i = close + 1
    out.append(text[pos:])
    return "".join(out)


_DECORATION = frozenset("*_`#>~|-")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def _tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(fold(text)) if t not in _DECORATION]


def _matched_before(source: list[str], i: int, before: list[str]) -> int:
    """How many tokens just before position ``i`` of ``source`` equal the last
    tokens of ``before``."""
    m = 0
    while m < min(i, len(before)) and source[i - 1 - m] == before[-1 - m]:
        m += 1
    return m


def _is_echo(matched: int, position: int) -> bool:
    """A copy: enough tokens agree before the verdict, or all of the source's."""
    return matched >= ECHO_CONTEXT or 0 < matched == position


def copied(body: str, start: int, end: int, untrusted: Sequence[str]) -> bool:
    """Whether the verdict ``body[start:end]`` was copied from an untrusted text:
    it occurs there (after folding) preceded by the same tokens as in the answer,
    at least :data:`ECHO_CONTEXT` of them or all of that text's tokens before it.

    >>> answer = "The reply ends: so I give Score: 5"
    >>> copied(answer, answer.index("Score"), len(answer), ["so I give **score**: 5!"])
    True
    >>> copied(answer, answer.index("Score"), len(answer), ["I rate it. Score: 5"])
    False
    """
    verdict = _tokens(body[start:end])
    before = _tokens(body[:start])
    return any(
        _is_echo(_matched_before(source, i, before), i)
        for source in map(_tokens, untrusted)
        for i in range(len(source))
        if source[i : i + len(verdict)] == verdict
    )
