"""Read a judge's verdict out of its answer, and nothing else.

A judge answer is untrusted text twice over: the judge may ramble, and it may
quote the reply it was shown, which can itself contain ``Score: 5``. A policy
trained on the parsed number learns whatever the parser lets through, so every
parser here follows the same rules:

1. **Echoes are removed.** Every fenced block the judge copied back
   (``<response>...</response>`` and the other labels of :data:`FENCE_LABELS`,
   recognised by :func:`attunement.render.find_tags` in every disguise the
   fence defuses) is cut out; an opening tag that is never closed cuts to the
   end of the answer.
2. **The verdict ends the answer.** The verdict is the last score token (a
   ``Score:`` line, a ``\\boxed{}``, a JSON object with a score, the bystander's
   ``Total Score:`` line). It must end its line (only punctuation or Markdown
   after it), and nothing score-like (a digit, a number word, ``score``,
   ``\\boxed``) may follow it anywhere; otherwise the sample fails. So a
   trailing "\\boxed{5} would need more depth" neither overrides the verdict
   nor stands as one, and an earlier "Score: 2 would be harsh" is not read.
3. **A verdict is one number.** ``Score: 3-4``, ``Score: 3 to 4``, an echoed
   template ``Total Score: [0-100] / 100``, a quoted line ``> Score: 5``
   (quotes are not verdicts) and a value off the scale are failures with a
   reason; nothing is clipped, rounded or picked out of a range.
4. **A verdict that came from the judged text is refused.** A judge may quote
   the reply without its fence, with the zero-width markers dropped or the
   letters normalised. So when the caller passes the untrusted texts the judge
   saw (``untrusted=``), the verdict is compared, after
   :func:`attunement.render.fold` (invisible characters dropped, NFKC,
   look-alike letters mapped, case folded, Markdown decoration ignored), with
   them: if the verdict *and the tokens just before it* (three, or all of that
   text's tokens before it) appear in an untrusted text, the verdict is a copy
   of that text and the sample fails.
5. **The bystander's arithmetic is checked.** A text total must equal the sum
   of its five sub-scores when they are given; some but not all five is a
   failure.

A parse never invents a number. It returns a :class:`Parsed` whose ``score``
is ``None`` and whose ``reason`` says what was wrong; the caller decides
whether to draw a fresh sample.

Formats understood:

- 1-5 ratings: ``Score: 4`` (also ``**Score:** 4``, ``Scores: 4/5``,
  ``Final score: 4 out of 5``), ``\\boxed{4}``, or a JSON object with a
  ``"score"`` key (validated by the answer model of
  :mod:`attunement.judging.answers` when one is given);
- bystander: ``Total Score: 78 / 100`` with optional ``Name: X / 20`` sub-score
  lines, or a JSON object with the five 0-20 sub-scores;
- criteria: a numbered (or bulleted) list, each item with a weight
  (``(30%)``, ``(Weight: 30%)``, ...) and any number of continuation lines or
  nested bullets, or a JSON object ``{"criteria": [{"name", "weight",
  "description"}, ...]}``.
"""

from __future__ import annotations

import math
import re
import textwrap
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from attunement.judging.answers import (
    BYSTANDER_KEYS,
    BYSTANDER_PARTS,
    BystanderAnswer,
    criteria_answer,
    number_or_none,
    validation_problem,
)
from attunement.render import find_tags, fold
from attunement.textjson import Found, json_objects, last_json_object

__all__ = [
    "BYSTANDER_KEYS",
    "BYSTANDER_PARTS",
    "LINE_PREFIX",
    "NUMBER",
    "RANGE_AFTER",
    "Candidate",
    "Parsed",
    "ParsedCriteria",
    "final_verdict",
    "line_end_at",
    "parse_bystander",
    "parse_criteria",
    "parse_rating",
    "strip_fenced",
]

OutputFormat = Literal["text", "json"]

#: fence labels of the judge prompts; echoed copies are removed before parsing
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

BYSTANDER_PART_MAX = 20.0
BYSTANDER_MAX = 100.0

