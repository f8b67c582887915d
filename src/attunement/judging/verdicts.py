"""Verdicts: the one rule every parser of a judge's answer follows.

A policy trained on a parsed number learns whatever the parser lets through,
so the parsers of ratings (:mod:`attunement.judging.ratings`), of the
bystander (:mod:`attunement.judging.bystander`) and of the RLPA judges all
find their score tokens (:class:`Candidate`) and leave the choice of the
verdict to :func:`final_verdict`:

- **The verdict ends the answer.** The verdict is the last score token. It
  must end its line (only punctuation or Markdown after it), and nothing
  score-like (a digit, a number word, ``score``, ``\\boxed``) may follow it
  anywhere; otherwise the sample fails. So a trailing "\\boxed{5} would need
  more depth" neither overrides the verdict nor stands as one, and an earlier
  "Score: 2 would be harsh" is not read.
- **A verdict is one number.** A token holding a range (``3-4``, ``3 to 4``),
  an echoed template or a value on another scale is a candidate *without* a
  value: it still ends the answer, and so it fails the sample with its reason;
  nothing is clipped, rounded or picked out of a range. Quoted lines
  (``> Score: 5``) are not candidates at all (:data:`LINE_PREFIX`).
- **A verdict copied from the judged text is not the judge's**
  (:func:`attunement.judging.echoes.echo_span`): the echo around it is cut
  out of the answer and the verdict rules apply to what is left, so a judge
  that gave its own verdict and then quoted the reply keeps its verdict, and
  one that only quoted it has none.

A parse never invents a number: it returns a :class:`Parsed` whose ``score``
is ``None`` and whose ``reason`` says what was wrong, and the caller decides
whether to draw a fresh sample.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from attunement.judging.echoes import echo_span

#: one number as written in an answer
NUMBER = r"(-?\d+(?:\.\d+)?)"
#: what may start a verdict line: Markdown decoration, never a quote marker ('>')
LINE_PREFIX = r"^[ \t*#_`-]*"
#: a second number right after the first: "3-4", "3 to 4", "4 or 5", "3..4"
RANGE_AFTER = re.compile(r"[ \t]*(?:-|–|—|to\b|or\b|~|\.\.)[ \t]*\d", re.IGNORECASE)

_DENOMINATOR = re.compile(r"[ \t]*(?:/|out\s+of)[ \t]*(\d+(?:\.\d+)?)", re.IGNORECASE)
_SCORE_LIKE = re.compile(
    r"\d|\\boxed|\bscores?\b|\b(?:one|two|three|four|five|six|seven|eight|nine|ten)\b",
    re.IGNORECASE,
)
_CLEAN_NUMBER = re.compile(r"[ \t*_`]*" + NUMBER)
_REST_OF_LINE = re.compile(r"[^\n]*")
_TRIVIAL = re.compile(r"(?:[ \t.,;:!*_`'\"()\[\]]|```(?:json)?)*")
_SECTION = r"^[ \t*#_`-]*{name}[ \t*_`]*[:：]"


@dataclass(frozen=True)
class Parsed:
    """The outcome of parsing one judge sample.

    ``score`` is on the judge's own scale, or ``None`` with ``reason`` set.
    """

    score: float | None
    reason: str | None = None
    rationale: str | None = None
    criteria: str | None = None
    sub_scores: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.score is not None


def failed(reason: str, **extra: Any) -> Parsed:
    """A sample that yields no score, and why."""
    return Parsed(score=None, reason=reason, **extra)


def fmt_number(x: float) -> str:
    """A number as a person writes it: ``4`` rather than ``4.0``.

    >>> fmt_number(4.0), fmt_number(2.5)
    ('4', '2.5')
    """
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Candidate:
    """A score token: where it is, its value (None: malformed) and what it was."""

    start: int
    end: int
    value: float | None
    what: str


def line_end_at(text: str, pos: int) -> int:
    """Where the line holding ``pos`` ends (its newline, or the end of the text)."""
    return _REST_OF_LINE.match(text, pos).end()


def read_number(
    text: str, pos: int, *, low: float, high: float
) -> tuple[float | None, int, str | None]:
    """A single number at ``pos`` (decoration allowed before it), with an optional
    ``/ D`` or ``out of D`` that must name ``high``. Returns (value, end, problem).

    >>> read_number("Score: 4/5", 6, low=1, high=5), read_number(" 4/10", 0, low=1, high=5)[2]
    ((4.0, 10, None), 'not on a 1-5 scale')
    """
    m = _CLEAN_NUMBER.match(text, pos)
    if not m:
        return None, pos, "no number"
    value, end = float(m.group(1)), m.end()
    d = _DENOMINATOR.match(text, end)
    if d:
        end = d.end()
        if float(d.group(1)) != high:
            return None, end, f"not on a {fmt_number(low)}-{fmt_number(high)} scale"
    return value, end, None


def headed_candidate(
    body: str, head: re.Match[str], *, low: float, high: float, label: str, off_scale: str
) -> Candidate:
    """The score token a head such as ``Score:`` or ``Total Score:`` starts (the
    match ``head``, with a group ``head`` for the words): one number, optionally
    out of ``high``. No number, or a range, is a token without a value (``label``
    names it in the reason); a number out of another total is one too
    (``off_scale``, formatted with ``shown`` and ``problem``)."""
    line_end = line_end_at(body, head.end())
    shown = body[head.start("head") : line_end].strip()
    value, end, problem = read_number(body, head.end(), low=low, high=high)
    if problem == "no number" or (problem is None and RANGE_AFTER.match(body, end, line_end)):
        return Candidate(head.start("head"), line_end, None, f"{label} {shown!r} is not one number")
    if problem is not None:
        reason = off_scale.format(shown=shown, problem=problem)
        return Candidate(head.start("head"), end, None, reason)
    return Candidate(head.start("head"), end, value, shown)


def final_verdict(
    body: str, candidates: list[Candidate], untrusted: Sequence[str]
) -> tuple[Candidate | None, str | None]:
    """The verdict: the last candidate that is not inside an echo of an untrusted
    text, if it ends its line (only punctuation or Markdown after it) and nothing
    score-like follows it outside the echoes. Returns (verdict, problem).

    >>> body = "Score: 4\\nScore: 5 would be generous"
    >>> final_verdict(body, [Candidate(0, 8, 4.0, "Score: 4"), Candidate(9, 17, 5.0, "Score: 5")], [])[1]
    "text after the verdict 'Score: 5' on its line: 'would be generous'"
    """
    body, left, copy = without_echoes(body, candidates, untrusted)
    if not left:
        return None, copy
    last = max(left, key=lambda c: (c.end, -c.start))
    return _ends_answer(_quiet_tail(body, last.end, untrusted), last)


def _quiet_tail(body: str, after: int, untrusted: Sequence[str]) -> str:
    """``body`` with every echo that holds score-like text after ``after`` blanked
    (a quoted reply's ``Score: 5`` after the judge's own verdict is not the judge's)."""
    pos = after
    while untrusted:
        found = _SCORE_LIKE.search(body, pos)
        if found is None:
            break
        span = echo_span(body, found.start(), found.end(), untrusted)
        if span is None or span[1] <= found.start():
            pos = found.end()
            continue
        start = max(span[0], after)
        body = body[:start] + _blank(body[start : span[1]]) + body[span[1] :]
        pos = span[1]
    return body


def without_echoes(
    body: str, candidates: list[Candidate], untrusted: Sequence[str]
) -> tuple[str, list[Candidate], str | None]:
    """Cut the echo around the last candidate out of ``body`` (blanked in place)
    while that candidate is a copy (:func:`attunement.judging.echoes.echo_span`).
    Returns (the body, the candidates outside the echoes, why the first copy was
    refused or None)."""
    left = list(candidates)
    copy: str | None = None
    while left:
        last = max(left, key=lambda c: (c.end, -c.start))
        span = echo_span(body, last.start, last.end, untrusted)
        if span is None:
            break
        copy = copy or f"the verdict {last.what!r} is copied from the judged text"
        body = body[: span[0]] + _blank(body[span[0] : span[1]]) + body[span[1] :]
        left = [c for c in left if c.end <= span[0] or c.start >= span[1]]
    return body, left, copy


def _blank(text: str) -> str:
    """``text`` as spaces, its line breaks kept (an echo cut out in place)."""
    return "".join(ch if ch == "\n" else " " for ch in text)


def _ends_answer(body: str, last: Candidate) -> tuple[Candidate | None, str | None]:
    """``last`` as the verdict, if it ends its line and nothing score-like follows it."""
    line_end = line_end_at(body, last.end)
    rest_of_line = body[last.end : line_end]
    tail = body[line_end:]
    trailing = _SCORE_LIKE.search(rest_of_line + tail)
    if trailing:
        after = (rest_of_line + tail)[trailing.start() :]
        shown = after.partition("\n")[0].strip()
        return None, f"score-like text after the verdict {last.what!r}: {shown[:60]!r}"
    if not _TRIVIAL.fullmatch(rest_of_line):
        return None, (
            f"text after the verdict {last.what!r} on its line: {rest_of_line.strip()[:60]!r}"
        )
    if last.value is None:
        return None, last.what
    return last, None


def section(text: str, start: str, stops: tuple[str, ...]) -> str | None:
    """The text after the header ``start:`` up to the next of ``stops`` (last header wins).

    >>> section("Reason: kind.\\nScore: 4", "reason", ("score",))
    'kind.'
    """
    heads = list(re.finditer(_SECTION.format(name=start), text, re.IGNORECASE | re.MULTILINE))
    if not heads:
        return None
    begin = heads[-1].end()
    end = len(text)
    for stop in stops:
        m = re.compile(_SECTION.format(name=stop), re.IGNORECASE | re.MULTILINE).search(text, begin)
        if m:
            end = min(end, m.start())
    body = text[begin:end].strip()
    return body or None


def str_field(obj: dict[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` whose value in a JSON answer is a non-blank string."""
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
