"""Read a judge's verdict out of its answer, and nothing else.

A judge answer is untrusted text twice over: the judge may ramble, and it may
quote the reply it was shown, which can itself contain ``Score: 5``. So every
parser here

1. removes any fenced block the judge echoed back (``<response>...</response>``
   and the other labels of :data:`FENCE_LABELS`, the same labels the prompts
   use with :func:`attunement.render.fence`);
2. reads only the judge's *final* answer: the last score line, ``\\boxed{}``
   or JSON object in what is left, never the first;
3. checks the value against the scale and reports a reason when it cannot.

A parse never invents a number. It returns a :class:`Parsed` whose ``score``
is ``None`` and whose ``reason`` says what was wrong; the caller decides
whether to draw a fresh sample.

Formats understood:

- 1-5 ratings: ``Score: 4`` (also ``**Score:** 4``, ``Scores: 4/5``),
  ``\\boxed{4}``, or a JSON object with a ``"score"`` key;
- bystander: ``Total Score: 78 / 100`` with optional ``Name: X / 20`` sub-score
  lines, or a JSON object with the five 0-20 sub-scores;
- criteria: a numbered list ``1. Name (30%): what a strong reply does``, or a
  JSON object ``{"criteria": [{"name", "weight", "description"}, ...]}``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

OutputFormat = Literal["text", "json"]

#: fence labels used by the judge prompts; echoed copies are removed before parsing
FENCE_LABELS = ("response", "analysis", "message")

#: the bystander's five sub-scores (key, label, pattern that finds the label in text)
BYSTANDER_PARTS: tuple[tuple[str, str, str], ...] = (
    ("content_effectiveness", "Content effectiveness", r"content\s+effectiveness"),
    ("logical_clarity", "Logical structure and clarity", r"logical\s+structure"),
    ("communication_efficiency", "Communication efficiency", r"communication\s+efficiency"),
    ("objectivity", "Objectivity and neutrality", r"objectivity"),
    ("accuracy", "Information accuracy and verifiability", r"(?:information\s+)?accuracy"),
)
BYSTANDER_KEYS = tuple(key for key, _, _ in BYSTANDER_PARTS)
BYSTANDER_PART_MAX = 20.0
BYSTANDER_MAX = 100.0


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


# --------------------------------------------------------------------------- echo removal


def strip_fenced(text: str, labels: tuple[str, ...] = FENCE_LABELS) -> str:
    """Remove every complete ``<label>...</label>`` block from a judge answer.

    The judged text was fenced with :func:`attunement.render.fence`, which
    defuses any tag inside it, so the first real closing tag after an opening
    one is the end of the echoed block.
    """
    for label in labels:
        pattern = re.compile(rf"<\s*{re.escape(label)}\s*>.*?<\s*/\s*{re.escape(label)}\s*>",
                             re.DOTALL | re.IGNORECASE)
        text = pattern.sub(" ", text)
    return text


# --------------------------------------------------------------------------- JSON objects


def _json_objects(text: str) -> list[tuple[int, dict[str, Any]]]:
    """Every top-level JSON object in ``text`` with the offset where it ends."""
    decoder = json.JSONDecoder()
    found: list[tuple[int, dict[str, Any]]] = []
    pos = 0
    while True:
        start = text.find("{", pos)
        if start < 0:
            return found
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            pos = start + 1
            continue
        if isinstance(obj, dict):
            found.append((end, obj))
            pos = end
        else:
            pos = start + 1


def last_json_object(text: str, *, with_key: str | None = None) -> dict[str, Any] | None:
    """The last JSON object in ``text`` (optionally: the last having ``with_key``)."""
    objects = [obj for _, obj in _json_objects(text) if with_key is None or with_key in obj]
    return objects[-1] if objects else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*\d+)?\s*", value)
        if not match:
            return None
        number = float(match.group(1))
    else:
        return None
    return number if math.isfinite(number) else None


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# --------------------------------------------------------------------------- 1-5 ratings

_NUM = r"(-?\d+(?:\.\d+)?)"
_BOXED = re.compile(r"\\boxed\s*\{\s*" + _NUM + r"\s*\}")
# a line that starts (after Markdown decoration) with "Score:" / "Scores:" / "Final score:"
_SCORE_LINE = re.compile(
    r"^[ \t>*#_`-]*(?:final\s+|overall\s+)?scores?[ \t*_`]*[:=：][ \t*_`]*" + _NUM
    + r"(?:[ \t]*(?:/|out\s+of)[ \t]*(\d+(?:\.\d+)?))?",
    re.IGNORECASE | re.MULTILINE)
_SECTION = r"^[ \t>*#_`-]*{name}[ \t*_`]*[:：]"


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


def _rating_candidates(text: str) -> list[tuple[int, float | None, str]]:
    """(end offset, value or None, description) of every score-like token."""
    out: list[tuple[int, float | None, str]] = []
    for m in _BOXED.finditer(text):
        out.append((m.end(), float(m.group(1)), m.group(0)))
    for m in _SCORE_LINE.finditer(text):
        value = float(m.group(1))
        denominator = m.group(2)
        if denominator is not None and float(denominator) != 5:
            out.append((m.end(), None, f"{m.group(0).strip()!r} is not on a 1-5 scale"))
        else:
            out.append((m.end(), value, m.group(0).strip()))
    for end, obj in _json_objects(text):
        if "score" in obj:
            value = _number(obj["score"])
            out.append((end, value, "JSON score" if value is not None
                        else f"JSON score {obj['score']!r} is not a number"))
    return out


def parse_rating(text: str, *, low: float = 1, high: float = 5,
                 fmt: OutputFormat = "text") -> Parsed:
    """Read the judge's final 1-5 rating (and its rationale and criteria, if given).

    ``fmt="json"`` reads only the last JSON object with a ``score`` key;
    ``fmt="text"`` takes whichever score token comes last: a ``Score:`` line,
    a ``\\boxed{}`` or a JSON object. Out-of-range values are failures, not
    clipped.

    >>> parse_rating("Reason: warm.\\nScore: 4").score
    4.0
    >>> parse_rating("Analysis: fine\\nScores: \\\\boxed{3}").score
    3.0
    >>> parse_rating("Score: 9").reason
    'score 9 is outside 1-5'
    """
    if not text or not text.strip():
        return failed("empty judge answer")
    body = strip_fenced(text)
    rationale = (_section(body, "reason", ("score", "scores"))
                 or _section(body, "analysis", ("score", "scores")))
    criteria = _section(body, r"specific\s+criteria", ("analysis", "score", "scores"))
    if fmt == "json":
        obj = last_json_object(body, with_key="score")
        if obj is None:
            return failed("no JSON object with a 'score' key")
        value = _number(obj.get("score"))
        rationale = _str_field(obj, "reason", "analysis", "rationale") or rationale
        crit = obj.get("criteria")
        criteria = (format_criteria_list(crit) if isinstance(crit, list)
                    else _str_field(obj, "criteria") or criteria)
        if value is None:
            return failed(f"JSON score {obj.get('score')!r} is not a number",
                          rationale=rationale, criteria=criteria)
    else:
        candidates = _rating_candidates(body)
        if not candidates:
            return failed("no 'Score:' line, \\boxed{} score or JSON score found",
                          rationale=rationale, criteria=criteria)
        _, value, what = max(candidates, key=lambda c: c[0])
        if value is None:
            return failed(f"final score unreadable: {what}", rationale=rationale,
                          criteria=criteria)
    if not low <= value <= high:
        return failed(f"score {_fmt(value)} is outside {_fmt(low)}-{_fmt(high)}",
                      rationale=rationale, criteria=criteria)
    return Parsed(score=value, rationale=rationale, criteria=criteria)


def _str_field(obj: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


# --------------------------------------------------------------------------- bystander

_TOTAL = re.compile(r"total\s+score[ \t*_`]*[:=：][ \t*_`]*\[?" + _NUM
                    + r"\]?(?:[ \t]*(?:/|out\s+of)[ \t]*(\d+(?:\.\d+)?))?", re.IGNORECASE)


def parse_bystander(text: str, *, fmt: OutputFormat = "json") -> Parsed:
    """Read the bystander's five 0-20 sub-scores and its 0-100 total.

    JSON: the last object holding all five keys of :data:`BYSTANDER_KEYS`;
    the total is their sum. Text: the last ``Total Score: X / 100`` line (when
    it is missing but all five ``Name: X / 20`` lines are present, their sum);
    the sub-score lines are kept as ``sub_scores``.

    >>> parse_bystander("Total Score: 72 / 100", fmt="text").score
    72.0
    """
    if not text or not text.strip():
        return failed("empty judge answer")
    body = strip_fenced(text)
    if fmt == "json":
        objects = [obj for _, obj in _json_objects(body)
                   if all(k in obj for k in BYSTANDER_KEYS)]
        if not objects:
            return failed("no JSON object with the five bystander sub-scores "
                          f"({', '.join(BYSTANDER_KEYS)})")
        obj = objects[-1]
        subs: dict[str, float] = {}
        for key in BYSTANDER_KEYS:
            value = _number(obj[key])
            if value is None:
                return failed(f"bystander sub-score {key}={obj[key]!r} is not a number")
            if not 0 <= value <= BYSTANDER_PART_MAX:
                return failed(f"bystander sub-score {key}={_fmt(value)} is outside 0-20")
            subs[key] = value
        return Parsed(score=sum(subs.values()), sub_scores=subs,
                      rationale=_str_field(obj, "assessment", "reason", "analysis"))

    subs = {}
    for key, _, pattern in BYSTANDER_PARTS:
        line = re.compile(rf"{pattern}[^:\n]*[:：][ \t*_`]*{_NUM}[ \t]*/[ \t]*20", re.IGNORECASE)
        hits = list(line.finditer(body))
        if hits:
            subs[key] = float(hits[-1].group(1))
    bad = {k: v for k, v in subs.items() if not 0 <= v <= BYSTANDER_PART_MAX}
    rationale = _section(body, r"(?:\d\.\s*)?overall\s+assessment", (r"\d\.\s*dimension",
                                                                      "content", "total"))
    rationale = rationale or _section(body, "assessment", ("content", "total"))
    totals = list(_TOTAL.finditer(body))
    if totals:
        m = totals[-1]
        value = float(m.group(1))
        if m.group(2) is not None and float(m.group(2)) != BYSTANDER_MAX:
            return failed(f"total {m.group(0).strip()!r} is not out of 100", sub_scores=subs)
    elif len(subs) == len(BYSTANDER_KEYS) and not bad:
        value = sum(subs.values())
    else:
        return failed("no 'Total Score: X / 100' line and not all five sub-scores",
                      sub_scores=subs)
    if not 0 <= value <= BYSTANDER_MAX:
        return failed(f"total {_fmt(value)} is outside 0-100", sub_scores=subs)
    return Parsed(score=value, sub_scores={k: v for k, v in subs.items() if k not in bad},
                  rationale=rationale)


# --------------------------------------------------------------------------- criteria


@dataclass(frozen=True)
class Criterion:
    name: str
    weight: float | None
    description: str


@dataclass(frozen=True)
class ParsedCriteria:
    """Criteria read from a judge answer, or ``reason`` when unusable."""

    items: tuple[Criterion, ...] = ()
    reason: str | None = None
    rescaled: bool = False

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def text(self) -> str:
        return render_criteria(self.items)


_ITEM = re.compile(r"^[ \t]*(?:\d+[.)]|[-*•])[ \t]+(.+?)[ \t]*$", re.MULTILINE)
_WEIGHT = re.compile(r"\((\d+(?:\.\d+)?)\s*%\)|\b(\d+(?:\.\d+)?)\s*%")


def render_criteria(items: tuple[Criterion, ...] | list[Criterion]) -> str:
    """A numbered list, ``1. Name (30%): description``, the form stored and shown to judges."""
    lines = []
    for i, c in enumerate(items, start=1):
        weight = f" ({_fmt(c.weight)}%)" if c.weight is not None else ""
        desc = f": {c.description}" if c.description else ""
        lines.append(f"{i}. {c.name}{weight}{desc}")
    return "\n".join(lines)


def format_criteria_list(value: list[Any]) -> str:
    """Criteria given as a JSON list (strings or objects) as the numbered text form."""
    items = []
    for entry in value:
        if isinstance(entry, dict):
            items.append(Criterion(name=str(entry.get("name", "")).strip(),
                                   weight=_number(entry.get("weight")),
                                   description=str(entry.get("description", "")).strip()))
        else:
            items.append(Criterion(name=str(entry).strip(), weight=None, description=""))
    return render_criteria(items)


def _criterion_from_line(line: str) -> Criterion:
    weight_match = _WEIGHT.search(line)
    weight = None
    if weight_match:
        weight = float(weight_match.group(1) or weight_match.group(2))
        head, tail = line[:weight_match.start()], line[weight_match.end():]
    else:
        head, tail = line, ""
    head = head.strip().strip("*").strip()
    if tail.strip().startswith((":", "-", "–", "—")):
        name, description = head, tail.strip()[1:].strip()
    elif ":" in head:
        name, _, description = head.partition(":")
        description = (description + " " + tail).strip()
    else:
        name, description = head, tail.strip().lstrip(":").strip()
    return Criterion(name=name.strip().strip("*").strip(), weight=weight,
                     description=description.strip())


def rescale_weights(items: list[Criterion]) -> list[Criterion]:
    """Scale weights to whole percentages summing to exactly 100 (largest remainder)."""
    total = sum(c.weight or 0.0 for c in items)
    exact = [100.0 * (c.weight or 0.0) / total for c in items]
    whole = [math.floor(x) for x in exact]
    order = sorted(range(len(items)), key=lambda i: exact[i] - whole[i], reverse=True)
    for i in order[: 100 - sum(whole)]:
        whole[i] += 1
    return [Criterion(c.name, float(w), c.description) for c, w in zip(items, whole)]


def parse_criteria(text: str, *, fmt: OutputFormat = "text", min_items: int = 1,
                   max_items: int = 8, weighted: bool = False) -> ParsedCriteria:
    """Read a criteria list; with ``weighted`` every item needs a positive weight.

    Weights that do not sum to 100 are rescaled proportionally (``rescaled``
    is then true); that changes no judgement, only the stated emphasis.
    """
    if not text or not text.strip():
        return ParsedCriteria(reason="empty criteria answer")
    body = strip_fenced(text)
    items: list[Criterion]
    if fmt == "json":
        obj = last_json_object(body, with_key="criteria")
        if obj is None or not isinstance(obj.get("criteria"), list):
            return ParsedCriteria(reason="no JSON object with a 'criteria' list")
        items = []
        for entry in obj["criteria"]:
            if isinstance(entry, dict):
                items.append(Criterion(name=str(entry.get("name", "")).strip(),
                                       weight=_number(entry.get("weight")),
                                       description=str(entry.get("description", "")).strip()))
            elif isinstance(entry, str):
                items.append(_criterion_from_line(entry))
    else:
        section = _section(body, r"(?:specific\s+)?criteria", ("analysis", "score", "scores"))
        source = section if section is not None else body
        items = [_criterion_from_line(m.group(1)) for m in _ITEM.finditer(source)]
    items = [c for c in items if c.name or c.description]
    if not min_items <= len(items) <= max_items:
        return ParsedCriteria(items=tuple(items),
                              reason=f"{len(items)} criteria; expected {min_items}-{max_items}")
    if not weighted:
        return ParsedCriteria(items=tuple(items))
    if any(c.weight is None or c.weight <= 0 for c in items):
        return ParsedCriteria(items=tuple(items), reason="a criterion has no positive weight")
    if abs(sum(c.weight or 0.0 for c in items) - 100.0) < 1e-6:
        return ParsedCriteria(items=tuple(items))
    return ParsedCriteria(items=tuple(rescale_weights(items)), rescaled=True)
