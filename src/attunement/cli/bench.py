"""``attune bench ...``: benchmarks that print figures (not timed tests).

The measuring code lives in :mod:`attunement.perf`; this module only reads the
options and prints.
"""

from __future__ import annotations

import json
import statistics
from typing import Annotated

import typer

from attunement.perf.reward_bench import (
    MODES,
    BenchSettings,
    RealisticJudge,
    check_targets,
    run_reward_bench,
    run_variance_bench,
)
from attunement.perf.serve_bench import ServeBenchSettings, check_results, run_serve_bench
from attunement.perf.train_bench import TrainBenchSettings, mean_of, run_train_bench

bench_app = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")


@bench_app.command("rewards")
def rewards_bench(
    prompts: Annotated[int, typer.Option("--prompts", min=1, help="Examples in the batch.")] = 16,
    replies: Annotated[int, typer.Option("--replies", min=1, help="Replies per example.")] = 8,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Judge samples per dimension.")] = 4,
    slots: Annotated[int, typer.Option("--slots", min=1, help="Server parallel slots.")] = 16,
    base_latency: Annotated[
        float, typer.Option("--base-latency", min=0.0, help="Seconds per request.")
    ] = 0.05,
    per_output_token: Annotated[
        float,
        typer.Option(
            "--per-output-token", min=0.0, help="Seconds per output token (longest sample)."
        ),
    ] = 0.0015,
    per_prompt_token: Annotated[float, typer.Option("--per-prompt-token", min=0.0)] = 0.0,
    server_n: Annotated[
        bool,
        typer.Option(
            "--server-n/--no-server-n",
            help="Server decodes the n samples of a request side by side (default) or ignores "
            "n, so each sample is its own request.",
        ),
    ] = True,
    n_shares_slot: Annotated[
        bool,
        typer.Option(
            "--n-shares-slot",
            help="The n samples of a request cost one sequence slot instead "
            "of n (flatters n-sampling; real batching servers decode each sample as a "
            "sequence).",
        ),
    ] = False,
    client_concurrency: Annotated[
        int | None,
        typer.Option("--client-concurrency", min=1, help="Requests in flight (default 4 x slots)."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="Judge answer format: text | json.")
    ] = "text",
    modes: Annotated[
        str, typer.Option("--modes", help="Comma-separated subset of " + ",".join(MODES))
    ] = ",".join(MODES),
    inline_analysis: Annotated[
        int,
        typer.Option("--inline-analysis-tokens", min=1, help="Simulated inline analysis length."),
    ] = 85,
    score_analysis: Annotated[
        int,
        typer.Option(
            "--score-analysis-tokens",
            min=1,
            help="Simulated analysis length when scoring against given criteria.",
        ),
    ] = 50,
    item_tokens: Annotated[
        int, typer.Option("--criterion-tokens", min=8, help="Simulated length of one criterion.")
    ] = 34,
    variance: Annotated[
        bool,
        typer.Option(
            "--variance/--no-variance",
            help="Also measure within-group reward std, ties and "
            "agreement with the simulated reply quality for each criteria mode.",
        ),
    ] = True,
    variance_k: Annotated[
        str, typer.Option("--variance-k", help="Comma-separated k values of the variance table.")
    ] = "1,4",
    criteria_spread: Annotated[
        float,
        typer.Option(
            "--criteria-spread",
            min=0.0,
            help="Simulated judge: largest offset a criteria set adds to a score.",
        ),
    ] = 0.75,
    noise: Annotated[
        float, typer.Option("--noise", min=0.0, help="Simulated judge: largest per-sample noise.")
    ] = 0.5,
    timing: Annotated[
        bool, typer.Option("--timing/--no-timing", help="Run the wall-time comparison.")
    ] = True,
) -> None:
    """Score a GRPO-sized batch with PERM, PereGRM inline and PereGRM shared on a simulated
    judge server; print wall time against the server's own lower bound, then the
    within-group reward spread of each criteria mode (inline, shared, per_reply)."""
    from attunement.cli.common import fail

    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    unknown = [m for m in chosen if m not in MODES]
    if unknown:
        raise fail(f"unknown modes {unknown}; expected some of {list(MODES)}")
    if fmt not in ("text", "json"):
        raise fail("--format must be text or json")
    try:
        ks = tuple(int(x) for x in variance_k.split(",") if x.strip())
    except ValueError:
        raise fail(f"--variance-k must be comma-separated integers, got {variance_k!r}") from None
    judge_model = RealisticJudge(
        inline_analysis_tokens=inline_analysis,
        score_analysis_tokens=score_analysis,
        item_tokens=item_tokens,
        criteria_spread=criteria_spread,
        noise=noise,
    )
    if timing:
        _timing_table(
            prompts,
            replies,
            k,
            slots,
            base_latency,
            per_output_token,
            per_prompt_token,
            server_n,
            n_shares_slot,
            client_concurrency,
            fmt,
            chosen,
            judge_model,
        )
    if variance:
        _variance_table(prompts, replies, ks, judge_model)


