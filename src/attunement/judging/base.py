"""The RewardModel interface, and what every LLM-judge reward shares.

A :class:`RewardModel` scores a *group* of replies to one example at once (a
GRPO group), returning one :class:`~attunement.records.RewardBreakdown` per
reply, so work that does not depend on the reply (PereGRM's criteria) is done
once per group.

:class:`JudgeReward` is the common base of PERM, PereGRM and the RLPA
baseline. It holds what none of them decides differently:

- the judge is sampled through one :class:`~attunement.judging.sampler.JudgeSampler`
  (bounded calls in flight, ``n=k``, bounded re-draws of unreadable answers);
- what is judged of a reply that broke the "# Analysis / # Response" format
  (``unformatted``), and what the judges see of the user (``judge_context``);
- every verdict is parsed with the texts the judge saw as data (what the
  judges are shown of the reply, the query, the earlier turns, the user's
  record), so a verdict the judge merely copied out of them is refused
  (:func:`untrusted_texts`); text of the reply no judge is shown (whatever
  came before ``# Analysis``, an analysis no judge reads) is not material;
- **injection costs the policy** (``verdict_in_reply``): a reply whose
  judged text carries a verdict or fence shape
  (:func:`attunement.judging.injections.injection_marks`) gets the reward's
  minimum with no judge call (``minimum``, the default: every judged
  dimension at the bottom of its scale, every term the judges do not decide,
  such as the length penalty, as it is), is judged as usual (``judge``), or
  is unscorable (``unscorable``). Every breakdown records the shapes found
  (``verdict_in_reply``), so injecting is never better than not injecting
  and the trainers log how often it is tried;
- a dimension's value is the mean of its valid samples; a reply is
  unscorable (``reward=None``) only when an enabled dimension has no valid
  sample at all (:func:`dimension_means`). No constant ever stands in for a
  missing score;
- the manifest: config, judge, and the version of every prompt file the
  reward may send, found by rendering each prompt once on a probe example.

What a reward makes of the means, its formula, is its own (:meth:`JudgeReward.terms`):
PERM's in :mod:`attunement.judging.perm` (which PereGRM shares), RLPA's in
:mod:`attunement.judging.rlpa`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from attunement.judging.aggregate import mean
from attunement.judging.injections import injection_marks
from attunement.judging.sampler import JudgeSampler, Sample, round_seed
from attunement.judging.settings import (
    BystanderOutput,
    CriteriaMode,
    Definitions,
    LengthOn,
    ResonationOn,
    RewardSettings,
    Unformatted,
)
from attunement.judging.templates import recording, render_context, resolve_output, versions
from attunement.judging.tokens import TokenCounter
from attunement.llm.base import ChatModel, Message, usage_of
from attunement.llm.failures import call_failure_in
from attunement.llm.stand_in import stand_in_fields
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
    "PROBE_EXAMPLE",
    "PROBE_REPLY",
    "BystanderOutput",
    "CriteriaMode",
    "Definitions",
    "JudgeReward",
    "JudgeSampler",
    "LengthOn",
    "ResonationOn",
    "RewardModel",
    "Sample",
    "TokenCounter",
    "Unformatted",
    "call_failure",
    "check_group",
    "dimension_means",
    "round_seed",
    "to_judgements",
    "untrusted_texts",
    "usage_of",
]


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


# --------------------------------------------------------------------------- groups


def check_group(example: Example, replies: Sequence[Reply]) -> None:
    """Refuse a group whose replies belong to another example, or repeat an id."""
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


def call_failure(breakdown: RewardBreakdown | dict[str, Any]) -> str | None:
    """Why a breakdown is no result: the cause of a judge call of it that failed
    (:func:`attunement.llm.call_failure_in`), else None. Takes the record or its
    JSON (rows an older version wrote as final are found the same way).
    """
    if isinstance(breakdown, dict):
        reasons = [
            j.get("reason") for j in breakdown.get("judgements") or () if isinstance(j, dict)
        ]
        reasons.append(breakdown.get("reason"))
    else:
        reasons = [j.reason for j in breakdown.judgements] + [breakdown.reason]
    return next((c for c in map(call_failure_in, reasons) if c is not None), None)


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
    return tuple(t for t in texts if t.strip())


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


# --------------------------------------------------------------------------- samples to numbers


def to_judgements(
    dimension: Dimension,
    samples: Sequence[Sample],
    normalize: Callable[[float], float],
    *,
    criteria: str | None = None,
    index: int | None = None,
) -> list[Judgement]:
    """One :class:`Judgement` per sample: its score on the judge's scale (None with
    the reason when the sample failed), that score through ``normalize``, and what
    the judge wrote. ``criteria`` records the criteria the sample was scored
    against (else the ones the judge wrote itself); ``index`` overrides the
    sample number (PereGRM's criteria slot)."""
    out = []
    for s in samples:
        parsed = s.verdict if s.error is None else None
        score = parsed.score if parsed is not None else None
        out.append(
            Judgement(
                dimension=dimension,
                score=score,
                normalized=normalize(score) if score is not None else None,
                sample_index=s.index if index is None else index,
                attempts=s.attempt,
                criteria=criteria if criteria is not None else getattr(parsed, "criteria", None),
                rationale=parsed.rationale if parsed is not None else None,
                sub_scores=dict(parsed.sub_scores) if parsed is not None else {},
                raw=s.raw,
                reason=None if score is not None else s.reason,
            )
        )
    return out


def dimension_means(
    judgements: Sequence[Judgement], dimensions: Sequence[Dimension]
) -> tuple[dict[str, float | None], dict[str, float], list[str]]:
    """Per dimension, the mean score and mean normalised score of the valid samples.

    Returns (means on the judge's scale, None where nothing was valid;
    normalised means of the dimensions that have them; one problem per
    dimension without a valid sample, with the samples' reasons).
    """
    raw: dict[str, float | None] = {}
    normalized: dict[str, float] = {}
    problems = []
    for dim in dimensions:
        mine = [j for j in judgements if j.dimension == dim]
        valid = [j for j in mine if j.score is not None]
        if not valid:
            reasons = sorted({j.reason or "no score" for j in mine})
            problems.append(
                f"{dim}: no valid judge sample out of {len(mine)} ({'; '.join(reasons)})"
            )
            raw[dim] = None
            continue
        raw[dim] = mean([j.score for j in valid])  # type: ignore[misc]
        normalized[dim] = mean([j.normalized for j in valid])  # type: ignore[misc]
    return raw, normalized, problems


def add_usage(results: Sequence[tuple[list[Judgement], Usage]]) -> tuple[list[Judgement], Usage]:
    """Several jobs' judgements in one list, and their usage added up."""
    usage = Usage()
    judgements: list[Judgement] = []
    for js, u in results:
        judgements += js
        usage = usage + u
    return judgements, usage


# --------------------------------------------------------------------------- the base


class JudgeReward(RewardModel):
    """Common machinery of the LLM-judge rewards: sampling, what the judges see,
    the manifest, and turning judgements into a :class:`RewardBreakdown`."""

    #: the registered name of the reward (set by ``register_reward`` on its class)
    kind: ClassVar[str] = "judge"
    #: whether the judges see the persona's demographics with ``judge_context="authors"``
    shows_demographics: ClassVar[bool] = False
    config: RewardSettings

    def __init__(self, judge: ChatModel, config: RewardSettings):
        self.judge = judge
        self.config = config
        self.fmt = resolve_output(config.output, judge)
        self.name = self.kind if config.k == 1 else f"{self.kind}@{config.k}"
        self.sampler = JudgeSampler.for_settings(judge, self.fmt, config)
        self.sample = self.sampler.sample
        self._record_config = {
            "judge": judge.name,
            "output": self.fmt,
            **self.record_details(),
            **config.model_dump(mode="json"),
        }

    def record_details(self) -> dict[str, Any]:
        """What every breakdown's ``config`` holds besides the config's fields."""
        return {}

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

    def shown_texts(self, reply: Reply) -> tuple[str, ...]:
        """The texts of ``reply`` this reward's judges are shown (by default its
        judged analysis and response)."""
        return self.judged_texts(reply)

    def untrusted(self, example: Example, reply: Reply) -> tuple[str, ...]:
        """Every text a judge is shown as data (a verdict copied from one is refused)."""
        return untrusted_texts(example, *self.shown_texts(reply))

    def injections(self, reply: Reply) -> list[str]:
        """The verdict and fence shapes in what the judges are shown of ``reply``
        (a heading only in the response of a reply that kept the format)."""
        response = self.judged_texts(reply)[1] if reply.format_ok else None
        return injection_marks(self.shown_texts(reply), response)

    def floor(self) -> tuple[dict[str, float], dict[str, float]]:
        """Every judged dimension at the bottom of its scale: (on the judge's scale,
        normalised). The reward's minimum is :meth:`terms` of the normalised floor."""
        raise NotImplementedError(f"{type(self).__name__} does not define its floor")

    def context(self, example: Example) -> str:
        """The user's record as the judges see it."""
        return render_context(
            example,
            judge_context=self.config.judge_context,
            include_memories=self.config.include_memories,
            demographics=self.shows_demographics,
        )

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

    def manifest_details(self) -> dict[str, Any]:
        """What the manifest holds besides what every judge reward records."""
        return {}

    def manifest(self) -> dict[str, Any]:
        return {
            "reward_model": self.name,
            "kind": self.kind,
            "judge": self.judge.name,
            **stand_in_fields(self.judge),
            "output_format": self.fmt,
            "token_counter": None,
            **self.manifest_details(),
            "config": self.config.model_dump(mode="json"),
            "prompts": versions(self.prompt_names()),
        }

    # ------------------------------------------------------------------ scoring

    @abstractmethod
    async def judge_group(
        self, example: Example, replies: Sequence[Reply], *, criteria_round: int = 0
    ) -> dict[str, tuple[list[Judgement], Usage]]:
        """All judgements of a group, keyed by reply id, with each reply's usage."""

    @abstractmethod
    def terms(
        self, reply: Reply, means: dict[str, float]
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """The reward's additive terms from the normalised dimension means, and what
        to record beside the config in the breakdown (e.g. a token count)."""

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
        marks = {r.reply_id: self.injections(r) for r in replies}
        mode = self.config.verdict_in_reply
        judged = [r for r in replies if mode == "judge" or not marks[r.reply_id]]
        by_reply = (
            await self.judge_group(example, judged, criteria_round=criteria_round) if judged else {}
        )
        seconds = time.perf_counter() - started
        return [
            self.compose(
                example,
                reply,
                *by_reply[reply.reply_id],
                seconds=seconds,
                marks=marks[reply.reply_id],
            )
            if reply.reply_id in by_reply
            else self.injected(example, reply, marks[reply.reply_id])
            for reply in replies
        ]

    def injected(self, example: Example, reply: Reply, marks: list[str]) -> RewardBreakdown:
        """The breakdown of a reply the ``verdict_in_reply`` rule decides (no judge call)."""
        shown = ", ".join(marks)
        common: dict[str, Any] = {
            "example_id": example.example_id,
            "reply_id": reply.reply_id,
            "reward_model": self.name,
            "config": dict(self._record_config),
            "verdict_in_reply": marks,
        }
        if self.config.verdict_in_reply == "unscorable":
            reason = f"verdict_in_reply: the judged text carries {shown}"
            return RewardBreakdown(reward=None, unscorable=True, reason=reason, **common)
        raw, normalized = self.floor()
        terms, recorded = self.terms(reply, normalized)
        common["config"].update(recorded)
        reason = f"verdict_in_reply: the judged text carries {shown}; the reward's minimum"
        return RewardBreakdown(
            reward=sum(terms.values()), terms=terms, dimensions=dict(raw), reason=reason, **common
        )

    def compose(
        self,
        example: Example,
        reply: Reply,
        judgements: list[Judgement],
        usage: Usage,
        *,
        seconds: float,
        marks: Sequence[str] = (),
    ) -> RewardBreakdown:
        """Average the samples of each dimension and combine them into the reward
        (``marks``: the verdict and fence shapes the judged text carries)."""
        raw_means, means, problems = dimension_means(judgements, self.config.dimensions)
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
            "verdict_in_reply": list(marks),
        }
        if problems:
            return RewardBreakdown(
                reward=None, unscorable=True, reason="; ".join(problems), **common
            )
        terms, recorded = self.terms(reply, means)
        record_config.update(recorded)
        return RewardBreakdown(reward=sum(terms.values()), terms=terms, **common)
