"""One self-contained HTML page style for every report attunement writes.

Reports (evaluation, judge card, EQ-Bench 3) are single files a person can
open, mail or attach: CSS inline, plots embedded as base64 PNG, no scripts
fetched from anywhere. Everything that reaches the page goes through
:func:`esc`, since replies and judge rationales are untrusted text.

Build a page from parts::

    page("Evaluation", [
        section("Table 1", table(["system", "Avg"], [["base", "3.7"]]), id="table1"),
        section("Plots", figure(png_bytes, "Res by k")),
    ])
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --accent: #2f5d8a;
        --good: #1f7a3f; --bad: #a33a2b; --warn: #8a6100; --bg-alt: #f5f7fa; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
       margin: 0 auto; padding: 24px; max-width: 1180px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 32px 0 8px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05em; margin: 20px 0 6px; }
p.lead { color: var(--muted); margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0 16px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: right; vertical-align: top; }
th { background: var(--bg-alt); font-weight: 600; }
td.text, th.text { text-align: left; }
.ci { color: var(--muted); font-size: 0.85em; }
.good { color: var(--good); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); font-weight: 600; }
figure { display: inline-block; margin: 8px 16px 16px 0; }
figure img { max-width: 540px; border: 1px solid var(--line); }
.wide figure img { max-width: 100%; }
figcaption { color: var(--muted); font-size: 0.9em; }
details.example { border: 1px solid var(--line); border-radius: 6px; margin: 8px 0; padding: 6px 12px; }
details.example > summary { cursor: pointer; font-weight: 600; }
.panels { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 12px; }
.panel { background: var(--bg-alt); border-radius: 6px; padding: 8px 12px; }
.panel pre, .context pre { white-space: pre-wrap; word-break: break-word; font: inherit; margin: 4px 0; }
.summary { font-size: 1.1em; padding: 10px 14px; border-left: 4px solid var(--accent);
           background: var(--bg-alt); margin: 12px 0; }
.summary.note { border-left-color: #b45309; font-weight: 600; }
nav a { margin-right: 14px; }
"""


def esc(value: Any) -> str:
    """Escape any value for HTML text or attribute context."""
    return html.escape("" if value is None else str(value), quote=True)


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    text_columns: int = 1,
    caption: str | None = None,
    cls: str = "",
) -> str:
    """A table; the first ``text_columns`` columns are left-aligned text.

    Cells are escaped unless given as :class:`Raw` (already safe HTML).

    >>> table(["a", "b"], [["<x>", 1]])
    '<table><thead><tr><th class="text">a</th><th>b</th></tr></thead><tbody><tr><td class="text">&lt;x&gt;</td><td>1</td></tr></tbody></table>'
    """

    def cell(tag: str, i: int, value: Any) -> str:
        attr = ' class="text"' if i < text_columns else ""
        body = value if isinstance(value, Raw) else esc(value)
        return f"<{tag}{attr}>{body}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    klass = f' class="{esc(cls)}"' if cls else ""
    return f"<table{klass}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Raw(str):
    """HTML that is already safe (built from escaped parts); not escaped again."""


def figure(png: bytes | Path, caption: str = "", *, alt: str | None = None) -> Raw:
    """An embedded PNG (bytes or a file) with a caption."""
    data = png.read_bytes() if isinstance(png, Path) else png
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return Raw(f'<figure><img src="{src}" alt="{esc(alt or caption)}">{cap}</figure>')


def wide(figure_html: str) -> Raw:
    """A figure allowed the page's full width (wide plots: many bars, two panels)."""
    return Raw(f'<div class="wide">{figure_html}</div>')


def pre(text: str) -> Raw:
    return Raw(f"<pre>{esc(text)}</pre>")


def panel(title: str, body: str) -> Raw:
    """A grey box with a heading; ``body`` must already be safe HTML."""
    return Raw(f'<div class="panel"><h3>{esc(title)}</h3>{body}</div>')


def details(summary: str, body: str, *, open_: bool = False, cls: str = "example") -> Raw:
    """A collapsible block (one browsable example); ``body`` must be safe HTML."""
    flag = " open" if open_ else ""
    return Raw(
        f'<details class="{esc(cls)}"{flag}><summary>{esc(summary)}</summary>{body}</details>'
    )


def section(title: str, body: str, *, id: str | None = None, lead: str | None = None) -> Raw:
    anchor = f' id="{esc(id)}"' if id else ""
    intro = f'<p class="lead">{esc(lead)}</p>' if lead else ""
    return Raw(f"<section{anchor}><h2>{esc(title)}</h2>{intro}{body}</section>")


def page(
    title: str,
    parts: Sequence[str],
    *,
    subtitle: str | None = None,
    summary: str | None = None,
    note: str = "",
    nav: Sequence[tuple[str, str]] = (),
    extra_css: str = "",
) -> str:
    """The whole document: title, optional one-line summary and navigation, then parts.

    ``note`` is a warning above everything else (the stand-in judge's,
    :func:`attunement.llm.stand_in_line`).

    ``extra_css`` follows the shared style (a report's own rules)."""
    links = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in nav)
    return "".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{esc(title)}</title><style>{CSS}{extra_css}</style></head><body>",
            f"<h1>{esc(title)}</h1>",
            f'<p class="lead">{esc(subtitle)}</p>' if subtitle else "",
            f'<div class="summary note">{esc(note)}</div>' if note else "",
            f'<div class="summary">{esc(summary)}</div>' if summary else "",
            f"<nav>{links}</nav>" if links else "",
            *parts,
            "</body></html>",
        ]
    )
