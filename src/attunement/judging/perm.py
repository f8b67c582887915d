"""PERM: four LLM judges with fixed psychology-grounded rubrics (seed 003).

- resonation rates the reply's *analysis* (``resonation_on="response"`` to
  rate the response instead), expression and reception rate the *response*,
  each on 1-5;
- the bystander rates the response on five 0-20 parts (total 0-100);
- ``r = r_emp + lambda_bys * (R_bys - 1) + r_len``.

Every judge call of a group is independent, so all of them (replies x
dimensions) are launched together; ``k`` samples per call use ``n=k``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from attunement.judging.base import JudgeReward, PermConfig, TokenCounter
from attunement.judging.parsing import parse_rating
from attunement.judging.templates import (
    fenced_judged,
    fenced_message,
    reason_score_schema,
    render_context,
    snippet,
    template,
)
from attunement.llm.base import ChatModel
from attunement.records import Dimension, Example, Judgement, Reply, Usage


class PermReward(JudgeReward):
    kind = "perm"
    config: PermConfig

    def prompt_names(self) -> list[str]:
        names = [f"perm_{d}" for d in self.config.empathy_dimensions]
        names.append(f"judge_format_reason_score_{self.fmt}")
        if self.config.use_bystander:
            names += ["judge_bystander", f"judge_format_bystander_{self.bystander_fmt}"]
        return names

    def messages(self, example: Example, reply: Reply, dimension: Dimension):
        """The judge prompt for one empathy dimension of one reply."""
        on_analysis = dimension == "resonation" and self.config.resonation_on == "analysis"
        judged = (fenced_judged("analysis", reply.analysis) if on_analysis
                  else fenced_judged("response", reply.response))
        return template(f"perm_{dimension}").render(
            context=render_context(example, include_memories=self.config.include_memories),
            message=fenced_message(example), judged=judged,
            output_format=snippet(f"judge_format_reason_score_{self.fmt}"))

    async def _rate(self, example: Example, reply: Reply,
                    dimension: Dimension) -> tuple[list[Judgement], Usage]:
        samples, usage = await self.sample(
            self.messages(example, reply, dimension), k=self.config.k,
            temperature=self.config.temperature,
            schema=reason_score_schema(self.config.json_text_chars),
            parse=lambda text: parse_rating(text, fmt=self.fmt))
        return self.rating_judgements(dimension, samples), usage

    async def _judge_reply(self, example: Example, reply: Reply) -> tuple[list[Judgement], Usage]:
        jobs = [self._rate(example, reply, d) for d in self.config.empathy_dimensions]
        if self.config.use_bystander:
            jobs.append(self.judge_bystander(example, reply))
        results = await asyncio.gather(*jobs)
        judgements = [j for js, _ in results for j in js]
        usage = Usage()
        for _, u in results:
            usage = usage + u
        return judgements, usage

    async def judge_group(self, example: Example, replies: Sequence[Reply], *,
                          criteria_round: int = 0) -> dict[str, tuple[list[Judgement], Usage]]:
        # PERM has no reply-independent judge work: criteria_round changes nothing
        results = await asyncio.gather(*(self._judge_reply(example, r) for r in replies))
        return {r.reply_id: res for r, res in zip(replies, results)}


def perm_reward(judge: ChatModel, config: PermConfig | None = None, *,
                token_counter: TokenCounter | None = None) -> PermReward:
    """PERM with ``judge`` as every judge.

    ``token_counter`` measures the response for the length penalty (pass the
    policy tokenizer's count; the default is an approximate word/punctuation
    count).
    """
    return PermReward(judge, config or PermConfig(), token_counter=token_counter)
