"""SAGE's report: results.json, results.md, plots/sage_trajectories.png, report.html.

The headline is the SAGE score (mean final emotion over the profiles, 0-100)
with a bootstrap interval over profiles, beside the random-policy baseline
under the same simulator, and the sentence that says what the number is
comparable with (:attr:`SageResult.note`): the Sentient leaderboard, only
under the same simulator model. The tables, trajectories and a talk with the
simulator's analysis beside each reply are the dialogue section every report
shares (:mod:`attunement.evaluation.dialogues`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attunement.benchmarks.sage.run import SageResult
from attunement.dialogue import MAX_USER_TURNS, max_assessments, read_dialogues
from attunement.evaluation import html as H
from attunement.evaluation.dialogues import (
    DialogueResults,
    DialogueSet,
    compare_dialogues,
    dialogue_html,
    dialogue_markdown,
    trajectory_plot,
)
from attunement.evaluation.reporting import fmt_ci, write_json, write_page, write_plot
from attunement.evaluation.tables import StatsConfig
from attunement.llm import stand_in_line

#: the most assessed replies of a SAGE talk (10 user turns, the last reply not assessed)
SAGE_STEPS = max_assessments(MAX_USER_TURNS, assess_last_reply=False)


def sage_sets(result: SageResult, baseline: SageResult | None) -> list[DialogueSet]:
    """The tested model's talks and the baseline's, as dialogue systems."""
    sets = []
    for label, res in (("tested", result), ("random", baseline)):
        if res is None:
            continue
        wanted = {s.dialogue_id for s in res.scores}
        talks = [d for d in read_dialogues(res.report.out) if d.dialogue_id in wanted]
        sets.append(DialogueSet(f"{label}: {res.policy}", talks, SAGE_STEPS, str(res.report.out)))
    return sets


def headline(result: SageResult, table: DialogueResults) -> str:
    row = table.rows[0]
    text = (
        f"SAGE score {fmt_ci(row.metrics['final_emotion'], 1)} / 100 for {result.policy} "
        f"over {row.users} of {result.profiles} profiles"
    )
    if len(table.rows) > 1:
        text += f"; random-policy baseline {fmt_ci(table.rows[1].metrics['final_emotion'], 1)}"
    return text


def write_sage_report(
    result: SageResult,
    baseline: SageResult | None,
    out_dir: str | Path,
    *,
    provenance: dict[str, Any] | None = None,
    cfg: StatsConfig | None = None,
) -> Path:
    """Write the report folder and return the page's path."""
    out_dir = Path(out_dir)
    sets = sage_sets(result, baseline)
    table = compare_dialogues(sets, cfg or StatsConfig(), baseline=sets[-1].label)
    title = headline(result, table)
    record = {
        "headline": title,
        "note": result.note,
        "comparable": result.comparable,
        "simulator": result.simulator,
        "score": result.score,
        "baseline_score": baseline.score if baseline else None,
        "tested": result.model_dump(mode="json", exclude={"scores", "report"}),
        "baseline": baseline.model_dump(mode="json", exclude={"scores", "report"})
        if baseline
        else None,
        "dialogues": table.model_dump(mode="json"),
        "files": provenance or {},
    }
    note = "\n\n".join(p for p in (result.note, stand_in_line(result)) if p)
    markdown = "\n".join(
        ["# SAGE results", "", title + ".", "", note, "", dialogue_markdown(table)]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", record)
    (out_dir / "results.md").write_text(markdown + "\n", encoding="utf-8")
    png = trajectory_plot(sets)
    write_plot(out_dir, "sage_trajectories.png", png)
    body = dialogue_html(table, sets, H.wide(H.figure(png, "emotion per reply")))
    page = H.page(
        "SAGE: Sentient Agent as a Judge",
        [H.section("What this number is", H.pre(note), id="note"), body],
        subtitle=title,
    )
    return write_page(out_dir / "report.html", page)
