"""``attune bench rewards|serve|train|converse|llm``: benchmarks that print figures (not timed tests).

The measuring code lives in :mod:`attunement.perf`; this module reads the
options (the fields of the benchmarks' settings, whose defaults are the
options' defaults) and prints. Names follow the conventions of every verb:
``--group-size`` replies per example, ``-k/--samples`` judge samples,
``--num-generations`` completions per prompt, ``--model`` the model talked to.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from attunement.cli.common import console, fail, out, run, say, show
from attunement.cli.options import fields_bundle, model_option, sentence, verb
from attunement.judging import RewardConfig
from attunement.llm import LLMOptions, load_chat_model
from attunement.llm.local import LocalChatModel
from attunement.perf.converse_bench import ConverseBenchSettings, run_converse_bench
from attunement.perf.llm_bench import DEFAULT_PROMPT, bench_local_llm
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

HELP = "Benchmarks that print figures."
POSITIVE = {"min": 1}
NON_NEGATIVE = {"min": 0.0}

SERVER = fields_bundle(
    BenchSettings,
    "prompts",
    "replies",
    "k",
    "slots",
    "base_latency",
    "per_output_token",
    "per_prompt_token",
    "supports_n",
    "n_shares_slot",
    "client_concurrency",
    "output",
    decls={
        "replies": ("--group-size",),
        "k": ("-k", "--samples"),
        "supports_n": ("--server-n/--no-server-n",),
        "output": ("--format",),
    },
    helps={
        "prompts": "Examples in the batch.",
        "replies": "Replies per example.",
        "k": sentence(RewardConfig.model_fields["k"].description or ""),
        "slots": "Server parallel slots.",
        "base_latency": "Seconds per request.",
        "per_output_token": "Seconds per output token (longest sample).",
        "per_prompt_token": "Seconds per prompt token the prefix cache cannot serve.",
        "supports_n": "Server decodes the n samples of a request side by side, or ignores "
        "n, so each sample is its own request.",
        "n_shares_slot": "The n samples of a request cost one sequence slot instead of n "
        "(flatters n-sampling; real batching servers decode each sample as a sequence).",
        "client_concurrency": "Requests in flight (4 x slots when not given).",
        "output": "Judge answer format: text or json.",
    },
    extra={
        **{n: POSITIVE for n in ("prompts", "replies", "k", "slots", "client_concurrency")},
        **{n: NON_NEGATIVE for n in ("base_latency", "per_output_token", "per_prompt_token")},
    },
)
JUDGE = fields_bundle(
    RealisticJudge,
    "inline_analysis_tokens",
    "score_analysis_tokens",
    "item_tokens",
    "criteria_spread",
    "noise",
    decls={"item_tokens": ("--criterion-tokens",)},
    helps={
        "inline_analysis_tokens": "Simulated inline analysis length.",
        "score_analysis_tokens": "Simulated analysis length when scoring against given criteria.",
        "item_tokens": "Simulated length of one criterion.",
        "criteria_spread": "Simulated judge: largest offset a criteria set adds to a score.",
        "noise": "Simulated judge: largest per-sample noise.",
    },
    extra={
        "inline_analysis_tokens": POSITIVE,
        "score_analysis_tokens": POSITIVE,
        "item_tokens": {"min": 8},
        "criteria_spread": NON_NEGATIVE,
        "noise": NON_NEGATIVE,
    },
)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


@verb(renamed={"--replies": "--group-size", "--k": "--samples"}, server=SERVER, judge=JUDGE)
def rewards(
    modes: str = typer.Option(
        ",".join(MODES), "--modes", help="Comma-separated subset of " + ",".join(MODES) + "."
    ),
    variance: bool = typer.Option(
        True,
        "--variance/--no-variance",
        help="Also measure within-group reward std, ties and agreement with the simulated "
        "reply quality for each criteria mode.",
    ),
    variance_k: str = typer.Option(
        "1,4", "--variance-k", help="Comma-separated k values of the variance table."
    ),
    timing: bool = typer.Option(True, "--timing/--no-timing", help="Run the wall-time comparison."),
    *,
    server: dict[str, Any],
    judge: dict[str, Any],
) -> None:
    """Score a GRPO-sized batch with PERM, PereGRM inline, shared and as the authors' code
    runs it on a simulated judge server with a prefix cache; print wall time against the
    server's own lower bound, calls, samples, prompt, uncached prompt and output tokens per
    reply and where the bound's time goes, then the within-group reward spread of each
    criteria mode (inline, shared, per_reply)."""
    chosen = _csv(modes)
    unknown = [m for m in chosen if m not in MODES]
    if unknown:
        raise fail(f"--modes: unknown modes {unknown}; expected some of {list(MODES)}")
    if server["output"] not in ("text", "json"):
        raise fail("--format must be text or json")
    try:
        ks = tuple(int(x) for x in _csv(variance_k))
    except ValueError:
        raise fail(f"--variance-k must be comma-separated integers, got {variance_k!r}") from None
    settings = BenchSettings(**server, judge=RealisticJudge(**judge))
    if timing:
        _timing_table(settings, chosen)
    if variance:
        _variance_table(settings.prompts, settings.replies, ks, settings.judge)


def _wide_table(table: Table, width: int) -> None:
    Console(width=max(out.size.width, width)).print(table)


def _variance_table(prompts: int, replies: int, ks: tuple[int, ...], judge: RealisticJudge) -> None:
    say(
        f"group variance: {prompts} groups x {replies} replies, PereGRM without "
        f"bystander; simulated judge: score = clip(round(q + b + e), 1, 5), "
        f"criteria offset b within +-{judge.criteria_spread}, noise e within "
        f"+-{judge.noise}"
    )
    results = run(run_variance_bench(prompts=prompts, replies=replies, ks=ks, judge=judge))
    table = Table(title="within-group reward spread by criteria mode")
    columns = ("mode", "k", "group std", "tied pairs", "flat groups", "corr. w/ quality")
    for col in (*columns, "criteria calls", "unscorable"):
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
    _wide_table(table, 112)


def _server_line(s: BenchSettings) -> str:
    if not s.supports_n:
        n = "ignored (one sample per request)"
    else:
        n = "samples share one slot" if s.n_shares_slot else "one sequence slot per sample"
    return (
        f"batch: {s.prompts} prompts x {s.replies} replies, k={s.k}; server: {s.slots} slots, "
        f"{s.base_latency * 1000:.0f} ms + {s.per_output_token * 1000:.2f} ms/output token + "
        f"{s.per_prompt_token * 1000:.3f} ms/uncached prompt token (prefix cache: 64-character "
        f"blocks), n {n}"
    )


def _timing_table(settings: BenchSettings, chosen: tuple[str, ...]) -> None:
    say(_server_line(settings))
    j = settings.judge
    say(
        f"simulated answers: criteria {j.criteria_items} x ~{j.item_tokens} tokens, "
        f"analysis ~{j.inline_analysis_tokens} (inline) / ~{j.score_analysis_tokens} "
        f"(against given criteria) / ~{j.reason_tokens} (PERM reason) tokens"
    )
    results = run(run_reward_bench(settings, chosen))
    table = Table(title="reward scoring on the simulated judge (per reply: /r)")
    columns = ("mode", "wall s", "bound s", "ratio", "calls", "samples/r", "prompt tok/r")
    for col in (*columns, "uncached tok/r", "out tok/r", "unscorable", "cached calls"):
        table.add_column(col, justify="left" if col == "mode" else "right", no_wrap=col == "mode")
    for r in results:
        table.add_row(
            r.mode,
            f"{r.wall:.2f}",
            f"{r.bound:.2f}",
            f"{r.ratio:.2f}",
            str(r.requests),
            f"{r.per_reply('samples'):.1f}",
            f"{r.per_reply('prompt_tokens'):.0f}",
            f"{r.per_reply('uncached_prompt_tokens'):.0f}",
            f"{r.per_reply('completion_tokens'):.0f}",
            str(r.unscorable),
            str(r.cached_requests),
        )
    _wide_table(table, 120)
    say(
        "where the bound's slot-seconds go (busy seconds / slots = the bound when it is not one long call):"
    )
    for r in results:
        busy = r.base_seconds + r.prefill_seconds + r.decode_seconds
        parts = (
            ("fixed latency", r.base_seconds),
            ("prefill", r.prefill_seconds),
            ("decoding", r.decode_seconds),
        )
        say(
            f"  {r.mode}: {busy / settings.slots:.2f} s = "
            + " + ".join(
                f"{name} {s / settings.slots:.2f} s ({100 * s / busy if busy else 0:.0f}%)"
                for name, s in parts
            )
        )
    _targets(check_targets(results))


def _targets(checks: list[tuple[str, bool, str]]) -> bool:
    """Print each target as met / NOT met; whether all were met."""
    for what, met, figure in checks:
        mark = "[green]met[/green]" if met else "[red]NOT met[/red]"
        console.print(f"{mark}  {what}: {figure}", highlight=False, soft_wrap=True)
    return all(met for _, met, _ in checks)


LOAD = fields_bundle(
    ServeBenchSettings,
    "requests",
    "concurrency",
    "groups",
    "slots",
    "base_latency",
    "per_output_token",
    "judge_concurrency",
    "overload_pending",
    "overload_wait",
    "client",
    decls={"groups": ("--group-size",)},
    helps={
        "requests": "Requests per phase (one sample each).",
        "concurrency": "Requests in flight at once.",
        "groups": "Replies per example.",
        "slots": "Judge server slots.",
        "base_latency": "Judge seconds per request.",
        "per_output_token": "Judge seconds per output token.",
        "judge_concurrency": "Judge calls in flight in the server.",
        "overload_pending": "max_pending of the overload phase's server.",
        "overload_wait": "Seconds a request may wait for room on the overload phase's "
        "server before a 503 (default: the server's, 160).",
        "client": "openrlhf: OpenRLHF's client (5 tries 1 s apart, Retry-After ignored, "
        "180 s per try); retry-after: waits as a 503's Retry-After asks.",
    },
    extra={
        "requests": {"min": 1, "max": 20000},
        "concurrency": {"min": 1, "max": 4096},
        **{n: POSITIVE for n in ("groups", "slots", "judge_concurrency", "overload_pending")},
        **{n: NON_NEGATIVE for n in ("base_latency", "per_output_token", "overload_wait")},
    },
)


@verb(load=LOAD)
def serve(
    phases: str = typer.Option(
        "capacity,overload", "--phases", help="capacity and/or overload, comma-separated."
    ),
    *,
    load: dict[str, Any],
) -> None:
    """Load-test attune serve on loopback against a simulated judge, with OpenRLHF's own
    client by default: latency percentiles (waits and retries included), throughput,
    retried attempts by cause, and every sample answered, none lost."""
    chosen = _csv(phases)
    if not chosen or any(p not in ("capacity", "overload") for p in chosen):
        raise fail("--phases takes capacity and/or overload")
    s = ServeBenchSettings(**load, phases=chosen)
    say(
        f"{s.requests} OpenRLHF requests per phase ({s.groups} per example), "
        f"{s.concurrency} in flight, client {s.client}; judge: {s.slots} slots, "
        f"{s.base_latency * 1000:.0f} ms + {s.per_output_token * 1000:.2f} ms/token"
    )
    results = run_serve_bench(s)
    table = Table(title="attune serve under load (seconds from first try, waits included)")
    columns = ("phase", "answered", "200", "503", "retries", "lost", "p50", "p95", "p99")
    for col in (*columns, "req/s", "wall", "unscorable"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for r in results:
        table.add_row(
            r.phase,
            f"{r.answered}/{r.requests}",
            str(r.status_counts.get(200, 0)),
            str(r.refused_503),
            str(r.retries),
            str(r.lost),
            *(f"{r.percentile(q):.3f}" for q in (0.5, 0.95, 0.99)),
            f"{r.throughput:.1f}",
            f"{r.wall:.2f}",
            str(r.unscorable),
        )
    _wide_table(table, 110)
    for r in results:
        say(
            f"{r.phase}: failed attempts retried, by cause: "
            f"{json.dumps(r.transport_retries, sort_keys=True)}; lost samples: {r.lost}"
        )
        if r.retry_after:
            say(
                f"{r.phase}: Retry-After median {statistics.median(r.retry_after):.0f} s, "
                f"statuses {json.dumps(r.status_counts, sort_keys=True)}"
            )
    if not _targets(check_results(results)):
        raise typer.Exit(1)


STEP = fields_bundle(
    TrainBenchSettings,
    "steps",
    "prompts",
    "generations",
    "completion_tokens",
    "lora",
    "slots",
    "base_latency",
    "per_output_token",
    decls={
        "generations": ("--num-generations", "-G"),
        "completion_tokens": ("--max-completion-length",),
        "lora": ("--lora",),
    },
    helps={
        "steps": "GRPO steps per reward (the first is warm-up).",
        "prompts": "Prompts per step.",
        "generations": "Completions per prompt.",
        "completion_tokens": "Policy completion tokens.",
        "lora": "Train a LoRA adapter.",
        "slots": "Judge server slots.",
        "base_latency": "Judge seconds per request.",
        "per_output_token": "Judge seconds per output token.",
    },
    extra={
        "steps": {"min": 2},
        "prompts": POSITIVE,
        "generations": {"min": 2},
        "completion_tokens": {"min": 8},
        "slots": POSITIVE,
        **{n: NON_NEGATIVE for n in ("base_latency", "per_output_token")},
    },
)


@verb(renamed={"--generations": "--num-generations"}, step=STEP)
def train(
    rewards: str = typer.Option(
        "peregrm", "--rewards", help="Comma-separated rewards to time, e.g. perm,peregrm@4."
    ),
    *,
    step: dict[str, Any],
) -> None:
    """Seconds per GRPO step (generation, reward, optimisation) on the CPU with the
    embedded policy and a simulated judge server."""
    chosen = _csv(rewards)
    if not chosen:
        raise fail("--rewards is empty")
    s = TrainBenchSettings(**step)
    say(
        f"policy smollm2 on CPU{' + LoRA' if s.lora else ''}: {s.prompts} prompts x "
        f"{s.generations} completions of <= {s.completion_tokens} tokens per step; judge: "
        f"simulated server, {s.slots} slots, {s.base_latency * 1000:.0f} ms + "
        f"{s.per_output_token * 1000:.2f} ms/output token"
    )
    table = Table(title="seconds per GRPO step (mean of steps 2+; step 1 in brackets)")
    columns = ("reward", "total s", "generation s", "reward s", "optimisation s")
    for col in (*columns, "judge bound s", "judge calls", "judge out tok"):
        table.add_column(col, justify="left" if col == "reward" else "right")
    fields = ("total", "generation", "reward", "optimisation", "bound")
    for name in chosen:
        timings = run_train_bench(TrainBenchSettings(**{**step, "reward": name}))
        first_step, rest = timings[0], timings[1:] or timings[:1]

        def cell(attr: str, digits: int = 1, *, first_step=first_step, rest=rest) -> str:
            value = mean_of([float(getattr(t, attr)) for t in rest])
            return f"{value:.{digits}f} ({float(getattr(first_step, attr)):.{digits}f})"

        table.add_row(
            name,
            *(cell(f) for f in fields),
            cell("judge_calls", 0),
            cell("judge_output_tokens", 0),
        )
    out.print(table)


def llm(
    model: str = model_option(help="The model to time: local or local:FILE.gguf."),
    prompt: str | None = typer.Option(None, "--prompt", help="The user message."),
    max_tokens: int = typer.Option(128, "--max-tokens", min=1, help="Token budget of one answer."),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Calls per path."),
) -> None:
    """Tokens/s of the embedded model through attunement vs a raw llama.cpp call."""
    chat_model = load_chat_model(model, LLMOptions())
    if not isinstance(chat_model, LocalChatModel):
        raise fail(
            f"{model!r}: the raw comparison needs a local GGUF model "
            "(local or local:/path/model.gguf)"
        )
    result = bench_local_llm(
        chat_model, prompt=prompt or DEFAULT_PROMPT, max_tokens=max_tokens, repeat=repeat
    )
    table = Table(
        title=f"{result.model}: {repeat} call(s) each, max_tokens={max_tokens}, temperature 0"
    )
    for col in ("path", "calls", "tokens", "seconds", "tokens/s"):
        table.add_column(col, justify="left" if col == "path" else "right")
    paths: list[tuple[str, Any]] = [
        ("attunement interface", result.interface),
        ("raw llama_cpp", result.raw),
    ]
    for label, t in paths:
        table.add_row(
            label,
            str(len(t.seconds)),
            str(t.total_tokens),
            f"{t.total_seconds:.3f}",
            f"{t.tokens_per_second:.1f}",
        )
    out.print(table)
    show(
        f"tokens/s: attunement interface {result.interface.tokens_per_second:.1f}, "
        f"raw llama_cpp {result.raw.tokens_per_second:.1f}"
    )
    show(f"overhead ratio (interface s/token / raw s/token): {result.overhead_ratio:.3f}")


TALKS = fields_bundle(
    ConverseBenchSettings,
    "users",
    "max_turns",
    "concurrency",
    "slots",
    "base_latency",
    "per_output_token",
    "block",
    "output",
    decls={"output": ("--format",), "concurrency": ("--concurrency", "-c")},
    helps={
        "users": "Simulated users (one talk each).",
        "max_turns": "User messages per talk, the opening one included.",
        "concurrency": "Talks and requests in flight.",
        "slots": "Server parallel slots.",
        "base_latency": "Seconds per request.",
        "per_output_token": "Seconds per output token.",
        "block": "Prefix-cache block size in tokens.",
        "output": "Simulator answer format: text or json.",
    },
    extra={
        **{n: POSITIVE for n in ("users", "max_turns", "concurrency", "slots", "block")},
        **{n: NON_NEGATIVE for n in ("base_latency", "per_output_token")},
    },
)


@verb(talks=TALKS)
def converse(*, talks: dict[str, Any]) -> None:
    """Simulated talks on a simulated server: dialogues per minute, and prompt tokens per
    user turn with the uncached share an ideal prefix cache leaves (docs/multi-turn.md)."""
    if talks["output"] not in ("text", "json"):
        raise fail("--format must be text or json")
    s = ConverseBenchSettings(**talks)
    say(
        f"{s.users} talks of up to {s.max_turns} user turns, {s.concurrency} in flight; "
        f"server: {s.slots} slots, {s.base_latency * 1000:.0f} ms + "
        f"{s.per_output_token * 1000:.2f} ms/output token; prefix cache: ideal, "
        f"{s.block}-token blocks"
    )
    result = run_converse_bench(s)
    table = Table(title="prompt tokens per user turn (ideal prefix cache)")
    for col in ("call", "requests", "prompt tok/turn", "uncached tok/turn", "uncached share"):
        table.add_column(col, justify="left" if col == "call" else "right")
    for kind in ("policy", "assess", "speak"):
        f = result.steps.get(kind)
        if f is None:
            continue
        share = f.uncached_tokens / f.prompt_tokens if f.prompt_tokens else 0.0
        table.add_row(
            kind,
            str(f.requests),
            f"{result.per_turn(kind, 'prompt_tokens'):.0f}",
            f"{result.per_turn(kind, 'uncached_tokens'):.0f}",
            f"{100 * share:.0f}%",
        )
    out.print(table)
    ends = ", ".join(f"{k} {v}" for k, v in sorted(result.ends.items()))
    show(
        f"dialogues per minute: {result.dialogues_per_minute:.1f} "
        f"({result.dialogues} talks, {result.user_turns} user turns, {result.wall:.1f} s; {ends})"
    )
    sim = result.per_turn("assess", "uncached_tokens") + result.per_turn("speak", "uncached_tokens")
    show(f"uncached simulator prompt tokens per turn: {sim:.0f}")