def _variance_table(prompts: int, replies: int, ks: tuple[int, ...], judge: RealisticJudge) -> None:
    from rich.console import Console
    from rich.table import Table

    from attunement.cli.common import console, out, run

    console.print(
        f"group variance: {prompts} groups x {replies} replies, PereGRM without "
        f"bystander; simulated judge: score = clip(round(q + b + e), 1, 5), "
        f"criteria offset b within +-{judge.criteria_spread}, noise e within "
        f"+-{judge.noise}"
    )
    results = run(run_variance_bench(prompts=prompts, replies=replies, ks=ks, judge=judge))
    table = Table(title="within-group reward spread by criteria mode")
    for col in (
        "mode",
        "k",
        "group std",
        "tied pairs",
        "flat groups",
        "corr. w/ quality",
        "criteria calls",
        "unscorable",
    ):
        table.add_column(col, justify="left" if col == "mode" else "right", no_wrap=True)
    for r in results:
        table.add_row(
            r.mode,
            str(r.k),
            f"{r.group_std:.4f}",
            f"{100 * r.tie_rate:.1f}%",
            f"{100 * r.flat_groups:.1f}%",
            f"{r.quality_corr:.3f}",
            str(r.criteria_calls),
            str(r.unscorable),
        )
    Console(width=max(out.size.width, 112)).print(table)


