"""Writing an evaluation: results.json, results.md, plots/*.png and report.html.

``results.json`` holds every number (and the settings, judges and inputs that
produced it); ``results.md`` lays the main ones out as the papers' tables;
``report.html`` is one self-contained page (CSS inline, plots embedded) with
the tables, the plots and a browsable sample of examples: each system's reply
next to the others, with every judge's score and rationale per dimension.
Replies, rationales and user text are untrusted: every piece goes through
:func:`attunement.evaluation.html.esc` (or a helper that calls it).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attunement.evaluation import html as H
from attunement.evaluation import plots
from attunement.evaluation.tables import (
    LEVELS,
    MEMORY_TITLES,
    SHORT,
    Paired,
    Results,
    Row,
    Stat,
    category_of,
)
from attunement.records import BIG_FIVE_TRAITS, Category, Example, Judgement

if TYPE_CHECKING:
    from attunement.evaluation.evaluate import EvalRun

# --------------------------------------------------------------------------- formatting


def fmt(x: float | None, digits: int = 2) -> str:
    """A number for a table; ``-`` when missing.

    >>> fmt(3.456), fmt(None), fmt(0.1234, 3)
    ('3.46', '-', '0.123')
    """
    return "-" if x is None else f"{x:.{digits}f}"


def fmt_ci(stat: Stat | None, digits: int = 2) -> str:
    """``3.70 [3.61, 3.79]``; the interval is left out when unknown.

    >>> fmt_ci(Stat(mean=3.7, low=3.61, high=3.79, n=9))
    '3.70 [3.61, 3.79]'
    """
    if stat is None or stat.mean is None:
        return "-"
    if stat.low is None or stat.high is None:
        return fmt(stat.mean, digits)
    return f"{fmt(stat.mean, digits)} [{fmt(stat.low, digits)}, {fmt(stat.high, digits)}]"


def fmt_p(p: float | None) -> str:
    """A p-value.

    >>> fmt_p(0.0004), fmt_p(0.0312), fmt_p(None)
    ('<0.001', '0.031', '-')
    """
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_signed(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:+.{digits}f}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; ``|`` inside cells is escaped.

    >>> print(md_table(["a", "b"], [[1, "x|y"]]))
    | a | b |
    |---|---|
    | 1 | x\\|y |
    """

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- table views


def _judges(results: Results) -> list[str]:
    return list(dict.fromkeys(r.judge for r in results.table))


def _splits(results: Results) -> list[str]:
    return list(dict.fromkeys(r.split for r in results.table))


def _systems(results: Results) -> list[str]:
    return list(dict.fromkeys(r.system for r in results.table))


def _score_dims(results: Results) -> list[str]:
    return [d for d in results.dimensions if d != "bystander"]


def table1_rows(results: Results, judge: str) -> tuple[list[str], list[list[str]]]:
    """Table 1's layout for one judge: a row per system, Res/Exp/Rec/Avg per split."""
    dims = _score_dims(results)
    splits = _splits(results)
    extra = ["bystander"] if "bystander" in results.dimensions else []
    header = ["Method"] + [
        f"{SHORT.get(d, d)} ({s})" for s in splits for d in [*dims, "avg", *extra]
    ]
    header = [h.replace("avg", "Avg") for h in header]
    rows = []
    for system in _systems(results):
        row = [system]
        for split in splits:
            r = _find(results.table, judge, split, system)
            for d in [*dims, "avg", *extra]:
                if r is None:
                    row.append("-")
                elif d == "avg":
                    row.append(fmt(r.avg.mean))
                else:
                    row.append(fmt(r.columns[d].mean, 1 if d == "bystander" else 2))
        rows.append(row)
    return header, rows


def _find(rows: Iterable[Row], judge: str, split: str, system: str) -> Row | None:
    return next((r for r in rows if (r.judge, r.split, r.system) == (judge, split, system)), None)


def detail_rows(results: Results, judge: str) -> tuple[list[str], list[list[str]]]:
    dims = list(results.dimensions)
    header = [
        "Method",
        "Split",
        *(SHORT.get(d, d) for d in dims),
        "Avg",
        "examples",
        "replies",
        "unscorable",
    ]
    rows = [
        [
            r.system,
            r.split,
            *(fmt_ci(r.columns[d]) for d in dims),
            fmt_ci(r.avg),
            r.examples,
            r.replies,
            r.unscorable,
        ]
        for r in results.table
        if r.judge == judge
    ]
    return header, rows


