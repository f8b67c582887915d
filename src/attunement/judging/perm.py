"""PERM: four LLM judges with fixed psychology-grounded rubrics, and its formula (seed 003).

- resonation rates the reply's *analysis* (``resonation_on="response"`` to
  rate the response instead), expression and reception rate the *response*,
  each on the 1-5 rating scale (:mod:`attunement.judging.scale`);
- the bystander rates the response on five 0-20 parts (total 0-100);
- the reward is ``r = r_emp + lambda_bys * (R_bys - 1) + r_len``: ``r_emp``
  combines the normalised empathy ratings (harmonic mean by default,
  :mod:`attunement.judging.aggregate`), the bystander penalty lies in
  ``[-lambda_bys, 0]``, the length penalty is ``-coef * max(tokens - limit, 0)``
  (appendix A.1).

This module holds all of PERM: its settings and their defaults
(:class:`RewardConfig`, :class:`PermConfig`), its formula (:func:`perm_terms`
and the two penalties), the bystander judge, and :class:`PermReward`.
PereGRM judges the empathy dimensions its own way but keeps PERM's bystander
and formula: both build on :class:`EmpathyReward`.

Every judge call of a PERM group is independent, so all of them (replies x
dimensions) are launched together; ``k`` samples per call use ``n=k``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, model_validator

from attunement.judging.aggregate import Aggregation, aggregate
from attunement.judging.answers import BystanderAnswer, RatingAnswer
from attunement.judging.base import JudgeReward, add_usage, to_judgements
from attunement.judging.bystander import parse_bystander
from attunement.judging.kinds import register_reward
from attunement.judging.ratings import parse_rating
from attunement.judging.scale import RATING_MIN, Normalization, normalize, normalize_bystander
from attunement.judging.settings import (
    BystanderOutput,
    JudgeSamples,
    LengthOn,
    ResonationOn,
    RewardSettings,
    Unformatted,
)
from attunement.judging.templates import (
    fenced_judged,
    prompt_piece,
    render_context,
    render_message,
    render_prompt,
    schema,
)
from attunement.judging.tokens import TOKENIZER_PATTERN, TokenCounter, load_token_counter
from attunement.llm.base import ChatModel, Message
from attunement.records import EMPATHY_DIMENSIONS, Dimension, Example, Judgement, Reply, Usage

# --------------------------------------------------------------------------- the formula

#: the additive terms of PERM's reward (and PereGRM's), in the order they are reported
Term = Literal["r_emp", "bystander_penalty", "length_penalty"]
R_EMP, BYSTANDER_PENALTY, LENGTH_PENALTY = get_args(Term)

#: weight of the bystander penalty (PERM; table 7 also tries 0.1 and 1.0)
LAMBDA_BYS = 0.5
#: response tokens allowed before the length penalty, and the penalty per extra token
LENGTH_LIMIT = 768
LENGTH_COEF = 0.001
#: softmin temperature, when r_emp is a softmin (PERM eq. 7)
SOFTMIN_BETA = 1.0


def bystander_penalty(r_bys: float, lambda_bys: float = LAMBDA_BYS) -> float:
    """``lambda_bys * (R_bys - 1)``: 0 for a perfect bystander score, ``-lambda`` for 0.

    >>> bystander_penalty(0.8, 0.5)
    -0.09999999999999998
    """
    if not 0.0 <= r_bys <= 1.0:
        raise ValueError(f"normalised bystander score must lie in [0, 1], got {r_bys}")
    return lambda_bys * (r_bys - 1.0)


def length_penalty(tokens: int, *, limit: int = LENGTH_LIMIT, coef: float = LENGTH_COEF) -> float:
    """``-coef * max(tokens - limit, 0)`` (PERM appendix A.1).

    >>> length_penalty(800), length_penalty(700)
    (-0.032, 0.0)
    """
    if tokens < 0:
        raise ValueError("tokens must be >= 0")
    excess = max(tokens - limit, 0)
    return -coef * excess if excess else 0.0


class RewardConfig(RewardSettings):
    """Settings of PERM's formula and its judges, shared by PERM and PereGRM.
    Defaults follow the papers."""

    bystander_k: JudgeSamples = Field(
        1, description="bystander samples (the papers scale only the empathy dimensions)"
    )
    bystander_output: BystanderOutput = Field(
        "json",
        description="bystander answer format: schema-constrained JSON of the five "
        "sub-scores (default), the paper's text, or 'same' as `output`",
    )

    use_resonation: bool = Field(True, description="judge resonation (ablation: off)")
    use_expression: bool = Field(True, description="judge expression (ablation: off)")
    use_reception: bool = Field(True, description="judge reception (ablation: off)")
    use_bystander: bool = Field(True, description="judge the bystander and add its penalty")

    aggregation: Aggregation = Field("harmonic", description="how r_emp combines the dimensions")
    softmin_beta: float = Field(SOFTMIN_BETA, gt=0.0, description="softmin temperature")
    normalization: Normalization = Field(
        "max", description="'max': s/5 (authors' code); 'minmax': (s-1)/4"
    )
    lambda_bys: float = Field(LAMBDA_BYS, ge=0.0, description="weight of the bystander penalty")

    length_penalty: bool = Field(False, description="add the length penalty")
    length_limit: int = Field(LENGTH_LIMIT, ge=0, description="tokens allowed before penalty")
    length_coef: float = Field(LENGTH_COEF, ge=0.0, description="penalty per token over the limit")
    length_on: LengthOn = Field(
        "completion",
        description="'completion' (default): the whole completion, analysis included, "
        "Reply.completion_tokens when the trainer set it (the PERM authors' perm/grpo.py); "
        "'response': the response's tokens only",
    )
    tokenizer: str = Field(
        "approx",
        pattern=TOKENIZER_PATTERN,
        description="token counter of the length penalty when none is passed in: approx "
        "(words, punctuation, CJK characters), local[:PATH.gguf] (llama.cpp), hf:DIR",
    )
    resonation_on: ResonationOn = Field("analysis", description="what the resonation judge reads")

    @model_validator(mode="after")
    def _some_empathy(self) -> RewardConfig:
        if not self.empathy_dimensions:
            raise ValueError("at least one of resonation, expression, reception must be enabled")
        return self

    @property
    def empathy_dimensions(self) -> tuple[Dimension, ...]:
        return tuple(d for d in EMPATHY_DIMENSIONS if getattr(self, f"use_{d}"))

    @property
    def dimensions(self) -> tuple[Dimension, ...]:
        return self.empathy_dimensions + (("bystander",) if self.use_bystander else ())

    @property
    def term_names(self) -> tuple[str, ...]:
        return (
            R_EMP,
            *((BYSTANDER_PENALTY,) if self.use_bystander else ()),
            *((LENGTH_PENALTY,) if self.length_penalty else ()),
        )


def perm_terms(
    means: Mapping[str, float], config: RewardConfig, length_tokens: int | None = None
) -> dict[str, float]:
    """PERM's reward as its additive terms, from the normalised dimension means
    (and the reply's length when the length penalty is on).

    >>> means = {"resonation": 0.8, "expression": 0.6, "reception": 1.0, "bystander": 0.9}
    >>> {term: round(value, 4) for term, value in perm_terms(means, RewardConfig()).items()}
    {'r_emp': 0.766, 'bystander_penalty': -0.05}
    """
    terms = {
        R_EMP: aggregate(
            [means[d] for d in config.empathy_dimensions],
            config.aggregation,
            beta=config.softmin_beta,
        )
    }
    if config.use_bystander:
        terms[BYSTANDER_PENALTY] = bystander_penalty(means["bystander"], config.lambda_bys)
    if config.length_penalty:
        if length_tokens is None:
            raise ValueError("the length penalty needs the reply's length")
        terms[LENGTH_PENALTY] = length_penalty(
            length_tokens, limit=config.length_limit, coef=config.length_coef
        )
    return terms


# --------------------------------------------------------------------------- shared with PereGRM


class EmpathyReward(JudgeReward):
    """A reward on PERM's formula: three empathy dimensions rated 1-5, PERM's
    bystander, and the penalties. PERM and PereGRM differ only in how the
    empathy dimensions are judged."""

    config: RewardConfig

    def __init__(
        self, judge: ChatModel, config: RewardConfig, *, token_counter: TokenCounter | None = None
    ):
        self._token_counter = token_counter
        super().__init__(judge, config)

    @property
    def bystander_fmt(self) -> str:
        """The bystander's answer format (``bystander_output``, or ``output``'s)."""
        output = self.config.bystander_output
        return self.fmt if output == "same" else output

    def record_details(self) -> dict[str, Any]:
        return {"bystander_format": self.bystander_fmt}

    def manifest_details(self) -> dict[str, Any]:
        counter = self.token_counter_name if self.config.length_penalty else None
        return {"bystander_format": self.bystander_fmt, "token_counter": counter}

    def shown_texts(self, reply: Reply) -> tuple[str, ...]:
        """The response (every judge), and the analysis when the resonation judge reads it."""
        analysis, response = self.judged_texts(reply)
        reads_analysis = (
            "resonation" in self.config.empathy_dimensions
            and self.config.resonation_on == "analysis"
        )
        return (analysis, response) if reads_analysis else (response,)

    def floor(self) -> tuple[dict[str, float], dict[str, float]]:
        """Each empathy rating at its lowest (1), the bystander total at 0."""
        raw: dict[str, float] = dict.fromkeys(self.config.empathy_dimensions, float(RATING_MIN))
        normalized = {d: self.normalize_rating(RATING_MIN) for d in raw}
        if self.config.use_bystander:
            raw["bystander"] = 0.0
            normalized["bystander"] = normalize_bystander(0.0)
        return raw, normalized

    def normalize_rating(self, score: float) -> float:
        """A 1-5 rating in [0, 1], by the config's ``normalization``."""
        return normalize(score, method=self.config.normalization)

    # ------------------------------------------------------------------ length

    @property
    def token_counter(self) -> TokenCounter:
        """The counter of the length penalty: the one passed in, else the config's
        ``tokenizer`` (loaded on first use)."""
        if self._token_counter is None:
            self._token_counter = load_token_counter(self.config.tokenizer)
        return self._token_counter

    @property
    def token_counter_name(self) -> str:
        """The counter's name, for the manifest."""
        counter = self.token_counter
        return getattr(counter, "__name__", repr(counter))

    def length_tokens(self, reply: Reply) -> int:
        """The length the penalty counts (``length_on``), in the policy's tokens when known."""
        if self.config.length_on == "completion":
            if reply.completion_tokens is not None:
                return reply.completion_tokens
            whole = reply.raw or "\n\n".join(t for t in (reply.analysis, reply.response) if t)
            return self.token_counter(whole)
        return self.token_counter(self.judged_texts(reply)[1])

    def terms(
        self, reply: Reply, means: dict[str, float]
    ) -> tuple[dict[str, float], dict[str, Any]]:
        if not self.config.length_penalty:
            return perm_terms(means, self.config), {}
        tokens = self.length_tokens(reply)
        return perm_terms(means, self.config, tokens), {"length_tokens": tokens}

    # ------------------------------------------------------------------ bystander

    def bystander_context(self, example: Example) -> str:
        """The user's record as the bystander sees it (no memories in either paper)."""
        return render_context(
            example,
            judge_context=self.config.judge_context,
            include_memories=False,
            demographics=self.shows_demographics,
        )

    def bystander_messages(self, example: Example, reply: Reply) -> list[Message]:
        return render_prompt(
            "judge_bystander",
            context=self.bystander_context(example),
            message=render_message(example),
            judged=fenced_judged("response", self.judged_texts(reply)[1]),
            output_format=prompt_piece(f"judge_format_bystander_{self.bystander_fmt}"),
        )

    async def judge_bystander(
        self, example: Example, reply: Reply
    ) -> tuple[list[Judgement], Usage]:
        """The bystander's 0-100 verdict on the response (same prompt for both rewards)."""
        untrusted = self.untrusted(example, reply)
        samples, usage = await self.sample(
            self.bystander_messages(example, reply),
            k=self.config.bystander_k,
            temperature=self.config.temperature,
            schema=schema(BystanderAnswer, self.config.json_text_chars),
            parse=lambda text: parse_bystander(text, fmt=self.bystander_fmt, untrusted=untrusted),
            fmt=self.bystander_fmt,
        )
        return to_judgements("bystander", samples, normalize_bystander), usage


# --------------------------------------------------------------------------- PERM


class PermConfig(RewardConfig):
    """PERM (seed 003): generic rubrics, resonation on the analysis, length penalty on,
    an unformatted reply judged as empty (the authors' code)."""

    length_penalty: bool = Field(True, description="add the length penalty (PERM: on)")
    include_memories: bool = Field(
        False, description="show the user's memories to the judges (PERM's rubrics have none)"
    )
    unformatted: Unformatted = Field(
        "empty",
        description="the PERM authors' code scores a reply that breaks the format "
        "as empty; 'judge_whole' judges its whole text",
    )


@register_reward("perm", config=PermConfig)
class PermReward(EmpathyReward):
    """PERM's judges: one rubric per empathy dimension, then the bystander."""

    #: PERM's personas were demographics: its judges see them
    shows_demographics: ClassVar[bool] = True
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
        return to_judgements(dimension, samples, self.normalize_rating), usage

    async def _judge_reply(self, example: Example, reply: Reply) -> tuple[list[Judgement], Usage]:
        jobs = [self._rate(example, reply, d) for d in self.config.empathy_dimensions]
        if self.config.use_bystander:
            jobs.append(self.judge_bystander(example, reply))
        return add_usage(await asyncio.gather(*jobs))

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