def _timing_table(
    prompts,
    replies,
    k,
    slots,
    base_latency,
    per_output_token,
    per_prompt_token,
    server_n,
    n_shares_slot,
    client_concurrency,
    fmt,
    chosen,
    judge: RealisticJudge,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from attunement.cli.common import console, out, run

    settings = BenchSettings(
        prompts=prompts,
        replies=replies,
        k=k,
        slots=slots,
        base_latency=base_latency,
        per_output_token=per_output_token,
        per_prompt_token=per_prompt_token,
        supports_n=server_n,
        n_shares_slot=n_shares_slot,
        client_concurrency=client_concurrency,
        output=fmt,
        judge=judge,
    )
    console.print(
        f"batch: {prompts} prompts x {replies} replies, k={k}; server: {slots} slots, "
        f"{base_latency * 1000:.0f} ms + {per_output_token * 1000:.2f} ms/output token, "
        f"n {'ignored (one sample per request)' if not server_n else 'samples share one slot' if n_shares_slot else 'one sequence slot per sample'}"
    )
    j = settings.judge
    console.print(
        f"simulated answers: criteria {j.criteria_items} x ~{j.item_tokens} tokens, "
        f"analysis ~{j.inline_analysis_tokens} (inline) / ~{j.score_analysis_tokens} "
        f"(against given criteria) / ~{j.reason_tokens} (PERM reason) tokens"
    )
    results = run(run_reward_bench(settings, chosen))
    table = Table(title="reward scoring on the simulated judge (per reply: /r)")
    for col in (
        "mode",
        "wall s",
        "bound s",
        "ratio",
        "calls",
        "prompt tok/r",
        "out tok/r",
        "unscorable",
        "cached calls",
        "cached s",
    ):
        table.add_column(col, justify="left" if col == "mode" else "right", no_wrap=col == "mode")
    for r in results:
        table.add_row(
            r.mode,
            f"{r.wall:.2f}",
            f"{r.bound:.2f}",
            f"{r.ratio:.2f}",
            str(r.requests),
            f"{r.prompt_tokens / r.replies:.0f}",
            f"{r.completion_tokens / r.replies:.0f}",
            str(r.unscorable),
            str(r.cached_requests),
            f"{r.cached_wall:.2f}",
        )
    Console(width=max(out.size.width, 112)).print(table)
    for what, met, figure in check_targets(results):
        mark = "[green]met[/green]" if met else "[red]NOT met[/red]"
        console.print(f"{mark}  {what}: {figure}")


@bench_app.command("serve")
def serve_bench(
    requests: Annotated[
        int,
        typer.Option("--requests", min=1, max=20000, help="Requests per phase (one sample each)."),
    ] = 500,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=4096, help="Requests in flight at once.")
    ] = 500,
    groups: Annotated[int, typer.Option("--group-size", min=1, help="Replies per example.")] = 8,
    slots: Annotated[int, typer.Option("--slots", min=1, help="Judge server slots.")] = 64,
    base_latency: Annotated[float, typer.Option("--base-latency", min=0.0)] = 0.02,
    per_output_token: Annotated[float, typer.Option("--per-output-token", min=0.0)] = 0.0002,
    judge_concurrency: Annotated[int, typer.Option("--judge-concurrency", min=1)] = 64,
    overload_pending: Annotated[
        int,
        typer.Option(
            "--overload-pending", min=1, help="max_pending of the overload phase's server."
        ),
    ] = 64,
    phases: Annotated[
        str, typer.Option("--phases", help="capacity,overload")
    ] = "capacity,overload",
) -> None:
    """Load-test attune serve on loopback against a simulated judge: latency percentiles,
    throughput, every request answered, overload refused with 503 + Retry-After."""
    from rich.console import Console
    from rich.table import Table

    from attunement.cli.common import console, fail, out

    chosen = tuple(p.strip() for p in phases.split(",") if p.strip())
    if not chosen or any(p not in ("capacity", "overload") for p in chosen):
        raise fail("--phases takes capacity and/or overload")
    settings = ServeBenchSettings(
        requests=requests,
        concurrency=concurrency,
        groups=groups,
        slots=slots,
        base_latency=base_latency,
        per_output_token=per_output_token,
        judge_concurrency=judge_concurrency,
        overload_pending=overload_pending,
        phases=chosen,
    )
    console.print(
        f"{requests} OpenRLHF requests per phase ({groups} per example), "
        f"{concurrency} in flight; judge: {slots} slots, "
        f"{base_latency * 1000:.0f} ms + {per_output_token * 1000:.2f} ms/token"
    )
    results = run_serve_bench(settings)
    table = Table(title="attune serve under load (seconds)")
    for col in (
        "phase",
        "answered",
        "200",
        "503",
        "retries",
        "lost",
        "p50",
        "p95",
        "p99",
        "req/s",
        "wall",
        "unscorable",
    ):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for r in results:
        table.add_row(
            r.phase,
            f"{r.answered}/{r.requests}",
            str(r.status_counts.get(200, 0)),
            str(r.refused_503),
            str(r.retries),
            str(r.lost),
            f"{r.percentile(0.5):.3f}",
            f"{r.percentile(0.95):.3f}",
            f"{r.percentile(0.99):.3f}",
            f"{r.throughput:.1f}",
            f"{r.wall:.2f}",
            str(r.unscorable),
        )
    Console(width=max(out.size.width, 110)).print(table)
    for r in results:
        if r.transport_retries:
            console.print(
                f"{r.phase}: transport errors retried (request never reached the "
                f"server): {json.dumps(r.transport_retries, sort_keys=True)}"
            )
        if r.retry_after:
            console.print(
                f"{r.phase}: Retry-After median {statistics.median(r.retry_after):.0f} s, "
                f"statuses {json.dumps(r.status_counts, sort_keys=True)}"
            )
    failed = False
    for what, met, figure in check_results(results):
        console.print(f"{'[green]met[/green]' if met else '[red]NOT met[/red]'}  {what}: {figure}")
        failed |= not met
    if failed:
        raise typer.Exit(1)


