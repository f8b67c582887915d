"""``attune emobench``: EmoBench EU and EA accuracy of a policy, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from attunement.benchmarks.emobench import (
    EmoBenchAnswer,
    EmoBenchSettings,
    read_items,
    run_emobench,
    write_emobench_report,
)
from attunement.cli.common import out, run, say, show
from attunement.cli.options import (
    ModelRun,
    data_option,
    fields_bundle,
    first,
    limit_option,
    model_run,
    out_option,
    policy_option,
    verb,
)
from attunement.jsonl import read_jsonl
from attunement.llm import load_chat_model

SETTINGS = fields_bundle(
    EmoBenchSettings,
    "output",
    "max_tokens",
    "temperature",
    "seed",
    "examples_shown",
    decls={"output": ("--format",)},
    helps={
        "temperature": "Sampling temperature of the answers.",
        "seed": "Sampling seed.",
        "examples_shown": "Items browsable in report.html.",
    },
)


@verb(
    renamed={"--model": "--policy"},
    settings=SETTINGS,
    llm=model_run(concurrency=(EmoBenchSettings, "concurrency")),
)
def emobench(
    policy: str = policy_option(help="The model under test (a model spec)."),
    data: list[Path] = data_option(
        "EmoBench EU / EA JSONL files, or a folder holding them (repeatable).", kind="path"
    ),
    out_dir: Path = out_option("Output folder (resumable).", kind="new folder"),
    language: str = typer.Option(
        "en", "--language", help="Items of this language only ('all': every language)."
    ),
    limit: int | None = limit_option(),
    *,
    settings: dict[str, Any],
    llm: ModelRun,
) -> None:
    """Answer EmoBench's multiple-choice items (EU: feeling and reason; EA: best response or
    action) and report accuracy on 0-100 with intervals (PersonaEmp table 5)."""
    config = EmoBenchSettings(
        **settings, language=None if language == "all" else language, concurrency=llm.concurrency
    )

    async def go():
        items = first(read_items(data), limit)  # every line checked before a model is loaded
        async with load_chat_model(
            policy, llm.options(default_cache=out_dir / "cache.sqlite")
        ) as chat:
            await chat.ensure_ready()
            results = await run_emobench(items, chat, out_dir, config, data_files=data)
        answers = read_jsonl(out_dir / "answers.jsonl", EmoBenchAnswer)
        return results, write_emobench_report(
            results, items, answers, out_dir, shown=config.examples_shown
        )

    results, report = run(go())
    table = Table(title=f"EmoBench: {results.model} (accuracy 0-100)")
    for col in ("task", "accuracy", "95% CI", "right / n", "unparsed"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for a in [*results.tasks, *results.parts, *results.question_types]:
        table.add_row(
            " ".join(a.group.values()),
            "-" if a.accuracy is None else f"{a.accuracy:.1f}",
            "-" if a.low is None else f"[{a.low:.1f}, {a.high:.1f}]",
            f"{a.correct} / {a.n}",
            str(a.unparsed),
        )
    out.print(table)
    say(f"{results.answered_now} items answered now; answers in {out_dir / 'answers.jsonl'}")
    show(f"report: {report}")
