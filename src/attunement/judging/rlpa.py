"""RLPA: the personalisation reward the PersonaEmp paper trains as a baseline.

RLPA (Zhao et al., 2025, "Teaching Language Models to Evolve with Users")
rewards a policy on two levels: how well it has the *user's profile* right,
and whether the *user* (a simulated one) is satisfied enough to go on talking.
The PersonaEmp paper uses it as a baseline reward, reduced to what one reply
can be judged on:

- ``profile_match``: a judge who knows the persona, memories and situation
  says how well the response fits this particular user, as a number in [0, 1];
- ``would_continue``: the judge plays the user and decides whether they would
  keep the conversation going, 1 (continue) or 0 (stop).

Both are sampled ``k`` times (``rlpa@k``) and averaged, so with ``k > 1`` the
decision becomes the fraction of samples that continue. The reward is

    r = match_weight * profile_match + continue_weight * would_continue

(1 and 1 by default, so r is in [0, 2]). Unlike PERM and PereGRM there is no
empathy rubric and no bystander: RLPA rewards personal fit and engagement,
which is exactly what the baseline is there to compare against.

It follows the same rules as the other rewards: the response and the user's
message are fenced as data, a verdict is read only from the judge's final
line (or JSON object), an unreadable sample is re-drawn with fresh sample
numbers, and a reply with no valid sample for an enabled judge is unscorable
(``reward=None``) with the reasons; nothing is ever filled in.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from attunement.judging.base import JudgeSampler, RewardModel, TokenCounter, check_group
from attunement.judging.parsing import OutputFormat, Parsed, failed, last_json_object, strip_fenced
from attunement.judging.templates import (
    JSON_TEXT_CHARS,
    OutputChoice,
    fenced_judged,
    fenced_message,
    render_context,
    resolve_output,
    snippet,
    template,
    versions,
)
from attunement.llm.base import ChatModel, Message
from attunement.records import (
    RLPA_DIMENSIONS,
    Dimension,
    Example,
    Judgement,
    Reply,
    RewardBreakdown,
    Usage,
)

#: prompt file stem of each judge
_PROMPT = {"profile_match": "match", "would_continue": "continue"}


class RLPAConfig(BaseModel):
    """Settings of the RLPA baseline reward."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(1, ge=1, le=64, description="judge samples per judge, averaged")
    temperature: float = Field(0.3, ge=0.0, le=2.0, description="judge sampling temperature")
    max_tokens: int = Field(512, ge=16, description="token budget of one judge answer")
    output: OutputChoice = Field(
        "auto",
        description="judge answer format: 'text' (Match:/Decision: lines), 'json' "
        "(schema-constrained), 'auto' (json for backends that enforce schemas)",
    )
    max_resamples: int = Field(2, ge=0, description="fresh draws for unparseable samples")
    json_text_chars: int = Field(
        JSON_TEXT_CHARS, ge=20, description="maxLength of the reason in JSON answers"
    )
    seed: int | None = Field(0, description="base seed; sample i uses a seed derived from it")
    max_concurrency: int | None = Field(
        None, ge=1, description="judge calls in flight; None: the judge's max_concurrency"
    )
    use_profile_match: bool = Field(True, description="judge the fit to the user's profile")
    use_would_continue: bool = Field(True, description="ask whether the user would go on")
    match_weight: float = Field(1.0, ge=0.0, description="weight of profile_match in r")
    continue_weight: float = Field(1.0, ge=0.0, description="weight of would_continue in r")
    include_memories: bool = Field(True, description="show the user's memories to the judge")

    @model_validator(mode="after")
    def _some_judge(self) -> RLPAConfig:
        if not self.dimensions:
            raise ValueError("at least one of use_profile_match, use_would_continue must be on")
        return self

    @property
    def dimensions(self) -> tuple[Dimension, ...]:
        return tuple(d for d in RLPA_DIMENSIONS if getattr(self, f"use_{d}"))

    @property
    def term_names(self) -> tuple[str, ...]:
        """The additive terms of the reward, in the order they are reported."""
        return self.dimensions


# --------------------------------------------------------------------------- parsing

_NUM = r"(-?\d+(?:\.\d+)?)"
_MATCH_LINE = re.compile(
    r"^[ \t>*#_`-]*(?:profile[ \t_-]*)?match[ \t*_`]*[:=：][ \t*_`]*" + _NUM + r"([ \t]*%)?",
    re.IGNORECASE | re.MULTILINE,
)
_DECISION_LINE = re.compile(
    r"^[ \t>*#_`-]*decision[ \t*_`]*[:=：][ \t*_`\"'<]*([A-Za-z]+)", re.IGNORECASE | re.MULTILINE
)
_REASON = re.compile(
    r"^[ \t>*#_`-]*reason[ \t*_`]*[:：](.*?)(?=^[ \t>*#_`-]*(?:profile[ \t_-]*)?(?:match|decision)"
    r"[ \t*_`]*[:=：]|\Z)",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)
