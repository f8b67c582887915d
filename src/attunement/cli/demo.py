"""``attune demo``: the whole method end to end on the embedded model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from attunement.cli.common import Concurrency, console, llm_options, out, run


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder (resumable).")] = Path(
        "runs/demo"
    ),
    model: Annotated[
        str, typer.Option("--model", help="Model spec for building and answering.")
    ] = "local",
    judge: Annotated[
        str | None, typer.Option("--judge", help="Judge spec (default: --model).")
    ] = None,
    queries: Annotated[
        int, typer.Option("--queries", min=1, help="Queries to answer and score.")
    ] = 3,
    k: Annotated[
        int,
        typer.Option(
            "-k",
            min=1,
            help="Add PereGRM's k scaling up to k judge samples per dimension to the report.",
        ),
    ] = 1,
    seed: int = 0,
    concurrency: Concurrency = 1,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="CPU threads of the embedded model (default: all cores; 1 is much faster "
            "on a machine other jobs keep busy).",
        ),
    ] = None,
) -> None:
    """Run the whole method on the bundled example users (the embedded model by default).

    Builds a small dataset, answers each query with the user's own memory (full)
    and with another user's memory (mismatch), evaluates both as PersonaEmp's
    table 1 does (fixed criteria, PereGRM), prints Res / Exp / Rec / Avg per memory
    mode and ends with the path of the evaluation report (report.html).
    Resumable; a re-run costs no model calls.
    """
    from attunement.demo import load_demo_models, run_demo
    from attunement.evaluation.evaluate import spec_label

    started = time.perf_counter()

    async def go():
        options = llm_options(concurrency=concurrency).model_copy(update={"n_threads": threads})
        policy, judge_model = load_demo_models(out_dir, model, judge, options)
        try:
            return await run_demo(
                out_dir,
                policy,
                judge_model,
                max_queries=queries,
                k=k,
                seed=seed,
                concurrency=concurrency,
                judge_label=spec_label(judge or model),
            )
        finally:
            await policy.aclose()
            if judge_model is not policy:
                await judge_model.aclose()

    report = run(go())
    # plain lines, one per memory mode: readable (and greppable) at any width
    out.print(
        f"PereGRM scores (1-5, fixed criteria) on {report.examples} queries "
        f"from {report.users} example users:",
        highlight=False,
        soft_wrap=True,
    )

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    for r in report.results:
        interval = f" [{fmt(r.low)}, {fmt(r.high)}]" if r.low is not None else ""
        out.print(
            f"  {r.mode}: Res {fmt(r.means.get('resonation'))}, "
            f"Exp {fmt(r.means.get('expression'))}, Rec {fmt(r.means.get('reception'))}, "
            f"Avg {fmt(r.average)}{interval}, unscorable {r.unscorable}/{r.replies}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"{report.inspection_passed} of {report.examples} queries passed the "
        "builder's inspection (the demo keeps all; see docs/building.md)"
    )
    console.print(
        f"run folder: {report.out_dir}  ({time.perf_counter() - started:.0f} s)",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"report: {report.report}", highlight=False, soft_wrap=True)
