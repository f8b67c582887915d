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
from collections.abc import Iterator, Sequence

from attunement.judging.answers import RatingAnswer
from attunement.judging.base import JudgeReward, PermConfig, TokenCounter
from attunement.judging.parsing import parse_rating
from attunement.judging.templates import (
    fenced_judged,
    prompt_piece,
    render_message,
    render_prompt,
    schema,
)
from attunement.llm.base import ChatModel, Message
from attunement.records import Dimension, Example, Judgement, Reply, Usage


class PermReward(JudgeReward):
    kind = "perm"
    config: PermConfig

    def messages(self, example: Example, reply: Reply, dimension: Dimension) -> list[Message]:
        """The judge prompt for one empathy dimension of one reply."""
        analysis, response = self.judged_texts(reply)
        on_analysis = dimension == "resonation" and self.config.resonation_on == "analysis"
        judged = (
            fenced_judged("analysis", analysis)
            if on_analysis
            else fenced_judged("response", response)
        )
        return render_prompt(
            f"perm_{dimension}",
            context=self.context(example),
            message=render_message(example),
            judged=judged,
            output_format=prompt_piece(f"judge_format_reason_score_{self.fmt}"),
        )

    def probe_prompts(self, example: Example, reply: Reply) -> Iterator[list[Message]]:
        for dimension in self.config.empathy_dimensions:
            yield self.messages(example, reply, dimension)
        if self.config.use_bystander:
            yield self.bystander_messages(example, reply)

    async def _rate(
        self, example: Example, reply: Reply, dimension: Dimension
    ) -> tuple[list[Judgement], Usage]:
        untrusted = self.untrusted(example, reply)
        samples, usage = await self.sample(
            self.messages(example, reply, dimension),
            k=self.config.k,
            temperature=self.config.temperature,
            schema=schema(RatingAnswer, self.config.json_text_chars),
            parse=lambda text: parse_rating(
                text, fmt=self.fmt, answer=RatingAnswer, untrusted=untrusted
            ),
        )
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

    async def judge_group(
        self, example: Example, replies: Sequence[Reply], *, criteria_round: int = 0
    ) -> dict[str, tuple[list[Judgement], Usage]]:
        # PERM has no reply-independent judge work: criteria_round changes nothing
        results = await asyncio.gather(*(self._judge_reply(example, r) for r in replies))
        return {r.reply_id: res for r, res in zip(replies, results)}


def perm_reward(
    judge: ChatModel, config: PermConfig | None = None, *, token_counter: TokenCounter | None = None
) -> PermReward:
    """PERM with ``judge`` as every judge.

    ``token_counter`` measures text for the length penalty (pass the policy
    tokenizer's count; without it the config's ``tokenizer`` is used, by default
    an approximate count of words, punctuation and CJK characters).
    """
    return PermReward(judge, config or PermConfig(), token_counter=token_counter)
