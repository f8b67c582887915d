"""Batch generation of policy replies, resumable, with a manifest.

:func:`generate_replies` answers every example ``n`` times under one memory
mode and appends one :class:`~attunement.records.Reply` per sample to a JSONL
file as soon as it is parsed. Run it again on the same file and it asks only
for the samples that are missing (by ``(example_id, sample_index)``), so a
killed job loses at most the requests in flight.

Reply ids are ``{example_id}:{memory_mode}:{sample_index}``, so replies of
several modes can be joined to their examples (and to each other) by id.

Next to ``replies.jsonl`` the job writes ``replies.manifest.json`` (policy,
memory mode and its settings, sampling parameters, seed, prompt versions,
counts). Resuming with different settings is refused: one output file holds
one configuration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from attunement.concurrency import FailedItem, FailureLog, run_bounded
from attunement.jsonl import JsonlAppender, read_done_keys, write_manifest
from attunement.llm.base import ChatModel, Completion, Message
from attunement.llm.cache import contiguous_runs
from attunement.policy.memory import MemoryStrategy, MemoryView, memory_strategy
from attunement.policy.prompting import (
    REPLY_PROMPT,
    parse_reply,
    render_reply_messages,
    reply_prompt_version,
)
from attunement.policy.retrieval import Retriever
from attunement.records import Example, Reply, Usage, UserHistory

DEFAULT_MAX_TOKENS = 1024  # PERM's completion budget


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
        default_factory=list, description="examples whose generation failed in this run (by "
        "example_id), with the reason; a re-run retries them")
    usage: Usage = Field(default_factory=Usage)
    seconds: float = 0.0


def reply_id(example_id: str, memory_mode: str, sample_index: int) -> str:
    return f"{example_id}:{memory_mode}:{sample_index}"


def manifest_path(out: str | Path) -> Path:
    """``replies.jsonl`` -> ``replies.manifest.json``."""
    out = Path(out)
    return out.with_name((out.stem if out.suffix == ".jsonl" else out.name) + ".manifest.json")


def _usage_since(model: ChatModel, before: Usage) -> Usage:
    now = model.usage.snapshot()
    return Usage(calls=now.calls - before.calls,
                 cached_calls=now.cached_calls - before.cached_calls,
                 prompt_tokens=now.prompt_tokens - before.prompt_tokens,
                 completion_tokens=now.completion_tokens - before.completion_tokens)


def _check_unique(examples: Sequence[Example]) -> None:
    seen: set[str] = set()
    for ex in examples:
        if ex.example_id in seen:
            raise ValueError(f"duplicate example_id {ex.example_id!r}: replies are joined to "
                             "examples by id, so ids must be unique")
        seen.add(ex.example_id)


def _check_settings(path: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume into a file made with other settings."""
    if not path.exists():
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8")).get("settings")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: unreadable manifest ({exc.msg}); remove it or use a new "
                         "output file") from None
    if previous is None:
        return
    previous = json.loads(json.dumps(previous))
    current = json.loads(json.dumps(settings, default=str))
    changed = sorted(k for k in set(previous) | set(current)
                     if previous.get(k) != current.get(k))
    if changed:
        detail = "; ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ValueError(f"{path.with_suffix('')} was written with other settings ({detail}); "
                         "write to a new output file")


def make_replies(example: Example, completions: Sequence[Completion], *, policy: str,
                 memory_mode: str) -> list[Reply]:
    """Parse completions into Reply records (format failures are kept, flagged)."""
    out = []
    for c in completions:
        parsed = parse_reply(c.text)
        out.append(Reply(
            example_id=example.example_id,
            reply_id=reply_id(example.example_id, memory_mode, c.sample_index),
            response=parsed.response, analysis=parsed.analysis, raw=c.text,
            format_ok=parsed.format_ok, policy=policy, memory_mode=memory_mode,
            sample_index=c.sample_index, completion_tokens=c.completion_tokens))
    return out


