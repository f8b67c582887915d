"""EQ-Bench 3's report: results.json, results.md, plots/eqbench3_criteria.png, report.html.

The score tables (by kind, per criterion, per task, without a score) are built
once for the Markdown and the page; the page adds the criteria plot and the
transcripts turn by turn with the judge's reasoning and scores (model text is
escaped).
"""

from __future__ import annotations

from pathlib import Path

from attunement.benchmarks.eqbench3.baseline import within_random_band
from attunement.benchmarks.eqbench3.data import STANDARD_SCORED, EQBenchData
from attunement.benchmarks.eqbench3.records import (
    RubricVerdict,
    Transcript,
    read_transcripts,
    read_verdicts,
)
from attunement.benchmarks.eqbench3.rubric import EQBenchResults
from attunement.evaluation import html as H
from attunement.evaluation import plots
from attunement.evaluation.reporting import (
    fmt_ci,
    md_table,
    note_lines,
    write_page,
    write_plot,
    write_results,
)
from attunement.llm import stand_in_line

TableRows = tuple[list[str], list[list]]


def _tables(results: EQBenchResults, data: EQBenchData) -> tuple[TableRows, ...]:
    counted = set(STANDARD_SCORED) | set(data.criteria["analysis"])
    kinds = (
        ["Kind", "rubric score 0-100 [CI]", "tasks"],
        [[k, fmt_ci(v, 1), v.n] for k, v in results.by_kind.items()],
    )
    criteria = (
        ["Criterion", "mean 0-20 [CI]", "tasks", "counts toward the score"],
        [
            [name, fmt_ci(v, 1), v.n, "yes" if name in counted else "no (style)"]
            for name, v in results.criteria.items()
        ],
    )
    tasks = (
        ["Scenario", "Title", "Kind", "Category", "task score 0-20"],
        [
            [
                t.scenario_id,
                t.title,
                t.kind,
                t.category,
                "-" if t.score is None else f"{t.score:.2f}",
            ]
            for t in results.tasks
        ],
    )
    failed = (["Scenario", "why no score"], [[k, v] for k, v in results.failed.items()])
    return kinds, criteria, tasks, failed


def headline(results: EQBenchResults) -> str:
    if results.rubric_score.mean is None:
        return f"no task was scored ({len(results.failed)} failed)"
    return (
        f"EQ-Bench 3 rubric score {fmt_ci(results.rubric_score, 1)} / 100 "
        f"({results.rubric_score_20:.2f} on upstream's 0-20) over "
        f"{results.rubric_score.n} of {results.scenarios} scenarios, judged by "
        f"{results.judge}; a judge scoring at random gets {random_judge_text(results)}"
    )


def random_judge_text(results: EQBenchResults) -> str:
    """``50.0 (95% of random judges: 47.4-52.6)``."""
    b = results.random_judge
    if b.mean is None or b.low is None or b.high is None:
        return "-"
    return f"{b.mean:.1f} (95% of random judges: {b.low:.1f}-{b.high:.1f})"


def score_notes(results: EQBenchResults) -> list[str]:
    """What the score is comparable with, and whether it stands out from a random judge."""
    lines = [f"Comparable: {results.comparable}."] if results.comparable else []
    if within_random_band(results.rubric_score, results.random_judge):
        lines.append(
            "Warning: this score lies within the band of a judge that scores at random "
            f"({random_judge_text(results)}); the score alone cannot tell this judge's verdicts "
            "from noise. Check the judge (attune judge-card) before reading it."
        )
    return lines


def eqbench_markdown(results: EQBenchResults, data: EQBenchData) -> str:
    kinds, criteria, tasks, failed = _tables(results, data)
    parts = [
        "# EQ-Bench 3 results",
        "",
        *note_lines(results),
        headline(results) + ".",
        "",
        *(line for text in score_notes(results) for line in (text, "")),
        (
            f"Model `{results.model}`, judge `{results.judge}`. Per task: the mean of the "
            "counted criteria (overall_eq x3 when present); then the mean over tasks on "
            "0-20, reported x5."
        ),
        "",
        "## By kind",
        "",
        md_table(*kinds),
        "",
        "## Criteria",
        "",
        md_table(*criteria),
        "",
        "## Tasks",
        "",
        md_table(*tasks),
        "",
    ]
    if results.failed:
        parts += ["## Without a score", "", md_table(*failed), ""]
    if data.skipped:
        parts += ["## Skipped scenarios", "", *(f"- {k}: {v}" for k, v in data.skipped.items()), ""]
    return "\n".join(parts)


