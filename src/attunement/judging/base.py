"""The RewardModel interface, reward configs, and the judge-sampling engine.

A :class:`RewardModel` scores a *group* of replies to one example at once (a
GRPO group), returning one :class:`~attunement.records.RewardBreakdown` per
reply. :class:`JudgeReward` is the common base of PERM and PereGRM:

- every judge call of a group is launched at once and bounded by one
  semaphore per reward model (the judge's ``max_concurrency`` unless the
  config says otherwise), so a batch keeps the judge server full;
- ``k`` samples of one prompt are asked for in one request (``n=k``);
- a sample whose verdict cannot be read is re-drawn with *fresh* sample
  numbers (``sample_start`` beyond those used, so a cache never hands back the
  same bad answer), at most ``max_resamples`` times;
- a judge call that fails for good (after the client's own retries) is not
  retried again here: its samples are recorded as failed, with the error;
- a dimension's value is the mean of its valid samples; a reply is
  unscorable (``reward=None``) only when an enabled dimension has no valid
  sample at all. No constant ever stands in for a missing score;
- every verdict is parsed with the texts the judge saw as data (the reply,
  the query, the earlier turns, the user's record), so a verdict the judge
  merely copied out of them is refused (:mod:`attunement.judging.parsing`).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from attunement.judging import aggregate as agg
from attunement.judging.answers import BystanderAnswer
from attunement.judging.parsing import BYSTANDER_MAX, Parsed, parse_bystander
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
    schema,
    versions,
)
from attunement.judging.tokens import TOKENIZER_PATTERN, TokenCounter, load_token_counter
from attunement.llm.base import ChatModel, Completion, LLMError, Message
from attunement.records import (
    EMPATHY_DIMENSIONS,
    Dimension,
    Example,
    Judgement,
    MemoryItem,
    Persona,
    Reply,
    RewardBreakdown,
    Situation,
    Turn,
    Usage,
)

__all__ = [
    "CriteriaMode",
    "Definitions",
    "JudgeReward",
    "JudgeSampler",
    "LengthOn",
    "PereGRMConfig",
    "PermConfig",
    "RewardConfig",
    "RewardModel",
    "TokenCounter",
    "Unformatted",
    "round_seed",
]

# --------------------------------------------------------------------------- configs

ResonationOn = Literal["analysis", "response"]
BystanderOutput = Literal["json", "text", "same"]
#: what is judged when a reply broke the "# Analysis / # Response" format
Unformatted = Literal["judge_whole", "empty"]
#: what the length penalty counts
LengthOn = Literal["response", "completion"]
CriteriaMode = Literal["shared", "per_reply", "inline", "fixed"]
#: which dimension definitions PereGRM's judges read
Definitions = Literal["training", "evaluation"]


class RewardConfig(BaseModel):
    """Settings shared by PERM and PereGRM. Defaults follow the papers."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(1, ge=1, le=64, description="judge samples per dimension, averaged")
    temperature: float = Field(0.3, ge=0.0, le=2.0, description="judge sampling temperature")
    max_tokens: int = Field(1024, ge=16, description="token budget of one judge answer")
    output: OutputChoice = Field(
        "auto",
        description="judge answer format: 'text' (the papers' Score:/\\boxed{}/Total "
        "Score lines), 'json' (schema-constrained), 'auto' (json for the embedded model)",
    )
    bystander_k: int = Field(
        1,
        ge=1,
        le=64,
        description="bystander samples (the papers scale only the empathy dimensions)",
    )
    bystander_output: BystanderOutput = Field(
        "json",
        description="bystander answer format: schema-constrained JSON of the five "
        "sub-scores (default), the paper's text, or 'same' as `output`",
    )
    max_resamples: int = Field(2, ge=0, description="fresh draws for unparseable samples")
    json_text_chars: int = Field(
        JSON_TEXT_CHARS,
        ge=20,
        description="maxLength of free-text fields in JSON answers "
        "(small local models otherwise write until the limit)",
    )
    seed: int | None = Field(0, description="base seed; sample i uses a seed derived from it")
    max_concurrency: int | None = Field(
        None, ge=1, description="judge calls in flight; None: the judge's max_concurrency"
    )

    use_resonation: bool = True
    use_expression: bool = True
    use_reception: bool = True
    use_bystander: bool = True

    aggregation: agg.Aggregation = "harmonic"
    softmin_beta: float = Field(1.0, gt=0.0)
    normalization: agg.Normalization = Field(
        "max", description="'max': s/5 (authors' code); 'minmax': (s-1)/4"
    )
    lambda_bys: float = Field(0.5, ge=0.0, description="weight of the bystander penalty")

    length_penalty: bool = False
    length_limit: int = Field(768, ge=0, description="tokens allowed before penalty")
    length_coef: float = Field(0.001, ge=0.0, description="penalty per token over the limit")
    length_on: LengthOn = Field(
        "response",
        description="'response': the response's tokens (PERM's paper); "
        "'completion': the whole completion, analysis included (the PERM authors' code), "
        "Reply.completion_tokens when the trainer set it",
    )
    tokenizer: str = Field(
        "approx",
        pattern=TOKENIZER_PATTERN,
        description="token counter of the length penalty when none is passed in: approx "
        "(words, punctuation, CJK characters), local[:PATH.gguf] (llama.cpp), hf:DIR",
    )

    resonation_on: ResonationOn = "analysis"
    include_memories: bool = True
    judge_context: JudgeContext = Field(
        "authors",
        description="'authors': judges see what the authors' judges saw (profile, "
        "memory values, situation text); 'full': also Big Five, topics, labels, category, "
        "emotion",
    )
    unformatted: Unformatted = Field(
        "judge_whole",
        description="a reply that broke the '# Analysis / # Response' format: "
        "'judge_whole' judges its whole text as analysis and response; 'empty' judges it as "
        "an empty reply (the PERM authors' code)",
    )

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


