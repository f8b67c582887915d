"""``attune score`` (PERM / PereGRM breakdowns) and ``attune criteria`` (fixed criteria).

``score`` takes the shared reward options (:mod:`attunement.cli.reward_options`)
and, as :data:`SCORING` and :data:`PEREGRM`, the fields of the reward configs:
each option is built from its field, counts only when given, and shows the
default of each reward kind where PERM and PereGRM differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from attunement.cli.common import fail, report_failures, run, say, show
from attunement.cli.options import (
    ModelRun,
    fields_bundle,
    first,
    judge_option,
    limit_option,
    model_run,
    say_stand_in,
    skip_invalid_option,
    verb,
    warn_if_stand_in,
)
from attunement.cli.paths import data_option, out_option, replies_option
from attunement.cli.reward_options import RewardFlags, kind_defaults, reward_bundle
from attunement.jsonl import manifest_path, read_jsonl, read_manifest
from attunement.judging import (
    CriteriaConfig,
    PereGRMConfig,
    RewardConfig,
    score_dataset,
    unfinished,
)
from attunement.llm import call_failure_in, calls_failed, load_chat_model, preflight
from attunement.records import Example, Reply

_SCORING_FIELDS = (
    "k",
    "aggregation",
    "softmin_beta",
    "normalization",
    "lambda_bys",
    "length_penalty",
    "length_on",
    "tokenizer",
    "resonation_on",
    "judge_context",
    "unformatted",
    "output",
    "bystander_output",
    "temperature",
    "max_tokens",
    "max_resamples",
    "seed",
)
SCORING = fields_bundle(
    RewardConfig,
    *_SCORING_FIELDS,
    unset=True,
    decls={
        "k": ("-k", "--samples"),
        "length_penalty": ("--length-penalty/--no-length-penalty",),
        "output": ("--format",),
        "bystander_output": ("--bystander-format",),
    },
    helps={
        "aggregation": "How the empathy dimensions are combined into one score.",
        "softmin_beta": "Sharpness of the softmin aggregation.",
        "length_penalty": "Subtract a penalty per token over the length limit.",
        "resonation_on": "What resonation rates: the analysis or the response.",
    },
    shown={name: kind_defaults(name) for name in _SCORING_FIELDS},
)
PEREGRM = fields_bundle(
    PereGRMConfig,
    "criteria_mode",
    "definitions",
    unset=True,
)


def _inputs(
    data: Path, replies: Path, limit: int | None, skip_invalid: bool
) -> tuple[list[Example], list[Reply]]:
    """The examples (the first ``limit``) and the replies to them, every line checked."""
    examples = first(read_jsonl(data, Example, skip_invalid=skip_invalid), limit)
    rows = read_jsonl(replies, Reply, skip_invalid=skip_invalid)
    if limit is not None:
        kept = {e.example_id for e in examples}
        rows = [r for r in rows if r.example_id in kept]
    return examples, rows


@verb(
    renamed={"--k": "--samples"},
    reward=reward_bundle("peregrm"),
    scoring=SCORING,
    peregrm=PEREGRM,
    llm=model_run(),
)
def score(
    data: Path = data_option("Examples JSONL (the queries)."),
    replies: Path = replies_option("Replies JSONL to score."),
    out_path: Path = out_option("Breakdowns JSONL (appended; resumable)."),
    limit: int | None = limit_option(),
    skip_invalid: bool = skip_invalid_option(),
    *,
    reward: RewardFlags,
    scoring: dict[str, Any],
    peregrm: dict[str, Any],
    llm: ModelRun,
) -> None:
    """Score replies with PERM or PereGRM and write one breakdown per reply."""
    name = reward.reward or "peregrm"
    for field in peregrm:
        if not name.lower().startswith("peregrm"):
            raise fail(f"--{field.replace('_', '-')} applies to --reward peregrm only")
    if scoring.get("output") == "text":
        scoring.setdefault("bystander_output", "text")  # the papers' text formats throughout
    spec = reward.spec(llm.options(), **scoring, **peregrm)
    warn_if_stand_in(spec.judge)
    examples, rows = _inputs(data, replies, limit, skip_invalid)  # before any model is loaded

    async def go():
        async with spec.open() as reward_model:
            return await score_dataset(
                reward_model, examples, rows, out_path, concurrency=llm.concurrency
            )

    summary = run(go())
    _print_summary(summary)
    say(
        f"written: {out_path} ({summary.replies} breakdowns: {summary.scorable} scorable, "
        f"{summary.unscorable} unscorable)"
    )
    say_stand_in(read_manifest(manifest_path(out_path)))
    report_failures(summary.failed, unfinished=unfinished(summary))


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
    show(f"{summary.reward_model}: {summary.out}")
    for what, value in rows:
        show(f"  {what}: {value}")
    for reason, count in summary.unscorable_reasons.items():
        say(f"unscorable {count} x {reason}", style="yellow")


CRITERIA = fields_bundle(
    CriteriaConfig,
    "temperature",
    "max_tokens",
    "output",
    "definitions",
    "judge_context",
    "seed",
    decls={"output": ("--format",)},
    helps={
        "temperature": "Temperature of criteria writing.",
        "max_tokens": "Token budget of one criteria answer.",
        "output": RewardConfig.model_fields["output"].description,
        "seed": "Sampling seed of criteria writing.",
    },
)


async def _write_criteria(
    examples: list[Example],
    judge: str,
    data: Path,
    out_path: Path,
    config: CriteriaConfig,
    overwrite: bool,
    llm: ModelRun,
) -> dict[str, dict[str, str]]:
    """Write the examples with their criteria (appended; resumable); the failures."""
    from attunement.jsonl import JsonlAppender, manifest_path, write_manifest
    from attunement.judging import prepare_criteria
    from attunement.judging.criteria import criteria_manifest

    failures: dict[str, dict[str, str]] = {}
    async with load_chat_model(judge, llm.options()) as model:
        await preflight(model)
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
                examples,
                model,
                concurrency=llm.concurrency,
                config=config,
                overwrite=overwrite,
                on_example=keep,
            )
    return failures


def _call_failures(errors: dict[str, str]) -> list[str]:
    """The causes of the failed calls among one example's criteria errors."""
    return [c for c in map(call_failure_in, errors.values()) if c is not None]


@verb(config=CRITERIA, llm=model_run())
def criteria(
    data: Path = data_option("Examples JSONL."),
    out_path: Path = out_option("Examples with criteria (JSONL; resumable)."),
    judge: str = judge_option(),
    limit: int | None = limit_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Rewrite existing criteria."),
    *,
    config: dict[str, Any],
    llm: ModelRun,
) -> None:
    """Write fixed evaluation criteria (4-6 weighted, per empathy dimension) for each example."""
    from attunement.jsonl import read_done_keys

    examples = first(read_jsonl(data, Example), limit)
    done = read_done_keys(out_path, lambda rec: rec["example_id"])
    todo = [e for e in examples if e.example_id not in done]
    settings = CriteriaConfig(**config)
    warn_if_stand_in(judge)
    failures = run(_write_criteria(todo, judge, data, out_path, settings, overwrite, llm))
    say(f"{len(todo) - len(failures)} examples written to {out_path} ({len(done)} already there)")
    for eid, errors in list(failures.items())[:5]:
        say(f"no criteria {eid}: {errors}", style="yellow")
    causes = [c for errors in failures.values() for c in _call_failures(errors)[:1]]
    if causes:
        raise calls_failed(causes, len(causes), len(todo), what="examples without criteria")
    if failures:
        raise fail(
            f"{len(failures)} examples failed and were not written; "
            "run the same command again to retry them"
        )