def _transcript_html(t: Transcript, v: RubricVerdict | None) -> str:
    body = []
    n = 0
    for turn in t.turns:
        if turn.role == "user":
            n += 1
            body.append(
                H.details(
                    f"user turn {n} (as sent, wrapped by the master prompt)",
                    H.pre(turn.text),
                    cls="turn",
                )
            )
        else:
            body.append(H.panel(f"reply {n}", H.pre(turn.text)))
    if t.debrief:
        body.append(H.panel("debrief", H.pre(t.debrief[-1].text)))
    if v is not None:
        rows = [[k, f"{val:g}"] for k, val in v.scores.items()]
        body.append(
            H.panel(
                "judge: " + v.judge,
                f"<p><b>Reasoning</b></p>{H.pre(v.reasoning)}"
                + H.table(["criterion", "0-20"], rows),
            )
        )
    return "".join(body)


def _score_sections(results: EQBenchResults, data: EQBenchData, out: Path) -> list[str]:
    """Score, criteria (with their plot, written to ``plots/``), tasks, and failures."""
    kinds, criteria, tasks, failed = _tables(results, data)
    notes = "".join(f"<p>{H.esc(text)}</p>" for text in score_notes(results))
    parts = [
        H.section(
            "Score",
            H.table(*kinds) + notes,
            id="score",
            lead="Upstream's rubric score: per task the mean of its counted "
            "criteria, then the mean over tasks (0-20), shown x5. A judge scoring at random "
            f"gets {random_judge_text(results)} on these tasks.",
        )
    ]
    figures = ""
    if results.criteria:
        png = plots.bars(
            list(results.criteria),
            list(results.criteria.values()),
            ylabel="mean (0-20)",
            title="EQ-Bench 3 criteria",
            ylim=(0, 20),
        )
        write_plot(out, "eqbench3_criteria.png", png)
        figures = H.wide(H.figure(png, "criterion means over tasks"))
    parts.append(H.section("Criteria", H.table(*criteria) + figures, id="criteria"))
    parts.append(H.section("Tasks", H.table(*tasks, text_columns=4), id="tasks"))
    if results.failed or data.skipped:
        rows = failed[1] + [[k, f"skipped: {v}"] for k, v in data.skipped.items()]
        parts.append(
            H.section("Without a score", H.table(failed[0], rows, text_columns=2), id="failed")
        )
    return parts


def write_eqbench_report(
    results: EQBenchResults, data: EQBenchData, out: Path, shown: int = 12
) -> Path:
    """results.json, results.md, plots/eqbench3_criteria.png and report.html."""
    out = Path(out)
    write_results(out, results, eqbench_markdown(results, data))
    parts = _score_sections(results, data, out)
    transcripts, verdicts = read_transcripts(out), read_verdicts(out)
    blocks = [
        H.details(
            f"{t.scenario_id} · {t.kind} · {t.title}",
            _transcript_html(t, verdicts.get(t.scenario_id)),
        )
        for t in list(transcripts.values())[:shown]
    ]
    parts.append(
        H.section(
            "Transcripts",
            "".join(blocks),
            id="transcripts",
            lead=f"{len(blocks)} of {len(transcripts)} scenarios: each turn, "
            "the debrief and the judge's reasoning and scores.",
        )
    )
    page = H.page(
        "EQ-Bench 3 report",
        parts,
        subtitle=f"attune eqbench3 · model {results.model} · judge {results.judge}",
        summary=headline(results),
        note=stand_in_line(results),
        nav=[
            ("score", "Score"),
            ("criteria", "Criteria"),
            ("tasks", "Tasks"),
            ("transcripts", "Transcripts"),
        ],
    )
    return write_page(out / "report.html", page)