#: tokens before a verdict that must also match an untrusted text to call it a copy
ECHO_CONTEXT = 3


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
    return Parsed(score=None, reason=reason, **extra)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# --------------------------------------------------------------------------- echo removal


def readable(text: str) -> str:
    """The answer as parsed: NFKC (fullwidth digits and colons become ASCII),
    invisible format characters removed."""
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


def _copied(body: str, start: int, end: int, untrusted: Sequence[str]) -> bool:
    """Whether the verdict ``body[start:end]`` was copied from an untrusted text:
    it occurs there (after folding) preceded by the same tokens as in the answer,
    at least :data:`ECHO_CONTEXT` of them or all of that text's tokens before it."""
    verdict = _tokens(body[start:end])
    before = _tokens(body[:start])
    return any(
        _is_echo(_matched_before(source, i, before), i)
        for source in map(_tokens, untrusted)
        for i in range(len(source))
        if source[i : i + len(verdict)] == verdict
    )


# --------------------------------------------------------------------------- verdict tokens

NUMBER = r"(-?\d+(?:\.\d+)?)"
_DENOMINATOR = re.compile(r"[ \t]*(?:/|out\s+of)[ \t]*(\d+(?:\.\d+)?)", re.IGNORECASE)
_SCORE_LIKE = re.compile(
    r"\d|\\boxed|\bscores?\b|\b(?:one|two|three|four|five|six|seven|eight|nine|ten)\b",
    re.IGNORECASE,
)
LINE_PREFIX = r"^[ \t*#_`-]*"  # Markdown decoration, never a quote marker ('>')
_SCORE_HEAD = re.compile(
    LINE_PREFIX + r"(?P<head>(?:final\s+|overall\s+)?scores?)[ \t*_`]*[:=]",
    re.IGNORECASE | re.MULTILINE,
)
_BOXED = re.compile(r"\\boxed\s*\{(?P<inner>[^{}\n]{0,40})\}")
# a second number right after the first: "3-4", "3 to 4", "4 or 5", "3..4"
RANGE_AFTER = re.compile(r"[ \t]*(?:-|–|—|to\b|or\b|~|\.\.)[ \t]*\d", re.IGNORECASE)
_CLEAN_NUMBER = re.compile(r"[ \t*_`]*" + NUMBER)


@dataclass(frozen=True)
class Candidate:
    """A score token: where it is, its value (None: malformed) and what it was."""

    start: int
    end: int
    value: float | None
    what: str


def _read_number(text: str, pos: int, *, scale_high: float) -> tuple[float | None, int, str | None]:
    """A single number at ``pos`` (decoration allowed before it), with an optional
    ``/ D`` or ``out of D``. Returns (value, end, problem)."""
    m = _CLEAN_NUMBER.match(text, pos)
    if not m:
        return None, pos, "no number"
    value, end = float(m.group(1)), m.end()
    d = _DENOMINATOR.match(text, end)
    if d:
        end = d.end()
        if float(d.group(1)) != scale_high:
            return None, end, f"not on a 1-{_fmt(scale_high)} scale"
    return value, end, None


_REST_OF_LINE = re.compile(r"[^\n]*")


def line_end_at(text: str, pos: int) -> int:
    """Where the line holding ``pos`` ends (its newline, or the end of the text)."""
    return _REST_OF_LINE.match(text, pos).end()


def _score_lines(body: str, *, high: float) -> list[Candidate]:
    out = []
    for m in _SCORE_HEAD.finditer(body):
        line_end = line_end_at(body, m.end())
        shown = body[m.start("head") : line_end].strip()
        rest = body[m.end() : line_end]
        if re.match(r"[ \t*_`]*\\boxed", rest):
            continue  # "Scores: \boxed{3}": the \boxed{} is the candidate
        value, end, problem = _read_number(body, m.end(), scale_high=high)
        if problem == "no number" or (problem is None and RANGE_AFTER.match(body, end, line_end)):
            out.append(
                Candidate(
                    m.start("head"), line_end, None, f"score line {shown!r} is not one number"
                )
            )
        elif problem is not None:
            out.append(Candidate(m.start("head"), end, None, f"{shown!r} is {problem}"))
        else:
            out.append(Candidate(m.start("head"), end, value, shown))
    return out


