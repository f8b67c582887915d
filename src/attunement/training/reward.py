"""A reward model as TRL's GRPO reward function.

TRL's ``GRPOTrainer`` calls each reward function once per generation batch as
``f(prompts=..., completions=..., completion_ids=..., **columns)``: every
dataset column arrives as a keyword list with one entry per completion, next
to ``trainer_state``, ``log_metric`` and ``log_extra``. The trainer awaits an
``async def __call__`` of a callable object on its own event loop (a daemon
thread), turns ``None`` into NaN, leaves NaN rows out of the group mean and
standard deviation and gives them advantage 0 (TRL >= 1.16; older releases
made an all-None row a reward of 0).

:class:`GRPOReward` is that function for any reward of the registry (PERM,
PereGRM, RLPA, ...):

- **Plain data in, judge built where it runs.** It holds a
  :class:`~attunement.judging.RewardSpec`; the judge and the reward are built
  on first call, on the event loop that calls it, and closed by
  :meth:`GRPOReward.aclose`. Nothing live is pickled or shared across loops.
- **Group-aware.** TRL lays out a prompt's ``num_generations`` completions
  next to each other. Each run of ``num_generations`` rows must belong to one
  example (checked: a batch whose shape or ids say otherwise is an error, not a
  silent mis-join), and the whole group goes to ``RewardModel.score`` at once,
  so work shared by the group (PereGRM's criteria) is done once.
- **Fresh criteria per step, one set per group.** The criteria round is the
  trainer's ``global_step``.
- **Bounded and timed.** Judge calls are bounded by the reward's own semaphore
  (the judge's concurrency, ``LLMOptions.concurrency``); the whole batch has a
  deadline, after which unfinished groups are unscorable. TRL itself would
  wait forever on a hung call.
- **Unscorable is None.** A reply the judge could not score (after the
  client's retries and the reward's re-draws), or not before the deadline, is
  ``None``: counted, logged, written with its reason; never a constant. If
  every reply of ``abort_after`` consecutive batches is unscorable, the judge
  is down and training stops with :class:`JudgeUnavailableError` rather than
  spending steps that cannot learn.
- **Looked up by id.** Rows carry ``example_id`` only; the examples are given
  to the reward when it is made, so no persona or memory travels through
  TRL's columns (which TRL prints in its logs).
- **Thinking kept.** When the tokenizer has a response template, TRL parses
  each completion into a message whose ``reasoning_content`` holds the
  thinking; it is the reply's analysis, as a ``<think>`` block in the text is.
- **Real token counts.** ``Reply.completion_tokens`` is ``len(completion_ids)``
  (the thinking and the analysis included, as the PERM authors count) and the
  policy tokenizer measures the response for ``length_on="response"``.
- **Watched.** With a :class:`~attunement.training.monitor.MonitorSettings`,
  the hacking monitor sees every scored batch and reports every ``every``
  batches under ``monitor/`` (docs/training.md).
- **The same metrics every step.** Through TRL's ``log_metric``, under
  ``rewards/<kind>/``: one key per dimension (judge scale), per reward term,
  unscorable / parse-failure / judge-error / re-draw rates, the policy's
  format rate, judge calls and tokens, and seconds. The keys depend only on
  the reward config, so every step and every rank logs the same set (TRL
  gathers the key names across ranks and averages the values).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from attunement.jsonl import JsonlAppender
from attunement.judging.base import RewardModel, TokenCounter
from attunement.judging.registry import RewardSpec, parse_reward_name
from attunement.llm.base import ChatModel, ChatRequest, Completion, LLMError
from attunement.policy import parse_reply
from attunement.records import Example, Reply, RewardBreakdown, Usage
from attunement.training.monitor import HackingMonitor, MonitorReport, MonitorSettings

#: seconds a whole batch may take to score before unfinished groups are unscorable
DEFAULT_DEADLINE = 900.0


class JudgeUnavailableError(RuntimeError):
    """Every reply of several consecutive batches was unscorable."""


def dimension_names(config: Any) -> tuple[str, ...]:
    """The dimensions a reward config scores (``RewardConfig``, ``RLPAConfig``, ...)."""
    return tuple(getattr(config, "dimensions", ()))


def term_names(config: Any) -> tuple[str, ...]:
    """The additive terms a reward config produces, known before any scoring.

    >>> from attunement.judging import PermConfig
    >>> term_names(PermConfig())
    ('r_emp', 'bystander_penalty', 'length_penalty')
    """
    named = getattr(config, "term_names", None)
    if named is not None:
        return tuple(named)
    terms = ["r_emp"]
    if getattr(config, "use_bystander", False):
        terms.append("bystander_penalty")
    if getattr(config, "length_penalty", False):
        terms.append("length_penalty")
    return tuple(terms)


#: message fields in which a parsed completion carries its thinking (TRL's response
#: templates: ``reasoning_content`` for most families, ``thinking`` for LFM2.5)
THINKING_FIELDS = ("reasoning_content", "thinking")


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a conversational list of messages.

    A message's thinking (``reasoning_content``, set when the tokenizer has a
    response template) comes first as a ``<think>`` block, which the policy's
    parser reads as the analysis.

    >>> completion_text([{"role": "assistant", "reasoning_content": "She is tired.",
    ...                   "content": "That sounds hard."}])
    '<think>\\nShe is tired.\\n</think>\\n\\nThat sounds hard.'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = []
        for m in completion:
            if not isinstance(m, dict) or m.get("role", "assistant") != "assistant":
                continue
            thought = next((m[f] for f in THINKING_FIELDS if m.get(f)), None)
            if isinstance(thought, str) and thought.strip():
                parts.append(f"<think>\n{thought.strip()}\n</think>\n\n")
            parts.append(str(m.get("content") or ""))
        return "".join(parts)
    raise TypeError(f"unexpected completion of type {type(completion).__name__}")


def examples_by_id(examples: Sequence[Example] | Mapping[str, Example]) -> dict[str, Example]:
    """The examples a reward looks rows up in, by id (a duplicate id is an error)."""
    if isinstance(examples, Mapping):
        return dict(examples)
    out: dict[str, Example] = {}
    for ex in examples:
        if ex.example_id in out:
            raise ValueError(f"example_id {ex.example_id!r} appears twice in the examples")
        out[ex.example_id] = ex
    return out


def group_bounds(example_ids: Sequence[str], group_size: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` of the groups in a batch, after checking its shape.

    >>> group_bounds(["a", "a", "b", "b"], 2)
    [(0, 2), (2, 4)]
    >>> group_bounds(["a", "b", "a", "b"], 2)
    Traceback (most recent call last):
    ...
    ValueError: rows 0-1 of the batch hold completions of 2 examples ('a', 'b'); a group of 2 completions of one prompt must be contiguous on one process (per_device_train_batch_size * steps_per_generation must be a multiple of num_generations)
    """
    n = len(example_ids)
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if n % group_size:
        raise ValueError(
            f"the batch has {n} completions, not a multiple of num_generations="
            f"{group_size}: a prompt's group was split across processes or steps"
        )
    bounds = []
    for start in range(0, n, group_size):
        ids = list(dict.fromkeys(example_ids[start : start + group_size]))
        if len(ids) != 1:
            shown = ", ".join(repr(i) for i in ids[:3])
            raise ValueError(
                f"rows {start}-{start + group_size - 1} of the batch hold completions of "
                f"{len(ids)} examples ({shown}); a group of {group_size} completions of one "
                "prompt must be contiguous on one process (per_device_train_batch_size * "
                "steps_per_generation must be a multiple of num_generations)"
            )
        bounds.append((start, start + group_size))
    return bounds


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def batch_metrics(
    breakdowns: Sequence[RewardBreakdown],
    replies: Sequence[Reply],
    *,
    dimensions: Sequence[str],
    terms: Sequence[str],
    seconds: float,
    group_seconds: Sequence[float],
    late: int,
) -> dict[str, float]:
    """The per-step metrics of one batch (keys fixed by ``dimensions`` and ``terms``).

    Dimension and term means are over the replies that have them; a dimension
    no reply of the batch could be scored on is NaN (TRL logs it as null).
    """
    n = len(breakdowns)
    out: dict[str, float] = {}
    for dim in dimensions:
        out[dim] = _mean(
            [b.dimensions[dim] for b in breakdowns if b.dimensions.get(dim) is not None]
        )  # type: ignore[misc]
    for term in terms:
        out[f"terms/{term}"] = _mean([b.terms[term] for b in breakdowns if term in b.terms])
    judgements = [j for b in breakdowns for j in b.judgements]
    errors = [j for j in judgements if j.score is None and not j.raw]
    unreadable = [j for j in judgements if j.score is None and j.raw]
    usage = Usage()
    for b in breakdowns:
        usage = usage + b.usage
    out.update(
        {
            "unscorable_frac": sum(b.unscorable for b in breakdowns) / n if n else 0.0,
            # share of replies whose judged text carried a verdict or fence shape
            "verdict_in_reply": sum(bool(b.verdict_in_reply) for b in breakdowns) / n if n else 0.0,
            "late_frac": late / n if n else 0.0,
            "parse_failure_frac": len(unreadable) / len(judgements) if judgements else 0.0,
            "judge_error_frac": len(errors) / len(judgements) if judgements else 0.0,
            "redrawn_frac": (
                sum(j.attempts > 1 for j in judgements) / len(judgements) if judgements else 0.0
            ),
            "format_ok_frac": sum(r.format_ok for r in replies) / n if n else 0.0,
            "judge_calls": float(usage.calls),
            "judge_cached_samples": float(usage.cached_calls),
            "judge_prompt_tokens": float(usage.prompt_tokens),
            "judge_completion_tokens": float(usage.completion_tokens),
            "seconds": seconds,
            "group_seconds": _mean(group_seconds) if group_seconds else 0.0,
        }
    )
    return out


