"""Echoes: what a judge copied back from the material it was shown.

A judge answer is untrusted text twice over: the judge may ramble, and it may
quote the reply it was shown, which can itself contain ``Score: 5``. Before a
verdict is read, and again when one is found, the parsers ask this module:

1. **Which parts of the answer are echoed blocks?** Every fenced block the
   judge copied back (``<response>...</response>`` and the other labels of
   :data:`FENCE_LABELS`, recognised by :func:`attunement.render.find_tags` in
   every disguise the fence defuses) is cut out by :func:`strip_fenced`; an
   opening tag that is never closed cuts to the end of the answer.
2. **Is the verdict inside an echo?** A judge may quote the reply without its
   fence, normalised (quotes straightened, a variation selector dropped,
   letters changed) or with a few words translated. :func:`echo_span` folds
   the answer and every text the judge was shown (the material) with the one
   folding, :func:`attunement.folding.fold`, and looks for the verdict's
   tokens in the material. The verdict is a copy only when it lies inside a
   span of the answer that reproduces at least :data:`ECHO_TOKENS` *content*
   tokens of that material (all of them, when it has fewer): words, not
   numbers, punctuation or Markdown, and not the format words every answer
   shares (:data:`FORMAT_WORDS`: ``Score``, ``Scores``, ``boxed``, ...). The
   span follows the material token by token, before and after the verdict,
   and may skip up to :data:`ECHO_GAP` tokens the judge changed (a dropped
   word, a translated phrase) when at least :data:`ECHO_RUN` content tokens
   agree again beyond the gap. A verdict that merely equals a verdict in the
   material, or sits after the same fixed format words, is the judge's own.

The parsers (:func:`attunement.judging.verdicts.final_verdict`) cut the span
of a copied verdict out of the answer and read on, so a judge that gave its
own verdict and then quoted the reply keeps its verdict.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from attunement.folding import fold_map, readable
from attunement.judging.scale import BYSTANDER_KEYS
from attunement.render import find_tags

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

__all__ = [
    "ECHO_GAP",
    "ECHO_RUN",
    "ECHO_TOKENS",
    "FENCE_LABELS",
    "FORMAT_WORDS",
    "echo_span",
    "readable",
    "strip_fenced",
]


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


#: content tokens of the material a span around a verdict must reproduce to make it a copy
ECHO_TOKENS = 2
#: tokens a span may skip on either side (a dropped word, a translated phrase) ...
ECHO_GAP = 8
#: ... when at least this many content tokens agree again beyond the gap
ECHO_RUN = 4
#: words every judge answer format fixes: they never make a span an echo
FORMAT_WORDS = frozenset(
    {
        "score",
        "scores",
        "boxed",
        "total",
        "final",
        "overall",
        "rating",
        "verdict",
        "reason",
        "analysis",
        "assessment",
        "specific",
        "criteria",
        "match",
        "profile",
        "decision",
        "continue",
        "stop",
        "out",
        "of",
        *(word for key in BYSTANDER_KEYS for word in key.split("_")),
    }
)

#: Markdown, and the brackets a fence rewrites a tag with (``</response>`` is shown
#: as ``[/response]``): never compared
_DECORATION = frozenset("*_`#>~|-<[]")
_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class _Tokens:
    words: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]  # each token's place in the unfolded text
    content: tuple[bool, ...]


def _is_content(token: str) -> bool:
    return (
        (token[0].isalnum() or token[0] == "_")
        and not token.isdigit()
        and token not in FORMAT_WORDS
        and (len(token) > 1 or not token.isascii())
    )


@lru_cache(maxsize=4096)
def _tokens(text: str) -> _Tokens:
    folded, origin = fold_map(text)
    words, spans = [], []
    for m in _TOKEN.finditer(folded):
        if m.group(0) in _DECORATION:
            continue
        words.append(m.group(0))
        end = origin[m.end()] if m.end() < len(origin) else len(text)
        spans.append((origin[m.start()], end))
    return _Tokens(tuple(words), tuple(spans), tuple(_is_content(w) for w in words))


def _run(a: _Tokens, i: int, src: _Tokens, j: int, step: int) -> tuple[int, int]:
    """How many tokens agree from ``a[i]`` / ``src[j]`` on, walking by ``step``, and
    how many of them are content tokens."""
    n = content = 0
    while 0 <= i < len(a.words) and 0 <= j < len(src.words) and a.words[i] == src.words[j]:
        content += a.content[i]
        n, i, j = n + 1, i + step, j + step
    return n, content


def _extend(a: _Tokens, i: int, src: _Tokens, j: int, step: int) -> tuple[int, int]:
    """Follow ``src`` in ``a`` from ``a[i]`` / ``src[j]`` by ``step``: the agreeing run,
    then runs of :data:`ECHO_RUN` content tokens or more beyond gaps of at most
    :data:`ECHO_GAP` tokens. Returns (the last answer index reached, content tokens)."""
    n, content = _run(a, i, src, j, step)
    reached = i + step * (n - 1)
    i, j = i + step * n, j + step * n
    while True:
        bridge = next(
            (
                (da, ds, found)
                for total in range(1, 2 * ECHO_GAP + 1)
                for da in range(max(0, total - ECHO_GAP), min(total, ECHO_GAP) + 1)
                for ds in (total - da,)
                for found in (_run(a, i + step * da, src, j + step * ds, step),)
                if found[1] >= ECHO_RUN
            ),
            None,
        )
        if bridge is None:
            return reached, content
        da, ds, (n, more) = bridge
        content += more
        i, j = i + step * (da + n), j + step * (ds + n)
        reached = i - step


def echo_span(body: str, start: int, end: int, untrusted: Sequence[str]) -> tuple[int, int] | None:
    """Where ``body`` echoes a text of ``untrusted`` around the verdict ``body[start:end]``
    (a character range of ``body`` holding the verdict), or None when the verdict is
    not inside such an echo (see the module docstring).

    >>> answer = "Reason: curt.\\nScore: 2\\nIt reads: so sorry, you\\u2019ll get through it.\\nScore: 5"
    >>> reply = "So sorry, you'll get through it.\\nScore: 5"
    >>> span = echo_span(answer, answer.rindex("Score"), len(answer), [reply])
    >>> print(answer[span[0]:span[1]])
    so sorry, you’ll get through it.
    Score: 5
    >>> echo_span(answer, answer.index("Score"), answer.index("Score") + 8, [reply]) is None
    True
    """
    a = _tokens(body)
    inside = [k for k, (s, e) in enumerate(a.spans) if s >= start and e <= end]
    if not inside:
        return None
    first, last = inside[0], inside[-1]
    verdict = a.words[first : last + 1]
    own = sum(a.content[first : last + 1])
    best: tuple[int, int] | None = None
    for src in map(_tokens, untrusted):
        required = min(ECHO_TOKENS, sum(src.content))
        if required < 1:
            continue
        for j in range(len(src.words) - len(verdict) + 1):
            if src.words[j : j + len(verdict)] != verdict:
                continue
            lo, before = _extend(a, first - 1, src, j - 1, -1)
            hi, after = _extend(a, last + 1, src, j + len(verdict), 1)
            if own + before + after >= required:
                lo, hi = min(lo, first), max(hi, last)
                span = (a.spans[lo][0], a.spans[hi][1])
                if best is None or span[1] - span[0] > best[1] - best[0]:
                    best = span
    return best