def _boxed(body: str) -> list[Candidate]:
    out = []
    for m in _BOXED.finditer(body):
        inner = re.fullmatch(r"\s*" + NUMBER + r"\s*", m.group("inner"))
        if inner:
            out.append(Candidate(m.start(), m.end(), float(inner.group(1)), m.group(0)))
        else:
            out.append(
                Candidate(m.start(), m.end(), None, f"{m.group(0)!r} does not hold one number")
            )
    # a \boxed with nothing readable inside (e.g. a template) is still a score token
    for m in re.finditer(r"\\boxed\s*\{[^}\n]*$", body, re.MULTILINE):
        out.append(Candidate(m.start(), m.end(), None, "unclosed \\boxed{"))
    return out


def _json_scores(body: str, answer: type[BaseModel] | None) -> list[Candidate]:
    out = []
    for found in json_objects(body):
        if "score" not in found.value:
            continue
        out.append(_json_candidate(found, answer))
    return out


def _json_candidate(found: Found, answer: type[BaseModel] | None) -> Candidate:
    if answer is not None:
        try:
            value = answer.model_validate(found.value).score
        except ValidationError as exc:
            return Candidate(
                found.start, found.end, None, f"JSON answer invalid: {validation_problem(exc)}"
            )
        return Candidate(found.start, found.end, float(value), "JSON score")
    number = number_or_none(found.value["score"])
    if number is None:
        return Candidate(
            found.start, found.end, None, f"JSON score {found.value['score']!r} is not a number"
        )
    return Candidate(found.start, found.end, float(number), "JSON score")


_TRIVIAL = re.compile(r"(?:[ \t.,;:!*_`'\"()\[\]]|```(?:json)?)*")


def final_verdict(
    body: str, candidates: list[Candidate], untrusted: Sequence[str]
) -> tuple[Candidate | None, str | None]:
    """The verdict: the last candidate, if it ends its line (only punctuation or
    Markdown after it), nothing score-like follows it, and it is not a copy of
    an untrusted text. Returns (verdict, problem)."""
    if not candidates:
        return None, None
    last = max(candidates, key=lambda c: (c.end, -c.start))
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
    if _copied(body, last.start, last.end, untrusted):
        return None, f"the verdict {last.what!r} is copied from the judged text"
    return last, None


# --------------------------------------------------------------------------- 1-5 ratings

_SECTION = r"^[ \t*#_`-]*{name}[ \t*_`]*[:：]"


def _section(text: str, start: str, stops: tuple[str, ...]) -> str | None:
    """The text after the header ``start:`` up to the next of ``stops`` (last header wins)."""
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


