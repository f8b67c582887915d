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
from attunement.llm.base import ChatModel, Completion
from attunement.llm.cache import contiguous_runs
from attunement.policy.context import (
    DEFAULT_MEMORY_MODE,
    SHOW_PERSONA,
    SHOW_SITUATION,
    PolicyPrompt,
    PromptContext,
    policy_prompt,
)
from attunement.policy.memory import MemoryMode, MemoryStrategy, memory_strategy
from attunement.policy.prompting import REPLY_PROMPT, parse_reply, reply_prompt_version
from attunement.policy.retrieval import Retriever
from attunement.records import Example, Reply, Usage, UserHistory

DEFAULT_MAX_TOKENS = 1024  # PERM's completion budget


class GenerationSettings(BaseModel):
    """Everything that shapes the replies of a generation run (and its manifest)."""

    model_config = ConfigDict(extra="forbid")

    memory_mode: MemoryMode = DEFAULT_MEMORY_MODE
    n: int = Field(default=1, ge=1, description="replies per example, in one request")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1)
    seed: int = 0
    concurrency: int | None = Field(
        default=None, ge=1, description="requests in flight (default: the model's)"
    )
    k: int = Field(default=3, ge=1, description="rag: memory items kept")
    summary_max_tokens: int = Field(default=256, ge=1, description="summary: token budget")
    with_persona: bool = Field(
        default=SHOW_PERSONA, description="show the persona in the policy prompt"
    )
    with_situation: bool = Field(
        default=SHOW_SITUATION, description="show the situation in the policy prompt"
    )

    def context(self) -> PromptContext:
        """What these settings show the policy (the prompt's one definition)."""
        return PromptContext(
            memory_mode=self.memory_mode,
            persona=self.with_persona,
            situation=self.with_situation,
            seed=self.seed,
            k=self.k,
        )


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
    _check_unique(examples)
    if strategy is None:
        strategy = memory_strategy(
            settings.memory_mode,
            pool=pool if pool is not None else examples,
            model=summarizer or policy,
            retriever=retriever,
            k=settings.k,
            seed=settings.seed,
            summary_max_tokens=settings.summary_max_tokens,
        )
    elif strategy.mode != settings.memory_mode:
        raise ValueError(
            f"strategy is for memory mode {strategy.mode!r}, not {settings.memory_mode!r}"
        )
    _check_pool(settings, pool)
    job = _Generation(examples, policy, Path(out), settings, strategy, prompts_out)
    job.plan()
    await job.run(show_progress, on_reply)
    return job.finish()


def _check_pool(
    settings: GenerationSettings, pool: Sequence[Example] | Sequence[UserHistory] | None
) -> None:
    """A mismatch that shows another user's persona or situation needs examples to find them."""
    if (
        settings.memory_mode == "mismatch"
        and (settings.with_persona or settings.with_situation)
        and pool is not None
        and any(isinstance(p, UserHistory) for p in pool)
    ):
        raise ValueError(
            "mismatch with --with-persona/--with-situation needs a pool of "
            "examples (user histories carry no persona or situation)"
        )


#: one unit of work: an example and the sample numbers it still lacks
_Job = tuple[Example, list[int]]


