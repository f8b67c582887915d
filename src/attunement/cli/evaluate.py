"""``attune evaluate``: compare reply sets with fixed criteria, several judges, one report.

The summary options are the fields of :class:`~attunement.evaluation.EvalSettings`
(:data:`SUMMARY`); the reward is configured with the shared reward options,
but ``--judge`` is repeatable here (``[LABEL=]SPEC``): every judge scores
every reply set.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from attunement.cli.common import UsageError, out, run, say, show
from attunement.cli.options import (
    SPEC_FORMS,
    ModelRun,
    field_option,
    fields_bundle,
    first,
    labelled_option,
    limit_option,
    model_run,
    skip_invalid_option,
    verb,
    warn_if_stand_in,
)
from attunement.cli.paths import out_option
from attunement.cli.reward_options import RewardFlags, reward_bundle
from attunement.evaluation.evaluate import (
    EvalInputs,
    EvalRun,
    EvalSettings,
    run_evaluation,
    spec_label,
    split_label,
    unique_labels,
)
from attunement.judging import CriteriaConfig
from attunement.llm import ChatModel, load_chat_model, preflight

SUMMARY = fields_bundle(
    EvalSettings,
    "baseline",
    "k_scaling",
    "resamples",
    "level",
    "seed",
    "examples_shown",
    "plots",
    decls={"plots": ("--plots/--no-plots",)},
    helps={"seed": "Seed of the bootstrap and of criteria writing."},
)


async def _open(
    specs: list[tuple[str, str]], criteria_judge: str | None, llm: ModelRun, cache: Path
):
    """The judges by label and the criteria writer (one of them, or its own model)."""
    options = llm.options(default_cache=cache)
    models: dict[str, ChatModel] = {}
    for label, spec in specs:
        models[label] = load_chat_model(spec, options)
        await preflight(models[label])
    by_spec = {spec: models[label] for label, spec in specs}
    if criteria_judge is None or criteria_judge in by_spec:
        return models, by_spec.get(criteria_judge or "")
    writer = load_chat_model(criteria_judge, options)
    await preflight(writer, "criteria judge")
    return models, writer


async def _evaluate(
    inputs: EvalInputs,
    judges: list[tuple[str, str]],
    criteria_judge: str | None,
    out_dir: Path,
    settings: EvalSettings,
    llm: ModelRun,
) -> EvalRun:
    models, writer = await _open(judges, criteria_judge, llm, out_dir / "cache.sqlite")
    try:
        return await run_evaluation(
            inputs, models, out_dir, settings, criteria_judge=writer, judge_specs=dict(judges)
        )
    finally:
        for model in {*models.values(), *([writer] if writer is not None else [])}:
            await model.aclose()


@verb(
    reward=reward_bundle("peregrm", judge=False, bystander=False),
    summary=SUMMARY,
    llm=model_run(concurrency=(EvalSettings, "concurrency")),
)
def evaluate(
    data: list[str] | None = labelled_option(
        "--data",
        "Examples of one split, repeatable: e.g. --data random=test.jsonl "
        "--data ood=ood_test.jsonl. The label is the file name when not given.",
    ),
    replies: list[str] | None = labelled_option(
        "--replies",
        "Replies of one system, repeatable. A file holding several memory modes "
        "becomes one system per mode.",
    ),
    dialogues: list[str] | None = labelled_option(
        "--dialogues",
        "Simulated talks of one system (attune converse), repeatable: compared by "
        "final emotion, area, success and failure over users. Alone, needs no judge.",
    ),
    out_dir: Path = out_option("Output folder (resumable).", kind="new folder"),
    judge: list[str] | None = typer.Option(
        None,
        "--judge",
        metavar="[LABEL=]SPEC",
        help=f"A judge model, repeatable ({SPEC_FORMS}); required to score replies: "
        "'local' is the embedded 135M stand-in, whose numbers are not meaningful.",
    ),
    criteria_judge: str | None = typer.Option(
        None,
        "--criteria-judge",
        metavar="SPEC",
        help="The model writing the fixed criteria (the first judge when not given).",
    ),
    limit: int | None = limit_option(),
    *,
    reward: RewardFlags,
    with_bystander: bool = typer.Option(
        False,
        "--with-bystander",
        help="Also run the bystander judge (a Bys column on 0-100; table 1 has none).",
    ),
    criteria_temperature: float = field_option(
        CriteriaConfig,
        "temperature",
        "--criteria-temperature",
        help="Temperature of criteria writing.",
    ),
    summary: dict[str, Any],
    skip_invalid: bool = skip_invalid_option(),
    llm: ModelRun,
) -> None:
    """Score every reply set with every judge under fixed criteria, and compare systems on
    simulated talks (--dialogues); write tables, plots and report.html (the path is
    printed last). Re-running resumes and costs no judge call."""
    if not judge and replies:
        raise UsageError(
            "--judge is required to score replies (e.g. --judge openai:URL#model; "
            "--judge local is the embedded 135M stand-in, for trying the tool only)"
        )
    judges = unique_labels([split_label(j) for j in (judge or [])], spec_label)
    warn_if_stand_in(*(spec for _, spec in judges))
    spec = reward.spec(llm.options(), use_bystander=True if with_bystander else None)
    criteria = CriteriaConfig(temperature=criteria_temperature, seed=summary["seed"])
    settings = EvalSettings(
        reward=spec.reward,
        overrides=spec.overrides,
        concurrency=llm.concurrency,
        criteria=criteria,
        **summary,
    )
    settings.reward_config()
    inputs = EvalInputs.read(  # before any model
        data or [], replies or [], skip_invalid=skip_invalid, dialogues=dialogues or []
    )
    if limit is not None:
        splits = {label: first(rows, limit) for label, rows in inputs.splits.items()}
        inputs = dataclasses.replace(inputs, splits=splits)
    if not inputs.replies:
        judges = []  # simulated talks only: the simulator's emotion needs no judge
    result = run(_evaluate(inputs, judges, criteria_judge, out_dir, settings, llm))
    print_results(result.results)
    from attunement.evaluation.views import headline

    show(headline(result.results))
    say(f"results: {out_dir / 'results.json'}, {out_dir / 'results.md'}")
    show(f"report: {result.report}")


def print_results(results) -> None:
    """Table 1 per judge on the terminal (Avg with its interval)."""
    from attunement.evaluation.report import fmt, fmt_ci
    from attunement.evaluation.tables import SHORT

    dims = [d for d in results.dimensions if d != "bystander"]
    for judge in dict.fromkeys(r.judge for r in results.table):
        table = Table(title=f"judge {judge}: scores 1-5 (fixed criteria)")
        for col in ("system", "split", *(SHORT[d] for d in dims), "Avg [95% CI]", "unscorable"):
            table.add_column(col, justify="left" if col in ("system", "split") else "right")
        for r in results.table:
            if r.judge == judge:
                table.add_row(
                    r.system,
                    r.split,
                    *(fmt(r.columns[d].mean) for d in dims),
                    fmt_ci(r.avg),
                    f"{r.unscorable}/{r.replies}",
                )
        out.print(table)
    if results.dialogues:
        from attunement.evaluation.dialogues import DialogueResults, dialogue_summary_line

        talks = DialogueResults.model_validate(results.dialogues)
        show(f"dialogues (simulator {talks.simulator}; 95% intervals over users):")
        for row in talks.rows:
            show(f"  {dialogue_summary_line(row)}")
    for note in results.notes:
        say(f"note {note}", style="yellow")