def _str_field(obj: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def parse_rating(
    text: str,
    *,
    low: float = 1,
    high: float = 5,
    fmt: OutputFormat = "text",
    answer: type[BaseModel] | None = None,
    untrusted: Sequence[str] = (),
) -> Parsed:
    """Read the judge's final 1-5 rating (and its rationale and criteria, if given).

    ``fmt="json"`` reads only JSON objects with a ``score`` key (validated by
    ``answer`` when given); ``fmt="text"`` also reads ``Score:`` lines and
    ``\\boxed{}``. The verdict is the last of them and must end the answer;
    ``untrusted`` are the texts the judge was shown as data (see the module
    docstring). Out-of-range values are failures, not clipped.

    >>> parse_rating("Reason: warm.\\nScore: 4").score
    4.0
    >>> parse_rating("Analysis: fine\\nScores: \\\\boxed{3}").score
    3.0
    >>> parse_rating("Score: 9").reason
    'score 9 is outside 1-5'
    >>> parse_rating("Scores: 2 to 5").reason
    "score line 'Scores: 2 to 5' is not one number"
    """
    if not text or not text.strip():
        return failed("empty judge answer")
    body = strip_fenced(readable(text))
    rationale = _section(body, "reason", ("score", "scores")) or _section(
        body, "analysis", ("score", "scores")
    )
    criteria = _section(body, r"specific\s+criteria", ("analysis", "score", "scores"))
    if fmt == "json":
        candidates = _json_scores(body, answer)
        found = last_json_object(body, with_key="score")
        if found is not None:
            obj = found.value
            rationale = _str_field(obj, "reason", "analysis", "rationale") or rationale
            crit = obj.get("criteria")
            criteria = (
                format_criteria_list(crit)
                if isinstance(crit, list)
                else _str_field(obj, "criteria") or criteria
            )
        missing = "no JSON object with a 'score' key"
    else:
        # a JSON object is a tolerated alternative here, not the answer asked for:
        # only its score is read, whatever other keys it has
        candidates = _score_lines(body, high=high) + _boxed(body) + _json_scores(body, None)
        missing = "no 'Score:' line, \\boxed{} score or JSON score found"
    verdict, problem = final_verdict(body, candidates, untrusted)
    if verdict is None:
        return failed(problem or missing, rationale=rationale, criteria=criteria)
    value = verdict.value
    assert value is not None
    if not low <= value <= high:
        return failed(
            f"score {_fmt(value)} is outside {_fmt(low)}-{_fmt(high)}",
            rationale=rationale,
            criteria=criteria,
        )
    return Parsed(score=value, rationale=rationale, criteria=criteria)


# --------------------------------------------------------------------------- bystander

_TOTAL_HEAD = re.compile(
    LINE_PREFIX + r"(?:\d\.\s*)?(?P<head>total\s+score)[ \t*_`]*[:=]", re.IGNORECASE | re.MULTILINE
)


def _totals(body: str) -> list[Candidate]:
    out = []
    for m in _TOTAL_HEAD.finditer(body):
        line_end = line_end_at(body, m.end())
        shown = body[m.start("head") : line_end].strip()
        value, end, problem = _read_number(body, m.end(), scale_high=BYSTANDER_MAX)
        if problem == "no number" or (problem is None and RANGE_AFTER.match(body, end, line_end)):
            out.append(
                Candidate(
                    m.start("head"), line_end, None, f"total line {shown!r} is not one number"
                )
            )
        elif problem is not None:
            out.append(Candidate(m.start("head"), end, None, f"total {shown!r} is not out of 100"))
        else:
            out.append(Candidate(m.start("head"), end, value, shown))
    return out


def _sub_scores(body: str) -> tuple[dict[str, float], list[Candidate]]:
    """The last ``Name: X / 20`` line of each sub-score, and all of them as candidates."""
    subs: dict[str, float] = {}
    candidates = []
    for key, _, pattern in BYSTANDER_PARTS:
        line = re.compile(
            LINE_PREFIX + rf"(?:\d\.\s*)?{pattern}[^:\n]*[:=][ \t*_`]*{NUMBER}"
            r"[ \t]*/[ \t]*20\b",
            re.IGNORECASE | re.MULTILINE,
        )
        hits = list(line.finditer(body))
        if hits:
            subs[key] = float(hits[-1].group(1))
            # a sub-score line ends with its reason: the whole line is the token
            candidates += [
                Candidate(
                    h.start(), line_end_at(body, h.end()), float(h.group(1)), h.group(0).strip()
                )
                for h in hits
            ]
    return subs, candidates


#: where an assessment ends: a sub-score line or the total
_PART_HEADS = (
    *(rf"(?:\d\.\s*)?{pattern}[^:\n]*" for _, _, pattern in BYSTANDER_PARTS),
    r"(?:\d\.\s*)?total\s+score",
)


def parse_bystander(
    text: str, *, fmt: OutputFormat = "json", untrusted: Sequence[str] = ()
) -> Parsed:
    """Read the bystander's five 0-20 sub-scores and its 0-100 total.

    JSON: the last object holding all five keys of :data:`BYSTANDER_KEYS`,
    validated by :class:`~attunement.judging.answers.BystanderAnswer`; the
    total is their sum. Text: the ``Total Score: X / 100`` line that ends the
    answer; when sub-score lines ``Name: X / 20`` are given, all five must be
    there and add up to the total. Without a total line, five sub-score lines
    are summed.

    >>> parse_bystander("Total Score: 72 / 100", fmt="text").score
    72.0
    """
    if not text or not text.strip():
        return failed("empty judge answer")
    body = strip_fenced(readable(text))
    if fmt == "json":
        objects = [f for f in json_objects(body) if all(k in f.value for k in BYSTANDER_KEYS)]
        if not objects:
            return failed(
                f"no JSON object with the five bystander sub-scores ({', '.join(BYSTANDER_KEYS)})"
            )
        found = objects[-1]
        try:
            parsed = BystanderAnswer.model_validate(found.value)
        except ValidationError as exc:
            return failed(f"bystander JSON invalid: {validation_problem(exc)}")
        subs = {key: float(getattr(parsed, key)) for key in BYSTANDER_KEYS}
        total = Candidate(found.start, found.end, sum(subs.values()), "JSON sub-scores")
        verdict, problem = final_verdict(body, [total], untrusted)
        if verdict is None:
            return failed(problem or "no verdict", sub_scores=subs)
        return Parsed(
            score=verdict.value,
            sub_scores=subs,
            rationale=_str_field(found.value, "assessment", "reason", "analysis"),
        )

    subs, part_candidates = _sub_scores(body)
    rationale = _section(
        body, r"(?:\d\.\s*)?overall\s+assessment", (r"\d\.\s*dimension[^:\n]*", *_PART_HEADS)
    )
    rationale = rationale or _section(body, "assessment", _PART_HEADS)
    totals = _totals(body)
    verdict, problem = final_verdict(body, totals + part_candidates, untrusted)
    if verdict is None:
        return failed(
            problem or "no 'Total Score: X / 100' line and not all five sub-scores", sub_scores=subs
        )
    bad = {k: v for k, v in subs.items() if not 0 <= v <= BYSTANDER_PART_MAX}
    if bad:
        key, value = next(iter(bad.items()))
        return failed(f"bystander sub-score {key}={_fmt(value)} is outside 0-20", sub_scores=subs)
    if subs and len(subs) < len(BYSTANDER_KEYS):
        missing = [k for k in BYSTANDER_KEYS if k not in subs]
        return failed(
            f"only {len(subs)} of the five sub-scores given (missing {', '.join(missing)})",
            sub_scores=subs,
        )
    if totals:
        total = max(totals, key=lambda c: c.end)
        if total.value is None:
            return failed(total.what, sub_scores=subs)
        value = total.value
        if subs and not math.isclose(sum(subs.values()), value, abs_tol=1e-6):
            return failed(
                f"total {_fmt(value)} is not the sum of the five sub-scores "
                f"({_fmt(sum(subs.values()))})",
                sub_scores=subs,
            )
    else:
        value = sum(subs.values())
    if not 0 <= value <= BYSTANDER_MAX:
        return failed(f"total {_fmt(value)} is outside 0-100", sub_scores=subs)
    return Parsed(score=value, sub_scores=subs, rationale=rationale)


# --------------------------------------------------------------------------- criteria


@dataclass(frozen=True)
class Criterion:
    name: str
    weight: float | None
    description: str


@dataclass(frozen=True)
class ParsedCriteria:
    """Criteria read from a judge answer, or ``reason`` when unusable.

    ``text`` is what judges are shown: for a text answer, the judge's own list
    exactly as written (from its first item to the end of the section, with
    every continuation line, nested bullet and emphasis), with only the
    weights rewritten when they were rescaled; for a JSON answer, the items as
    a numbered list. The items are parsed to validate the answer (count,
    weights), never to rewrite it.
    """

    items: tuple[Criterion, ...] = ()
    reason: str | None = None
    rescaled: bool = False
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None


_MARKER = re.compile(
    r"^(?P<indent>[ \t]*)(?:\*\*|__)?[ \t]*"
    r"(?:(?P<number>\d{1,2})[.)]|(?P<bullet>[-*•+]))(?:\*\*|__)?[ \t]+(?=\S)"
)
_WEIGHT = re.compile(
    r"[(\[]\s*(?:weight(?:ing)?\s*[:=]?\s*)?(?P<a>\d+(?:\.\d+)?)\s*%\s*[)\]]"
    r"|weight(?:ing)?\s*[:=]?\s*(?P<b>\d+(?:\.\d+)?)\s*%?"
    r"|(?P<c>\d+(?:\.\d+)?)\s*%",
    re.IGNORECASE,
)


def _indented(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return "\n   ".join(line.strip() for line in lines if line.strip())


def render_criteria(items: Sequence[Criterion]) -> str:
    """A numbered list, ``1. Name (30%): description``; continuation lines indented."""
    lines = []
    for i, c in enumerate(items, start=1):
        weight = f" ({_fmt(c.weight)}%)" if c.weight is not None else ""
        desc = f": {_indented(c.description)}" if c.description else ""
        lines.append(f"{i}. {c.name}{weight}{desc}")
    return "\n".join(lines)


def format_criteria_list(value: list[Any]) -> str:
    """Criteria given as a JSON list (strings or objects) as the numbered text form."""
    items = []
    for entry in value:
        if isinstance(entry, dict):
            weight = number_or_none(entry.get("weight"))
            items.append(
                Criterion(
                    name=str(entry.get("name", "")).strip(),
                    weight=None if weight is None else float(weight),
                    description=str(entry.get("description", "")).strip(),
                )
            )
        else:
            items.append(Criterion(name=str(entry).strip(), weight=None, description=""))
    return render_criteria(items)


def _clean_name(text: str) -> str:
    return text.strip().strip("*_`").strip().rstrip(":-–—").strip().strip("*_`").strip()


@dataclass(frozen=True)
class _Item:
    criterion: Criterion
    weight_span: tuple[int, int] | None  # offsets of the weight number in the section


def _split_items(section: str) -> tuple[int, list[_Item]]:
    """Top-level items of a list with their continuation lines; returns the
    offset where the first item starts and the items."""
    lines = section.splitlines(keepends=True)
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line)
    marks = [(i, m) for i, line in enumerate(lines) if (m := _MARKER.match(line))]
    numbered = [(i, m) for i, m in marks if m.group("number")]
    chosen = numbered or marks
    if not chosen:
        return len(section), []
    top = min(len(m.group("indent").expandtabs()) for _, m in chosen)
    heads = [(i, m) for i, m in chosen if len(m.group("indent").expandtabs()) == top]
    items = []
    for n, (i, m) in enumerate(heads):
        last = heads[n + 1][0] if n + 1 < len(heads) else len(lines)
        head = lines[i][m.end() :].rstrip("\n")
        rest = "".join(lines[i + 1 : last])
        head_start = offsets[i] + m.end()
        w = _WEIGHT.search(head)
        span = None
        if w:
            group = next(g for g in ("a", "b", "c") if w.group(g) is not None)
            span = (head_start + w.start(group), head_start + w.end(group))
            weight: float | None = float(w.group(group))
            name_part, tail = head[: w.start()], head[w.end() :]
        else:
            wr = re.search(r"weight(?:ing)?\s*[:=]?\s*(\d+(?:\.\d+)?)\s*%?", rest, re.IGNORECASE)
            weight = float(wr.group(1)) if wr else None
            if wr:
                base = offsets[i + 1]
                span = (base + wr.start(1), base + wr.end(1))
            name_part, tail = head, ""
        tail = tail.strip().strip("*_`").strip()
        if ":" in name_part and not tail:
            name_part, _, tail = name_part.partition(":")
        if tail.startswith((":", "-", "–", "—")):
            tail = tail[1:].strip()
        description = "\n".join(x for x in (tail, rest.strip()) if x)
        items.append(_Item(Criterion(_clean_name(name_part), weight, description.strip()), span))
    return offsets[heads[0][0]], items


def _list_block(text: str) -> str:
    """A list as its items' indentation reads: what follows on the header's own line
    (if anything) at the left margin, the lines after it without their common
    indentation, blank lines around it dropped."""
    first, _, rest = text.partition("\n")
    rest = textwrap.dedent(rest)
    block = f"{first.strip()}\n{rest}" if first.strip() else rest
    return block.strip("\n").rstrip()


def _weight(c: Criterion) -> float:
    """The weight of a criterion already checked to have one (NaN otherwise)."""
    return math.nan if c.weight is None else c.weight


def rescale_weights(items: Sequence[Criterion]) -> list[Criterion]:
    """Scale weights to whole percentages summing to exactly 100 (largest remainder)."""
    total = sum(_weight(c) for c in items)
    exact = [100.0 * _weight(c) / total for c in items]
    whole = [math.floor(x) for x in exact]
    order = sorted(range(len(items)), key=lambda i: exact[i] - whole[i], reverse=True)
    for i in order[: 100 - sum(whole)]:
        whole[i] += 1
    return [Criterion(c.name, float(w), c.description) for c, w in zip(items, whole)]


def _validated(
    items: list[Criterion], *, min_items: int, max_items: int, weighted: bool
) -> tuple[list[Criterion], str | None, bool]:
    items = [c for c in items if c.name or c.description]
    if not min_items <= len(items) <= max_items:
        return items, f"{len(items)} criteria; expected {min_items}-{max_items}", False
    if not weighted:
        return items, None, False
    if any(c.weight is None or c.weight <= 0 for c in items):
        return items, "a criterion has no positive weight", False
    if math.isclose(sum(_weight(c) for c in items), 100.0, abs_tol=1e-6):
        return items, None, False
    return rescale_weights(items), None, True


def parse_criteria(
    text: str,
    *,
    fmt: OutputFormat = "text",
    min_items: int = 1,
    max_items: int = 8,
    weighted: bool = False,
) -> ParsedCriteria:
    """Read and validate a criteria list; with ``weighted`` every item needs a
    positive weight.

    Weights that do not sum to 100 are rescaled proportionally (``rescaled``
    is then true); that changes no judgement, only the stated emphasis.
    """
    if not text or not text.strip():
        return ParsedCriteria(reason="empty criteria answer")
    body = strip_fenced(readable(text), tuple(x for x in FENCE_LABELS if x != "criteria"))
    if fmt == "json":
        found = last_json_object(body, with_key="criteria")
        if found is None or not isinstance(found.value.get("criteria"), list):
            return ParsedCriteria(reason="no JSON object with a 'criteria' list")
        try:
            answer = criteria_answer(min_items, max_items).model_validate(found.value)
        except ValidationError as exc:
            return ParsedCriteria(reason=f"criteria JSON invalid: {validation_problem(exc)}")
        raw = [
            Criterion(c.name.strip(), float(c.weight), c.description.strip())
            for c in answer.criteria
        ]
        items, reason, rescaled = _validated(
            raw, min_items=min_items, max_items=max_items, weighted=weighted
        )
        return ParsedCriteria(
            items=tuple(items), reason=reason, rescaled=rescaled, text=render_criteria(items)
        )
    section = _section(body, r"(?:specific\s+)?criteria", ("analysis", "score", "scores"))
    source = _list_block(section if section is not None else body)
    first, parsed = _split_items(source)
    parsed = [p for p in parsed if p.criterion.name or p.criterion.description]
    items, reason, rescaled = _validated(
        [p.criterion for p in parsed], min_items=min_items, max_items=max_items, weighted=weighted
    )
    shown = source[first:]
    if rescaled:  # rewrite only the weight numbers, in place
        pieces, pos = [], first
        spans = [(p.weight_span, c) for p, c in zip(parsed, items) if p.weight_span is not None]
        for (begin, end), c in spans:  # every weighted item has its span
            pieces += [source[pos:begin], _fmt(_weight(c))]
            pos = end
        shown = "".join(pieces) + source[pos:]
    return ParsedCriteria(items=tuple(items), reason=reason, rescaled=rescaled, text=shown.strip())
