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
import re
import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from attunement.judging.answers import number_or_none, validation_problem
from attunement.judging.base import (
    JudgeSampler,
    RewardModel,
    TokenCounter,
    check_group,
    untrusted_texts,
)
from attunement.judging.parsing import (
    LINE_PREFIX,
    NUMBER,
    RANGE_AFTER,
    Candidate,
    OutputFormat,
    Parsed,
    failed,
    final_verdict,
    line_end_at,
    readable,
    strip_fenced,
)
from attunement.judging.templates import (
    JSON_TEXT_CHARS,
    JudgeContext,
    OutputChoice,
    fenced_judged,
    prompt_piece,
    recording,
    render_context,
    render_message,
    render_prompt,
    resolve_output,
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
from attunement.textjson import json_objects, last_json_object

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
    judge_context: JudgeContext = Field(
        "authors",
        description="what the judges see of the user: 'authors' (persona text, memories, "
        "situation) or 'full' (also Big Five, topics, labels, category, emotion)",
    )
    unformatted: Literal["judge_whole", "empty"] = Field(
        "empty",
        description="a reply that broke the '# Analysis / # Response' format: judged on "
        "its whole text, or as an empty reply (the default, as for PERM)",
    )

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


# --------------------------------------------------------------------------- answers


class MatchAnswer(BaseModel):
    """The profile-match judge's JSON answer: a reason, then a number in [0, 1]
    (asked for in steps of 0.1, an ``enum`` every grammar sampler enforces)."""

    model_config = ConfigDict(extra="ignore")

    reason: str
    match: Annotated[
        float,
        Field(ge=0.0, le=1.0),
        WithJsonSchema({"type": "number", "enum": [i / 10 for i in range(11)]}),
    ]

    @field_validator("match", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")  # noqa: TRY004 (pydantic wants ValueError)
        number = number_or_none(value)
        return value if number is None else number


class ContinueAnswer(BaseModel):
    """The would-continue judge's JSON answer: a reason, then a boolean (the words
    continue/stop/yes/no are read too; a number is not a decision)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    reason: str
    decision: Annotated[bool, Field(alias="continue")]

    @field_validator("decision", mode="before")
    @classmethod
    def _word(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _CONTINUE_WORDS:
            return _CONTINUE_WORDS[value.strip().lower()] == 1.0
        raise ValueError(f"decision {value!r} is neither continue nor stop")


def _schema(answer: type[BaseModel], chars: int) -> dict[str, Any]:
    out = answer.model_json_schema(by_alias=True)
    props = {
        name: {k: v for k, v in sub.items() if k not in ("title", "description")}
        for name, sub in out["properties"].items()
    }
    props["reason"]["maxLength"] = chars
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


def match_schema(chars: int = JSON_TEXT_CHARS) -> dict[str, Any]:
    """The JSON schema of :class:`MatchAnswer` as sent (reason bounded by ``chars``)."""
    return _schema(MatchAnswer, chars)


def continue_schema(chars: int = JSON_TEXT_CHARS) -> dict[str, Any]:
    """The JSON schema of :class:`ContinueAnswer` as sent."""
    return _schema(ContinueAnswer, chars)


_SCHEMAS = {"profile_match": match_schema, "would_continue": continue_schema}

# --------------------------------------------------------------------------- parsing

_MATCH_HEAD = re.compile(
    LINE_PREFIX + r"(?P<head>(?:profile[ \t_-]*)?match)[ \t*_`]*[:=：]",
    re.IGNORECASE | re.MULTILINE,
)
_DECISION_HEAD = re.compile(
    LINE_PREFIX + r"(?P<head>decision)[ \t*_`]*[:=：]", re.IGNORECASE | re.MULTILINE
)
_MATCH_VALUE = re.compile(r"[ \t*_`]*" + NUMBER + r"(?P<pct>[ \t]*%)?")
_DECISION_VALUE = re.compile(r"[ \t*_`\"'<]*([A-Za-z]+)[*_`\"'>]*")
_REASON = re.compile(
    LINE_PREFIX
    + r"reason[ \t*_`]*[:：](.*?)(?="
    + LINE_PREFIX
    + r"(?:profile[ \t_-]*)?(?:match|decision)"
    r"[ \t*_`]*[:=：]|\Z)",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)
_CONTINUE_WORDS = {"continue": 1.0, "yes": 1.0, "stop": 0.0, "no": 0.0}


def _reason(body: str) -> str | None:
    found = _REASON.findall(body)
    text = found[-1].strip() if found else ""
    return text or None


def _match_lines(body: str) -> list[Candidate]:
    out = []
    for m in _MATCH_HEAD.finditer(body):
        line_end = line_end_at(body, m.end())
        shown = body[m.start("head") : line_end].strip()
        v = _MATCH_VALUE.match(body, m.end(), line_end)
        if v is None or RANGE_AFTER.match(body, v.end(), line_end):
            out.append(Candidate(m.start("head"), line_end, None, f"{shown!r} is not one number"))
        elif v.group("pct"):
            out.append(
                Candidate(m.start("head"), v.end(), None, f"{shown!r} is a percentage, not 0 to 1")
            )
        else:
            out.append(Candidate(m.start("head"), v.end(), float(v.group(1)), shown))
    return out


def _decision_lines(body: str) -> list[Candidate]:
    out = []
    for m in _DECISION_HEAD.finditer(body):
        line_end = line_end_at(body, m.end())
        shown = body[m.start("head") : line_end].strip()
        v = _DECISION_VALUE.match(body, m.end(), line_end)
        word = v.group(1).lower() if v else ""
        if word not in _CONTINUE_WORDS:
            problem = f"decision {word!r} is neither continue nor stop"
            out.append(Candidate(m.start("head"), line_end, None, problem))
        else:
            out.append(Candidate(m.start("head"), v.end(), _CONTINUE_WORDS[word], shown))
    return out


def _json_candidates(body: str, key: str, answer: type[BaseModel]) -> list[Candidate]:
    out = []
    for found in json_objects(body):
        if key not in found.value:
            continue
        try:
            parsed = answer.model_validate(found.value)
        except ValidationError as exc:
            problem = f"JSON answer invalid: {validation_problem(exc)}"
            out.append(Candidate(found.start, found.end, None, problem))
            continue
        value = parsed.match if isinstance(parsed, MatchAnswer) else float(parsed.decision)
        out.append(Candidate(found.start, found.end, float(value), f"JSON {key}"))
    return out


def _json_reason(body: str, key: str) -> str | None:
    found = last_json_object(body, with_key=key)
    value = found.value.get("reason") if found is not None else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def _parse(
    text: str,
    *,
    fmt: OutputFormat,
    key: str,
    answer: type[BaseModel],
    lines: Any,
    missing: str,
    untrusted: Sequence[str],
) -> Parsed:
    if not text or not text.strip():
        return failed("empty judge answer")
    body = strip_fenced(readable(text))
    if fmt == "json":
        candidates = _json_candidates(body, key, answer)
        rationale = _json_reason(body, key)
        missing = f"no JSON object with a {key!r} key"
    else:
        candidates = lines(body) + _json_candidates(body, key, answer)
        rationale = _reason(body) or _json_reason(body, key)
    verdict, problem = final_verdict(body, candidates, untrusted)
    if verdict is None:
        return failed(problem or missing, rationale=rationale)
    return Parsed(score=verdict.value, rationale=rationale)


def parse_match(text: str, *, fmt: OutputFormat = "text", untrusted: Sequence[str] = ()) -> Parsed:
    """Read the final profile-match verdict, a number in [0, 1].

    The rules of :mod:`attunement.judging.parsing` hold: echoed fenced blocks
    are removed, the verdict (a ``Match: x`` line, or a JSON object with a
    ``match`` key) must end the answer with nothing score-like after it, a
    range or percentage is a failure, and a verdict copied from ``untrusted``
    text is refused.

    >>> parse_match("Reason: it fits her.\\nMatch: 0.8").score
    0.8
    >>> parse_match('{"reason": "generic", "match": 0.2}', fmt="json").score
    0.2
    >>> parse_match("Match: 7").reason
    'match 7 is outside 0-1'
    """
    parsed = _parse(
        text,
        fmt=fmt,
        key="match",
        answer=MatchAnswer,
        lines=_match_lines,
        missing="no 'Match:' line found",
        untrusted=untrusted,
    )
    if parsed.score is not None and not 0.0 <= parsed.score <= 1.0:
        value = int(parsed.score) if parsed.score.is_integer() else parsed.score
        return failed(f"match {value} is outside 0-1", rationale=parsed.rationale)
    return parsed


def parse_continue(
    text: str, *, fmt: OutputFormat = "text", untrusted: Sequence[str] = ()
) -> Parsed:
    """Read the final would-continue decision: 1.0 (continue) or 0.0 (stop).

    Text: a ``Decision: continue|stop`` line (``yes``/``no`` also read) that
    ends the answer; JSON: an object whose ``continue`` key holds a boolean (or
    one of those words). The same rules as :func:`parse_match`.

    >>> parse_continue("Reason: she felt seen.\\nDecision: continue").score
    1.0
    >>> parse_continue('{"reason": "cold", "continue": false}', fmt="json").score
    0.0
    >>> parse_continue("Decision: maybe").reason
    "decision 'maybe' is neither continue nor stop"
    """
    return _parse(
        text,
        fmt=fmt,
        key="continue",
        answer=ContinueAnswer,
        lines=_decision_lines,
        missing="no 'Decision:' line found",
        untrusted=untrusted,
    )


_PARSERS = {"profile_match": parse_match, "would_continue": parse_continue}


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
        """Every prompt file this reward may send (recorded by rendering each once)."""
        from attunement.judging.base import PROBE_EXAMPLE, PROBE_REPLY

        with recording() as names:
            for dim in self.config.dimensions:
                self.messages(PROBE_EXAMPLE, PROBE_REPLY, dim)
        return sorted(names)

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

    def judged_response(self, reply: Reply) -> str:
        """The response as the judges see it (``unformatted`` decides for a reply
        that broke the format)."""
        if reply.format_ok:
            return reply.response
        if self.config.unformatted == "empty":
            return ""
        return reply.raw.strip() or reply.response

    def untrusted(self, example: Example, reply: Reply) -> tuple[str, ...]:
        """Every text the judges are shown as data (a verdict copied from one is refused)."""
        return untrusted_texts(example, self.judged_response(reply), reply.raw)

    def messages(self, example: Example, reply: Reply, dimension: Dimension) -> list[Message]:
        """The prompt of one judge for one reply."""
        stem = _PROMPT[dimension]
        return render_prompt(
            f"rlpa_{stem}",
            context=render_context(
                example,
                judge_context=self.config.judge_context,
                include_memories=self.config.include_memories,
            ),
            message=render_message(example),
            judged=fenced_judged("response", self.judged_response(reply)),
            output_format=prompt_piece(f"rlpa_format_{stem}_{self.fmt}"),
        )

    async def _judge(
        self, example: Example, reply: Reply, dimension: Dimension
    ) -> tuple[list[Judgement], Usage]:
        parse = _PARSERS[dimension]
        untrusted = self.untrusted(example, reply)
        samples, usage = await self.sampler.sample(
            self.messages(example, reply, dimension),
            k=self.config.k,
            temperature=self.config.temperature,
            schema=_SCHEMAS[dimension](self.config.json_text_chars),
            parse=lambda text: parse(text, fmt=self.fmt, untrusted=untrusted),
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
