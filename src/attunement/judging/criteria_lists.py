"""Reading a criteria list out of a judge's answer.

PereGRM's judges write criteria before they score: weighted, 4-6 of them when
they are stored for evaluation. A criteria answer is read here:

- text: a numbered (or bulleted) list, each item with a weight (``(30%)``,
  ``(Weight: 30%)``, ...) and any number of continuation lines or nested
  bullets, optionally under a ``Specific Criteria:`` header;
- JSON: an object ``{"criteria": [{"name", "weight", "description"}, ...]}``
  validated by the answer model that also generates its schema.

What judges are later shown is the judge's own list **as written** (its first
item to the end of the section, every continuation line and emphasis kept);
the items are parsed only to validate the answer (how many, their weights),
never to rewrite it, except that weights not summing to 100 are rescaled in
place (largest remainder). An unusable list is a :class:`ParsedCriteria`
with a ``reason``, never a guess.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from attunement.judging.answers import criteria_answer, number_or_none, validation_problem
from attunement.judging.echoes import FENCE_LABELS, readable, strip_fenced
from attunement.judging.settings import OutputFormat
from attunement.judging.verdicts import fmt_number, section
from attunement.textjson import last_json_object

#: criteria per set accepted in a text answer by default (prompts ask for 4-6;
#: a stored evaluation set is held to :data:`attunement.judging.answers.CRITERIA_ITEMS`)
TEXT_CRITERIA_ITEMS = (1, 8)


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
        weight = f" ({fmt_number(c.weight)}%)" if c.weight is not None else ""
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
    min_items: int = TEXT_CRITERIA_ITEMS[0],
    max_items: int = TEXT_CRITERIA_ITEMS[1],
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
    read = _json_criteria if fmt == "json" else _text_criteria
    return read(body, min_items=min_items, max_items=max_items, weighted=weighted)


def _json_criteria(body: str, *, min_items: int, max_items: int, weighted: bool) -> ParsedCriteria:
    found = last_json_object(body, with_key="criteria")
    if found is None or not isinstance(found.value.get("criteria"), list):
        return ParsedCriteria(reason="no JSON object with a 'criteria' list")
    try:
        answer = criteria_answer(min_items, max_items).model_validate(found.value)
    except ValidationError as exc:
        return ParsedCriteria(reason=f"criteria JSON invalid: {validation_problem(exc)}")
    raw = [
        Criterion(c.name.strip(), float(c.weight), c.description.strip()) for c in answer.criteria
    ]
    items, reason, rescaled = _validated(
        raw, min_items=min_items, max_items=max_items, weighted=weighted
    )
    return ParsedCriteria(
        items=tuple(items), reason=reason, rescaled=rescaled, text=render_criteria(items)
    )


def _text_criteria(body: str, *, min_items: int, max_items: int, weighted: bool) -> ParsedCriteria:
    found = section(body, r"(?:specific\s+)?criteria", ("analysis", "score", "scores"))
    source = _list_block(found if found is not None else body)
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
            pieces += [source[pos:begin], fmt_number(_weight(c))]
            pos = end
        shown = "".join(pieces) + source[pos:]
    return ParsedCriteria(items=tuple(items), reason=reason, rescaled=rescaled, text=shown.strip())
