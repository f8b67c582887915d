"""Drawing judge samples: bounded concurrency, ``n=k`` in one request, bounded re-draws.

Every judge job (each reward, fixed criteria, EQ-Bench 3's judge) asks its
judge through a :class:`JudgeSampler`:

- one semaphore per sampler bounds the judge calls in flight (the judge's
  ``max_concurrency`` unless given), so a batch keeps the server full without
  flooding it;
- ``k`` samples of one prompt are asked for in one request (``n=k``);
- a sample whose verdict cannot be read is re-drawn with *fresh* sample
  numbers (``sample_start`` beyond those used, so a cache never hands back
  the same bad answer), at most ``max_resamples`` times;
- a judge call that fails for good (the LLM layer has already retried it) is
  not retried again here: its samples are recorded as failed with the reason
  ``judge call failed: <cause>`` (:func:`attunement.llm.call_failed_reason`),
  which no runner takes for a result: :func:`attunement.judging.scoring.score_dataset`
  leaves such a reply out of its file and the next run asks again.

Nothing here decides a score: a :class:`Sample` carries the raw text and the
parser's verdict, and the reward turns valid verdicts into numbers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from attunement.judging.settings import JudgeSettings
from attunement.llm.base import ChatModel, Completion, LLMError, Message, usage_of
from attunement.llm.failures import call_failed_reason
from attunement.records import Usage

log = logging.getLogger(__name__)


class Verdict(Protocol):
    """What a parser returns: whether the answer was readable, and why not."""

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

    @classmethod
    def for_settings(cls, judge: ChatModel, fmt: str, settings: JudgeSettings) -> JudgeSampler:
        """The sampler a judge job's settings describe."""
        return cls(
            judge,
            fmt=fmt,
            max_tokens=settings.max_tokens,
            max_resamples=settings.max_resamples,
            seed=settings.seed,
            limit=settings.max_concurrency,
        )

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
        parse: Callable[[str], Verdict],
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
                error = call_failed_reason(exc)
                log.info("%s (%s)", error, exc)
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