async def generate_replies(
    examples: Sequence[Example],
    policy: ChatModel,
    out: str | Path,
    *,
    memory_mode: str = "full",
    n: int = 1,
    temperature: float = 0.7,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    seed: int = 0,
    concurrency: int | None = None,
    pool: Sequence[Example] | Sequence[UserHistory] | None = None,
    summarizer: ChatModel | None = None,
    retriever: Retriever | None = None,
    k: int = 3,
    summary_max_tokens: int = 256,
    strategy: MemoryStrategy | None = None,
    persona: bool = True,
    situation: bool = True,
    prompts_out: str | Path | None = None,
    show_progress: bool | None = None,
    on_reply: Callable[[Reply], None] | None = None,
) -> GenerateReport:
    """Answer each example ``n`` times with ``policy`` under ``memory_mode``.

    The ``n`` samples of an example are asked for in one request (servers that
    support ``n`` share the prompt work). ``pool`` is where ``mismatch`` finds
    other users' memories (default: ``examples``); ``summarizer`` writes the
    ``summary`` mode's user descriptions (default: ``policy``; at most
    ``summary_max_tokens`` each); ``retriever``
    ranks memories for ``rag`` (default BM25) which keeps the top ``k``. A
    ready-made ``strategy`` overrides all of these.

    ``prompts_out``, if given, receives one ``{"example_id", "memory_mode",
    "messages", "memory_ids", "summary", "source_user_id"}`` row per example:
    exactly what the policy saw (``attune distill`` builds SFT rows from it).

    Replies whose format was not followed are written too, with
    ``format_ok=False``; the report counts them. An example whose model call
    fails for good is recorded in ``report.failed`` with its reason and the
    job goes on; a re-run retries it (finished replies are kept).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _check_unique(examples)
    out = Path(out)
    if strategy is None:
        strategy = memory_strategy(memory_mode, pool=pool if pool is not None else examples,
                                   model=summarizer or policy, retriever=retriever, k=k,
                                   seed=seed, summary_max_tokens=summary_max_tokens)
    elif strategy.mode != memory_mode:
        raise ValueError(f"strategy is for memory mode {strategy.mode!r}, not {memory_mode!r}")
    limit = concurrency or max(1, policy.max_concurrency)

    settings = {"policy": policy.name, "memory": strategy.settings(), "temperature": temperature,
                "max_tokens": max_tokens, "seed": seed, "persona": persona,
                "situation": situation, "prompt": {REPLY_PROMPT: reply_prompt_version()}}
    manifest = manifest_path(out)
    _check_settings(manifest, settings)

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
        write_manifest(manifest, command="generate", out=str(out), settings=settings, n=n,
                       examples=len(examples), **extra)

    write_manifest_now(status="running")
    before = policy.usage.snapshot()
    started = time.perf_counter()
    counts = {"written": 0, "format_failures": 0}

    async def answer(job: tuple[Example, list[int]]) -> tuple[list[Reply], dict | None]:
        example, missing = job
        view: MemoryView = await strategy.select(example)
        messages: list[Message] = render_reply_messages(
            example, list(view.memories), summary=view.summary, persona=persona,
            situation=situation)
        completions: list[Completion] = []
        for start, count in contiguous_runs(missing):
            completions += await policy.complete(messages, n=count, temperature=temperature,
                                                 max_tokens=max_tokens, seed=seed,
                                                 sample_start=start)
        replies = make_replies(example, completions, policy=policy.name,
                               memory_mode=strategy.mode)
        prompt_row = None
        if prompts_out is not None and example.example_id not in prompts_done:
            prompt_row = {"example_id": example.example_id, "memory_mode": strategy.mode,
                          "messages": messages,
                          "memory_ids": [m.memory_id for m in view.memories],
                          "summary": view.summary, "source_user_id": view.source_user_id}
        return replies, prompt_row

    failures: FailureLog[tuple[Example, list[int]]] = FailureLog(lambda job: job[0].example_id)
    with JsonlAppender(out) as writer:
        prompt_writer = JsonlAppender(prompts_out) if prompts_out is not None else None
        try:
            def on_result(job: tuple[Example, list[int]],
                          result: tuple[list[Reply], dict | None]) -> None:
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

            await run_bounded(todo, answer, limit=limit, on_result=on_result,
                              on_failure=failures, description=f"generate ({strategy.mode})",
                              show_progress=show_progress)
        finally:
            if prompt_writer is not None:
                prompt_writer.close()

    report = GenerateReport(
        out=out, manifest=manifest, examples=len(examples), samples_requested=len(examples) * n,
        replies_written=counts["written"], already_done=already,
        format_failures=counts["format_failures"], failed=failures.items,
        usage=_usage_since(policy, before), seconds=round(time.perf_counter() - started, 3))
    write_manifest_now(status="incomplete" if failures.items else "complete",
                       report=report.model_dump(mode="json", exclude={"out", "manifest"}))
    return report
