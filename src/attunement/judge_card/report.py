"""The judge card as files: ``card.json`` (every figure), ``card.md`` and ``card.html``.

Markdown and HTML are rendered from the same sections
(:func:`attunement.judge_card.sections.sections`), so the two never disagree;
the HTML uses the shared page style of :mod:`attunement.evaluation.html` (the
evaluation report's), with the two plots (score distribution, probe changes)
when matplotlib is installed. Numbers are
printed by :mod:`attunement.judge_card.card`'s helpers (``pct``, ``num``,
``ci_pct``, ``ci_num``), the same the command line prints with.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from attunement.evaluation import html as H
from attunement.evaluation import plots
from attunement.evaluation.reporting import md_table, note_lines, write_page
from attunement.judge_card.card import JudgeCard, ci_num, ci_pct, num, pct
from attunement.judge_card.sections import sections
from attunement.llm import stand_in_line

#: ci_num, ci_pct, num and pct stay importable from here (the command line prints with them)
__all__ = ["ci_num", "ci_pct", "num", "pct", "render_html", "render_markdown", "write_card"]

STATUS_CLASS = {
    "pass": "good",
    "warn": "warn",
    "fail": "bad",
    "info": "",
    "n/a": "",
    "held": "good",
    "may gain": "warn",
    "gains": "bad",
}
VERDICT_COLOURS = {"gains": "#a33a2b", "may gain": "#8a6100", "held": "#1f7a3f"}


# --------------------------------------------------------------------------- Markdown


def render_markdown(card: JudgeCard) -> str:
    lines = [
        f"# Judge card: {card.judge} with {card.reward}",
        "",
        *note_lines(card.reward_manifest),
    ]
    lines += [f"**{card.summary}**", ""]
    for s in sections(card):
        if s.id != "overview":
            lines += [f"## {s.title}", ""]
        lines += [s.lead, ""]
        for b in s.blocks:
            lines.append(md_table(b.header, b.rows) if b.is_table else b.text or "")
            lines.append("")
    lines.append(f"Created {card.created} in {card.seconds:.1f} s.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTML


def _status_cell(value: Any) -> Any:
    if isinstance(value, str) and STATUS_CLASS.get(value):
        return H.Raw(f'<span class="{STATUS_CLASS[value]}">{H.esc(value)}</span>')
    return value


def _plots(card: JudgeCard) -> dict[str, H.Raw]:
    """Score distribution and probe changes as PNGs, by section id (none without
    matplotlib, which the card does not need)."""
    if importlib.util.find_spec("matplotlib") is None:
        return {}
    out: dict[str, H.Raw] = {}
    dists = [d for d in card.stability.distribution if d.dimension != "bystander" and d.replies]
    if dists:
        levels = list(range(1, 6))
        series = [(d.dimension, [d.shares.get(str(v), 0.0) for v in levels]) for d in dists]
        png = plots.share_bars(series, levels)
        out["stability"] = H.figure(png, "Share of replies at each score, per dimension")
    rows = [(p, p.reward) for p in card.probes.probes if p.reward is not None and p.reward.n]
    if rows:
        png = plots.change_bars(
            [p.title for p, _ in rows],
            [(r.change.estimate, r.change.low, r.change.high) for _, r in rows],
            [VERDICT_COLOURS.get(p.verdict, "#1f7a3f") for p, _ in rows],
            xlabel="reward change (altered - base)",
        )
        out["probes"] = H.figure(png, "Gaming probes: mean reward change, 95% CI")
    return out


def render_html(card: JudgeCard, *, plots: bool = True) -> str:
    parts = []
    figures = _plots(card) if plots else {}
    for s in sections(card):
        body = []
        for b in s.blocks:
            if b.is_table:
                rows = [[_status_cell(v) for v in row] for row in b.rows]
                body.append(H.table(b.header, rows, text_columns=b.text_columns))
            else:
                cls = ' class="bad"' if (b.text or "").startswith("DEGENERATE") else ""
                body.append(f"<p{cls}>{H.esc(b.text)}</p>")
        if s.id in figures:
            body.append(figures[s.id])
        parts.append(H.section(s.title, "".join(body), id=s.id, lead=s.lead))
    nav = [(s.id, s.title.split(" (")[0]) for s in sections(card)]
    return H.page(
        f"Judge card: {card.judge} with {card.reward}",
        parts,
        subtitle=f"Created {card.created} in {card.seconds:.1f} s.",
        summary=card.summary,
        note=stand_in_line(card.reward_manifest),
        nav=nav,
    )


def write_card(card: JudgeCard, out: Path, *, plots: bool = True) -> dict[str, Path]:
    """Write card.json, card.md and card.html into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "card.json", "md": out / "card.md", "html": out / "card.html"}
    paths["json"].write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(card), encoding="utf-8")
    write_page(paths["html"], render_html(card, plots=plots))
    return paths
