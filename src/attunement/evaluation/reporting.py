"""What every report shares: numbers as text, Markdown tables and the report folder.

The evaluation report, EmoBench, EQ-Bench 3 and the judge card each print
estimates with their intervals (``3.70 [3.61, 3.79]``, ``+0.050 [-0.010,
+0.120]``, ``62% [41%, 79%]``), lay tables out in Markdown and write a folder
of ``results.json``, ``results.md``, ``plots/*.png`` and a page. Written once
here, a figure reads the same in every report and a rule (how a missing value
or an unknown bound is shown) changes in one place. The page style is
:mod:`attunement.evaluation.html`; the plots are :mod:`attunement.evaluation.plots`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from attunement.evaluation.stats import Stat
from attunement.llm import stand_in_line

# --------------------------------------------------------------------------- numbers


def number(x: float | None, digits: int = 2, *, sign: bool = False, percent: bool = False) -> str:
    """A number for a table; ``-`` when missing. ``percent`` shows a share as ``62%``.

    >>> number(3.456), number(None), number(0.05, 3, sign=True), number(0.623, 0, percent=True)
    ('3.46', '-', '+0.050', '62%')
    """
    if x is None:
        return "-"
    if percent:
        x = 100 * x
    text = f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"
    return text + "%" if percent else text


def with_interval(
    estimate: float | None,
    low: float | None,
    high: float | None,
    *,
    digits: int = 2,
    sign: bool = False,
    percent: bool = False,
) -> str:
    """``estimate [low, high]``; ``-`` without an estimate, the estimate alone when a
    bound is unknown.

    >>> with_interval(3.7, 3.61, 3.79), with_interval(0.62, 0.41, 0.79, digits=0, percent=True)
    ('3.70 [3.61, 3.79]', '62% [41%, 79%]')
    >>> with_interval(0.05, -0.01, 0.12, digits=3, sign=True), with_interval(4.0, None, None)
    ('+0.050 [-0.010, +0.120]', '4.00')
    """
    if estimate is None:
        return "-"
    if low is None or high is None:
        return number(estimate, digits, sign=sign, percent=percent)
    shown = [number(v, digits, sign=sign, percent=percent) for v in (estimate, low, high)]
    return f"{shown[0]} [{shown[1]}, {shown[2]}]"


def fmt(x: float | None, digits: int = 2) -> str:
    """A number for a table; ``-`` when missing.

    >>> fmt(3.456), fmt(None), fmt(0.1234, 3)
    ('3.46', '-', '0.123')
    """
    return number(x, digits)


def fmt_signed(x: float | None, digits: int = 2) -> str:
    """A difference, with its sign.

    >>> fmt_signed(-0.783), fmt_signed(0.5), fmt_signed(None)
    ('-0.78', '+0.50', '-')
    """
    return number(x, digits, sign=True)


def fmt_ci(stat: Stat | None, digits: int = 2, *, sign: bool = False) -> str:
    """``3.70 [3.61, 3.79]``; the interval is left out when unknown, and where it was
    withheld the bracket says why.

    >>> fmt_ci(Stat(mean=3.7, low=3.61, high=3.79, n=9)), fmt_ci(Stat(mean=None))
    ('3.70 [3.61, 3.79]', '-')
    >>> fmt_ci(Stat(mean=3.7, n=4, clusters=3, note="n too small"))
    '3.70 [n too small: 3 users]'
    """
    if stat is None:
        return "-"
    if stat.mean is not None and stat.low is None and stat.note:
        users = f": {stat.clusters} users" if stat.clusters is not None else ""
        return f"{number(stat.mean, digits, sign=sign)} [{stat.note}{users}]"
    return with_interval(stat.mean, stat.low, stat.high, digits=digits, sign=sign)


def fmt_p(p: float | None) -> str:
    """A p-value.

    >>> fmt_p(0.0004), fmt_p(0.0312), fmt_p(None)
    ('<0.001', '0.031', '-')
    """
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# --------------------------------------------------------------------------- Markdown


def md_cell(value: Any) -> str:
    """A value as one Markdown cell: ``|`` escaped, on one line."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; ``|`` inside cells is escaped.

    >>> print(md_table(["a", "b"], [[1, "x|y"]]))
    | a | b |
    |---|---|
    | 1 | x\\|y |
    """
    lines = [
        "| " + " | ".join(md_cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def note_lines(manifest: Any) -> list[str]:
    """The stand-in judge's note as Markdown lines under a report's title, when
    ``manifest`` (any nesting of the manifests behind the report) carries it."""
    line = stand_in_line(manifest)
    return [f"**{line}**", ""] if line else []


# --------------------------------------------------------------------------- the folder


def write_json(path: Path, data: Any) -> Path:
    """``data`` as indented UTF-8 JSON (non-ASCII kept as written)."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_results(out: Path, results: Any, markdown: str) -> None:
    """``results.json`` (every number of a pydantic results model) and ``results.md``."""
    write_json(out / "results.json", results.model_dump(mode="json"))
    (out / "results.md").write_text(markdown, encoding="utf-8")


def write_plot(out: Path, name: str, png: bytes) -> Path:
    """One PNG into ``out/plots/``."""
    (out / "plots").mkdir(exist_ok=True)
    path = out / "plots" / name
    path.write_bytes(png)
    return path


def write_page(path: Path, page: str) -> Path:
    path.write_text(page, encoding="utf-8")
    return path
