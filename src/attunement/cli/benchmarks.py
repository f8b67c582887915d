"""``attune emobench`` and ``attune eqbench3``: a policy on the published benchmarks.

EmoBench (EU and EA accuracy, PersonaEmp table 5) and EQ-Bench 3 (a rubric
score of role-plays, judged by another model). Each benchmark's sampling
options are the fields of its settings (:data:`EMOBENCH`, :data:`EQBENCH`);
answers are cached in the output folder, so a re-run costs no model call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from attunement.benchmarks.emobench import (
    EmoBenchAnswer,
    EmoBenchSettings,
    load_official_prompts,
    read_items,
    run_emobench,
    write_emobench_report,
)
from attunement.benchmarks.eqbench3 import (
    PLAY_FAILED,
    EQBenchSettings,
    load_eqbench_data,
    random_judge_text,
    run_eqbench3,
    score_notes,
    write_eqbench_report,
)
from attunement.cli.common import UsageError, fail, out, run, say, show
from attunement.cli.options import (
    ModelRun,
    fields_bundle,
    first,
    judge_option,
    limit_option,
    model_run,
    policy_option,
    verb,
    warn_if_stand_in,
)
from attunement.cli.paths import data_option, out_option, path_option
from attunement.jsonl import read_jsonl
from attunement.llm import call_failure_in, calls_failed, load_chat_model, preflight

EMOBENCH = fields_bundle(
    EmoBenchSettings,
    "prompts",
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
    settings=EMOBENCH,
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
    official_prompts: Path | None = path_option(
        "folder",
        "With --prompts official: the folder holding EmoBench's prompts.yaml and "
        "response.yaml (src/configs in the EmoBench repository).",
        "--official-prompts",
        default=None,
    ),
    *,
    settings: dict[str, Any],
    llm: ModelRun,
) -> None:
    """Answer EmoBench's multiple-choice items (EU: feeling and reason; EA: best response or
    action) and report accuracy on 0-100 with intervals and chance (PersonaEmp table 5).
    --prompts official asks with EmoBench's own prompt files, comparable with the paper."""
    config = EmoBenchSettings(
        **settings, language=None if language == "all" else language, concurrency=llm.concurrency
    )
    if (config.prompts == "official") != (official_prompts is not None):
        raise UsageError(
            "--prompts official and --official-prompts DIR go together (DIR: the folder "
            "holding EmoBench's prompts.yaml and response.yaml)"
        )

    async def go():
        items = first(read_items(data), limit)  # every line checked before a model is loaded
        official = load_official_prompts(official_prompts) if official_prompts else None
        async with load_chat_model(
            policy, llm.options(default_cache=out_dir / "cache.sqlite")
        ) as chat:
            await preflight(chat, "policy")
            results = await run_emobench(
                items, chat, out_dir, config, data_files=data, official=official
            )
        answers = read_jsonl(out_dir / "answers.jsonl", EmoBenchAnswer)
        return results, write_emobench_report(
            results, items, answers, out_dir, shown=config.examples_shown
        )

    results, report = run(go())
    table = Table(title=f"EmoBench: {results.model} (accuracy 0-100)")
    for col in ("task", "accuracy", "95% CI", "chance", "right / n", "unparsed"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for a in [*results.tasks, *results.parts, *results.question_types]:
        table.add_row(
            " ".join(a.group.values()),
            "-" if a.accuracy is None else f"{a.accuracy:.1f}",
            "-" if a.low is None else f"[{a.low:.1f}, {a.high:.1f}]",
            "-" if a.chance is None else f"{a.chance:.1f}",
            f"{a.correct} / {a.n}",
            str(a.unparsed),
        )
    out.print(table)
    say(f"prompts: {results.prompts}")
    say(f"{results.answered_now} items answered now; answers in {out_dir / 'answers.jsonl'}")
    show(f"report: {report}")


EQBENCH = fields_bundle(
    EQBenchSettings,
    "temperature",
    "debrief_temperature",
    "max_tokens",
    "judge_max_tokens",
    "judge_format",
    "transcript",
    "seed",
    helps={
        "temperature": "Sampling temperature of the scenario turns (upstream's value).",
        "debrief_temperature": "Sampling temperature of the debrief (upstream's value).",
        "max_tokens": "Token budget of one reply (upstream: 12000).",
        "judge_max_tokens": "Token budget of one rubric answer (upstream's value).",
        "seed": "Sampling seed.",
    },
)
#: scenarios are long: one model call may take minutes
EQBENCH_TIMEOUT = 600.0


def _scenario_ids(scenarios: str | None, limit: int | None, bench: Any) -> list[str] | None:
    """The scenarios asked for (``--scenarios``), the first ``limit`` of them."""
    ids = [s.strip() for s in scenarios.split(",") if s.strip()] if scenarios else None
    if limit is None:
        return ids
    return (ids or [s.id for s in bench.scenarios])[:limit]


@verb(
    renamed={"--model": "--policy"},
    settings=EQBENCH,
    llm=model_run(concurrency=(EQBenchSettings, "concurrency"), timeout=EQBENCH_TIMEOUT),
)
def eqbench3(
    policy: str = policy_option(help="The model under test (a model spec)."),
    judge: str = judge_option(..., help="The rubric judge (a model spec)."),
    data: Path = data_option(
        "The EQ-Bench 3 folder (scenario_prompts.txt, master, debrief and rubric files).",
        kind="folder",
    ),
    out_dir: Path = out_option("Output folder (resumable).", kind="new folder"),
    scenarios: str | None = typer.Option(
        None, "--scenarios", help="Comma-separated scenario ids (all when not given)."
    ),
    limit: int | None = limit_option(),
    examples_shown: int = typer.Option(
        12, "--examples-shown", min=0, help="Transcripts browsable in report.html."
    ),
    *,
    settings: dict[str, Any],
    llm: ModelRun,
) -> None:
    """Play EQ-Bench 3's scripted role-plays with --policy, judge each transcript with the
    rubric, and report upstream's rubric score (0-100) with per-criterion means."""
    config = EQBenchSettings(**settings, concurrency=llm.concurrency)
    warn_if_stand_in(judge)
    options = llm.options(default_cache=out_dir / "cache.sqlite")

    async def go():
        bench = load_eqbench_data(data)  # files checked before a model is loaded
        ids = _scenario_ids(scenarios, limit, bench)
        async with load_chat_model(policy, options) as tested:
            await preflight(tested, "policy")
            grader = tested if judge == policy else load_chat_model(judge, options)
            try:
                await preflight(grader)
                results = await run_eqbench3(
                    bench, tested, grader, out_dir, config, scenario_ids=ids
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
    show(f"judge: {results.judge}; a judge scoring at random gets {random_judge_text(results)}")
    for line in score_notes(results):
        say(line, style="yellow" if line.startswith("Warning") else None)
    for sid, why in list(results.failed.items())[:5]:
        say(f"no score {sid}: {why}", style="yellow")
    say(
        f"{results.played_now} scenarios played and {results.judged_now} judged now; "
        f"transcripts in {out_dir / 'transcripts.jsonl'}"
    )
    show(f"report: {report}")
    _eqbench_end(results)


def _eqbench_end(results: Any) -> None:
    """Exit 1 when model calls failed (one line; the rerun retries them) or when no
    scenario was judged (an empty score is no result)."""
    reasons = list(results.failed.values())
    played = [r.removeprefix(PLAY_FAILED) for r in reasons if r.startswith(PLAY_FAILED)]
    if played:
        raise calls_failed(
            played, len(played), results.scenarios, role="policy", what="scenarios not played"
        )
    causes = [c for c in map(call_failure_in, reasons) if c is not None]
    if causes:
        raise calls_failed(causes, len(causes), results.scenarios, what="scenarios not judged")
    if results.rubric_score.n == 0:
        first = reasons[0] if reasons else "no scenario chosen"
        raise fail(
            f"0 of {results.scenarios} scenarios judged ({first}); read the judge's answers "
            "in verdicts, or try --judge-format json, then run the same command again"
        )