_CONTINUE_WORDS = {"continue": 1.0, "yes": 1.0, "stop": 0.0, "no": 0.0}


def _reason(body: str) -> str | None:
    found = _REASON.findall(body)
    text = found[-1].strip() if found else ""
    return text or None


def _json_reason(obj: dict[str, Any]) -> str | None:
    value = obj.get("reason")
    return value.strip() if isinstance(value, str) and value.strip() else None


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_match(text: str, *, fmt: OutputFormat = "text") -> Parsed:
    """Read the final profile-match verdict, a number in [0, 1].

    Text: the last ``Match: x`` line; JSON: the last object with a ``match``
    key. Echoed fenced blocks are removed first; out-of-range values and
    percentages are failures, not rescaled.

    >>> parse_match("Reason: it fits her.\\nMatch: 0.8").score
    0.8
    >>> parse_match('{"reason": "generic", "match": 0.2}', fmt="json").score
    0.2
    >>> parse_match("Match: 7").reason
    'match 7.0 is outside 0-1'
    """
    if not text or not text.strip():
        return failed("empty judge answer")
    body = strip_fenced(text)
    if fmt == "json":
        obj = last_json_object(body, with_key="match")
        if obj is None:
            return failed("no JSON object with a 'match' key")
        value, rationale = _to_float(obj["match"]), _json_reason(obj)
        if value is None:
            return failed(f"JSON match {obj['match']!r} is not a number", rationale=rationale)
    else:
        lines = list(_MATCH_LINE.finditer(body))
        rationale = _reason(body)
        if not lines:
            return failed("no 'Match:' line found", rationale=rationale)
        last = lines[-1]
        if last.group(2):
            return failed(
                f"{last.group(0).strip()!r} is a percentage, not a number from 0 to 1",
                rationale=rationale,
            )
        value = float(last.group(1))
    if not 0.0 <= value <= 1.0:
        return failed(f"match {value} is outside 0-1", rationale=rationale)
    return Parsed(score=value, rationale=rationale)


def parse_continue(text: str, *, fmt: OutputFormat = "text") -> Parsed:
    """Read the final would-continue decision: 1.0 (continue) or 0.0 (stop).

    Text: the last ``Decision: continue|stop`` line (``yes``/``no`` also
    read); JSON: the last object with a ``continue`` key holding a boolean
    (or one of those words).

    >>> parse_continue("Reason: she felt seen.\\nDecision: continue").score
    1.0
    >>> parse_continue('{"reason": "cold", "continue": false}', fmt="json").score
    0.0
    >>> parse_continue("Decision: maybe").reason
    "decision 'maybe' is neither continue nor stop"
    """
    if not text or not text.strip():
        return failed("empty judge answer")
    body = strip_fenced(text)
    if fmt == "json":
        obj = last_json_object(body, with_key="continue")
        if obj is None:
            return failed("no JSON object with a 'continue' key")
        raw, rationale = obj["continue"], _json_reason(obj)
        if isinstance(raw, bool):
            return Parsed(score=1.0 if raw else 0.0, rationale=rationale)
        word = str(raw).strip().lower()
    else:
        lines = list(_DECISION_LINE.finditer(body))
        rationale = _reason(body)
        if not lines:
            return failed("no 'Decision:' line found", rationale=rationale)
        word = lines[-1].group(1).lower()
    if word not in _CONTINUE_WORDS:
        return failed(f"decision {word!r} is neither continue nor stop", rationale=rationale)
    return Parsed(score=_CONTINUE_WORDS[word], rationale=rationale)


_PARSERS = {"profile_match": parse_match, "would_continue": parse_continue}


# --------------------------------------------------------------------------- schemas


def match_schema(chars: int = JSON_TEXT_CHARS) -> dict[str, Any]:
    """A reason, then the match as one of 0, 0.1, ..., 1 (an enum: grammar samplers
    enforce it even where they cannot enforce a numeric range)."""
    return {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "maxLength": chars},
            "match": {"type": "number", "enum": [i / 10 for i in range(11)]},
        },
        "required": ["reason", "match"],
        "additionalProperties": False,
    }


def continue_schema(chars: int = JSON_TEXT_CHARS) -> dict[str, Any]:
    """A reason, then the decision as a boolean."""
    return {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "maxLength": chars},
            "continue": {"type": "boolean"},
        },
        "required": ["reason", "continue"],
        "additionalProperties": False,
    }


_SCHEMAS = {"profile_match": match_schema, "would_continue": continue_schema}


# --------------------------------------------------------------------------- the reward


