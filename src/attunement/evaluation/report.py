"""Writing an evaluation: results.json, results.md, plots/*.png and report.html.

``results.json`` holds every number (and the settings, judges and inputs that
produced it); ``results.md`` lays the main ones out as the papers' tables;
``report.html`` is one self-contained page (CSS inline, plots embedded) with
the tables, the plots and a browsable sample of examples: each system's reply
next to the others, with every judge's score and rationale per dimension.
The tables' rows come from :mod:`~attunement.evaluation.views`, so the
Markdown and the page show the same figures. Replies, rationales and user text
are untrusted: every piece goes through :func:`attunement.evaluation.html.esc`
(or a helper that calls it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from attunement.evaluation import html as H
from attunement.evaluation import plots
from attunement.evaluation.dialogues import (
    DialogueResults,
    dialogue_html,
    dialogue_markdown,
    trajectory_plot,
)
from attunement.evaluation.reporting import (
    fmt,
    fmt_ci,
    md_table,
    note_lines,
    write_page,
    write_results,
)
from attunement.evaluation.runs import EvalRun, Results, System, safe_name
from attunement.evaluation.tables import LEVELS, MEMORY_TITLES, SHORT, category_of
from attunement.evaluation.views import (
    BREAKDOWNS,
    cost_rows,
    detail_rows,
    headline,
    judge_labels,
    paired_rows,
    split_labels,
    table1_rows,
)
from attunement.llm import stand_in_line
from attunement.records import BIG_FIVE_TRAITS, Category, Example, Judgement

#: fmt and fmt_ci stay importable from here (the command line prints with them)
__all__ = ["fmt", "fmt_ci", "results_markdown", "write_evaluation_report"]

Figure = tuple[str, str, bytes]  # file name, caption, png

#: how every interval and test of the report was made, said once for both files
INTERVALS = (
    "Intervals are {level}% studentized bootstraps over users (several queries of one "
    "user are not independent); a cell from fewer than 10 users shows `[n too small]` "
    "instead, since no interval holds its level there."
)
PAIRED_LEAD = (
    "Difference = system minus the other, on the examples both scored; n counts the "
    "examples and, in brackets, their users. p is the two-sided studentized bootstrap over "
    "users (none below 10 users); Holm p adjusts it for every comparison of this report "
    "(both tables, every judge, split and metric). Read a difference as shown only when "
    "its Holm p is below 0.05."
)
COST_LEAD = (
    "Judge samples: the samples behind the replies, whoever paid for them; calls and tokens: "
    "what was spent when they were first scored; cached samples: served by the completion "
    "cache (no call, no token: '- (cache)' when the cache served everything). The k-scaling "
    "run is one line for all systems, since its criteria are written once and shared."
)
BIG_FIVE_CAPTION = (
    "; levels with fewer than 10 users have no error bar: an interval from so few users "
    "would not hold its level"
)

# --------------------------------------------------------------------------- markdown


def results_markdown(results: Results) -> str:
    level = round(100 * results.settings.get("level", 0.95))
    reward = results.settings.get("reward", "peregrm")
    parts = ["# Evaluation results", "", *note_lines(results.judges), headline(results), ""]
    parts += [
        (
            f"Reward `{reward}`; scores on the judge's 1-5 scale. {INTERVALS.format(level=level)} "
            "Layout of PersonaEmp table 1: a row per system, Res / Exp / Rec / Avg per split."
        ),
        "",
    ]
    for judge in judge_labels(results):
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
            PAIRED_LEAD,
            "",
            md_table(*paired_rows(baseline)),
            "",
        ]
    if results.dialogues:
        parts += [dialogue_markdown(DialogueResults.model_validate(results.dialogues)), ""]
    for b in BREAKDOWNS:
        if b.present(results):
            parts += [f"## {b.md_title}", "", md_table(*b.rows(results)), ""]
    if results.cost:
        parts += ["## Judge cost", "", COST_LEAD, "", md_table(*cost_rows(results)), ""]
    if results.notes:
        parts += ["## Notes", "", *(f"- {n}" for n in results.notes), ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------- plots


def make_plots(results: Results) -> list[Figure]:
    """``(file name, caption, png)`` of every plot the results support."""
    out = []
    for judge in judge_labels(results):
        by_split = {
            s: [r for r in results.table if r.judge == judge and r.split == s]
            for s in split_labels(results)
        }
        out.append(
            (
                f"table1_{safe_name(judge)}.png",
                f"Res / Exp / Rec / Avg, judge {judge}",
                plots.table_plot(by_split, results.dimensions, f"Judge {judge}"),
            )
        )
        for split in split_labels(results):
            out += _split_plots(results, judge, split)
    return out


def _split_plots(results: Results, judge: str, split: str) -> list[Figure]:
    """The breakdown plots of one judge on one split (those with rows)."""
    tag = f"{safe_name(judge)}_{safe_name(split)}"
    mine = lambda rows: [r for r in rows if r.judge == judge and r.split == split]
    cats, bf, mem, pts = (
        mine(results.by_category),
        mine(results.by_big_five),
        mine(results.memory),
        mine(results.k_scaling),
    )
    out = []
    if cats:
        title = f"By category ({judge}, {split})"
        png = plots.group_plot(cats, "category", [c.value for c in Category], title)
        out.append((f"category_{tag}.png", f"Avg by category, {judge} / {split}", png))
    if bf:
        title = f"By Big Five level ({judge}, {split})"
        png = plots.big_five_plot(bf, BIG_FIVE_TRAITS, LEVELS, title)
        caption = f"Avg by Big Five level, {judge} / {split}"
        if any(r.avg.mean is not None and r.avg.low is None for r in bf):
            caption += BIG_FIVE_CAPTION
        out.append((f"big_five_{tag}.png", caption, png))
    if mem:
        png = plots.memory_plot(mem, MEMORY_TITLES, f"Memory ablation ({judge}, {split})")
        out.append((f"memory_{tag}.png", f"Memory ablation, {judge} / {split}", png))
    if pts:
        png = plots.scaling_plot(pts, f"PereGRM@k ({judge}, {split})")
        out.append((f"k_scaling_{tag}.png", f"k scaling, {judge} / {split}", png))
    return out


# --------------------------------------------------------------------------- examples


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


def _reply_panel(run: EvalRun, system: System, example_id: str, dims: Sequence[str]) -> str | None:
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
.context { background: #fff; border-left: 3px solid var(--line); padding: 0 10px; margin: 8px 0; }
.context pre { background: var(--bg-alt); padding: 4px 8px; }
"""