def paired_rows(paired: Sequence[Paired]) -> tuple[list[str], list[list[str]]]:
    header = [
        "Judge",
        "Split",
        "System",
        "vs",
        "Metric",
        "Difference [CI]",
        "n",
        "wins / losses / ties",
        "Wilcoxon p",
        "sign p",
    ]
    rows = [
        [
            p.judge,
            p.split,
            p.system,
            p.baseline,
            "Avg" if p.metric == "avg" else SHORT.get(p.metric, p.metric),
            _signed_ci(p.diff),
            p.n,
            f"{p.wins} / {p.losses} / {p.ties}",
            fmt_p(p.wilcoxon_p),
            fmt_p(p.sign_p),
        ]
        for p in paired
    ]
    return header, rows


def _signed_ci(stat: Stat) -> str:
    if stat.mean is None:
        return "-"
    if stat.low is None:
        return fmt_signed(stat.mean)
    return f"{fmt_signed(stat.mean)} [{fmt_signed(stat.low)}, {fmt_signed(stat.high)}]"


def _cell(row: Row | None) -> str:
    return "-" if row is None or row.avg.mean is None else f"{fmt(row.avg.mean)} (n={row.examples})"


def _blocks(results: Results):
    for judge in _judges(results):
        for split in _splits(results):
            yield judge, split


def category_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """A row per (judge, split, category), a column per system: ``Avg (n=...)``."""
    systems = _systems(results)
    header = ["Judge", "Split", "Category", *systems]
    rows = []
    for judge, split in _blocks(results):
        for cat in Category:
            cells = {
                r.system: r
                for r in results.by_category
                if (r.judge, r.split) == (judge, split) and r.group["category"] == cat.value
            }
            if cells:
                rows.append(
                    [
                        judge,
                        split,
                        f"{cat.value} ({cat.title})",
                        *(_cell(cells.get(s)) for s in systems),
                    ]
                )
    return header, rows


def big_five_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """A row per (judge, split, trait, level), a column per system: ``Avg (n=...)``."""
    systems = _systems(results)
    header = ["Judge", "Split", "Trait", "Level", *systems]
    rows = []
    for judge, split in _blocks(results):
        for trait in BIG_FIVE_TRAITS:
            for level in LEVELS:
                cells = {
                    r.system: r
                    for r in results.by_big_five
                    if (r.judge, r.split) == (judge, split)
                    and r.group == {"trait": trait, "level": level}
                }
                if cells:
                    rows.append(
                        [judge, split, trait, level, *(_cell(cells.get(s)) for s in systems)]
                    )
    return header, rows


def memory_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """Table 2's layout: a row per memory mode, with its difference from full memory."""
    dims = _score_dims(results)
    header = [
        "Judge",
        "Split",
        "Memory",
        "System",
        *(SHORT[d] for d in dims),
        "Avg",
        "vs full [CI]",
        "relative",
        "Wilcoxon p",
    ]
    tests = {(p.judge, p.split, p.system): p for p in results.paired if p.view == "memory"}
    rows = []
    for r in results.memory:
        test = tests.get((r.judge, r.split, r.system))
        rows.append(
            [
                r.judge,
                r.split,
                MEMORY_TITLES.get(r.memory_mode or "", r.memory_mode),
                r.system,
                *(fmt(r.columns[d].mean) for d in dims),
                fmt_ci(r.avg),
                _signed_ci(test.diff) if test else "-",
                "-" if r.relative is None else f"{100 * r.relative:+.1f}%",
                fmt_p(test.wilcoxon_p) if test else "-",
            ]
        )
    return header, rows


