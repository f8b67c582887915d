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
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, ClassVar

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
from attunement.judging.base import JudgeReward, add_usage, to_judgements
from attunement.judging.echoes import readable, strip_fenced
from attunement.judging.kinds import register_reward
from attunement.judging.settings import JSON_TEXT_CHARS, OutputFormat, RewardSettings, Unformatted
from attunement.judging.templates import (
    fenced_judged,
    prompt_piece,
    render_message,
    render_prompt,
)
from attunement.judging.tokens import TokenCounter
from attunement.judging.verdicts import (
    LINE_PREFIX,
    NUMBER,
    RANGE_AFTER,
    Candidate,
    Parsed,
    failed,
    final_verdict,
    line_end_at,
)
from attunement.llm.base import ChatModel, Message
from attunement.records import RLPA_DIMENSIONS, Dimension, Example, Judgement, Reply, Usage
from attunement.textjson import json_objects, last_json_object

#: prompt file stem of each judge
_PROMPT = {"profile_match": "match", "would_continue": "continue"}
#: token budget of one RLPA judge answer (a reason and one line)
RLPA_MAX_TOKENS = 512


class RLPAConfig(RewardSettings):
    """Settings of the RLPA baseline reward."""

    max_tokens: int = Field(RLPA_MAX_TOKENS, ge=16, description="token budget of one judge answer")
    use_profile_match: bool = Field(True, description="judge the fit to the user's profile")
    use_would_continue: bool = Field(True, description="ask whether the user would go on")
    match_weight: float = Field(1.0, ge=0.0, description="weight of profile_match in r")
    continue_weight: float = Field(1.0, ge=0.0, description="weight of would_continue in r")
    unformatted: Unformatted = Field(
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

    @property
    def weights(self) -> dict[str, float]:
        """The weight of each judge's term in r."""
        return {"profile_match": self.match_weight, "would_continue": self.continue_weight}


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

    model_config = ConfigDict(extra="ignore")

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


@register_reward("rlpa", config=RLPAConfig)
class RLPAReward(JudgeReward):
    """Profile match plus would-continue, judged per reply."""

    #: the judges read the persona as the record holds it, demographics included
    shows_demographics: ClassVar[bool] = True
    config: RLPAConfig

    def __init__(
        self, judge: ChatModel, config: RLPAConfig, *, token_counter: TokenCounter | None = None
    ):
        # token_counter is accepted for a uniform factory signature; RLPA has no
        # length penalty, so it is not used
        super().__init__(judge, config)

    def judged_response(self, reply: Reply) -> str:
        """The response as the judges see it (``unformatted`` decides for a reply
        that broke the format)."""
        return self.judged_texts(reply)[1]

    def shown_texts(self, reply: Reply) -> tuple[str, ...]:
        """Both judges read the response only."""
        return (self.judged_response(reply),)

    def floor(self) -> tuple[dict[str, float], dict[str, float]]:
        """A match of 0 and a decision to stop: both judges answer on [0, 1]."""
        low = dict.fromkeys(self.config.dimensions, 0.0)
        return low, dict(low)

    def messages(self, example: Example, reply: Reply, dimension: Dimension) -> list[Message]:
        """The prompt of one judge for one reply."""
        stem = _PROMPT[dimension]
        return render_prompt(
            f"rlpa_{stem}",
            context=self.context(example),
            message=render_message(example),
            judged=fenced_judged("response", self.judged_response(reply)),
            output_format=prompt_piece(f"rlpa_format_{stem}_{self.fmt}"),
        )

    def probe_prompts(self, example: Example, reply: Reply) -> Iterator[list[Message]]:
        for dimension in self.config.dimensions:
            yield self.messages(example, reply, dimension)

    async def _judge(
        self, example: Example, reply: Reply, dimension: Dimension
    ) -> tuple[list[Judgement], Usage]:
        parse = _PARSERS[dimension]
        untrusted = self.untrusted(example, reply)
        samples, usage = await self.sample(
            self.messages(example, reply, dimension),
            k=self.config.k,
            temperature=self.config.temperature,
            schema=_SCHEMAS[dimension](self.config.json_text_chars),
            parse=lambda text: parse(text, fmt=self.fmt, untrusted=untrusted),
        )
        # both judges answer on [0, 1] already
        return to_judgements(dimension, samples, float), usage

    async def _judge_reply(self, example: Example, reply: Reply) -> tuple[list[Judgement], Usage]:
        jobs = [self._judge(example, reply, d) for d in self.config.dimensions]
        return add_usage(await asyncio.gather(*jobs))

    async def judge_group(
        self, example: Example, replies: Sequence[Reply], *, criteria_round: int = 0
    ) -> dict[str, tuple[list[Judgement], Usage]]:
        # RLPA has no reply-independent judge work: criteria_round changes nothing
        results = await asyncio.gather(*(self._judge_reply(example, r) for r in replies))
        return {r.reply_id: res for r, res in zip(replies, results)}

    def terms(
        self, reply: Reply, means: dict[str, float]
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """``r = match_weight * profile_match + continue_weight * would_continue``."""
        weights = self.config.weights
        return {dim: weights[dim] * means[dim] for dim in self.config.dimensions}, {}


def rlpa_reward(
    judge: ChatModel, config: RLPAConfig | None = None, *, token_counter: TokenCounter | None = None
) -> RLPAReward:
    """The RLPA baseline reward with ``judge`` playing both judges."""
    return RLPAReward(judge, config or RLPAConfig(), token_counter=token_counter)