class _Generation:
    """One generation run into one file: plan, answer, record, report."""

    def __init__(
        self,
        examples: Sequence[Example],
        policy: ChatModel,
        out: Path,
        settings: GenerationSettings,
        strategy: MemoryStrategy,
        prompts_out: str | Path | None,
    ):
        self.examples = examples
        self.policy = policy
        self.out = out
        self.settings = settings
        self.strategy = strategy
        self.context = settings.context()
        self.prompts_out = Path(prompts_out) if prompts_out is not None else None
        self.manifest = manifest_path(out)
        self.recorded = {
            "policy": policy.name,
            "memory": strategy.settings(),
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "seed": settings.seed,
            "with_persona": settings.with_persona,
            "with_situation": settings.with_situation,
            "prompt": {REPLY_PROMPT: reply_prompt_version()},
        }
        self.todo: list[_Job] = []
        self.already = 0
        self.prompts_done: set[str] = set()
        self.written = 0
        self.format_failures = 0
        self.failures: FailureLog[_Job] = FailureLog(lambda job: job[0].example_id)
        self.before = policy.usage.snapshot()
        self.started = time.perf_counter()

    def plan(self) -> None:
        """Refuse other settings, then list the samples (and prompt rows) still missing."""
        check_settings(self.manifest, {"settings": self.recorded}, fix="write to a new output file")
        n = self.settings.n
        done = read_done_keys(
            self.out, lambda r: (r["example_id"], r["memory_mode"], r["sample_index"])
        )
        if self.prompts_out is not None:
            self.prompts_done = read_done_keys(self.prompts_out, lambda r: r["example_id"])
        for ex in self.examples:
            missing = [i for i in range(n) if (ex.example_id, self.strategy.mode, i) not in done]
            self.already += n - len(missing)
            if missing or (self.prompts_out is not None and ex.example_id not in self.prompts_done):
                self.todo.append((ex, missing))
        self._write_manifest(status="running")

    async def answer(self, job: _Job) -> tuple[list[Reply], PolicyPrompt]:
        """The missing samples of one example, in one request per run of sample numbers."""
        example, missing = job
        prompt = await policy_prompt(example, self.strategy, self.context)
        completions: list[Completion] = []
        for start, count in contiguous_runs(missing):
            completions += await self.policy.complete(
                prompt.messages,
                n=count,
                temperature=self.settings.temperature,
                max_tokens=self.settings.max_tokens,
                seed=self.settings.seed,
                sample_start=start,
            )
        replies = make_replies(
            example, completions, policy=self.policy.name, memory_mode=self.strategy.mode
        )
        return replies, prompt

    async def run(
        self, show_progress: bool | None, on_reply: Callable[[Reply], None] | None
    ) -> None:
        """Answer every planned job, appending each result as soon as it is parsed."""
        with JsonlAppender(self.out) as writer:
            prompt_writer = (
                JsonlAppender(self.prompts_out) if self.prompts_out is not None else None
            )
            try:

                def on_result(_job: _Job, result: tuple[list[Reply], PolicyPrompt]) -> None:
                    replies, prompt = result
                    key = prompt.example.example_id
                    if prompt_writer is not None and key not in self.prompts_done:
                        prompt_writer.write(prompt.record())  # before the replies: resume needs it
                        self.prompts_done.add(key)
                    for reply in replies:
                        writer.write(reply)
                        self.written += 1
                        self.format_failures += 0 if reply.format_ok else 1
                        if on_reply is not None:
                            on_reply(reply)

                await run_bounded(
                    self.todo,
                    self.answer,
                    limit=self.settings.concurrency or max(1, self.policy.max_concurrency),
                    on_result=on_result,
                    on_failure=self.failures,
                    description=f"generate ({self.strategy.mode})",
                    show_progress=show_progress,
                )
            finally:
                if prompt_writer is not None:
                    prompt_writer.close()

    def finish(self) -> GenerateReport:
        """The report, also written into the manifest with the run's status."""
        report = GenerateReport(
            out=self.out,
            manifest=self.manifest,
            examples=len(self.examples),
            samples_requested=len(self.examples) * self.settings.n,
            replies_written=self.written,
            already_done=self.already,
            format_failures=self.format_failures,
            failed=self.failures.items,
            usage=_usage_since(self.policy, self.before),
            seconds=round(time.perf_counter() - self.started, 3),
        )
        self._write_manifest(
            status="incomplete" if self.failures.items else "complete",
            report=report.model_dump(mode="json", exclude={"out", "manifest"}),
        )
        return report

    def _write_manifest(self, **extra: Any) -> None:
        write_manifest(
            self.manifest,
            command="generate",
            out=str(self.out),
            settings=self.recorded,
            n=self.settings.n,
            examples=len(self.examples),
            **extra,
        )