def scaling_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    dims = _score_dims(results)
    header = [
        "Judge",
        "Split",
        "System",
        "k",
        *(SHORT[d] for d in dims),
        "Avg",
        "judge samples / reply",
        "judge tokens / reply (est.)",
    ]
    rows = [
        [
            p.judge,
            p.split,
            p.system,
            p.k,
            *(fmt(p.columns[d].mean) for d in dims),
            fmt_ci(p.avg),
            fmt(p.samples_per_reply, 1),
            "-" if p.tokens_per_reply is None else f"{p.tokens_per_reply:.0f}",
        ]
        for p in results.k_scaling
    ]
    return header, rows


def cost_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    header = [
        "Judge",
        "Replies file",
        "What",
        "replies",
        "calls",
        "cached samples",
        "prompt tokens",
        "completion tokens",
        "seconds",
    ]
    rows = [
        [
            c.judge,
            c.system,
            c.what,
            c.replies,
            c.calls,
            c.cached_calls,
            c.prompt_tokens,
            c.completion_tokens,
            f"{c.seconds:.1f}",
        ]
        for c in results.cost
    ]
    return header, rows


def headline(results: Results) -> str:
    """One sentence: the best system of the first judge and split, and its lead."""
    judges, splits = _judges(results), _splits(results)
    if not judges or not splits:
        return "nothing was scored"
    rows = [
        r
        for r in results.table
        if r.judge == judges[0] and r.split == splits[0] and r.avg.mean is not None
    ]
    if not rows:
        return f"no system could be scored by {judges[0]} on {splits[0]}"
    best = max(rows, key=lambda r: r.avg.mean)  # type: ignore[arg-type,return-value]
    text = (
        f"Judge {judges[0]}, split {splits[0]}: highest Avg {best.system} "
        f"{fmt_ci(best.avg)} over {best.examples} examples"
    )
    cmp = next(
        (
            p
            for p in results.paired
            if p.view == "baseline"
            and p.metric == "avg"
            and (p.judge, p.split, p.system) == (judges[0], splits[0], best.system)
        ),
        None,
    )
    if cmp is not None and cmp.diff.mean is not None:
        text += (
            f"; {fmt_signed(cmp.diff.mean)} vs {cmp.baseline} (Wilcoxon p {fmt_p(cmp.wilcoxon_p)})"
        )
    return text + "."


# --------------------------------------------------------------------------- markdown


