"""Reading a judge's rating (1-5) out of its answer.

The rating judges of PERM (``Reason:`` then ``Score:``) and PereGRM
(``Specific Criteria:``, ``Analysis:``, then ``Scores: \\boxed{x}``) and their
JSON answers all end in one rating on the scale of
:mod:`attunement.judging.scale`. Their score tokens are found here; which of
them is the verdict is decided by :func:`attunement.judging.verdicts.final_verdict`.

Formats understood: ``Score: 4`` (also ``**Score:** 4``, ``Scores: 4/5``,
``Final score: 4 out of 5``), ``\\boxed{4}``, or a JSON object with a
``"score"`` key (validated by the answer model of
:mod:`attunement.judging.answers` when one is given).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ValidationError

from attunement.judging.answers import number_or_none, validation_problem
from attunement.judging.criteria_lists import format_criteria_list
from attunement.judging.echoes import readable, strip_fenced
from attunement.judging.scale import RATING_MAX, RATING_MIN
from attunement.judging.settings import OutputFormat
from attunement.judging.verdicts import (
    LINE_PREFIX,
    NUMBER,
    Candidate,
    Parsed,
    failed,
    final_verdict,
    fmt_number,
    headed_candidate,
    line_end_at,
    section,
    str_field,
)
from attunement.textjson import Found, json_objects, last_json_object

_SCORE_HEAD = re.compile(
    LINE_PREFIX + r"(?P<head>(?:final\s+|overall\s+)?scores?)[ \t*_`]*[:=]",
    re.IGNORECASE | re.MULTILINE,
)
_BOXED = re.compile(r"\\boxed\s*\{(?P<inner>[^{}\n]{0,40})\}")
_UNCLOSED_BOXED = re.compile(r"\\boxed\s*\{[^}\n]*$", re.MULTILINE)
_BOXED_AFTER_HEAD = re.compile(r"[ \t*_`]*\\boxed")


def score_lines(body: str, *, low: float, high: float) -> list[Candidate]:
    """Every ``Score:`` line's token (``Scores: \\boxed{3}`` leaves it to the box)."""
    out = []
    for m in _SCORE_HEAD.finditer(body):
        if _BOXED_AFTER_HEAD.match(body, m.end(), line_end_at(body, m.end())):
            continue  # "Scores: \boxed{3}": the \boxed{} is the candidate
        out.append(
            headed_candidate(
                body, m, low=low, high=high, label="score line", off_scale="{shown!r} is {problem}"
            )
        )
    return out


def boxed(body: str) -> list[Candidate]:
    """Every ``\\boxed{}`` token; one that does not hold one number, or is never
    closed (e.g. an echoed template), is a token without a value."""
    out = []
    for m in _BOXED.finditer(body):
        inner = re.fullmatch(r"\s*" + NUMBER + r"\s*", m.group("inner"))
        if inner:
            out.append(Candidate(m.start(), m.end(), float(inner.group(1)), m.group(0)))
        else:
            out.append(
                Candidate(m.start(), m.end(), None, f"{m.group(0)!r} does not hold one number")
            )
    for m in _UNCLOSED_BOXED.finditer(body):
        out.append(Candidate(m.start(), m.end(), None, "unclosed \\boxed{"))
    return out


def json_scores(body: str, answer: type[BaseModel] | None) -> list[Candidate]:
    """The token of every JSON object with a ``score`` key."""
    return [json_score(found, answer) for found in json_objects(body) if "score" in found.value]


def json_score(found: Found, answer: type[BaseModel] | None) -> Candidate:
    """One JSON object's score: validated by ``answer`` when given, else any one number."""
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


def _json_notes(
    body: str, rationale: str | None, criteria: str | None
) -> tuple[str | None, str | None]:
    """The rationale and criteria a JSON answer gives (its last scored object's)."""
    found = last_json_object(body, with_key="score")
    if found is None:
        return rationale, criteria
    obj = found.value
    rationale = str_field(obj, "reason", "analysis", "rationale") or rationale
    listed = obj.get("criteria")
    if isinstance(listed, list):
        return rationale, format_criteria_list(listed)
    return rationale, str_field(obj, "criteria") or criteria


def parse_rating(
    text: str,
    *,
    low: float = RATING_MIN,
    high: float = RATING_MAX,
    fmt: OutputFormat = "text",
    answer: type[BaseModel] | None = None,
    untrusted: Sequence[str] = (),
) -> Parsed:
    """Read the judge's final rating (and its rationale and criteria, if given).

    ``fmt="json"`` reads only JSON objects with a ``score`` key (validated by
    ``answer`` when given); ``fmt="text"`` also reads ``Score:`` lines and
    ``\\boxed{}``. The verdict is the last of them and must end the answer;
    ``untrusted`` are the texts the judge was shown as data (see
    :mod:`attunement.judging.echoes`). Out-of-range values are failures, not clipped.

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
    rationale = section(body, "reason", ("score", "scores")) or section(
        body, "analysis", ("score", "scores")
    )
    criteria = section(body, r"specific\s+criteria", ("analysis", "score", "scores"))
    if fmt == "json":
        candidates = json_scores(body, answer)
        rationale, criteria = _json_notes(body, rationale, criteria)
        missing = "no JSON object with a 'score' key"
    else:
        # a JSON object is a tolerated alternative here, not the answer asked for:
        # only its score is read, whatever other keys it has
        candidates = score_lines(body, low=low, high=high) + boxed(body) + json_scores(body, None)
        missing = "no 'Score:' line, \\boxed{} score or JSON score found"
    verdict, problem = final_verdict(body, candidates, untrusted)
    if verdict is None or verdict.value is None:
        return failed(problem or missing, rationale=rationale, criteria=criteria)
    if not low <= verdict.value <= high:
        return failed(
            f"score {fmt_number(verdict.value)} is outside {fmt_number(low)}-{fmt_number(high)}",
            rationale=rationale,
            criteria=criteria,
        )
    return Parsed(score=verdict.value, rationale=rationale, criteria=criteria)
