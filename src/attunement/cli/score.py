"""``attune score`` (PERM / PereGRM breakdowns) and ``attune criteria`` (fixed criteria).

``score`` declares the shared reward options of :mod:`attunement.cli.reward_options`
(``--reward``, ``--judge``, the ablations, ``--reward-config``, ``--set``) and
turns them, with its own flags, into a :class:`~attunement.judging.RewardSpec`
through :func:`~attunement.cli.reward_options.reward_spec`. Every closed choice
is the ``Literal`` the config uses, so typer checks it and lists it in the help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

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
from attunement.judging.aggregate import Aggregation, Normalization
from attunement.judging.base import (
    BystanderOutput,
    CriteriaMode,
    Definitions,
    LengthOn,
    ResonationOn,
    Unformatted,
)
from attunement.judging.templates import JudgeContext, OutputChoice


def register(app: typer.Typer) -> None:

    app.command("score")(score)
    app.command("criteria")(criteria)


Format = Annotated[
    OutputChoice,
    typer.Option(
        "--format",
        help="Judge answer format: auto (JSON for the embedded model, text otherwise), "
        "text (Score: / \\boxed{} / Total Score lines), json (schema-constrained).",
    ),
]
JudgeContextOption = Annotated[
    JudgeContext | None,
    typer.Option(
        "--judge-context",
        help="What judges see of the user: authors (default: profile, memory "
        "values, situation text) or full (also Big Five, topics, labels, category, emotion).",
    ),
]
DefinitionsOption = Annotated[
    Definitions | None,
    typer.Option(
        "--definitions",
        help="PereGRM dimension definitions: training (the authors' training "
        "reward) or evaluation (their criteria-writing definitions).",
    ),
]


def score(
    data: Annotated[Path, typer.Option("--data", help="Examples JSONL (the queries).")],
    replies: Annotated[Path, typer.Option("--replies", help="Replies JSONL to score.")],
    out_path: Annotated[
        Path, typer.Option("--out", help="Breakdowns JSONL (appended; resumable).")
    ],
    reward: RewardName = "peregrm",
    judge: JudgeSpec = "local",
    k: Annotated[
        int | None, typer.Option("-k", "--k", min=1, help="Judge samples per dimension.")
    ] = None,
    criteria_mode: Annotated[
        CriteriaMode | None,
        typer.Option(
            "--criteria-mode", help="PereGRM: shared (default), per_reply, inline or fixed."
        ),
    ] = None,
    definitions: DefinitionsOption = None,
    aggregation: Annotated[
        Aggregation | None,
        typer.Option("--aggregation", help="Empathy aggregate (default harmonic)."),
    ] = None,
    softmin_beta: Annotated[float | None, typer.Option("--softmin-beta", min=0.0)] = None,
    normalization: Annotated[
        Normalization | None,
        typer.Option("--normalization", help="max: s/5 (default) | minmax: (s-1)/4."),
    ] = None,
    no_resonation: NoResonation = False,
    no_expression: NoExpression = False,
    no_reception: NoReception = False,
    no_bystander: NoBystander = False,
    lambda_bys: Annotated[
        float | None, typer.Option("--lambda-bys", min=0.0, help="Bystander penalty weight (0.5).")
    ] = None,
    length_penalty: Annotated[
        bool | None,
        typer.Option(
            "--length-penalty/--no-length-penalty",
            help="-0.001 per token over 768 (default: on for PERM, off for PereGRM).",
        ),
    ] = None,
    length_on: Annotated[
        LengthOn | None,
        typer.Option(
            "--length-on",
            help="What the length penalty counts: response (default, the paper) or "
            "completion (the authors' code; Reply.completion_tokens when set).",
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            help="Token counter of the length penalty: approx (default: words, "
            "punctuation, CJK characters), local (the embedded GGUF's llama.cpp tokenizer), "
            "local:PATH.gguf, or hf:DIR (a transformers tokenizer folder).",
        ),
    ] = None,
    resonation_on: Annotated[
        ResonationOn | None,
        typer.Option(
            "--resonation-on",
            help="What resonation rates (default: PERM analysis, PereGRM response).",
        ),
    ] = None,
    judge_context: JudgeContextOption = None,
    unformatted: Annotated[
        Unformatted | None,
        typer.Option(
            "--unformatted",
            help="A reply that broke the '# Analysis / # Response' format: "
            "judge_whole or empty (defaults: PERM empty, PereGRM judge_whole, as the authors' "
            "code).",
        ),
    ] = None,
    fmt: Annotated[
        OutputChoice | None,
        typer.Option(
            "--format",
            help="Judge answer format: auto (default: JSON for the embedded model, "
            "text otherwise), text (Score: / \\boxed{} / Total Score lines), json "
            "(schema-constrained).",
        ),
    ] = None,
    bystander_format: Annotated[
        BystanderOutput | None,
        typer.Option(
            "--bystander-format",
            help="Bystander answers: json (default; text when --format text), text or same.",
        ),
    ] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", min=0.0, max=2.0)] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=16)] = None,
    max_resamples: Annotated[int | None, typer.Option("--max-resamples", min=0)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Base seed (default 0).")] = None,
    reward_config: RewardConfigFile = None,
    assignments: RewardSet = None,
    concurrency: Concurrency = 8,
    timeout: Timeout = 120.0,
    retries: Retries = 4,
    cache: CachePath = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid", help="Skip bad input lines (written to a .rejects.jsonl file)."
        ),
    ] = False,
) -> None:
    """Score replies with PERM or PereGRM and write one breakdown per reply."""
    from attunement.jsonl import read_jsonl
    from attunement.judging import score_dataset
    from attunement.records import Example, Reply

    peregrm_only = {"--criteria-mode": criteria_mode, "--definitions": definitions}
    for flag, value in peregrm_only.items():
        if value is not None and not reward.lower().startswith("peregrm"):
            raise fail(f"{flag} applies to --reward peregrm only")
    if bystander_format is None and fmt == "text":
        bystander_format = "text"  # the papers' text formats throughout
    flags: dict[str, Any] = {
        "k": k,
        "criteria_mode": criteria_mode,
        "definitions": definitions,
        "aggregation": aggregation,
        "softmin_beta": softmin_beta,
        "normalization": normalization,
        "lambda_bys": lambda_bys,
        "length_penalty": length_penalty,
        "length_on": length_on,
        "tokenizer": tokenizer,
        "resonation_on": resonation_on,
        "judge_context": judge_context,
        "unformatted": unformatted,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "max_resamples": max_resamples,
        "output": fmt,
        "bystander_output": bystander_format,
        "seed": seed,
    }
    try:
        spec = reward_spec(
            reward,
            judge,
            llm_options(concurrency, timeout, retries, cache),
            config_file=reward_config,
            assignments=assignments,
            no_resonation=no_resonation,
            no_expression=no_expression,
            no_reception=no_reception,
            no_bystander=no_bystander,
            **flags,
        )
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None

    # validate inputs before any model is loaded or called
    examples = read_jsonl(data, Example, skip_invalid=skip_invalid)
    reply_rows = read_jsonl(replies, Reply, skip_invalid=skip_invalid)

    async def go():
        async with spec.open() as reward_model:
            return await score_dataset(
                reward_model, examples, reply_rows, out_path, concurrency=concurrency
            )

    summary = run(go())
    _print_summary(summary)
    say(
        f"written: {out_path} ({summary.replies} breakdowns: {summary.scorable} scorable, "
        f"{summary.unscorable} unscorable)"
    )
    report_failures(summary.failed)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _print_summary(summary) -> None:
    """One ``what: value`` line each, never wrapped (a table squeezed into a
    narrow terminal breaks its cells, and the path, across lines)."""
    u = summary.usage_now
    rows = [
        ("replies in file", str(summary.replies)),
        ("scored now / resumed", f"{summary.scored_now} / {summary.resumed}"),
        ("scorable / unscorable", f"{summary.scorable} / {summary.unscorable}"),
        ("reward mean (std)", f"{_fmt(summary.reward_mean)} ({_fmt(summary.reward_std)})"),
        *(
            (f"{dim} mean ({'0-100' if dim == 'bystander' else '1-5'})", _fmt(value, 2))
            for dim, value in summary.dimension_means.items()
        ),
        (
            "judge samples / failed / re-drawn",
            f"{summary.judgements} / {summary.failed_judgements} / {summary.resampled_judgements}",
        ),
        ("judge calls now (cached samples)", f"{u.calls} ({u.cached_calls})"),
        ("prompt / completion tokens now", f"{u.prompt_tokens} / {u.completion_tokens}"),
        ("seconds", f"{summary.seconds:.1f}"),
    ]
    out.print(f"{summary.reward_model}: {summary.out}", soft_wrap=True, highlight=False)
    for what, value in rows:
        out.print(f"  {what}: {value}", soft_wrap=True, highlight=False)
    for reason, count in summary.unscorable_reasons.items():
        console.print(
            f"[yellow]unscorable[/yellow] {count} x {reason}", highlight=False, soft_wrap=True
        )


def criteria(
    data: Annotated[Path, typer.Option("--data", help="Examples JSONL.")],
    out_path: Annotated[
        Path, typer.Option("--out", help="Examples with criteria (JSONL; resumable).")
    ],
    judge: JudgeSpec = "local",
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, max=2.0)] = 0.2,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=16)] = 1024,
    fmt: Format = "auto",
    definitions: Annotated[
        Definitions,
        typer.Option(
            "--definitions",
            help="Dimension definitions the criteria are written from "
            "(default evaluation, as the authors' evaluation code).",
        ),
    ] = "evaluation",
    judge_context: Annotated[
        JudgeContext,
        typer.Option(
            "--judge-context", help="What the judge sees of the user: authors (default) or full."
        ),
    ] = "authors",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Rewrite existing criteria.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    concurrency: Concurrency = 8,
    timeout: Timeout = 120.0,
    retries: Retries = 4,
    cache: CachePath = None,
) -> None:
    """Write fixed evaluation criteria (4-6 weighted, per empathy dimension) for each example."""
    from attunement.jsonl import (
        JsonlAppender,
        manifest_path,
        read_done_keys,
        read_jsonl,
        write_manifest,
    )
    from attunement.judging import CriteriaConfig, prepare_criteria
    from attunement.judging.criteria import criteria_manifest
    from attunement.llm import load_chat_model
    from attunement.records import Example

    examples = read_jsonl(data, Example)
    done = read_done_keys(out_path, lambda rec: rec["example_id"])
    todo = [e for e in examples if e.example_id not in done]
    config = CriteriaConfig(
        temperature=temperature,
        max_tokens=max_tokens,
        output=fmt,
        seed=seed,
        definitions=definitions,
        judge_context=judge_context,
    )
    failures: dict[str, dict[str, str]] = {}

    async def go():
        async with load_chat_model(
            judge, llm_options(concurrency, timeout, retries, cache)
        ) as model:
            await model.ensure_ready()
            write_manifest(
                manifest_path(out_path),
                command="criteria",
                data=str(data),
                overwrite=overwrite,
                **criteria_manifest(model, config),
            )
            with JsonlAppender(out_path) as sink:

                def keep(example: Example) -> None:
                    errors = example.meta.get("criteria_errors")
                    if errors:
                        failures[example.example_id] = errors
                    else:
                        sink.write(example)

                await prepare_criteria(
                    todo,
                    model,
                    concurrency=concurrency,
                    config=config,
                    overwrite=overwrite,
                    on_example=keep,
                )

    run(go())
    written = len(todo) - len(failures)
    console.print(f"{written} examples written to {out_path} ({len(done)} already there)")
    if failures:
        for eid, errors in list(failures.items())[:5]:
            console.print(f"[yellow]no criteria[/yellow] {eid}: {errors}", highlight=False)
        console.print(
            f"[yellow]{len(failures)} examples failed and were not written; "
            "run the same command again to retry them[/yellow]"
        )
        raise typer.Exit(1)