def results_markdown(results: Results) -> str:
    level = round(100 * results.settings.get("level", 0.95))
    reward = results.settings.get("reward", "peregrm")
    parts = ["# Evaluation results", "", headline(results), ""]
    parts += [
        (
            f"Reward `{reward}`; scores on the judge's 1-5 scale; intervals are {level}% "
            "percentile bootstraps over examples. Layout of PersonaEmp table 1: a row per "
            "system, Res / Exp / Rec / Avg per split."
        ),
        "",
    ]
    for judge in _judges(results):
        parts += [
            f"## Table 1: judge {judge}",
            "",
            md_table(*table1_rows(results, judge)),
            "",
            f"With {level}% intervals and counts:",
            "",
            md_table(*detail_rows(results, judge)),
            "",
        ]
    baseline = [p for p in results.paired if p.view == "baseline"]
    if baseline:
        parts += [
            "## Paired comparisons",
            "",
            "Difference = system minus the other, on the examples both scored.",
            "",
            md_table(*paired_rows(baseline)),
            "",
        ]
    if results.by_category:
        parts += ["## By category (Avg)", "", md_table(*category_rows(results)), ""]
    if results.by_big_five:
        parts += ["## By Big Five level (Avg)", "", md_table(*big_five_rows(results)), ""]
    if results.memory:
        parts += ["## Memory ablation (table 2)", "", md_table(*memory_rows(results)), ""]
    if results.k_scaling:
        parts += ["## k scaling (figures 4b and 8)", "", md_table(*scaling_rows(results)), ""]
    if results.cost:
        parts += ["## Judge cost", "", md_table(*cost_rows(results)), ""]
    if results.notes:
        parts += ["## Notes", "", *(f"- {n}" for n in results.notes), ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------- plots


def make_plots(results: Results) -> list[tuple[str, str, bytes]]:
    """``(file name, caption, png)`` of every plot the results support."""
    out = []
    for judge in _judges(results):
        by_split = {
            s: [r for r in results.table if r.judge == judge and r.split == s]
            for s in _splits(results)
        }
        out.append(
            (
                f"table1_{_slug(judge)}.png",
                f"Res / Exp / Rec / Avg, judge {judge}",
                plots.table_plot(by_split, results.dimensions, f"Judge {judge}"),
            )
        )
        for split in _splits(results):
            tag = f"{_slug(judge)}_{_slug(split)}"
            cats = [r for r in results.by_category if r.judge == judge and r.split == split]
            if cats:
                out.append(
                    (
                        f"category_{tag}.png",
                        f"Avg by category, {judge} / {split}",
                        plots.group_plot(
                            cats,
                            "category",
                            [c.value for c in Category],
                            f"By category ({judge}, {split})",
                        ),
                    )
                )
            bf = [r for r in results.by_big_five if r.judge == judge and r.split == split]
            if bf:
                out.append(
                    (
                        f"big_five_{tag}.png",
                        f"Avg by Big Five level, {judge} / {split}",
                        plots.big_five_plot(
                            bf, BIG_FIVE_TRAITS, LEVELS, f"By Big Five level ({judge}, {split})"
                        ),
                    )
                )
            mem = [r for r in results.memory if r.judge == judge and r.split == split]
            if mem:
                out.append(
                    (
                        f"memory_{tag}.png",
                        f"Memory ablation, {judge} / {split}",
                        plots.memory_plot(
                            mem, MEMORY_TITLES, f"Memory ablation ({judge}, {split})"
                        ),
                    )
                )
            pts = [p for p in results.k_scaling if p.judge == judge and p.split == split]
            if pts:
                out.append(
                    (
                        f"k_scaling_{tag}.png",
                        f"k scaling, {judge} / {split}",
                        plots.scaling_plot(pts, f"PereGRM@k ({judge}, {split})"),
                    )
                )
    return out


def _slug(text: str) -> str:
    from attunement.evaluation.evaluate import safe_name

    return safe_name(text)


# --------------------------------------------------------------------------- html


def _html_table(header_rows: tuple[list[str], list[list[str]]], **kw) -> str:
    header, rows = header_rows
    return H.table(header, rows, **kw)


def _example_context(ex: Example) -> str:
    parts = [f"<p><b>Query</b></p>{H.pre(ex.query)}"]
    if ex.dialogue:
        turns = "".join(f"<p><b>{H.esc(t.role)}</b></p>{H.pre(t.text)}" for t in ex.dialogue)
        parts.append(H.details(f"earlier turns ({len(ex.dialogue)})", turns, cls="turns"))
    if ex.situation:
        parts.append(
            f"<p><b>Situation</b> ({H.esc(ex.situation.category.value)})</p>"
            f"{H.pre(ex.situation.description)}"
        )
    if ex.persona and ex.persona.profile:
        parts.append(f"<p><b>Persona</b></p>{H.pre(ex.persona.profile)}")
    if ex.persona and ex.persona.big_five:
        bf = ex.persona.big_five
        parts.append(
            "<p><b>Big Five</b>: "
            + H.esc(", ".join(f"{t} {getattr(bf, t)}" for t in BIG_FIVE_TRAITS))
            + "</p>"
        )
    if ex.memories:
        items = "".join(f"<li>{H.esc(m.value)}</li>" for m in ex.memories[:12])
        more = f"<p>... and {len(ex.memories) - 12} more</p>" if len(ex.memories) > 12 else ""
        parts.append(f"<p><b>Memories</b> ({len(ex.memories)})</p><ul>{items}</ul>{more}")
    if ex.criteria:
        crit = "".join(f"<p><b>{H.esc(d)}</b></p>{H.pre(c)}" for d, c in ex.criteria.items())
        parts.append(H.details("fixed criteria", crit, cls="criteria"))
    return f'<div class="context">{"".join(parts)}</div>'


def _judgement_table(judgements: Sequence[Judgement], dims: Sequence[str]) -> str:
    rows = []
    for d in dims:
        mine = [j for j in judgements if j.dimension == d]
        if not mine:
            continue
        for j in mine:
            score = "-" if j.score is None else fmt(j.score, 0 if j.score == int(j.score) else 2)
            why = j.rationale or (f"unscored: {j.reason}" if j.reason else "")
            rows.append(
                [SHORT.get(d, d) + (f" #{j.sample_index}" if len(mine) > 1 else ""), score, why]
            )
    return H.table(["dim", "score", "judge's rationale"], rows, text_columns=1, cls="judgement")


def _reply_panel(run: EvalRun, system, example_id: str, dims: Sequence[str]) -> str | None:
    keys = sorted(k for k in system.reply_keys if k[0] == example_id)
    if not keys:
        return None
    reply = run.reply_index.get(keys[0])
    if reply is None:
        return None
    body = []
    if reply.analysis:
        body.append(f"<p><b>Analysis</b></p>{H.pre(reply.analysis)}")
    body.append(f"<p><b>Response</b></p>{H.pre(reply.response)}")
    if not reply.format_ok:
        body.append('<p class="warn">the reply did not follow the Analysis / Response format</p>')
    for judge, by_key in run.breakdowns.items():
        b = by_key.get(keys[0])
        if b is None:
            continue
        avg = [b.dimensions.get(d) for d in dims if d != "bystander"]
        summary = (
            "unscorable"
            if b.unscorable
            else "Avg " + fmt(sum(avg) / len(avg))
            if all(v is not None for v in avg)
            else "-"
        )
        body.append(
            f"<p><b>Judge {H.esc(judge)}</b>: {H.esc(summary)}</p>"
            + _judgement_table(b.judgements, dims)
        )
    extra = f" ({len(keys)} replies; first shown)" if len(keys) > 1 else ""
    return H.panel(system.label + extra, "".join(body))


def shown_examples(run: EvalRun, n: int, seed: int) -> list[Example]:
    """A reproducible sample of examples that have replies, spread over categories."""
    have = {eid for s in run.systems for eid, _ in s.reply_keys}
    ids = sorted(eid for eid in run.examples if eid in have)
    rng = random.Random(seed)
    rng.shuffle(ids)
    by_cat: dict[str | None, list[str]] = {}
    for eid in ids:
        by_cat.setdefault(category_of(run.examples[eid]), []).append(eid)
    chosen: list[str] = []
    while len(chosen) < min(n, len(ids)):
        for cat in list(by_cat):
            if by_cat[cat] and len(chosen) < n:
                chosen.append(by_cat[cat].pop(0))
    return [run.examples[eid] for eid in chosen]


def examples_section(run: EvalRun, n: int, seed: int) -> str:
    dims = run.results.dimensions
    blocks = []
    for i, ex in enumerate(shown_examples(run, n, seed)):
        panels = [p for s in run.systems if (p := _reply_panel(run, s, ex.example_id, dims))]
        cat = category_of(ex) or "?"
        title = f"{ex.example_id} · {cat} · {ex.query[:90]}" + ("..." if len(ex.query) > 90 else "")
        body = _example_context(ex) + f'<div class="panels">{"".join(panels)}</div>'
        blocks.append(H.details(title, body, open_=i == 0))
    return "".join(blocks)


EXTRA_CSS = """
table.judgement { font-size: 0.85em; width: 100%; }
table.judgement td:last-child, table.judgement th:last-child { text-align: left; }
.wide figure img { max-width: 100%; }
.context { background: #fff; border-left: 3px solid var(--line); padding: 0 10px; margin: 8px 0; }
.context pre { background: var(--bg-alt); padding: 4px 8px; }
"""


def report_html(run: EvalRun, figures: Sequence[tuple[str, str, bytes]]) -> str:
    results = run.results
    settings = results.settings
    level = round(100 * settings.get("level", 0.95))
    parts: list[str] = []
    nav = [("table1", "Table 1")]
    for judge in _judges(results):
        parts.append(
            H.section(
                f"Table 1 · judge {judge}",
                _html_table(table1_rows(results, judge), caption="Res / Exp / Rec / Avg (1-5)")
                + _html_table(
                    detail_rows(results, judge),
                    text_columns=2,
                    caption=f"with {level}% intervals and counts",
                ),
                id="table1" if judge == _judges(results)[0] else f"table1-{_slug(judge)}",
                lead=f"Fixed-criteria scores of reward {settings.get('reward')}, mean over "
                "examples; Avg is the mean of the dimension means (PersonaEmp table 1).",
            )
        )
    baseline = [p for p in results.paired if p.view == "baseline"]
    if baseline:
        nav.append(("paired", "Paired"))
        parts.append(
            H.section(
                "Paired comparisons",
                _html_table(paired_rows(baseline), text_columns=5),
                id="paired",
                lead="System minus the other on the examples both scored; Wilcoxon signed-rank "
                "and exact sign tests, two-sided.",
            )
        )
    # the breakdown tables: (shown when, anchor, nav label, title, rows, text columns, lead)
    breakdowns = [
        (results.by_category, "category", "Category", "By category", category_rows, 3,
         "Avg per query category (ES, HEQ, SS)."),
        (results.by_big_five, "bigfive", "Big Five", "By Big Five level", big_five_rows, 4,
         "Avg by the user's level of each trait (PersonaEmp figure 5)."),
        (results.memory, "memory", "Memory", "Memory ablation", memory_rows, 4,
         "Systems by memory mode against full memory (PersonaEmp table 2)."),
        (results.k_scaling, "scaling", "k scaling", "k scaling", scaling_rows, 3,
         ("PereGRM@k from the first k judge samples of a PereGRM@K run with criteria per "
         "sample (figures 4b and 8).")),
    ]  # fmt: skip
    for present, anchor, label, title, rows, text_columns, lead in breakdowns:
        if present:
            nav.append((anchor, label))
            table = _html_table(rows(results), text_columns=text_columns)
            parts.append(H.section(title, table, id=anchor, lead=lead))
    if figures:
        nav.append(("plots", "Plots"))
        shown_figs = "".join(
            f'<div class="wide">{H.figure(png, cap)}</div>'
            if name.startswith(("big_five", "k_scaling"))
            else H.figure(png, cap)
            for name, cap, png in figures
        )
        parts.append(H.section("Plots", shown_figs, id="plots"))
    shown = settings.get("examples_shown", 12)
    if shown:
        nav.append(("examples", "Examples"))
        parts.append(
            H.section(
                "Examples",
                examples_section(run, shown, settings.get("seed", 0)),
                id="examples",
                lead="A sample of examples: each system's reply side by side, "
                "with each judge's score and rationale per dimension.",
            )
        )
    if results.cost:
        nav.append(("cost", "Cost"))
        parts.append(
            H.section("Judge cost", _html_table(cost_rows(results), text_columns=3), id="cost")
        )
    meta = [
        ("Judges", ", ".join(f"{j['label']} ({j['model']})" for j in results.judges)),
        ("Systems", ", ".join(s["label"] for s in results.systems)),
        ("Splits", ", ".join(f"{s['label']} ({s['examples']} examples)" for s in results.splits)),
    ]
    if results.criteria:
        c = results.criteria
        meta.append(
            (
                "Criteria",
                (
                    f"written by {c.get('judge')}: {c.get('from_input', 0)} "
                    f"given, {c.get('resumed', 0)} resumed, "
                    f"{c.get('prepared_now', 0)} written now, "
                    f"{len(c.get('failed', {}))} failed"
                ),
            )
        )
    meta += [("Note", n) for n in results.notes]
    parts.append(H.section("Run", H.table(["", ""], meta, text_columns=2), id="run"))
    nav.append(("run", "Run"))
    page = H.page(
        "Evaluation report",
        parts,
        subtitle="attune evaluate · results.json holds every number",
        summary=headline(results),
        nav=nav,
    )
    return page.replace("</style>", EXTRA_CSS + "</style>", 1)


def write_evaluation_report(run: EvalRun) -> Path:
    """Write results.json, results.md, plots/*.png and report.html; return the page."""
    out = run.out
    write_json(out / "results.json", run.results.model_dump(mode="json"))
    (out / "results.md").write_text(results_markdown(run.results), encoding="utf-8")
    figures = make_plots(run.results) if run.results.settings.get("plots", True) else []
    plot_dir = out / "plots"
    plot_dir.mkdir(exist_ok=True)
    for name, _, png in figures:
        (plot_dir / name).write_bytes(png)
    report = out / "report.html"
    report.write_text(report_html(run, figures), encoding="utf-8")
    return report