class RLPAReward(RewardModel):
    """Profile match plus would-continue, judged per reply."""

    kind = "rlpa"

    def __init__(
        self, judge: ChatModel, config: RLPAConfig, *, token_counter: TokenCounter | None = None
    ):
        # token_counter is accepted for a uniform factory signature; RLPA has no
        # length penalty, so it is not used
        self.judge = judge
        self.config = config
        self.fmt: OutputFormat = resolve_output(config.output, judge)
        self.name = self.kind if config.k == 1 else f"{self.kind}@{config.k}"
        self.sampler = JudgeSampler(
            judge,
            fmt=self.fmt,
            max_tokens=config.max_tokens,
            max_resamples=config.max_resamples,
            seed=config.seed,
            limit=config.max_concurrency,
        )
        self._record_config = {
            "judge": judge.name,
            **config.model_dump(mode="json"),
            "output": self.fmt,
        }

    def prompt_names(self) -> list[str]:
        names = []
        for dim in self.config.dimensions:
            stem = _PROMPT[dim]
            names += [f"rlpa_{stem}", f"rlpa_format_{stem}_{self.fmt}"]
        return names

    def manifest(self) -> dict[str, Any]:
        return {
            "reward_model": self.name,
            "kind": self.kind,
            "judge": self.judge.name,
            "output_format": self.fmt,
            "config": self.config.model_dump(mode="json"),
            "token_counter": None,
            "prompts": versions(self.prompt_names()),
        }

    def messages(self, example: Example, reply: Reply, dimension: Dimension) -> list[Message]:
        """The prompt of one judge for one reply."""
        stem = _PROMPT[dimension]
        return template(f"rlpa_{stem}").render(
            context=render_context(example, include_memories=self.config.include_memories),
            message=fenced_message(example),
            judged=fenced_judged("response", reply.response),
            output_format=snippet(f"rlpa_format_{stem}_{self.fmt}"),
        )

    async def _judge(
        self, example: Example, reply: Reply, dimension: Dimension
    ) -> tuple[list[Judgement], Usage]:
        parse = _PARSERS[dimension]
        samples, usage = await self.sampler.sample(
            self.messages(example, reply, dimension),
            k=self.config.k,
            temperature=self.config.temperature,
            schema=_SCHEMAS[dimension](self.config.json_text_chars),
            parse=lambda text: parse(text, fmt=self.fmt),
        )
        judgements = []
        for s in samples:
            parsed: Parsed | None = s.verdict
            score = parsed.score if (parsed is not None and s.error is None) else None
            judgements.append(
                Judgement(
                    dimension=dimension,
                    score=score,
                    normalized=score,
                    sample_index=s.index,
                    attempts=s.attempt,
                    rationale=parsed.rationale if parsed else None,
                    raw=s.raw,
                    reason=None if score is not None else s.reason,
                )
            )
        return judgements, usage

    async def _judge_reply(self, example: Example, reply: Reply) -> tuple[list[Judgement], Usage]:
        results = await asyncio.gather(
            *(self._judge(example, reply, d) for d in self.config.dimensions)
        )
        usage = Usage()
        for _, u in results:
            usage = usage + u
        return [j for js, _ in results for j in js], usage

    async def score(
        self, example: Example, replies: Sequence[Reply], *, criteria_round: int = 0
    ) -> list[RewardBreakdown]:
        # RLPA has no reply-independent judge work: criteria_round changes nothing
        check_group(example, replies)
        if not replies:
            return []
        started = time.perf_counter()
        results = await asyncio.gather(*(self._judge_reply(example, r) for r in replies))
        seconds = time.perf_counter() - started
        return [
            self.compose(example, reply, judgements, usage, seconds=seconds)
            for reply, (judgements, usage) in zip(replies, results, strict=True)
        ]

    def compose(
        self,
        example: Example,
        reply: Reply,
        judgements: list[Judgement],
        usage: Usage,
        *,
        seconds: float,
    ) -> RewardBreakdown:
        """Average each judge's valid samples and add the weighted terms."""
        cfg = self.config
        means: dict[str, float | None] = {}
        problems = []
        for dim in cfg.dimensions:
            mine = [j for j in judgements if j.dimension == dim]
            valid = [j.score for j in mine if j.score is not None]
            if not valid:
                reasons = sorted({j.reason or "no score" for j in mine})
                problems.append(
                    f"{dim}: no valid judge sample out of {len(mine)} ({'; '.join(reasons)})"
                )
                means[dim] = None
            else:
                means[dim] = sum(valid) / len(valid)
        common: dict[str, Any] = {
            "example_id": example.example_id,
            "reply_id": reply.reply_id,
            "reward_model": self.name,
            "dimensions": means,
            "judgements": judgements,
            "usage": usage,
            "seconds": round(seconds, 4),
            "config": dict(self._record_config),
        }
        if problems:
            return RewardBreakdown(
                reward=None, unscorable=True, reason="; ".join(problems), **common
            )
        weight = {"profile_match": cfg.match_weight, "would_continue": cfg.continue_weight}
        terms = {dim: weight[dim] * means[dim] for dim in cfg.dimensions}  # type: ignore[operator]
        return RewardBreakdown(reward=sum(terms.values()), terms=terms, **common)


def rlpa_reward(
    judge: ChatModel, config: RLPAConfig | None = None, *, token_counter: TokenCounter | None = None
) -> RLPAReward:
    """The RLPA baseline reward with ``judge`` playing both judges."""
    return RLPAReward(judge, config or RLPAConfig(), token_counter=token_counter)
