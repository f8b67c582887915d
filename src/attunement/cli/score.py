"""``attune score`` (PERM / PereGRM breakdowns) and ``attune criteria`` (fixed criteria)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
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
    report_failures,
    run,
    say,
)


def register(app: typer.Typer) -> None:
    from attunement.bench import reward_bench  # noqa: F401  (adds `attune bench rewards`)

    app.command("score")(score)
    app.command("criteria")(criteria)


Format = Annotated[str, typer.Option(
    "--format", help="Judge answer format: auto (JSON for the embedded model, text otherwise), "
    "text (Score: / \\boxed{} / Total Score lines), json (schema-constrained).")]


def _choice(value: str | None, allowed: tuple[str, ...], option: str) -> str | None:
    if value is not None and value not in allowed:
        raise fail(f"{option} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def score(
    data: Annotated[Path, typer.Option("--data", help="Examples JSONL (the queries).")],
    replies: Annotated[Path, typer.Option("--replies", help="Replies JSONL to score.")],
    out_path: Annotated[Path, typer.Option("--out", help="Breakdowns JSONL (appended; resumable).")],
    reward: Annotated[str, typer.Option("--reward", help="perm | peregrm (optionally @k).")] = "peregrm",
    judge: Annotated[str, typer.Option("--judge", help="Judge model spec.")] = "local",
    k: Annotated[int | None, typer.Option("-k", "--k", min=1, help="Judge samples per dimension.")] = None,
    criteria_mode: Annotated[str | None, typer.Option(
        "--criteria-mode", help="PereGRM: shared (default) | inline | fixed.")] = None,
    aggregation: Annotated[str | None, typer.Option(
        "--aggregation", help="harmonic (default) | softmin | arithmetic | geometric.")] = None,
    softmin_beta: Annotated[float | None, typer.Option("--softmin-beta", min=0.0)] = None,
    normalization: Annotated[str | None, typer.Option(
        "--normalization", help="max: s/5 (default) | minmax: (s-1)/4.")] = None,
    no_resonation: Annotated[bool, typer.Option("--no-resonation", help="Drop resonation.")] = False,
    no_expression: Annotated[bool, typer.Option("--no-expression", help="Drop expression.")] = False,
    no_reception: Annotated[bool, typer.Option("--no-reception", help="Drop reception.")] = False,
    no_bystander: Annotated[bool, typer.Option("--no-bystander", help="No bystander judge or penalty.")] = False,
    lambda_bys: Annotated[float | None, typer.Option("--lambda-bys", min=0.0,
                                                     help="Bystander penalty weight (0.5).")] = None,
    length_penalty: Annotated[bool | None, typer.Option(
        "--length-penalty/--no-length-penalty",
        help="-0.001 per response token over 768 (default: on for PERM, off for PereGRM).")] = None,
    resonation_on: Annotated[str | None, typer.Option(
        "--resonation-on", help="analysis | response (default: PERM analysis, PereGRM response).")] = None,
    fmt: Format = "auto",
    bystander_format: Annotated[str | None, typer.Option(
        "--bystander-format", help="Bystander answers: json (default; text when --format text) "
        "| text | same.")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", min=0.0, max=2.0)] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=16)] = None,
    max_resamples: Annotated[int | None, typer.Option("--max-resamples", min=0)] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    concurrency: Concurrency = 8,
    timeout: Timeout = 120.0,
    retries: Retries = 4,
    cache: CachePath = None,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help="Skip bad input lines (written to a .rejects.jsonl file).")] = False,
) -> None:
    """Score replies with PERM or PereGRM and write one breakdown per reply."""
    from attunement.jsonl import read_jsonl
    from attunement.judging import load_reward, score_dataset
    from attunement.llm import load_chat_model
    from attunement.records import Example, Reply

    _choice(criteria_mode, ("shared", "inline", "fixed"), "--criteria-mode")
    _choice(aggregation, ("harmonic", "softmin", "arithmetic", "geometric"), "--aggregation")
    _choice(normalization, ("max", "minmax"), "--normalization")
    _choice(resonation_on, ("analysis", "response"), "--resonation-on")
    _choice(fmt, ("auto", "text", "json"), "--format")
    _choice(bystander_format, ("json", "text", "same"), "--bystander-format")
    if bystander_format is None:
        bystander_format = "text" if fmt == "text" else "json"
    if criteria_mode is not None and not reward.lower().startswith("peregrm"):
        raise fail("--criteria-mode applies to --reward peregrm only")
    overrides: dict[str, Any] = {
        "k": k, "criteria_mode": criteria_mode, "aggregation": aggregation,
        "softmin_beta": softmin_beta, "normalization": normalization, "lambda_bys": lambda_bys,
        "length_penalty": length_penalty, "resonation_on": resonation_on,
        "temperature": temperature, "max_tokens": max_tokens, "max_resamples": max_resamples,
    }
    overrides = {key: v for key, v in overrides.items() if v is not None}
    overrides.update(output=fmt, bystander_output=bystander_format, seed=seed, use_resonation=not no_resonation,
                     use_expression=not no_expression, use_reception=not no_reception,
                     use_bystander=not no_bystander)

    # validate inputs before any model is loaded or called
    examples = read_jsonl(data, Example, skip_invalid=skip_invalid)
    reply_rows = read_jsonl(replies, Reply, skip_invalid=skip_invalid)

    async def go():
        model = load_chat_model(judge, llm_options(concurrency, timeout, retries, cache))
        try:
            await model.ensure_ready()
            try:
                reward_model = load_reward(reward, model, **overrides)
            except ValueError as exc:
                raise ValueError(f"reward options: {exc}") from None
            return await score_dataset(reward_model, examples, reply_rows, out_path,
                                       concurrency=concurrency)
        finally:
            await model.aclose()

    summary = run(go())
    _print_summary(summary)
    say(f"written: {out_path} ({summary.replies} breakdowns: {summary.scorable} scorable, "
        f"{summary.unscorable} unscorable)")
    report_failures(summary.failed)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _print_summary(summary) -> None:
    table = Table(title=f"{summary.reward_model}: {summary.out}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("replies in file", str(summary.replies))
    table.add_row("scored now / resumed", f"{summary.scored_now} / {summary.resumed}")
    table.add_row("scorable / unscorable", f"{summary.scorable} / {summary.unscorable}")
    table.add_row("reward mean (std)", f"{_fmt(summary.reward_mean)} ({_fmt(summary.reward_std)})")
    for dim, value in summary.dimension_means.items():
        scale = "0-100" if dim == "bystander" else "1-5"
        table.add_row(f"{dim} mean ({scale})", _fmt(value, 2))
    table.add_row("judge samples / failed / re-drawn",
                  f"{summary.judgements} / {summary.failed_judgements} / "
                  f"{summary.resampled_judgements}")
    u = summary.usage_now
    table.add_row("judge calls now (cached samples)", f"{u.calls} ({u.cached_calls})")
    table.add_row("prompt / completion tokens now", f"{u.prompt_tokens} / {u.completion_tokens}")
    table.add_row("seconds", f"{summary.seconds:.1f}")
    out.print(table)
    for reason, count in summary.unscorable_reasons.items():
        console.print(f"[yellow]unscorable[/yellow] {count} x {reason}", highlight=False)


def criteria(
    data: Annotated[Path, typer.Option("--data", help="Examples JSONL.")],
    out_path: Annotated[Path, typer.Option("--out", help="Examples with criteria (JSONL; resumable).")],
    judge: Annotated[str, typer.Option("--judge", help="Judge model spec.")] = "local",
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, max=2.0)] = 0.2,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=16)] = 1024,
    fmt: Format = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Rewrite existing criteria.")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    concurrency: Concurrency = 8,
    timeout: Timeout = 120.0,
    retries: Retries = 4,
    cache: CachePath = None,
) -> None:
    """Write fixed evaluation criteria (4-6 weighted, per empathy dimension) for each example."""
    from attunement.jsonl import JsonlAppender, read_done_keys, read_jsonl, write_manifest
    from attunement.judging import CriteriaConfig, prepare_criteria
    from attunement.judging.criteria import criteria_manifest
    from attunement.llm import load_chat_model
    from attunement.records import Example

    _choice(fmt, ("auto", "text", "json"), "--format")
    examples = read_jsonl(data, Example)
    done = read_done_keys(out_path, lambda rec: rec["example_id"])
    todo = [e for e in examples if e.example_id not in done]
    config = CriteriaConfig(temperature=temperature, max_tokens=max_tokens, output=fmt,
                            seed=seed)
    failures: dict[str, dict[str, str]] = {}

    async def go():
        model = load_chat_model(judge, llm_options(concurrency, timeout, retries, cache))
        try:
            await model.ensure_ready()
            write_manifest(out_path.with_name(out_path.name + ".manifest.json"),
                           command="criteria", data=str(data), overwrite=overwrite,
                           **criteria_manifest(model, config))
            with JsonlAppender(out_path) as sink:
                def keep(example: Example) -> None:
                    errors = example.meta.get("criteria_errors")
                    if errors:
                        failures[example.example_id] = errors
                    else:
                        sink.write(example)

                await prepare_criteria(todo, model, concurrency=concurrency, config=config,
                                       overwrite=overwrite, on_example=keep)
        finally:
            await model.aclose()

    run(go())
    written = len(todo) - len(failures)
    console.print(f"{written} examples written to {out_path} ({len(done)} already there)")
    if failures:
        for eid, errors in list(failures.items())[:5]:
            console.print(f"[yellow]no criteria[/yellow] {eid}: {errors}", highlight=False)
        console.print(f"[yellow]{len(failures)} examples failed and were not written; "
                      "run the same command again to retry them[/yellow]")
        raise typer.Exit(1)