@bench_app.command("train")
def train_bench(
    rewards: Annotated[
        str, typer.Option("--rewards", help="Comma-separated rewards to time, e.g. perm,peregrm@4.")
    ] = "peregrm",
    steps: Annotated[
        int, typer.Option("--steps", min=2, help="GRPO steps per reward (the first is warm-up).")
    ] = 3,
    prompts: Annotated[int, typer.Option("--prompts", min=1, help="Prompts per step.")] = 1,
    generations: Annotated[
        int, typer.Option("--generations", "-G", min=2, help="Completions per prompt.")
    ] = 4,
    completion_tokens: Annotated[
        int, typer.Option("--max-completion-length", min=8, help="Policy completion tokens.")
    ] = 32,
    lora: Annotated[bool, typer.Option("--lora", help="Train a LoRA adapter.")] = False,
    slots: Annotated[int, typer.Option("--slots", min=1, help="Judge server slots.")] = 16,
    base_latency: Annotated[
        float, typer.Option("--base-latency", min=0.0, help="Judge seconds per request.")
    ] = 0.05,
    per_output_token: Annotated[
        float, typer.Option("--per-output-token", min=0.0, help="Judge seconds per output token.")
    ] = 0.0015,
) -> None:
    """Seconds per GRPO step (generation, reward, optimisation) on the CPU with the
    embedded policy and a simulated judge server."""
    from rich.table import Table

    from attunement.cli.common import console, fail, out

    chosen = [r.strip() for r in rewards.split(",") if r.strip()]
    if not chosen:
        raise fail("--rewards is empty")
    console.print(
        f"policy smollm2 on CPU{' + LoRA' if lora else ''}: {prompts} prompts x "
        f"{generations} completions of <= {completion_tokens} tokens per step; judge: "
        f"simulated server, {slots} slots, {base_latency * 1000:.0f} ms + "
        f"{per_output_token * 1000:.2f} ms/output token"
    )
    table = Table(title="seconds per GRPO step (mean of steps 2+; step 1 in brackets)")
    for col in (
        "reward",
        "total s",
        "generation s",
        "reward s",
        "optimisation s",
        "judge bound s",
        "judge calls",
        "judge out tok",
    ):
        table.add_column(col, justify="left" if col == "reward" else "right")
    for name in chosen:
        try:
            timings = run_train_bench(
                TrainBenchSettings(
                    reward=name,
                    steps=steps,
                    prompts=prompts,
                    generations=generations,
                    completion_tokens=completion_tokens,
                    lora=lora,
                    slots=slots,
                    base_latency=base_latency,
                    per_output_token=per_output_token,
                )
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
        first, rest = timings[0], timings[1:] or timings[:1]

        def cell(attr: str, digits: int = 1, *, first=first, rest=rest) -> str:
            value = mean_of([float(getattr(t, attr)) for t in rest])
            return f"{value:.{digits}f} ({float(getattr(first, attr)):.{digits}f})"

        table.add_row(
            name,
            cell("total"),
            cell("generation"),
            cell("reward"),
            cell("optimisation"),
            cell("bound"),
            cell("judge_calls", 0),
            cell("judge_output_tokens", 0),
        )
    out.print(table)
