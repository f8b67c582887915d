"""Batch generation of policy replies, resumable, with a manifest.

:func:`generate_replies` answers every example ``n`` times under one memory
mode and appends one :class:`~attunement.records.Reply` per sample to a JSONL
file as soon as it is parsed. Run it again on the same file and it asks only
for the samples that are missing (by ``(example_id, sample_index)``), so a
killed job loses at most the requests in flight.

Reply ids are ``{example_id}:{memory_mode}:{sample_index}``, so replies of
several modes can be joined to their examples (and to each other) by id.

What shapes the replies is one :class:`GenerationSettings` (memory mode,
sampling, persona/situation switches); the objects a run needs (the model,
the memory pool, a summariser or retriever) are passed beside it.

Next to ``replies.jsonl`` the job writes ``replies.manifest.json`` (policy,
memory mode and its settings, sampling parameters, seed, prompt versions,
counts). Resuming with different settings is refused: one output file holds
one configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from attunement.concurrency import FailedItem, FailureLog, run_bounded
from attunement.jsonl import (
    JsonlAppender,
    check_settings,
    manifest_path,
    read_done_keys,
    write_manifest,
)
from attunement.llm.base import ChatModel, Completion, Message
from attunement.llm.cache import contiguous_runs
from attunement.policy.memory import MemoryMode, MemoryStrategy, MemoryView, memory_strategy
from attunement.policy.prompting import (
    REPLY_PROMPT,
    parse_reply,
    render_reply_messages,
    reply_prompt_version,
)
from attunement.policy.retrieval import Retriever
from attunement.records import Example, Reply, Usage, UserHistory

DEFAULT_MAX_TOKENS = 1024  # PERM's completion budget


class GenerationSettings(BaseModel):
    """Everything that shapes the replies of a generation run (and its manifest)."""

    model_config = ConfigDict(extra="forbid")

    memory_mode: MemoryMode = "full"
    n: int = Field(default=1, ge=1, description="replies per example, in one request")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1)
    seed: int = 0
    concurrency: int | None = Field(
        default=None, ge=1, description="requests in flight (default: the model's)"
    )
    k: int = Field(default=3, ge=1, description="rag: memory items kept")
    summary_max_tokens: int = Field(default=256, ge=1, description="summary: token budget")
    with_persona: bool = Field(default=False, description="show the persona (memory-derived)")
    with_situation: bool = Field(default=False, description="show the situation (memory-derived)")


def generation_settings(
    settings: GenerationSettings | None = None, **overrides: Any
) -> GenerationSettings:
    """``settings`` (or the defaults) with keyword overrides, validated."""
    base = (settings or GenerationSettings()).model_dump()
    return GenerationSettings.model_validate({**base, **overrides})


class GenerateReport(BaseModel):
    """What a generation run did."""

    out: Path
    manifest: Path
    examples: int
    samples_requested: int
    replies_written: int
    already_done: int
    format_failures: int = Field(description="written replies whose format was not followed")
    failed: list[FailedItem] = Field(
        default_factory=list,
        description="examples whose generation failed in this run (by "
        "example_id), with the reason; a re-run retries them",
    )
    usage: Usage = Field(default_factory=Usage)
    seconds: float = 0.0


def reply_id(example_id: str, memory_mode: str, sample_index: int) -> str:
    return f"{example_id}:{memory_mode}:{sample_index}"


def _usage_since(model: ChatModel, before: Usage) -> Usage:
    now = model.usage.snapshot()
    return Usage(
        calls=now.calls - before.calls,
        cached_calls=now.cached_calls - before.cached_calls,
        prompt_tokens=now.prompt_tokens - before.prompt_tokens,
        completion_tokens=now.completion_tokens - before.completion_tokens,
    )


def _check_unique(examples: Sequence[Example]) -> None:
    seen: set[str] = set()
    for ex in examples:
        if ex.example_id in seen:
            raise ValueError(
                f"duplicate example_id {ex.example_id!r}: replies are joined to "
                "examples by id, so ids must be unique"
            )
        seen.add(ex.example_id)


def make_replies(
    example: Example, completions: Sequence[Completion], *, policy: str, memory_mode: str
) -> list[Reply]:
    """Parse completions into Reply records (format failures are kept, flagged)."""
    out = []
    for c in completions:
        parsed = parse_reply(c.text)
        out.append(
            Reply(
                example_id=example.example_id,
                reply_id=reply_id(example.example_id, memory_mode, c.sample_index),
                response=parsed.response,
                analysis=parsed.analysis,
                raw=c.text,
                format_ok=parsed.format_ok,
                policy=policy,
                memory_mode=memory_mode,
                sample_index=c.sample_index,
                completion_tokens=c.completion_tokens,
            )
        )
    return out


async def generate_replies(
    examples: Sequence[Example],
    policy: ChatModel,
    out: str | Path,
    settings: GenerationSettings | None = None,
    *,
    pool: Sequence[Example] | Sequence[UserHistory] | None = None,
    summarizer: ChatModel | None = None,
    retriever: Retriever | None = None,
    strategy: MemoryStrategy | None = None,
    prompts_out: str | Path | None = None,
    show_progress: bool | None = None,
    on_reply: Callable[[Reply], None] | None = None,
    **overrides: Any,
) -> GenerateReport:
    """Answer each example ``settings.n`` times with ``policy`` under its memory mode.

    Settings come as a :class:`GenerationSettings` and/or as keyword overrides
    of its fields (``memory_mode="none", n=4``). The ``n`` samples of an
    example are asked for in one request (servers that support ``n`` share the
    prompt work). ``pool`` is where ``mismatch`` finds other users' memories,
    personas and situations (default: ``examples``); ``summarizer`` writes the
    ``summary`` mode's user descriptions (default: ``policy``); ``retriever``
    ranks memories for ``rag`` (default BM25). A ready-made ``strategy``
    overrides these.

    ``prompts_out``, if given, receives one ``{"example_id", "memory_mode",
    "messages", "memory_ids", "summary", "source_user_id"}`` row per example:
    exactly what the policy saw (``attune distill`` builds SFT rows from it).

    Replies whose format was not followed are written too, with
    ``format_ok=False``; the report counts them. An example whose model call
    fails for good is recorded in ``report.failed`` with its reason and the
    job goes on; a re-run retries it (finished replies are kept).
    """
    settings = generation_settings(settings, **overrides)
    memory_mode, n = settings.memory_mode, settings.n
    temperature, max_tokens, seed = settings.temperature, settings.max_tokens, settings.seed
    _check_unique(examples)
    out = Path(out)
    if strategy is None:
        strategy = memory_strategy(
            memory_mode,
            pool=pool if pool is not None else examples,
            model=summarizer or policy,
            retriever=retriever,
            k=settings.k,
            seed=seed,
            summary_max_tokens=settings.summary_max_tokens,
        )
    elif strategy.mode != memory_mode:
        raise ValueError(f"strategy is for memory mode {strategy.mode!r}, not {memory_mode!r}")
    if (
        memory_mode == "mismatch"
        and (settings.with_persona or settings.with_situation)
        and pool is not None
        and any(isinstance(p, UserHistory) for p in pool)
    ):
        raise ValueError(
            "mismatch with --with-persona/--with-situation needs a pool of "
            "examples (user histories carry no persona or situation)"
        )
    limit = settings.concurrency or max(1, policy.max_concurrency)

    recorded = {
        "policy": policy.name,
        "memory": strategy.settings(),
        "temperature": temperature,
        "max_tokens": max_tokens,
        "seed": seed,
        "with_persona": settings.with_persona,
        "with_situation": settings.with_situation,
        "prompt": {REPLY_PROMPT: reply_prompt_version()},
    }
    manifest = manifest_path(out)
    check_settings(manifest, {"settings": recorded}, fix="write to a new output file")

    done = read_done_keys(out, lambda r: (r["example_id"], r["memory_mode"], r["sample_index"]))
    prompts_done: set[str] = set()
    if prompts_out is not None:
        prompts_done = read_done_keys(prompts_out, lambda r: r["example_id"])
    todo: list[tuple[Example, list[int]]] = []
    already = 0
    for ex in examples:
        missing = [i for i in range(n) if (ex.example_id, strategy.mode, i) not in done]
        already += n - len(missing)
        if missing or (prompts_out is not None and ex.example_id not in prompts_done):
            todo.append((ex, missing))

    def write_manifest_now(**extra: Any) -> None:
        write_manifest(
            manifest,
            command="generate",
            out=str(out),
            settings=recorded,
            n=n,
            examples=len(examples),
            **extra,
        )

    write_manifest_now(status="running")
    before = policy.usage.snapshot()
    started = time.perf_counter()
    counts = {"written": 0, "format_failures": 0}

    async def answer(job: tuple[Example, list[int]]) -> tuple[list[Reply], dict | None]:
        example, missing = job
        view: MemoryView = await strategy.select(example)
        messages: list[Message] = render_reply_messages(
            example,
            list(view.memories),
            summary=view.summary,
            persona=view.persona if settings.with_persona else None,
            situation=view.situation if settings.with_situation else None,
        )
        completions: list[Completion] = []
        for start, count in contiguous_runs(missing):
            completions += await policy.complete(
                messages,
                n=count,
                temperature=temperature,
                max_tokens=max_tokens,
                seed=seed,
                sample_start=start,
            )
        replies = make_replies(example, completions, policy=policy.name, memory_mode=strategy.mode)
        prompt_row = None
        if prompts_out is not None and example.example_id not in prompts_done:
            prompt_row = {
                "example_id": example.example_id,
                "memory_mode": strategy.mode,
                "messages": messages,
                "memory_ids": [m.memory_id for m in view.memories],
                "summary": view.summary,
                "source_user_id": view.source_user_id,
            }
        return replies, prompt_row

    failures: FailureLog[tuple[Example, list[int]]] = FailureLog(lambda job: job[0].example_id)
    with JsonlAppender(out) as writer:
        prompt_writer = JsonlAppender(prompts_out) if prompts_out is not None else None
        try:

            def on_result(
                job: tuple[Example, list[int]], result: tuple[list[Reply], dict | None]
            ) -> None:
                replies, prompt_row = result
                if prompt_writer is not None and prompt_row is not None:
                    prompt_writer.write(prompt_row)  # before the replies: resume relies on it
                    prompts_done.add(prompt_row["example_id"])
                for reply in replies:
                    writer.write(reply)
                    counts["written"] += 1
                    counts["format_failures"] += 0 if reply.format_ok else 1
                    if on_reply is not None:
                        on_reply(reply)

            await run_bounded(
                todo,
                answer,
                limit=limit,
                on_result=on_result,
                on_failure=failures,
                description=f"generate ({strategy.mode})",
                show_progress=show_progress,
            )
        finally:
            if prompt_writer is not None:
                prompt_writer.close()

    report = GenerateReport(
        out=out,
        manifest=manifest,
        examples=len(examples),
        samples_requested=len(examples) * n,
        replies_written=counts["written"],
        already_done=already,
        format_failures=counts["format_failures"],
        failed=failures.items,
        usage=_usage_since(policy, before),
        seconds=round(time.perf_counter() - started, 3),
    )
    write_manifest_now(
        status="incomplete" if failures.items else "complete",
        report=report.model_dump(mode="json", exclude={"out", "manifest"}),
    )
    return report