class PermConfig(RewardConfig):
    """PERM (seed 003): generic rubrics, resonation on the analysis, length penalty on,
    an unformatted reply judged as empty (the authors' code)."""

    length_penalty: bool = True
    resonation_on: ResonationOn = "analysis"
    include_memories: bool = Field(
        False, description="show the user's memories to the judges (PERM's rubrics have none)"
    )
    unformatted: Unformatted = Field(
        "empty",
        description="the PERM authors' code scores a reply that breaks the format "
        "as empty; 'judge_whole' judges its whole text",
    )


class PereGRMConfig(RewardConfig):
    """PereGRM (seed 000): personalised criteria, then a score against them."""

    criteria_mode: CriteriaMode = Field(
        "shared",
        description="'shared': criteria once per example/dimension/sample and round, "
        "reused by the whole group; 'per_reply': criteria written without the reply in view, "
        "one set per reply; 'inline': one call writes criteria+analysis+score per reply (the "
        "authors' code); 'fixed': example.criteria prepared in advance, scored at "
        "fixed_temperature",
    )
    definitions: Definitions = Field(
        "training",
        description="dimension definitions the judges read: 'training' (the "
        "authors' training reward: personality detection, personalised strategy, the user's "
        "own reception) or 'evaluation' (the authors' criteria-writing definitions); default "
        "'evaluation' in fixed mode, 'training' otherwise",
    )
    criteria_temperature: float = Field(
        0.3, ge=0.0, le=2.0, description="temperature of criteria writing"
    )
    fixed_temperature: float = Field(
        0.0, ge=0.0, le=2.0, description="scoring temperature in fixed mode"
    )
    resonation_on: ResonationOn = Field(
        "response", description="the authors' code judges the response for every dimension"
    )
    include_memories: bool = True
    unformatted: Unformatted = Field(
        "judge_whole",
        description="the PereGRM authors' code judges the whole completion "
        "when it has no reasoning block",
    )

    @model_validator(mode="before")
    @classmethod
    def _definitions_follow_mode(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("definitions") is None:
            data = {k: v for k, v in data.items() if k != "definitions"}
            if data.get("criteria_mode") == "fixed":
                data["definitions"] = "evaluation"
        return data


# --------------------------------------------------------------------------- interface


class RewardModel(ABC):
    """Scores all replies to one example together; one breakdown per reply."""

    name: str

    @abstractmethod
    async def score(
        self, example: Example, replies: Sequence[Reply], *, criteria_round: int = 0
    ) -> list[RewardBreakdown]:
        """One :class:`RewardBreakdown` per reply, in the order of ``replies``.

        ``criteria_round`` says which draw of reply-independent judge work
        (PereGRM's criteria) to use: the same round gives the same criteria, a
        new round fresh ones. A trainer passes its step, so a group is judged
        by one criteria set and the next step by a new one; evaluation keeps 0.
        Rewards without such work ignore it.
        """

    @abstractmethod
    def manifest(self) -> dict[str, Any]:
        """Configuration, prompt versions and judge name, for output manifests."""

    def check_examples(self, examples: Sequence[Example]) -> None:
        """Raise ``ValueError`` if some example cannot be scored (before any call)."""


# --------------------------------------------------------------------------- samples


class _Verdict(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def reason(self) -> str | None: ...


@dataclass(frozen=True)
class Sample:
    """One judge sample: its number, the round it was drawn in, text and verdict."""

    index: int
    attempt: int
    raw: str
    verdict: Any  # Parsed or ParsedCriteria
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.verdict is not None and self.verdict.ok

    @property
    def reason(self) -> str | None:
        if self.error is not None:
            return self.error
        return None if self.ok else self.verdict.reason


def round_seed(seed: int | None, criteria_round: int) -> int | None:
    """The seed of criteria round ``criteria_round``: the base seed in round 0
    (so evaluation is unchanged), a distinct derived seed in every later round.

    >>> round_seed(0, 0), round_seed(0, 1) != round_seed(0, 2), round_seed(None, 0)
    (0, True, None)
    """
    if criteria_round == 0:
        return seed
    base = 0 if seed is None else seed
    return (base * 1_000_033 + criteria_round * 7_919 + 1) % (2**31 - 1)


def usage_of(completions: Sequence[Completion]) -> Usage:
    """Usage of one request (its prompt billed once, cached samples free)."""
    live = [c for c in completions if not c.cached]
    return Usage(
        calls=1 if live else 0,
        cached_calls=len(completions) - len(live),
        prompt_tokens=max((c.prompt_tokens for c in live), default=0),
        completion_tokens=sum(c.completion_tokens for c in live),
    )


def check_group(example: Example, replies: Sequence[Reply]) -> None:
    seen: set[str] = set()
    for reply in replies:
        if reply.example_id != example.example_id:
            raise ValueError(
                f"reply {reply.reply_id!r} belongs to example {reply.example_id!r}, "
                f"not {example.example_id!r}"
            )
        if reply.reply_id in seen:
            raise ValueError(f"reply id {reply.reply_id!r} appears twice in one group")
        seen.add(reply.reply_id)


class JudgeSampler:
    """Draws judge samples with bounded concurrency and bounded re-draws.

    One sampler (and so one semaphore) per reward model or job; the limit is
    the judge's ``max_concurrency`` unless given.
    """

    def __init__(
        self,
        judge: ChatModel,
        *,
        fmt: str,
        max_tokens: int,
        max_resamples: int,
        seed: int | None,
        limit: int | None = None,
    ):
        self.judge = judge
        self.fmt = fmt
        self.max_tokens = max_tokens
        self.max_resamples = max_resamples
        self.seed = seed
        self.limit = limit or max(1, judge.max_concurrency)
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots = asyncio.Semaphore(self.limit)
            self._slots_loop = loop
        return self._slots

    async def complete(
        self,
        messages: list[Message],
        *,
        n: int,
        sample_start: int,
        temperature: float,
        max_tokens: int,
        schema: dict[str, Any] | None,
        seed: int | None = None,
    ) -> list[Completion]:
        async with self._semaphore():
            return await self.judge.complete(
                messages,
                n=n,
                temperature=temperature,
                max_tokens=max_tokens,
                json_schema=schema,
                seed=self.seed if seed is None else seed,
                sample_start=sample_start,
            )

    async def sample(
        self,
        messages: list[Message],
        *,
        k: int,
        temperature: float,
        schema: dict[str, Any] | None,
        parse: Callable[[str], _Verdict],
        max_tokens: int | None = None,
        fmt: str | None = None,
        seed: int | None = None,
        first_index: int = 0,
    ) -> tuple[list[Sample], Usage]:
        """Draw ``k`` samples of one prompt in one request, re-drawing failures.

        Returns every sample drawn (failed ones included, in drawing order) and
        the usage. At most ``k`` samples are valid; a failed sample is replaced
        by a fresh one numbered after all those used so far, at most
        ``max_resamples`` times. Sample numbers start at ``first_index`` (so
        independent draws of the same prompt never share a number, nor a cache
        entry). A call that raises :class:`LLMError` (the client has already
        retried it) is not retried again.
        """
        samples: list[Sample] = []
        usage = Usage()
        if (fmt or self.fmt) != "json":
            schema = None  # text answers: no schema sent
        need, start, attempt = k, first_index, 1
        while need > 0:
            try:
                completions = await self.complete(
                    messages,
                    n=need,
                    sample_start=start,
                    temperature=temperature,
                    max_tokens=max_tokens or self.max_tokens,
                    schema=schema,
                    seed=seed,
                )
            except LLMError as exc:
                error = f"judge call failed: {exc}"
                samples.extend(
                    Sample(index=start + j, attempt=attempt, raw="", verdict=None, error=error)
                    for j in range(need)
                )
                break
            usage = usage + usage_of(completions)
            fresh = [
                Sample(index=start + j, attempt=attempt, raw=c.text, verdict=parse(c.text))
                for j, c in enumerate(completions)
            ]
            samples.extend(fresh)
            start += need
            need = sum(1 for s in fresh if not s.ok)
            if attempt > self.max_resamples:
                break
            attempt += 1
        return samples, usage


#: a record with every field a judge prompt can show, to render each prompt once
#: when listing a reward's prompt files (never sent to a judge)
PROBE_EXAMPLE = Example(
    example_id="probe",
    query="(probe)",
    persona=Persona(profile="(probe)"),
    memories=[MemoryItem(memory_id="p1", value="(probe)")],
    situation=Situation(category="ES", description="(probe)"),
    dialogue=[Turn(role="user", text="(probe)"), Turn(role="assistant", text="(probe)")],
    criteria={d: "1. (probe) (100%): (probe)" for d in EMPATHY_DIMENSIONS},
)
PROBE_REPLY = Reply(example_id="probe", reply_id="probe", analysis="(probe)", response="(probe)")


def untrusted_texts(example: Example, *judged: str) -> tuple[str, ...]:
    """The ``judged`` texts and every text of ``example`` a judge is shown as data
    (a verdict copied from one of them is refused by the parsers)."""
    texts = [
        *judged,
        example.query,
        *(t.text for t in example.dialogue),
        *(m.value for m in example.memories),
        example.persona.profile if example.persona else "",
        example.situation.description if example.situation else "",
    ]
    return tuple(t for t in texts if t and t.strip())


class JudgeReward(RewardModel):
    """Common machinery of the LLM-judge rewards (sampling, retries, composition)."""

    kind: str = "judge"
    config: RewardConfig

    def __init__(
        self, judge: ChatModel, config: RewardConfig, *, token_counter: TokenCounter | None = None
    ):
        self.judge = judge
        self.config = config
        self.fmt = resolve_output(config.output, judge)
        self.bystander_fmt = (
            self.fmt if config.bystander_output == "same" else config.bystander_output
        )
        self._token_counter = token_counter
        self.name = self.kind if config.k == 1 else f"{self.kind}@{config.k}"
        self.sampler = JudgeSampler(
            judge,
            fmt=self.fmt,
            max_tokens=config.max_tokens,
            max_resamples=config.max_resamples,
            seed=config.seed,
            limit=config.max_concurrency,
        )
        self.sample = self.sampler.sample
        self._record_config = {
            "judge": judge.name,
            "output": self.fmt,
            "bystander_format": self.bystander_fmt,
            **config.model_dump(mode="json"),
        }

    @property
    def token_counter(self) -> TokenCounter:
        """The counter of the length penalty: the one passed in, else the config's
        ``tokenizer`` (loaded on first use)."""
        if self._token_counter is None:
            self._token_counter = load_token_counter(self.config.tokenizer)
        return self._token_counter

    @property
    def token_counter_name(self) -> str:
        if self._token_counter is None and self.config.tokenizer == "approx":
            return str(load_token_counter("approx"))
        counter = self.token_counter
        return getattr(counter, "__name__", repr(counter))

    # ------------------------------------------------------------------ what is judged

    def judged_texts(self, reply: Reply) -> tuple[str, str]:
        """(analysis, response) as the judges see them.

        A reply that broke the "# Analysis / # Response" format
        (``format_ok=False``) is judged on its whole text for both
        (``unformatted="judge_whole"``) or as an empty reply (``"empty"``).
        """
        if reply.format_ok:
            return reply.analysis, reply.response
        if self.config.unformatted == "empty":
            return "", ""
        whole = reply.raw.strip() or "\n\n".join(
            t for t in (reply.analysis.strip(), reply.response.strip()) if t
        )
        return whole, whole

    def untrusted(self, example: Example, reply: Reply) -> tuple[str, ...]:
        """Every text a judge is shown as data (a verdict copied from one is refused)."""
        return untrusted_texts(example, *self.judged_texts(reply), reply.raw)

    def context(self, example: Example) -> str:
        """The user's record as the empathy judges see it."""
        return render_context(
            example,
            judge_context=self.config.judge_context,
            include_memories=self.config.include_memories,
            demographics=self.kind == "perm",
        )

    def bystander_context(self, example: Example) -> str:
        """The user's record as the bystander sees it (no memories in either paper)."""
        return render_context(
            example,
            judge_context=self.config.judge_context,
            include_memories=False,
            demographics=self.kind == "perm",
        )

    def length_tokens(self, reply: Reply) -> int:
        """The length the penalty counts (``length_on``), in the policy's tokens when known."""
        if self.config.length_on == "completion":
            if reply.completion_tokens is not None:
                return reply.completion_tokens
            whole = reply.raw or "\n\n".join(t for t in (reply.analysis, reply.response) if t)
            return self.token_counter(whole)
        return self.token_counter(self.judged_texts(reply)[1])

    # ------------------------------------------------------------------ manifest

    @abstractmethod
    def probe_prompts(self, example: Example, reply: Reply) -> Iterator[list[Message]]:
        """Render every prompt this reward may send for one reply (for :meth:`prompt_names`)."""

    def prompt_names(self) -> list[str]:
        """Every prompt file this reward model may send, as recorded by rendering
        each of its prompts once on a probe example (nothing is sent)."""
        with recording() as names:
            for _ in self.probe_prompts(PROBE_EXAMPLE, PROBE_REPLY):
                pass
        return sorted(names)

    def manifest(self) -> dict[str, Any]:
        return {
            "reward_model": self.name,
            "kind": self.kind,
            "judge": self.judge.name,
            "output_format": self.fmt,
            "bystander_format": self.bystander_fmt,
            "config": self.config.model_dump(mode="json"),
            "token_counter": self.token_counter_name if self.config.length_penalty else None,
            "prompts": versions(self.prompt_names()),
        }

    # ------------------------------------------------------------------ judgements

    def rating_judgements(
        self,
        dimension: Dimension,
        samples: Sequence[Sample],
        *,
        criteria: str | None = None,
        index: int | None = None,
    ) -> list[Judgement]:
        """Judgements of 1-5 samples (``index`` overrides the sample number)."""
        out = []
        for s in samples:
            parsed: Parsed | None = s.verdict
            score = parsed.score if (parsed is not None and s.error is None) else None
            out.append(
                Judgement(
                    dimension=dimension,
                    score=score,
                    normalized=(
                        agg.normalize(score, method=self.config.normalization)
                        if score is not None
                        else None
                    ),
                    sample_index=s.index if index is None else index,
                    attempts=s.attempt,
                    criteria=criteria
                    if criteria is not None
                    else (parsed.criteria if parsed else None),
                    rationale=parsed.rationale if parsed else None,
                    raw=s.raw,
                    reason=None if score is not None else s.reason,
                )
            )
        return out

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
        judgements = []
        for s in samples:
            parsed: Parsed | None = s.verdict
            score = parsed.score if (parsed is not None and s.error is None) else None
            judgements.append(
                Judgement(
                    dimension="bystander",
                    score=score,
                    normalized=score / BYSTANDER_MAX if score is not None else None,
                    sample_index=s.index,
                    attempts=s.attempt,
                    rationale=parsed.rationale if parsed else None,
                    sub_scores=dict(parsed.sub_scores) if parsed else {},
                    raw=s.raw,
                    reason=None if score is not None else s.reason,
                )
            )
        return judgements, usage

    # ------------------------------------------------------------------ scoring

    @abstractmethod
    async def judge_group(
        self, example: Example, replies: Sequence[Reply], *, criteria_round: int = 0
    ) -> dict[str, tuple[list[Judgement], Usage]]:
        """All judgements of a group, keyed by reply id, with each reply's usage."""

    async def score(
        self, example: Example, replies: Sequence[Reply], *, criteria_round: int = 0
    ) -> list[RewardBreakdown]:
        check_group(example, replies)
        if not replies:
            return []
        if criteria_round < 0:
            raise ValueError(f"criteria_round must be >= 0, got {criteria_round}")
        self.check_examples([example])
        started = time.perf_counter()
        by_reply = await self.judge_group(example, replies, criteria_round=criteria_round)
        seconds = time.perf_counter() - started
        return [
            self.compose(example, reply, *by_reply[reply.reply_id], seconds=seconds)
            for reply in replies
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
        """Average the samples of each dimension and combine them into the reward."""
        cfg = self.config
        raw_means: dict[str, float | None] = {}
        norm_means: dict[str, float] = {}
        problems = []
        for dim in cfg.dimensions:
            mine = [j for j in judgements if j.dimension == dim]
            valid = [j for j in mine if j.score is not None]
            if not valid:
                reasons = sorted({j.reason or "no score" for j in mine})
                problems.append(
                    f"{dim}: no valid judge sample out of {len(mine)} ({'; '.join(reasons)})"
                )
                raw_means[dim] = None
                continue
            raw_means[dim] = agg.mean([j.score for j in valid])  # type: ignore[misc]
            norm_means[dim] = agg.mean([j.normalized for j in valid])  # type: ignore[misc]
        record_config = dict(self._record_config)
        common: dict[str, Any] = {
            "example_id": example.example_id,
            "reply_id": reply.reply_id,
            "reward_model": self.name,
            "dimensions": raw_means,
            "judgements": judgements,
            "usage": usage,
            "seconds": round(seconds, 4),
            "config": record_config,
        }
        if problems:
            return RewardBreakdown(
                reward=None, unscorable=True, reason="; ".join(problems), **common
            )
        terms: dict[str, float] = {
            "r_emp": agg.aggregate(
                [norm_means[d] for d in cfg.empathy_dimensions],
                cfg.aggregation,
                beta=cfg.softmin_beta,
            )
        }
        if cfg.use_bystander:
            terms["bystander_penalty"] = agg.bystander_penalty(
                norm_means["bystander"], cfg.lambda_bys
            )
        if cfg.length_penalty:
            tokens = self.length_tokens(reply)
            record_config["length_tokens"] = tokens
            terms["length_penalty"] = agg.length_penalty(
                tokens, limit=cfg.length_limit, coef=cfg.length_coef
            )
        return RewardBreakdown(reward=sum(terms.values()), terms=terms, **common)
