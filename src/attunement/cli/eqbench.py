"""``attune eqbench3``: EQ-Bench 3's rubric score of a model, judged by another."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from attunement.benchmarks.eqbench3 import JudgeFormat, TranscriptStyle
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
    app.command("eqbench3")(eqbench3)


def eqbench3(
    model: Annotated[str, typer.Option("--model", help="Model spec of the model under test.")],
    judge: Annotated[str, typer.Option("--judge", help="Model spec of the rubric judge.")],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="The EQ-Bench 3 folder (scenario_prompts.txt, master, debrief and rubric files).",
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (resumable).")],
    scenarios: Annotated[
        str | None, typer.Option("--scenarios", help="Comma-separated scenario ids (default: all).")
    ] = None,
    temperature: Annotated[
        float,
        typer.Option("--temperature", min=0.0, max=2.0, help="Scenario turns (upstream 0.7)."),
    ] = 0.7,
    debrief_temperature: Annotated[
        float,
        typer.Option("--debrief-temperature", min=0.0, max=2.0, help="Debrief (upstream 0.5)."),
    ] = 0.5,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=16, help="Per reply (upstream 12000).")
    ] = 4096,
    judge_max_tokens: Annotated[int, typer.Option("--judge-max-tokens", min=64)] = 8000,
    judge_format: Annotated[
        JudgeFormat,
        typer.Option(
            "--judge-format",
            help="auto | text (upstream's free answer) | json (schema-constrained).",
        ),
    ] = "auto",
    transcript: Annotated[
        TranscriptStyle,
        typer.Option(
            "--transcript",
            help="sections (upstream: replies re-assembled from their parsed sections) | raw.",
        ),
    ] = "sections",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    examples_shown: Annotated[
        int, typer.Option("--examples-shown", min=0, help="Transcripts browsable in report.html.")
    ] = 12,
    concurrency: Concurrency = 4,
    timeout: Timeout = 600.0,
    retries: Retries = 4,
    cache: CachePath = None,
    no_cache: NoCache = False,
) -> None:
    """Play EQ-Bench 3's scripted role-plays with --model, judge each transcript with the
    rubric, and report upstream's rubric score (0-100) with per-criterion means."""
    from attunement.benchmarks.eqbench3 import (
        EQBenchSettings,
        load_eqbench_data,
        run_eqbench3,
        write_eqbench_report,
    )
    from attunement.llm import load_chat_model

    settings = EQBenchSettings(
        temperature=temperature,
        debrief_temperature=debrief_temperature,
        max_tokens=max_tokens,
        judge_max_tokens=judge_max_tokens,
        judge_format=judge_format,
        transcript=transcript,
        seed=seed,
        concurrency=concurrency,
    )
    options = llm_options(
        concurrency,
        timeout,
        retries,
        cache if cache is not None else out_dir / "cache.sqlite",
        no_cache,
    )
    ids = [s.strip() for s in scenarios.split(",") if s.strip()] if scenarios else None

    async def go():
        bench = load_eqbench_data(data)  # files checked before a model is loaded
        async with load_chat_model(model, options) as tested:
            await tested.ensure_ready()
            grader = tested if judge == model else load_chat_model(judge, options)
            try:
                await grader.ensure_ready()
                results = await run_eqbench3(
                    bench, tested, grader, out_dir, settings, scenario_ids=ids
                )
            finally:
                if grader is not tested:
                    await grader.aclose()
        return results, write_eqbench_report(results, bench, out_dir, shown=examples_shown)

    results, report = run(go())
    table = Table(title=f"EQ-Bench 3: {results.model} judged by {results.judge}")
    for col in ("kind", "rubric score 0-100", "95% CI", "tasks"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    rows = [("all", results.rubric_score), *results.by_kind.items()]
    for kind, s in rows:
        table.add_row(
            kind,
            "-" if s.mean is None else f"{s.mean:.1f}",
            "-" if s.low is None else f"[{s.low:.1f}, {s.high:.1f}]",
            str(s.n),
        )
    out.print(table)
    for sid, why in list(results.failed.items())[:5]:
        console.print(f"[yellow]no score[/yellow] {sid}: {why}", highlight=False, soft_wrap=True)
    console.print(
        f"{results.played_now} scenarios played and {results.judged_now} judged now; "
        f"transcripts in {out_dir / 'transcripts.jsonl'}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"report: {report}", highlight=False, soft_wrap=True)