# --------------------------------------------------------------------------- the page

#: a section of the page and its entry in the navigation (None: not listed)
Part = tuple[tuple[str, str] | None, str]


def _table1_parts(results: Results) -> list[Part]:
    settings = results.settings
    level = round(100 * settings.get("level", 0.95))
    judges = judge_labels(results)
    parts: list[Part] = []
    for judge in judges:
        first = judge == judges[0]
        body = H.table(
            *table1_rows(results, judge), caption="Res / Exp / Rec / Avg (1-5)"
        ) + H.table(
            *detail_rows(results, judge),
            text_columns=2,
            caption=f"with {level}% intervals and counts",
        )
        section = H.section(
            f"Table 1 · judge {judge}",
            body,
            id="table1" if first else f"table1-{safe_name(judge)}",
            lead=f"Fixed-criteria scores of reward {settings.get('reward')}, mean over "
            "examples; Avg is the mean of the dimension means (PersonaEmp table 1).",
        )
        parts.append((("table1", "Table 1") if first else None, section))
    return parts


def _paired_parts(results: Results) -> list[Part]:
    baseline = [p for p in results.paired if p.view == "baseline"]
    if not baseline:
        return []
    section = H.section(
        "Paired comparisons",
        H.table(*paired_rows(baseline), text_columns=5),
        id="paired",
        lead=PAIRED_LEAD,
    )
    return [(("paired", "Paired"), section)]


def _breakdown_parts(results: Results) -> list[Part]:
    return [
        (
            (b.anchor, b.nav),
            H.section(
                b.title,
                H.table(*b.rows(results), text_columns=b.text_columns),
                id=b.anchor,
                lead=b.lead,
            ),
        )
        for b in BREAKDOWNS
        if b.present(results)
    ]


def _plot_parts(figures: Sequence[Figure]) -> list[Part]:
    if not figures:
        return []
    shown = "".join(
        H.wide(H.figure(png, cap))
        if name.startswith(("big_five", "k_scaling"))
        else H.figure(png, cap)
        for name, cap, png in figures
    )
    return [(("plots", "Plots"), H.section("Plots", shown, id="plots"))]


def _example_parts(run: EvalRun) -> list[Part]:
    settings = run.results.settings
    shown = settings.get("examples_shown", 12)
    if not shown:
        return []
    section = H.section(
        "Examples",
        examples_section(run, shown, settings.get("seed", 0)),
        id="examples",
        lead="A sample of examples: each system's reply side by side, "
        "with each judge's score and rationale per dimension.",
    )
    return [(("examples", "Examples"), section)]


def _cost_parts(results: Results) -> list[Part]:
    if not results.cost:
        return []
    section = H.section(
        "Judge cost", H.table(*cost_rows(results), text_columns=3), id="cost", lead=COST_LEAD
    )
    return [(("cost", "Cost"), section)]


def _run_part(results: Results) -> Part:
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
    return ("run", "Run"), H.section("Run", H.table(["", ""], meta, text_columns=2), id="run")


def _dialogue_parts(run: EvalRun) -> list[Part]:
    """The dialogue systems: tables, emotion trajectories, a talk each."""
    if not run.results.dialogues or not run.dialogue_sets:
        return []
    png = trajectory_plot(run.dialogue_sets)
    (run.out / "plots").mkdir(exist_ok=True)
    (run.out / "plots" / "dialogue_trajectories.png").write_bytes(png)
    plot = H.wide(H.figure(png, "emotion after each assessed reply"))
    table = DialogueResults.model_validate(run.results.dialogues)
    return [(("dialogues", "Dialogues"), dialogue_html(table, run.dialogue_sets, plot))]


def report_html(run: EvalRun, figures: Sequence[Figure]) -> str:
    results = run.results
    parts = [
        *_table1_parts(results),
        *_paired_parts(results),
        *_dialogue_parts(run),
        *_breakdown_parts(results),
        *_plot_parts(figures),
        *_example_parts(run),
        *_cost_parts(results),
        _run_part(results),
    ]
    return H.page(
        "Evaluation report",
        [section for _, section in parts],
        subtitle="attune evaluate · results.json holds every number",
        summary=headline(results),
        note=stand_in_line(results.judges),
        nav=[entry for entry, _ in parts if entry is not None],
        extra_css=EXTRA_CSS,
    )


def write_evaluation_report(run: EvalRun) -> Path:
    """Write results.json, results.md, plots/*.png and report.html; return the page."""
    out = run.out
    write_results(out, run.results, results_markdown(run.results))
    figures = make_plots(run.results) if run.results.settings.get("plots", True) else []
    plot_dir = out / "plots"
    plot_dir.mkdir(exist_ok=True)
    for name, _, png in figures:
        (plot_dir / name).write_bytes(png)
    return write_page(out / "report.html", report_html(run, figures))
