"""``attune judge-card``: is a judge fit to be a reward? (docs/judge-card.md)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from attunement.cli.common import (
    CachePath,
    Concurrency,
    Retries,
    Timeout,
    console,
    fail,
    llm_options,
    out,
    run,
)
from attunement.cli.reward_options import (
    JudgeSpec,
    NoBystander,
    NoExpression,
    NoReception,
    NoResonation,
    RewardConfigFile,
    RewardName,
    RewardSet,
    reward_spec,
)
from attunement.judging.templates import OutputChoice


def register(app: typer.Typer) -> None:
    app.command("judge-card")(judge_card)


InFile = {"exists": True, "dir_okay": False}


def judge_card(
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder for the card (card.md, card.html, card.json) and its breakdowns."
        ),
    ],
    judge: JudgeSpec = "local",
    reward: RewardName = "perm",
    k: Annotated[
        int | None, typer.Option("-k", "--k", min=1, help="Judge samples per dimension.")
    ] = None,
    emobench: Annotated[
        Path | None,
        typer.Option(
            "--emobench",
            **InFile,
            help="EmoBench EA JSONL; its 'Response' items test discrimination.",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", **InFile, help="PersonaEmp examples JSONL (personalization, probes)."
        ),
    ] = None,
    replies: Annotated[
        Path | None,
        typer.Option(
            "--replies",
            **InFile,
            help="Good replies to --data, joined by example_id (the lowest "
            "sample_index of each example is used).",
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="Model spec that writes the good replies to --data (full memory) "
            "when no --replies are given.",
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option("--reference", help="Reference judge spec: agreement of the judge with it."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            help="Items per check (a stable sample; a larger limit later "
            "scores only the new items).",
        ),
    ] = None,
    runs: Annotated[
        int,
        typer.Option(
            "--runs",
            min=1,
            max=10,
            help="Scoring runs of the stability set, each with its own seed (1: no repeat).",
        ),
    ] = 2,
    budget_seconds: Annotated[
        float | None,
        typer.Option(
            "--budget-seconds",
            min=0.001,
            help="Judge seconds per reply the cost check allows (default: report only).",
        ),
    ] = None,
    fmt: Annotated[
        OutputChoice | None,
        typer.Option(
            "--format",
            help="Judge answer format: auto (default: JSON for the embedded model, "
            "text otherwise), text, json.",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="Reward seed (default 0); also picks the --limit sample and the other users.",
        ),
    ] = None,
    no_resonation: NoResonation = False,
    no_expression: NoExpression = False,
    no_reception: NoReception = False,
    no_bystander: NoBystander = False,
    reward_config: RewardConfigFile = None,
    assignments: RewardSet = None,
    concurrency: Concurrency = 8,
    timeout: Timeout = 120.0,
    retries: Retries = 4,
    cache: CachePath = None,
) -> None:
    """Measure whether a judge can serve as a reward: discrimination, personalization,
    gaming probes, stability, cost and agreement, as one card (Markdown, HTML, JSON)."""
    from attunement.judge_card import CardSettings, load_inputs, run_judge_card
    from attunement.llm import load_chat_model

    options = llm_options(concurrency, timeout, retries, cache)
    try:
        spec = reward_spec(
            reward,
            judge,
            options,
            config_file=reward_config,
            assignments=assignments,
            no_resonation=no_resonation,
            no_expression=no_expression,
            no_reception=no_reception,
            no_bystander=no_bystander,
            k=k,
            seed=seed,
            output=fmt,
            bystander_output="text" if fmt == "text" else None,
        )
        settings = CardSettings(
            out=out_dir,
            emobench=emobench,
            data=data,
            replies=replies,
            policy=policy,
            reference=reference,
            limit=limit,
            runs=runs,
            seed=seed or 0,
            concurrency=concurrency,
            budget_seconds=budget_seconds,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(str(first.get("msg", exc)).removeprefix("Value error, ")) from None
    except ValueError as exc:
        raise fail(str(exc)) from None

    async def go():
        inputs = load_inputs(settings)  # every input checked before a model is loaded
        async with AsyncExitStack() as stack:
            judge_model = await stack.enter_async_context(load_chat_model(judge, options))
            await judge_model.ensure_ready()
            reference_model = policy_model = None
            if reference is not None:
                reference_model = await stack.enter_async_context(
                    load_chat_model(reference, options)
                )
                await reference_model.ensure_ready()
            if policy is not None:
                policy_model = await stack.enter_async_context(load_chat_model(policy, options))
                await policy_model.ensure_ready()
            return await run_judge_card(
                settings,
                inputs,
                spec,
                judge_model,
                reference=reference_model,
                policy=policy_model,
                log=lambda msg: console.print(
                    f"[dim]card[/dim] {msg}", highlight=False, soft_wrap=True
                ),
            )

    card = run(go())
    _print_card(card, out_dir)


def _print_card(card, out_dir: Path) -> None:
    from attunement.judge_card.report import ci_num, ci_pct, num, pct

    table = Table(title=f"judge card: {card.judge} with {card.reward}", show_header=True)
    table.add_column("check")
    table.add_column("status")
    table.add_column("figures")
    d = card.discrimination.row("reward")
    if d is not None:
        table.add_row(
            "discrimination",
            card.discrimination.status,
            f"pairwise {ci_pct(d.pairwise_tie_split)} (chance 50%), top-1 "
            f"{ci_pct(d.top1_tie_split)} (chance {pct(card.discrimination.chance_top1)}), ties "
            f"as half; strict pairwise {pct(d.pairwise.estimate)}, ties {d.pair_ties}/{d.pairs}",
        )
    p = card.personalization
    if p.rows:
        table.add_row(
            "personalization",
            p.status,
            f"drop {ci_num(p.rows[0].change, negate=True)}, dropping "
            f"{pct(p.rows[0].share_lowered)} of {p.rows[0].n}",
        )
    for row in card.probes.probes:
        r = row.reward
        table.add_row(
            f"probe {row.probe}",
            row.verdict,
            "-"
            if r is None
            else f"change {ci_num(r.change)}, raised {pct(r.share_raised)} of {r.n}",
        )
    s = card.stability
    table.add_row(
        "stability",
        s.status,
        f"parse failures {pct(s.parse_failure_rate)}, unscorable "
        f"{pct(s.unscorable_rate)}, zero-spread groups "
        f"{pct(s.groups.share_zero_spread)}, run sd "
        f"{num(s.repeats.mean_sd if s.repeats else None)}",
    )
    for dist in s.distribution:
        table.add_row(
            f"  {dist.dimension}",
            "constant" if dist.constant else "",
            ", ".join(f"{k}: {pct(v)}" for k, v in dist.shares.items()),
        )
    c = card.cost
    table.add_row(
        "cost",
        c.status,
        f"{num(c.calls_per_reply, 1)} calls, "
        f"{num(c.prompt_tokens_per_reply, 0)}+{num(c.completion_tokens_per_reply, 0)} "
        f"tokens, {num(c.judge_seconds_per_reply, 2)} s per reply",
    )
    a = card.agreement
    if a.rows:
        table.add_row(
            "agreement",
            a.status,
            f"Spearman {num(a.rows[0].spearman, 2)}, pairwise {ci_pct(a.rows[0].agreement)}",
        )
    out.print(table)
    out.print(card.summary, soft_wrap=True, highlight=False, markup=False)
    out.print(
        f"card: {out_dir / 'card.md'}  {out_dir / 'card.html'}  {out_dir / 'card.json'}",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
