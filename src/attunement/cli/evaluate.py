"""``attune evaluate``: compare reply sets with fixed criteria, several judges, one report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

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
from attunement.cli.reward_options import (
    NoExpression,
    NoReception,
    NoResonation,
    RewardConfigFile,
    RewardName,
    RewardSet,
    reward_spec,
)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def evaluate(
    data: Annotated[
        list[str],
        typer.Option(
            "--data",
            help="[LABEL=]PATH of examples (a split), repeatable: e.g. random=test.jsonl "
            "--data ood=ood_test.jsonl. The label defaults to the file name.",
        ),
    ],
    replies: Annotated[
        list[str],
        typer.Option(
            "--replies",
            help="[LABEL=]PATH of replies (one system), repeatable. A file holding "
            "several memory modes becomes one system per mode.",
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (resumable).")],
    judge: Annotated[
        list[str] | None,
        typer.Option("--judge", help="[LABEL=]SPEC of a judge, repeatable (default: local)."),
    ] = None,
    criteria_judge: Annotated[
        str | None,
        typer.Option(
            "--criteria-judge",
            help="Model spec writing the fixed criteria (default: the first judge).",
        ),
    ] = None,
    reward: RewardName = "peregrm",
    reward_config: RewardConfigFile = None,
    assignments: RewardSet = None,
    no_resonation: NoResonation = False,
    no_expression: NoExpression = False,
    no_reception: NoReception = False,
    with_bystander: Annotated[
        bool,
        typer.Option(
            "--with-bystander",
            help="Also run the bystander judge (a Bys column on 0-100; table 1 has none).",
        ),
    ] = False,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline", help="System the others are compared with (default: the first)."
        ),
    ] = None,
    k_scaling: Annotated[
        int | None,
        typer.Option(
            "--k-scaling",
            min=1,
            max=64,
            help="Also score with PereGRM@K (criteria per sample) and "
            "report k = 1, 2, 4, ..., K with judge cost.",
        ),
    ] = None,
    criteria_temperature: Annotated[
        float,
        typer.Option(
            "--criteria-temperature", min=0.0, max=2.0, help="Temperature of criteria writing."
        ),
    ] = 0.2,
    resamples: Annotated[
        int, typer.Option("--resamples", min=100, help="Bootstrap resamples.")
    ] = 2000,
    level: Annotated[
        float, typer.Option("--level", min=0.51, max=0.999, help="Interval level.")
    ] = 0.95,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap and sampling seed.")] = 0,
    examples_shown: Annotated[
        int, typer.Option("--examples-shown", min=0, help="Examples browsable in report.html.")
    ] = 12,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Skip the PNG plots.")] = False,
    concurrency: Concurrency = 4,
    timeout: Timeout = 120.0,
    retries: Retries = 4,
    cache: CachePath = None,
    no_cache: NoCache = False,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid", help="Skip bad input lines (written to a .rejects.jsonl file)."
        ),
    ] = False,
) -> None:
    """Score every reply set with every judge under fixed criteria; write tables, plots and
    report.html (the path is printed last). Re-running resumes and costs no judge call."""
    from attunement.evaluation.evaluate import (
        EvalInputs,
        EvalSettings,
        run_evaluation,
        spec_label,
        split_label,
        unique_labels,
    )
    from attunement.judging import CriteriaConfig
    from attunement.llm import load_chat_model

    options = llm_options(
        concurrency,
        timeout,
        retries,
        cache if cache is not None else out_dir / "cache.sqlite",
        no_cache,
    )

    judges = [split_label(j) for j in (judge or ["local"])]

    def settings() -> EvalSettings:
        spec = reward_spec(
            reward,
            judges[0][1],
            options,
            config_file=reward_config,
            assignments=assignments,
            no_resonation=no_resonation,
            no_expression=no_expression,
            no_reception=no_reception,
            use_bystander=True if with_bystander else None,
        )
        return EvalSettings(
            reward=reward,
            overrides=spec.overrides,
            concurrency=concurrency,
            criteria=CriteriaConfig(temperature=criteria_temperature, seed=seed),
            baseline=baseline,
            k_scaling=k_scaling,
            resamples=resamples,
            level=level,
            seed=seed,
            examples_shown=examples_shown,
            plots=not no_plots,
        )

    async def go():
        cfg = settings()
        cfg.reward_config()
        labelled = unique_labels(judges, spec_label)
        # read and validate every input before a model is loaded
        inputs = EvalInputs.read(data, replies, skip_invalid=skip_invalid)
        models = {}
        try:
            for label, spec in labelled:
                model = load_chat_model(spec, options)
                models[label] = model
                await model.ensure_ready()
            writer = None
            if criteria_judge and criteria_judge not in dict(labelled).values():
                writer = load_chat_model(criteria_judge, options)
                await writer.ensure_ready()
            elif criteria_judge:
                writer = models[next(lab for lab, s in labelled if s == criteria_judge)]
            try:
                return await run_evaluation(
                    inputs, models, out_dir, cfg, criteria_judge=writer, judge_specs=dict(labelled)
                )
            finally:
                if writer is not None and writer not in models.values():
                    await writer.aclose()
        finally:
            for model in models.values():
                await model.aclose()

    result = run(go())
    print_results(result.results)
    console.print(
        f"results: {out_dir / 'results.json'}, {out_dir / 'results.md'}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"report: {result.report}", highlight=False, soft_wrap=True)


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
    for note in results.notes:
        console.print(f"[yellow]note[/yellow] {note}", highlight=False, soft_wrap=True)
