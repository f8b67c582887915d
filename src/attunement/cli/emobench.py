"""``attune emobench``: EmoBench EU and EA accuracy of a model, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from attunement.benchmarks.emobench import AnswerFormat
from attunement.cli.common import (
    CachePath,
    Concurrency,
    NoCache,
    Retries,
    Timeout,
    console,
    llm_options,
    out,
    run,
)


def register(app: typer.Typer) -> None:
    app.command("emobench")(emobench)


def emobench(
    model: Annotated[str, typer.Option("--model", help="Model spec of the model under test.")],
    data: Annotated[
        list[Path],
        typer.Option(
            "--data", help="EmoBench EU / EA JSONL files, or a folder holding them (repeatable)."
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (resumable).")],
    fmt: Annotated[
        AnswerFormat,
        typer.Option(
            "--format", help="json: letters constrained by a JSON schema; text: 'Answer: B' lines."
        ),
    ] = "json",
    language: Annotated[
        str,
        typer.Option("--language", help="Items of this language only ('all' for every language)."),
    ] = "en",
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=4)] = 48,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, max=2.0)] = 0.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    examples_shown: Annotated[
        int, typer.Option("--examples-shown", min=0, help="Items browsable in report.html.")
    ] = 20,
    concurrency: Concurrency = 4,
    timeout: Timeout = 120.0,
    retries: Retries = 4,
    cache: CachePath = None,
    no_cache: NoCache = False,
) -> None:
    """Answer EmoBench's multiple-choice items (EU: feeling and reason; EA: best response or
    action) and report accuracy on 0-100 with intervals (PersonaEmp table 5)."""
    from attunement.benchmarks.emobench import (
        EmoBenchAnswer,
        EmoBenchSettings,
        read_items,
        run_emobench,
        write_emobench_report,
    )
    from attunement.jsonl import read_jsonl
    from attunement.llm import load_chat_model

    settings = EmoBenchSettings(
        output=fmt,
        language=None if language == "all" else language,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        concurrency=concurrency,
        examples_shown=examples_shown,
    )
    options = llm_options(
        concurrency,
        timeout,
        retries,
        cache if cache is not None else out_dir / "cache.sqlite",
        no_cache,
    )

    async def go():
        items = read_items(data)  # every line checked before a model is loaded
        async with load_chat_model(model, options) as chat:
            await chat.ensure_ready()
            results = await run_emobench(items, chat, out_dir, settings, data_files=data)
        answers = read_jsonl(out_dir / "answers.jsonl", EmoBenchAnswer)
        return results, write_emobench_report(
            results, items, answers, out_dir, shown=examples_shown
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
    console.print(
        f"{results.answered_now} items answered now; answers in {out_dir / 'answers.jsonl'}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"report: {report}", highlight=False, soft_wrap=True)