def metric_keys(spec: RewardSpec) -> list[str]:
    """Every key :class:`GRPOReward` logs each step, prefixed as TRL shows them."""
    config = spec.config()
    prefix = f"rewards/{parse_reward_name(spec.reward)[0]}/"
    sample = batch_metrics(
        [],
        [],
        dimensions=dimension_names(config),
        terms=term_names(config),
        seconds=0.0,
        group_seconds=[],
        late=0,
    )
    return [prefix + key for key in sample]


class _PreflightJudge(ChatModel):
    """Stands in for the judge while settings are checked; it is never called."""

    name = "preflight"

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        raise LLMError("the preflight judge answers nothing")


def check_examples(spec: RewardSpec, examples: Sequence[Example]) -> None:
    """Raise ``ValueError`` if the reward cannot score some example (e.g. PereGRM's
    fixed criteria are missing), before any model is loaded or judge called."""
    spec.load(_PreflightJudge()).check_examples(examples)


class GRPOReward:
    """``reward_funcs`` for TRL's ``GRPOTrainer``, backed by a :class:`RewardSpec`.

    >>> reward = GRPOReward(RewardSpec(reward="peregrm", judge="openai:http://judge:8000/v1"),
    ...                     num_generations=8, examples=examples)  # doctest: +SKIP
    >>> GRPOTrainer(model, reward_funcs=reward, args=GRPOConfig(num_generations=8), ...)
    ... # doctest: +SKIP

    The dataset needs an ``example_id`` column naming one of ``examples``;
    :func:`attunement.training.data.grpo_row` writes it.
    """

    def __init__(
        self,
        spec: RewardSpec,
        *,
        num_generations: int,
        examples: Sequence[Example] | Mapping[str, Example],
        token_counter: TokenCounter | None = None,
        deadline: float | None = DEFAULT_DEADLINE,
        abort_after: int = 5,
        policy: str | None = None,
        record: str | Path | None = None,
        on_batch: Callable[[dict[str, Any]], None] | None = None,
        monitor: MonitorSettings | None = None,
        on_report: Callable[[MonitorReport], None] | None = None,
    ):
        config = spec.config()  # bad settings fail here, in the main process, before training
        if num_generations < 1:
            raise ValueError(f"num_generations must be >= 1, got {num_generations}")
        if deadline is not None and deadline <= 0:
            raise ValueError(f"deadline must be > 0 seconds, got {deadline}")
        self.spec = spec
        self.num_generations = num_generations
        self.token_counter = token_counter
        self.deadline = deadline
        self.abort_after = abort_after
        self.policy = policy
        self.record = Path(record) if record is not None else None
        self.on_batch = on_batch
        self.examples = examples_by_id(examples)
        self.monitor = (
            HackingMonitor(monitor, self.examples)
            if monitor is not None and monitor.every
            else None
        )
        self.on_report = on_report
        kind, _ = parse_reward_name(spec.reward)
        #: TRL names the reward function after this (metric keys ``rewards/<kind>/...``)
        self.__name__ = kind
        self.dimensions = dimension_names(config)
        self.terms = term_names(config)
        self.batches = 0
        self._failed_streak = 0
        self._stack: AsyncExitStack | None = None
        self._reward: RewardModel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._sink: JsonlAppender | None = None

    # ------------------------------------------------------------------ lifetime

    async def reward_model(self) -> RewardModel:
        """The reward, built on first use on the running event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lock is None:
            # first call, or a new loop: a judge client bound to the old loop is unusable
            self._reward, self._stack, self._loop = None, None, loop
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._reward is None:
                stack = AsyncExitStack()
                self._reward = await stack.enter_async_context(
                    self.spec.open(token_counter=self.token_counter)
                )
                self._stack = stack
        return self._reward

    async def aclose(self) -> None:
        """Close the judge (on the loop that built it) and the record file."""
        if self._stack is not None:
            stack, self._stack, self._reward = self._stack, None, None
            await stack.aclose()
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def manifest(self) -> dict[str, Any] | None:
        """The built reward's manifest (None before the first batch)."""
        return self._reward.manifest() if self._reward is not None else None

    # ------------------------------------------------------------------ the call

    async def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        completion_ids: list[list[int]] | None = None,
        *,
        example_id: list[str],
        trainer_state: Any = None,
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list[Any]], None] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        started = time.perf_counter()
        n = len(completions)
        if len(example_id) != n or len(prompts) != n:
            raise ValueError(
                f"{n} completions but {len(prompts)} prompts and {len(example_id)} example ids"
            )
        if completion_ids is not None and len(completion_ids) != n:
            raise ValueError(f"{n} completions but {len(completion_ids)} completion_ids")
        step = int(trainer_state.global_step) if trainer_state is not None else self.batches
        unknown = sorted(set(example_id) - set(self.examples))
        if unknown:
            raise ValueError(
                f"example_id {unknown[0]!r} of the batch is not among the reward's "
                f"{len(self.examples)} examples"
            )
        rows = [self.examples[i] for i in example_id]
        bounds = group_bounds(list(example_id), self.num_generations)
        replies = [
            self._reply(
                rows[i],
                completions[i],
                completion_ids[i] if completion_ids is not None else None,
                step=step,
                index=i % self.num_generations,
            )
            for i in range(n)
        ]
        reward = await self.reward_model()
        groups = [(rows[s], replies[s:e]) for s, e in bounds]
        breakdowns, group_seconds, late = await self._score(reward, groups, step)
        seconds = time.perf_counter() - started
        self.batches += 1
        metrics = batch_metrics(
            breakdowns,
            replies,
            dimensions=self.dimensions,
            terms=self.terms,
            seconds=seconds,
            group_seconds=group_seconds,
            late=late,
        )
        if log_metric is not None:
            for key, value in metrics.items():
                log_metric(f"rewards/{self.__name__}/{key}", value)
        if log_extra is not None:
            log_extra(
                f"{self.__name__}/unscorable",
                [b.reason if b.unscorable else None for b in breakdowns],
            )
        self._write(step, replies, breakdowns)
        if self.on_batch is not None:
            self.on_batch({"step": step, **metrics})
        self._check_alive(breakdowns)
        if self.monitor is not None:
            scored = [
                (rows[s], replies[s:e], [b.reward for b in breakdowns[s:e]]) for s, e in bounds
            ]
            await self._watch(self.monitor, reward, scored, step, log_metric)
        return [b.reward for b in breakdowns]

    async def _watch(
        self,
        monitor: HackingMonitor,
        reward: RewardModel,
        groups: list[tuple[Example, list[Reply], list[float | None]]],
        step: int,
        log_metric: Callable[[str, float], None] | None,
    ) -> None:
        """Hand the batch to the hacking monitor; log its report when one is due."""
        if not monitor.observe(groups):
            return
        report = await monitor.report(step, reward, timeout=self.deadline)
        if log_metric is not None:
            for key, value in report.metrics.items():
                log_metric(f"monitor/{key}", value)
        if self.on_report is not None:
            self.on_report(report)

    def _reply(
        self, example: Example, completion: Any, ids: list[int] | None, *, step: int, index: int
    ) -> Reply:
        text = completion_text(completion)
        parsed = parse_reply(text)
        return Reply(
            example_id=example.example_id,
            reply_id=f"{example.example_id}:step{step}:{index}",
            response=parsed.response,
            analysis=parsed.analysis,
            raw=text,
            format_ok=parsed.format_ok,
            policy=self.policy,
            sample_index=index,
            completion_tokens=len(ids) if ids is not None else None,
        )

    async def _score(
        self, reward: RewardModel, groups: list[tuple[Example, list[Reply]]], step: int
    ) -> tuple[list[RewardBreakdown], list[float], int]:
        """Score every group concurrently, under the batch deadline."""

        async def timed(example: Example, replies: list[Reply]):
            t0 = time.perf_counter()
            out = await reward.score(example, replies, criteria_round=step)
            return out, time.perf_counter() - t0

        tasks = [asyncio.ensure_future(timed(ex, rs)) for ex, rs in groups]
        if not tasks:
            return [], [], 0
        _, pending = await asyncio.wait(tasks, timeout=self.deadline)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        breakdowns: list[RewardBreakdown] = []
        group_seconds: list[float] = []
        late = 0
        for task, (example, replies) in zip(tasks, groups, strict=True):
            if task in pending:
                late += len(replies)
                reason = f"not scored within the batch deadline of {self.deadline:g} s"
                breakdowns += [self._unscorable(reward, r, reason) for r in replies]
                continue
            error = task.exception()
            if isinstance(error, LLMError):
                breakdowns += [
                    self._unscorable(reward, r, f"judge failed: {error}") for r in replies
                ]
                continue
            if error is not None:
                raise error
            scored, secs = task.result()
            by_id = {b.reply_id: b for b in scored}
            breakdowns += [by_id[r.reply_id] for r in replies]  # joined by id, not position
            group_seconds.append(secs)
        return breakdowns, group_seconds, late

    @staticmethod
    def _unscorable(reward: RewardModel, reply: Reply, reason: str) -> RewardBreakdown:
        return RewardBreakdown(
            example_id=reply.example_id,
            reply_id=reply.reply_id,
            reward_model=reward.name,
            reward=None,
            unscorable=True,
            reason=reason,
        )

    def _write(self, step: int, replies: list[Reply], breakdowns: list[RewardBreakdown]) -> None:
        if self.record is None:
            return
        if self._sink is None:
            self._sink = JsonlAppender(self.record)
        for reply, b in zip(replies, breakdowns, strict=True):
            self._sink.write(
                {
                    "step": step,
                    "reply": json.loads(reply.model_dump_json()),
                    "breakdown": json.loads(b.model_dump_json()),
                }
            )

    def _check_alive(self, breakdowns: list[RewardBreakdown]) -> None:
        if breakdowns and all(b.unscorable for b in breakdowns):
            self._failed_streak += 1
        else:
            self._failed_streak = 0
        if self.abort_after and self._failed_streak >= self.abort_after:
            reasons = sorted({b.reason or "" for b in breakdowns})[:3]
            raise JudgeUnavailableError(
                f"every reply of the last {self._failed_streak} batches was unscorable, so "
                f"training cannot learn; is the judge {self.spec.judge!r} up? Reasons: "
                + " | ".join(reasons)
            )
