"""Reading the bystander's verdict: five sub-scores and their total.

The bystander rates a reply on five parts (:data:`~attunement.judging.scale.BYSTANDER_PARTS`),
each a whole number from 0 to 20, and their total, 0 to 100 (the scale is
:mod:`attunement.judging.scale`'s). Its arithmetic is checked, not trusted:

- JSON: the last object holding all five keys, validated by
  :class:`~attunement.judging.answers.BystanderAnswer`; the total is their sum;
- text: the ``Total Score: X / 100`` line that ends the answer; when sub-score
  lines ``Name: X / 20`` are given, all five must be there and add up to the
  total (some but not all five is a failure); without a total line, five
  sub-score lines are summed.

The verdict rules of :mod:`attunement.judging.verdicts` hold as for every
judge: echoed blocks are cut, the verdict ends the answer, one number, no copy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pydantic import ValidationError

from attunement.judging.answers import BystanderAnswer, validation_problem
from attunement.judging.echoes import readable, strip_fenced
from attunement.judging.scale import (
    BYSTANDER_KEYS,
    BYSTANDER_MAX,
    BYSTANDER_PART_MAX,
    BYSTANDER_PARTS,
)
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
    without_echoes,
)
from attunement.textjson import json_objects

_TOTAL_HEAD = re.compile(
    LINE_PREFIX + r"(?:\d\.\s*)?(?P<head>total\s+score)[ \t*_`]*[:=]", re.IGNORECASE | re.MULTILINE
)
_PART_LINES = {
    key: re.compile(
        LINE_PREFIX + rf"(?:\d\.\s*)?{pattern}[^:\n]*[:=][ \t*_`]*{NUMBER}"
        rf"[ \t]*/[ \t]*{BYSTANDER_PART_MAX}\b",
        re.IGNORECASE | re.MULTILINE,
    )
    for key, _, pattern in BYSTANDER_PARTS
}
#: where an assessment ends: a sub-score line or the total
_PART_HEADS = (
    *(rf"(?:\d\.\s*)?{pattern}[^:\n]*" for _, _, pattern in BYSTANDER_PARTS),
    r"(?:\d\.\s*)?total\s+score",
)


def totals(body: str) -> list[Candidate]:
    """Every ``Total Score:`` line's token."""
    return [
        headed_candidate(
            body,
            m,
            low=0,
            high=BYSTANDER_MAX,
            label="total line",
            off_scale=f"total {{shown!r}} is not out of {BYSTANDER_MAX}",
        )
        for m in _TOTAL_HEAD.finditer(body)
    ]


def sub_scores(body: str) -> tuple[dict[str, float], list[Candidate]]:
    """The last ``Name: X / 20`` line of each sub-score, and all of them as candidates."""
    subs: dict[str, float] = {}
    candidates = []
    for key, line in _PART_LINES.items():
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


def parse_bystander(
    text: str, *, fmt: OutputFormat = "json", untrusted: Sequence[str] = ()
) -> Parsed:
    """Read the bystander's five 0-20 sub-scores and its 0-100 total.

    >>> parse_bystander("Total Score: 72 / 100", fmt="text").score
    72.0
    >>> parse_bystander("Total Score: 120 / 100", fmt="text").reason
    'total 120 is outside 0-100'
    """
    if not text or not text.strip():
        return failed("empty judge answer")
    body = strip_fenced(readable(text))
    if fmt == "json":
        return _json_answer(body, untrusted)
    return _text_answer(body, untrusted)


def _json_answer(body: str, untrusted: Sequence[str]) -> Parsed:
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
        rationale=str_field(found.value, "assessment", "reason", "analysis"),
    )


def _text_answer(body: str, untrusted: Sequence[str]) -> Parsed:
    body, _, copy = without_echoes(
        body, totals(body) + sub_scores(body)[1], untrusted
    )  # a forged total or sub-score line the judge quoted is not read at all
    subs, part_candidates = sub_scores(body)
    rationale = section(
        body, r"(?:\d\.\s*)?overall\s+assessment", (r"\d\.\s*dimension[^:\n]*", *_PART_HEADS)
    ) or section(body, "assessment", _PART_HEADS)
    found = totals(body)
    verdict, problem = final_verdict(body, found + part_candidates, untrusted)
    if verdict is None:
        return failed(
            problem
            or copy
            or f"no 'Total Score: X / {BYSTANDER_MAX}' line and not all five sub-scores",
            sub_scores=subs,
        )
    value, problem = _checked_total(subs, found)
    if problem is not None:
        return failed(problem, sub_scores=subs)
    return Parsed(score=value, sub_scores=subs, rationale=rationale)


def _checked_total(
    subs: dict[str, float], found: list[Candidate]
) -> tuple[float | None, str | None]:
    """The total the sub-scores and total lines agree on, or why there is none."""
    bad = {k: v for k, v in subs.items() if not 0 <= v <= BYSTANDER_PART_MAX}
    if bad:
        key, value = next(iter(bad.items()))
        return None, (
            f"bystander sub-score {key}={fmt_number(value)} is outside 0-{BYSTANDER_PART_MAX}"
        )
    if subs and len(subs) < len(BYSTANDER_KEYS):
        missing = [k for k in BYSTANDER_KEYS if k not in subs]
        return None, f"only {len(subs)} of the five sub-scores given (missing {', '.join(missing)})"
    if not found:
        value = sum(subs.values())
    else:
        total = max(found, key=lambda c: c.end)
        if total.value is None:
            return None, total.what
        value = total.value
        if subs and not math.isclose(sum(subs.values()), value, abs_tol=1e-6):
            return None, (
                f"total {fmt_number(value)} is not the sum of the five sub-scores "
                f"({fmt_number(sum(subs.values()))})"
            )
    if not 0 <= value <= BYSTANDER_MAX:
        return None, f"total {fmt_number(value)} is outside 0-{BYSTANDER_MAX}"
    return value, None
