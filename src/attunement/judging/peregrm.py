"""PereGRM: personalised criteria first, then a score against them (seed 000).

For each of resonation, expression and reception the judge writes criteria
for *this* user (persona, memories, situation, query) and scores the reply
against them on 1-5; ``k`` independent samples are averaged (PereGRM@k).
The bystander penalty is PERM's.

Criteria modes (``PereGRMConfig.criteria_mode``):

``shared`` (default)
    Criteria are written once per (example, dimension, sample ``j``), with
    ``n=k`` in one request, and every reply of the group is scored against
    criteria set ``j`` for ``j = 0..k-1``. This is the paper's formulation
    (criteria are conditioned on the user and query, not on the reply), it
    judges all replies of a GRPO group by the same yardsticks, and it writes
    the criteria once instead of once per reply. Concurrent ``score`` calls
    for the same example share one in-flight criteria request.
``inline``
    One call per (reply, dimension) writes criteria, analysis and score
    together, ``n=k`` samples per call (the authors' training code).
``fixed``
    Criteria prepared ahead of time (:func:`attunement.judging.prepare_criteria`)
    and stored in ``Example.criteria``; scoring at ``fixed_temperature`` (0).
    This is the authors' evaluation protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from attunement.judging.base import (
    JudgeReward,
    PereGRMConfig,
    Sample,
    TokenCounter,
    round_seed,
)
from attunement.judging.parsing import parse_criteria, parse_rating
from attunement.judging.templates import (
    criteria_schema,
    fenced_judged,
    fenced_message,
    inline_schema,
    render_context,
    score_schema,
    snippet,
    template,
)
from attunement.llm.base import ChatModel, Message
from attunement.records import Dimension, Example, Judgement, Reply, Usage

#: how many finished criteria sets are remembered across score() calls
CRITERIA_MEMO_SIZE = 512


@dataclass(frozen=True)
class CriteriaSet:
    """The k criteria samples of one (example, dimension); failed slots have text None."""

    slots: tuple[Sample | None, ...]
    usage: Usage

    def text(self, j: int) -> str | None:
        s = self.slots[j]
        return s.verdict.text if (s is not None and s.ok) else None

    def failure(self, j: int) -> str:
        s = self.slots[j]
        return s.reason or "no criteria" if s is not None else "no criteria sample"


def criteria_messages(example: Example, dimension: Dimension, fmt: str) -> list[Message]:
    """The prompt asking for weighted criteria for one example and dimension."""
    return template("peregrm_criteria").render(
        dimension=dimension, definition=snippet(f"peregrm_def_{dimension}"),
        context=render_context(example, include_memories=True),
        message=fenced_message(example),
        output_format=snippet(f"peregrm_format_criteria_{fmt}"))


class PereGRMReward(JudgeReward):
    kind = "peregrm"
    config: PereGRMConfig

    def __init__(self, judge: ChatModel, config: PereGRMConfig, *,
                 token_counter: TokenCounter | None = None):
        super().__init__(judge, config, token_counter=token_counter)
        self._memo: OrderedDict[str, asyncio.Task[CriteriaSet]] = OrderedDict()
        self._memo_loop: asyncio.AbstractEventLoop | None = None
        #: criteria requests actually started (for tests and benchmarks)
        self.criteria_requests = 0

    def prompt_names(self) -> list[str]:
        dims = self.config.empathy_dimensions
        names = [f"peregrm_def_{d}" for d in dims]
        mode = self.config.criteria_mode
        if mode == "inline":
            names += ["peregrm_inline", f"peregrm_format_inline_{self.fmt}"]
        else:
            names += ["peregrm_score", f"peregrm_format_score_{self.fmt}"]
        if mode == "shared":
            names += ["peregrm_criteria", f"peregrm_format_criteria_{self.fmt}"]
        if self.config.use_bystander:
            names += ["judge_bystander", f"judge_format_bystander_{self.bystander_fmt}"]
        return names

    def check_examples(self, examples: Sequence[Example]) -> None:
        if self.config.criteria_mode != "fixed":
            return
        missing = [f"{e.example_id} ({', '.join(d for d in self.config.empathy_dimensions if not e.criteria.get(d, '').strip())})"
                   for e in examples
                   if any(not e.criteria.get(d, "").strip() for d in self.config.empathy_dimensions)]
        if missing:
            shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ValueError(f"criteria_mode='fixed' needs Example.criteria for every scored "
                             f"dimension; missing for {len(missing)} example(s): {shown}. "
                             "Prepare them with `attune criteria` first.")

    # ------------------------------------------------------------------ prompts

    def _judged(self, reply: Reply, dimension: Dimension) -> tuple[str, str]:
        if dimension == "resonation" and self.config.resonation_on == "analysis":
            return "analysis", fenced_judged("analysis", reply.analysis)
        return "response", fenced_judged("response", reply.response)

    def inline_messages(self, example: Example, reply: Reply, dimension: Dimension) -> list[Message]:
        label, judged = self._judged(reply, dimension)
        return template("peregrm_inline").render(
            dimension=dimension, definition=snippet(f"peregrm_def_{dimension}"),
            context=render_context(example, include_memories=True),
            message=fenced_message(example), judged_label=label, judged=judged,
            output_format=snippet(f"peregrm_format_inline_{self.fmt}"))

    def score_messages(self, example: Example, reply: Reply, dimension: Dimension,
                       criteria: str) -> list[Message]:
        label, judged = self._judged(reply, dimension)
        return template("peregrm_score").render(
            dimension=dimension, definition=snippet(f"peregrm_def_{dimension}"),
            criteria=criteria.strip(),
            context=render_context(example, include_memories=True),
            message=fenced_message(example), judged_label=label, judged=judged,
            output_format=snippet(f"peregrm_format_score_{self.fmt}"))

    def _parse_score(self, text: str):
        return parse_rating(text, fmt=self.fmt)

    # ------------------------------------------------------------------ shared criteria

    def _criteria_task(self, example: Example, dimension: Dimension, criteria_round: int = 0
                       ) -> tuple[asyncio.Task[CriteriaSet], bool]:
        """The (possibly in-flight) criteria of one example and dimension.

        Returns the task and whether this call created it. Keyed by the exact
        prompt and sampling parameters, so two examples that share an id but
        not their content never share criteria.
        """
        loop = asyncio.get_running_loop()
        if self._memo_loop is not loop:
            self._memo.clear()
            self._memo_loop = loop
        messages = criteria_messages(example, dimension, self.fmt)
        seed = round_seed(self.config.seed, criteria_round)
        key = hashlib.sha256(json.dumps(
            [messages, self.config.k, self.config.criteria_temperature, seed,
             self.config.max_tokens, self.fmt, self.judge.name],
            sort_keys=True).encode()).hexdigest()
        task = self._memo.get(key)
        if task is not None and not (task.done() and (task.cancelled() or task.exception())):
            self._memo.move_to_end(key)
            return task, False
        task = loop.create_task(self._write_criteria(messages, seed))
        self._memo[key] = task
        task.add_done_callback(lambda t, key=key: self._forget_failed(key, t))
        while len(self._memo) > CRITERIA_MEMO_SIZE:
            oldest = next(iter(self._memo))
            if not self._memo[oldest].done():
                break
            self._memo.pop(oldest)
        return task, True

    def _forget_failed(self, key: str, task: asyncio.Task[CriteriaSet]) -> None:
        """A criteria set with a failed slot is not reused by later calls (they retry)."""
        if task.cancelled() or task.exception() is not None:
            self._memo.pop(key, None)
            return
        result = task.result()
        if any(s is None or not s.ok for s in result.slots) and self._memo.get(key) is task:
            self._memo.pop(key, None)

    async def _write_criteria(self, messages: list[Message], seed: int | None) -> CriteriaSet:
        self.criteria_requests += 1
        k = self.config.k
        samples, usage = await self.sample(
            messages, k=k, temperature=self.config.criteria_temperature, seed=seed,
            schema=criteria_schema(self.config.json_text_chars),
            parse=lambda text: parse_criteria(text, fmt=self.fmt, min_items=1, max_items=8))
        # slot j takes the j-th valid sample; the remaining slots the failures
        valid = [s for s in samples if s.ok]
        failed = [s for s in samples if not s.ok]
        slots: list[Sample | None] = valid[:k]
        while len(slots) < k:
            slots.append(failed.pop() if failed else None)
        return CriteriaSet(slots=tuple(slots), usage=usage)

    # ------------------------------------------------------------------ judging

    async def _score_against(self, example: Example, reply: Reply, dimension: Dimension,
                             criteria: str, *, k: int, temperature: float,
                             index: int | None) -> tuple[list[Judgement], Usage]:
        samples, usage = await self.sample(
            self.score_messages(example, reply, dimension, criteria), k=k,
            temperature=temperature, schema=score_schema(self.config.json_text_chars), parse=self._parse_score)
        return self.rating_judgements(dimension, samples, criteria=criteria, index=index), usage

    async def _shared_dim(self, example: Example, reply: Reply, dimension: Dimension,
                          task: asyncio.Task[CriteriaSet]) -> tuple[list[Judgement], Usage]:
        # shielded: a caller that gives up on this reply (a deadline) must not
        # cancel the criteria its group mates are waiting for
        criteria = await asyncio.shield(task)
        jobs = []
        failures: list[Judgement] = []
        for j in range(self.config.k):
            text = criteria.text(j)
            if text is None:
                failures.append(Judgement(dimension=dimension, score=None, sample_index=j,
                                          reason=f"criteria sample {j} unusable: "
                                                 f"{criteria.failure(j)}"))
                continue
            jobs.append(self._score_against(example, reply, dimension, text, k=1,
                                            temperature=self.config.temperature, index=j))
        results = await asyncio.gather(*jobs)
        usage = Usage()
        judgements = list(failures)
        for js, u in results:
            judgements += js
            usage = usage + u
        return judgements, usage

    async def _inline_dim(self, example: Example, reply: Reply,
                          dimension: Dimension) -> tuple[list[Judgement], Usage]:
        samples, usage = await self.sample(
            self.inline_messages(example, reply, dimension), k=self.config.k,
            temperature=self.config.temperature,
            schema=inline_schema(self.config.json_text_chars), parse=self._parse_score)
        return self.rating_judgements(dimension, samples), usage

    async def _judge_reply(self, example: Example, reply: Reply,
                           tasks: dict[str, asyncio.Task[CriteriaSet]]
                           ) -> tuple[list[Judgement], Usage]:
        mode = self.config.criteria_mode
        jobs = []
        for dim in self.config.empathy_dimensions:
            if mode == "shared":
                jobs.append(self._shared_dim(example, reply, dim, tasks[dim]))
            elif mode == "inline":
                jobs.append(self._inline_dim(example, reply, dim))
            else:
                jobs.append(self._score_against(example, reply, dim, example.criteria[dim],
                                                k=self.config.k,
                                                temperature=self.config.fixed_temperature,
                                                index=None))
        if self.config.use_bystander:
            jobs.append(self.judge_bystander(example, reply))
        results = await asyncio.gather(*jobs)
        usage = Usage()
        judgements: list[Judgement] = []
        for js, u in results:
            judgements += js
            usage = usage + u
        return judgements, usage

    async def judge_group(self, example: Example, replies: Sequence[Reply], *,
                          criteria_round: int = 0) -> dict[str, tuple[list[Judgement], Usage]]:
        tasks: dict[str, asyncio.Task[CriteriaSet]] = {}
        created: list[asyncio.Task[CriteriaSet]] = []
        if self.config.criteria_mode == "shared":
            for dim in self.config.empathy_dimensions:
                tasks[dim], new = self._criteria_task(example, dim, criteria_round)
                if new:
                    created.append(tasks[dim])
        results = await asyncio.gather(*(self._judge_reply(example, r, tasks) for r in replies))
        out = {r.reply_id: res for r, res in zip(replies, results)}
        # work shared by the group is booked on its first reply, so totals add up
        if created:
            first = replies[0].reply_id
            judgements, usage = out[first]
            for task in created:
                usage = usage + task.result().usage
            out[first] = (judgements, usage)
        return out


def peregrm_reward(judge: ChatModel, config: PereGRMConfig | None = None, *,
                   token_counter: TokenCounter | None = None) -> PereGRMReward:
    """PereGRM with ``judge`` writing criteria and scores (``config.k`` samples)."""
    return PereGRMReward(judge, config or PereGRMConfig(), token_counter=token_counter)

