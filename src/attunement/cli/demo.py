"""``attune demo``: the whole method end to end on the embedded model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from attunement.cli.common import Concurrency, console, llm_options, out, run


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder (resumable).")] = Path("runs/demo"),
    model: Annotated[str, typer.Option("--model", help="Model spec for building and answering.")] = "local",
    judge: Annotated[str | None, typer.Option("--judge", help="Judge spec (default: --model).")] = None,
    queries: Annotated[int, typer.Option("--queries", min=1, help="Queries to answer and score.")] = 3,
    k: Annotated[int, typer.Option("-k", min=1, help="PereGRM judge samples per dimension.")] = 1,
    seed: int = 0,
    concurrency: Concurrency = 1,
) -> None:
    """Run the whole method on the bundled example users (the embedded model by default).

    Builds a small dataset, answers each query with the user's own memory (full)
    and with another user's memory (mismatch), scores both with PereGRM and prints
    Res / Exp / Rec / Avg per memory mode. Resumable; a re-run costs no model calls.
    """
    from attunement.demo import load_demo_models, run_demo

    started = time.perf_counter()

    async def go():
        policy, judge_model = load_demo_models(out_dir, model, judge,
                                               llm_options(concurrency=concurrency))
        try:
            return await run_demo(out_dir, policy, judge_model, max_queries=queries, k=k,
                                  seed=seed, concurrency=concurrency)
        finally:
            await policy.aclose()
            if judge_model is not policy:
                await judge_model.aclose()

    report = run(go())
    table = Table(title=f"PereGRM scores (1-5) on {report.examples} queries from "
                        f"{report.users} example users")
    for col in ("memory", "Res", "Exp", "Rec", "Avg", "unscorable"):
        table.add_column(col, justify="right" if col != "memory" else "left")

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    for r in report.results:
        table.add_row(r.mode, fmt(r.means.get("resonation")), fmt(r.means.get("expression")),
                      fmt(r.means.get("reception")), fmt(r.average), f"{r.unscorable}/{r.replies}")
    out.print(table)
    console.print(f"{report.inspection_passed} of {report.examples} queries passed the "
                  "builder's inspection (the demo keeps all; see docs/building.md)")
    console.print(f"run folder: {report.out_dir}  ({time.perf_counter() - started:.0f} s)")
