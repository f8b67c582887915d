"""``attune generate`` and ``attune distill``: policy replies and SFT data."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from attunement.cli.common import (
    CachePath,
    Concurrency,
    NoCache,
    Retries,
    Timeout,
    console,
    llm_options,
    run,
)


class MemoryMode(str, Enum):
    full = "full"
    none = "none"
    mismatch = "mismatch"
    summary = "summary"
    rag = "rag"


class RetrieverKind(str, Enum):
    bm25 = "bm25"
    embed = "embed"


class RowFormat(str, Enum):
    prompt_completion = "prompt-completion"
    messages = "messages"


Data = Annotated[
    Path,
    typer.Option(
        "--data", exists=True, dir_okay=False, help="Examples (JSONL of Example records)."
    ),
]
Memory = Annotated[
    MemoryMode, typer.Option("--memory", help="What the policy sees of the user's memory.")
]
Samples = Annotated[int, typer.Option("-n", min=1, help="Replies per example.")]
Temperature = Annotated[float, typer.Option("--temperature", min=0.0, max=2.0)]
MaxTokens = Annotated[int, typer.Option("--max-tokens", min=1, help="Token budget per reply.")]
Seed = Annotated[
    int, typer.Option("--seed", help="Sampling seed; also picks the other user in mismatch mode.")
]
Pool = Annotated[
    Path | None,
    typer.Option(
        "--pool",
        exists=True,
        dir_okay=False,
        help="mismatch: examples whose users' memories may be lent (default: --data).",
    ),
]
Retriever = Annotated[
    RetrieverKind,
    typer.Option("--retriever", help="rag: how memories are ranked against the query."),
]
TopK = Annotated[int, typer.Option("-k", "--top-k", min=1, help="rag: memory items kept.")]
Summarizer = Annotated[
    str | None,
    typer.Option(
        "--summarizer",
        help="summary: model spec writing the user summaries (default: the policy/teacher).",
    ),
]
SummaryMaxTokens = Annotated[
    int, typer.Option("--summary-max-tokens", min=1, help="summary: token budget per user summary.")
]
WithPersona = Annotated[
    bool,
    typer.Option(
        "--with-persona",
        help="Show the user's persona (derived from their memories; mismatch "
        "shows the other user's). Default: memory and query only, as in PereGRM's task.",
    ),
]
WithSituation = Annotated[
    bool,
    typer.Option(
        "--with-situation",
        help="Show the situation behind the query (memory-derived; mismatch "
        "shows the other user's situation of the same category).",
    ),
]


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("distill")(distill)


def _default_summary_cache(out: Path) -> Path:
    stem = out.stem if out.suffix == ".jsonl" else out.name
    return out.with_name(f"{stem}.cache.sqlite")


def _models(
    spec: str, summarizer: str | None, memory: MemoryMode, out: Path, options, no_cache: bool
):
    """The answering model and (summary mode only) the summariser.

    Summaries are cached on disk next to the output unless ``--cache`` or
    ``--no-cache`` says otherwise, so a resumed run does not summarise the same
    users again. Without ``--summarizer`` the policy itself summarises (the
    same loaded model, wrapped in that cache).
    """
    from attunement.llm import CachedChatModel, CompletionCache, load_chat_model

    model = load_chat_model(spec, options)
    if memory is not MemoryMode.summary:
        return model, None
    summary_model = load_chat_model(summarizer, options) if summarizer else model
    if options.cache is None and not no_cache:
        summary_model = CachedChatModel(summary_model, CompletionCache(_default_summary_cache(out)))
    return model, summary_model


async def _answer_with(
    job,
    *,
    data: Path,
    pool: Path | None,
    retriever: RetrieverKind,
    memory: MemoryMode,
    spec: str,
    summarizer: str | None,
    out: Path,
    options,
    no_cache: bool,
    **settings,
):
    """Load the examples, build the models, run ``job`` (generate or distill), close."""
    examples = _load_examples(data)
    pool_examples = _load_examples(pool) if pool else None
    rank = _retriever(retriever, memory)
    model, summary_model = _models(spec, summarizer, memory, out, options, no_cache)
    try:
        return await job(
            examples,
            model,
            out,
            memory_mode=memory.value,
            pool=pool_examples,
            summarizer=summary_model,
            retriever=rank,
            **settings,
        )
    finally:
        await model.aclose()
        if summary_model is not None and summary_model is not model:
            await summary_model.aclose()


def _load_examples(path: Path):
    from attunement.jsonl import read_jsonl
    from attunement.records import Example

    return read_jsonl(path, Example)


def _retriever(kind: RetrieverKind, memory: MemoryMode):
    if memory is not MemoryMode.rag:
        return None
    from attunement.policy.retrieval import make_retriever

    return make_retriever(kind.value)


def generate(
    data: Data,
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            help="Model spec of the policy (local, local:/x.gguf, openai:URL#model, hf:/ckpt).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", dir_okay=False, help="Replies JSONL (appended to; a re-run resumes)."
        ),
    ],
    memory: Memory = MemoryMode.full,
    n: Samples = 1,
    temperature: Temperature = 0.7,
    max_tokens: MaxTokens = 1024,
    seed: Seed = 0,
    pool: Pool = None,
    retriever: Retriever = RetrieverKind.bm25,
    top_k: TopK = 3,
    summarizer: Summarizer = None,
    summary_max_tokens: SummaryMaxTokens = 256,
    with_persona: WithPersona = False,
    with_situation: WithSituation = False,
    concurrency: Concurrency = 8,
    timeout: Timeout = 120.0,
    retries: Retries = 4,
    cache: CachePath = None,
    no_cache: NoCache = False,
) -> None:
    """Answer every example with a policy under one memory mode (n replies each)."""
    from attunement.policy.generate import generate_replies

    options = llm_options(concurrency, timeout, retries, cache, no_cache)

    report = run(
        _answer_with(
            generate_replies,
            data=data,
            pool=pool,
            retriever=retriever,
            memory=memory,
            spec=policy,
            summarizer=summarizer,
            out=out,
            options=options,
            no_cache=no_cache,
            n=n,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            concurrency=concurrency,
            k=top_k,
            summary_max_tokens=summary_max_tokens,
            with_persona=with_persona,
            with_situation=with_situation,
        )
    )
    console.print(
        f"{report.replies_written} replies written to {report.out} "
        f"({report.already_done} already there; {report.format_failures} did not follow the "
        f"format); {report.usage.calls} calls, {report.usage.cached_calls} cached, "
        f"{report.seconds:.0f} s. Manifest: {report.manifest}",
        highlight=False,
    )


def distill(
    data: Data,
    teacher: Annotated[str, typer.Option("--teacher", help="Model spec of the stronger model.")],
    out: Annotated[
        Path,
        typer.Option("--out", dir_okay=False, help="SFT rows JSONL (TRL conversational format)."),
    ],
    memory: Memory = MemoryMode.full,
    n: Samples = 1,
    temperature: Temperature = 0.7,
    max_tokens: MaxTokens = 1024,
    seed: Seed = 0,
    row_format: Annotated[
        RowFormat,
        typer.Option("--format", help="prompt-completion (loss on the reply only) or messages."),
    ] = RowFormat.prompt_completion,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Keep the teacher's text as written "
            "instead of re-writing it under the two headings.",
        ),
    ] = False,
    pool: Pool = None,
    retriever: Retriever = RetrieverKind.bm25,
    top_k: TopK = 3,
    summarizer: Summarizer = None,
    summary_max_tokens: SummaryMaxTokens = 256,
    with_persona: WithPersona = False,
    with_situation: WithSituation = False,
    concurrency: Concurrency = 8,
    timeout: Timeout = 120.0,
    retries: Retries = 4,
    cache: CachePath = None,
    no_cache: NoCache = False,
) -> None:
    """Write SFT rows from a stronger model's well-formed replies (the SFT baseline)."""
    from attunement.policy.distill import distill as run_distill

    options = llm_options(concurrency, timeout, retries, cache, no_cache)

    report = run(
        _answer_with(
            run_distill,
            data=data,
            pool=pool,
            retriever=retriever,
            memory=memory,
            spec=teacher,
            summarizer=summarizer,
            out=out,
            options=options,
            no_cache=no_cache,
            n=n,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            concurrency=concurrency,
            k=top_k,
            summary_max_tokens=summary_max_tokens,
            with_persona=with_persona,
            with_situation=with_situation,
            row_format=row_format.value,
            raw=raw,
        )
    )
    console.print(
        f"{report.rows} SFT rows written to {report.out}; {report.skipped_format} replies "
        f"skipped for not following the format. Teacher replies: {report.replies}",
        highlight=False,
    )
