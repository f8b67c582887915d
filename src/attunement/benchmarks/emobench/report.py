"""EmoBench's report: results.json, results.md, plots/emobench.png and report.html.

The accuracy tables are built once (:func:`accuracy_rows`) for the Markdown and
the page; the page adds a plot and a browsable sample of items with the right
and the chosen options marked, wrong answers first, since those show what a
model gets wrong. Scenarios and answers are untrusted text and are escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from attunement.benchmarks.emobench.data import EAItem, EUItem, Item, item_key, task_of
from attunement.benchmarks.emobench.prompts import LETTERS, question
from attunement.benchmarks.emobench.scoring import Accuracy, EmoBenchAnswer, EmoBenchResults
from attunement.evaluation import html as H
from attunement.evaluation import plots
from attunement.evaluation.reporting import (
    md_table,
    note_lines,
    number,
    with_interval,
    write_page,
    write_plot,
    write_results,
)
from attunement.evaluation.stats import Stat
from attunement.llm import stand_in_line

#: the accuracy tables: the results field, its Markdown title and the group keys shown
GROUPINGS = (
    ("tasks", "Per task", ("task",)),
    ("parts", "EU parts", ("task", "part")),
    ("question_types", "EA question types", ("task", "question_type")),
    ("categories", "Categories", ("task", "category")),
)


def accuracy_text(a: Accuracy) -> str:
    """``66.3 [61.2, 71.0]`` (0-100), ``-`` when nothing was answered."""
    return with_interval(a.accuracy, a.low, a.high, digits=1)


def accuracy_rows(rows: Sequence[Accuracy], keys: Sequence[str]) -> tuple[list[str], list[list]]:
    header = [k.replace("_", " ") for k in keys] + [
        "accuracy [CI]",
        "chance",
        "right / n",
        "unparsed",
    ]
    return header, [
        [a.group.get(k, "") for k in keys]
        + [accuracy_text(a), number(a.chance, 1), f"{a.correct} / {a.n}", a.unparsed]
        for a in rows
    ]


def prompts_line(results: EmoBenchResults) -> str:
    return f"Prompts: {results.prompts or 'not recorded'}."


def emobench_markdown(results: EmoBenchResults) -> str:
    level = round(100 * results.settings.get("level", 0.95))
    by_task = {a.group["task"]: a for a in results.tasks}
    table5 = [results.model] + [
        number(by_task[t].accuracy, 1) if t in by_task else "-" for t in ("EU", "EA")
    ]
    parts = [
        "# EmoBench results",
        "",
        *note_lines(results),
        (
            f"Model `{results.model}`; accuracy on 0-100 with {level}% Wilson intervals, and "
            "the accuracy of random picks (chance). EU counts an item right only when the "
            "feeling and its reason are both right."
        ),
        "",
        prompts_line(results),
        "",
        "## Table 5 layout",
        "",
        md_table(["Model", "EU", "EA"], [table5]),
        "",
    ]
    for field, title, keys in GROUPINGS:
        rows = getattr(results, field)
        if rows or field == "tasks":
            parts += [f"## {title}", "", md_table(*accuracy_rows(rows, keys)), ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------- the page


def _choices_html(choices: Sequence[str], expected: int, picked: int | None) -> str:
    rows = []
    for i, c in enumerate(choices):
        marks = ("✓ right answer" if i == expected else "") + (
            ("; " if i == expected else "") + "model's choice" if i == picked else ""
        )
        rows.append([LETTERS[i], c, marks])
    return H.table(["", "option", ""], rows, text_columns=3)


def _item_html(item: Item, answer: EmoBenchAnswer) -> str:
    body = [f"<p><b>Situation</b></p>{H.pre(item.scenario)}"]
    if isinstance(item, EUItem):
        body.append(
            f"<p><b>Feeling</b> of {H.esc(item.subject)}</p>"
            + _choices_html(
                item.emotion_choices, item.emotion_index, answer.predicted.get("emotion")
            )
        )
        body.append(
            "<p><b>Reason</b></p>"
            + _choices_html(item.cause_choices, item.cause_index, answer.predicted.get("cause"))
        )
    elif isinstance(item, EAItem):
        body.append(
            f"<p><b>{H.esc(question(item))}</b></p>"
            + _choices_html(item.choices, item.answer_index, answer.predicted.get("answer"))
        )
    body.append(f"<p><b>Model's answer</b></p>{H.pre(answer.raw or '(none)')}")
    if answer.reason:
        body.append(f'<p class="warn">unread: {H.esc(answer.reason)}</p>')
    return "".join(body)


def _accuracy_section(results: EmoBenchResults) -> str:
    tables = [H.table(*accuracy_rows(results.tasks, ["task"]))]
    for field, _, keys in GROUPINGS[1:3]:  # EU parts, EA question types
        rows = getattr(results, field)
        if rows:
            tables.append(H.table(*accuracy_rows(rows, keys), text_columns=2))
    return H.section(
        "Accuracy",
        "".join(tables),
        id="accuracy",
        lead="Accuracy on 0-100 with Wilson intervals (PersonaEmp "
        "table 5) next to chance (random picks); EU needs the feeling and its reason both "
        f"right. {prompts_line(results)}",
    )


def _items_section(items: Sequence[Item], answers: Sequence[EmoBenchAnswer], shown: int) -> str:
    by_key = {item_key(a.task, a.qid, a.language): a for a in answers}
    pairs = [
        (i, by_key[item_key(task_of(i), i.qid, i.language)])
        for i in items
        if item_key(task_of(i), i.qid, i.language) in by_key
    ]
    # wrong answers first, then right ones, so the sample shows what went wrong
    pairs.sort(key=lambda p: p[1].correct)
    blocks = [
        H.details(
            f"{a.task} {a.qid} · {'right' if a.correct else 'wrong'} · {item.scenario[:80]}",
            _item_html(item, a),
        )
        for item, a in pairs[:shown]
    ]
    return H.section(
        "Items",
        "".join(blocks),
        id="items",
        lead=f"{len(blocks)} of {len(pairs)} items, wrong answers first.",
    )


def write_emobench_report(
    results: EmoBenchResults,
    items: Sequence[Item],
    answers: Sequence[EmoBenchAnswer],
    out: Path,
    shown: int = 20,
) -> Path:
    """results.json, results.md, plots/emobench.png and report.html in ``out``."""
    out = Path(out)
    write_results(out, results, emobench_markdown(results))
    bars = [*results.tasks, *results.parts, *results.question_types]
    png = plots.bars(
        [" ".join(a.group.values()) for a in bars],  # "EU", "EU emotion", "EA Action"
        [Stat(mean=a.accuracy, low=a.low, high=a.high) for a in bars],
        ylabel="accuracy (0-100)",
        title=f"EmoBench: {results.model}",
        ylim=(0, 100),
        chance=[a.chance for a in bars],
    )
    write_plot(out, "emobench.png", png)
    by_task = {a.group["task"]: a for a in results.tasks}
    page = H.page(
        "EmoBench report",
        [
            _accuracy_section(results),
            H.section(
                "Categories",
                H.table(*accuracy_rows(results.categories, ["task", "category"]), text_columns=2),
                id="categories",
            ),
            H.section("Plot", H.figure(png, "accuracy per task and part"), id="plot"),
            _items_section(items, answers, shown),
        ],
        subtitle=f"attune emobench · model {results.model} · {results.settings.get('prompts', '')} prompts",
        summary="; ".join(f"{t} {accuracy_text(by_task[t])}" for t in ("EU", "EA") if t in by_task),
        note=stand_in_line(results),
        nav=[
            ("accuracy", "Accuracy"),
            ("categories", "Categories"),
            ("plot", "Plot"),
            ("items", "Items"),
        ],
    )
    return write_page(out / "report.html", page)
