"""A judge whose criteria requests are written once for the whole run.

PereGRM asks the judge for a group's criteria with a request that depends only
on the example, the dimension and the criteria round (its seed); the reward
keeps the answers in a bounded memo of its own process. Two things broke the
"once per group" promise on a real cluster: every reward worker process wrote
its own criteria for the replies it happened to receive, and the memo (512
sets, about 170 prompts) was smaller than a step, so a group whose last reply
came after 170 others was given criteria again.

:class:`SharedJudge` wraps the judge model and routes the requests the scorer
marked as criteria (:meth:`SharedJudge.share` with :func:`criteria_prompts`)
through the coordinator: the first worker to need one writes it and publishes
the answer; every later request for it, in any worker and after any memo
eviction, reads the same samples (billed as cached, no judge call). Every
other request (the scores, the bystander) goes straight to the judge. The
coordinator's store is sized from the batch and counts its evictions
(:class:`~attunement.integrations.coordinator.CacheSizes`).

:func:`open_shared_reward` builds a reward on such a judge from a
:class:`~attunement.judging.RewardSpec`, where the reward runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

from attunement.integrations.coordinator import Coordinator
from attunement.judging import PereGRMReward, RewardModel, RewardSpec
from attunement.llm import ChatModel, ChatRequest, Completion, Message, load_chat_model
from attunement.records import Example, Usage

#: criteria prompts remembered as shareable (the prompts of a few steps)
SHARED_PROMPTS = 1 << 16


def criteria_prompts(reward: RewardModel, example: Example) -> list[list[Message]]:
    """The prompts whose answers every reply of ``example``'s group shares.

    PereGRM's criteria (one prompt per dimension) in the modes that write them
    without the reply in view; nothing for other rewards.
    """
    if not isinstance(reward, PereGRMReward):
        return []
    if reward.config.criteria_mode not in ("shared", "per_reply"):
        return []
    return [reward.criteria_messages(example, d) for d in reward.config.empathy_dimensions]


def _fingerprint(messages: Iterable[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(list(messages)).encode("utf-8")).hexdigest()


def share_key(model: str, request: ChatRequest) -> str:
    """The key of one request's answer: every sample it asks for, on ``model``."""
    return f"{request.cache_key(model, request.sample_start)}:{request.n}"


class SharedJudge(ChatModel):
    """A judge model whose marked requests are answered once per run."""

    def __init__(self, inner: ChatModel, coordinator: Coordinator, *, wait: float = 240.0):
        super().__init__()
        self.inner = inner
        self.coordinator = coordinator
        #: seconds a request waits for another worker writing the same answer
        self.wait = wait
        self.name = inner.name
        self.max_concurrency = inner.max_concurrency
        self.enforces_json_schema = inner.enforces_json_schema
        self.stand_in = inner.stand_in
        self._shared: OrderedDict[str, None] = OrderedDict()

    def share(self, prompts: Sequence[Sequence[Message]]) -> None:
        """Mark these prompts' requests as shared by the whole run."""
        for messages in prompts:
            key = _fingerprint((m["role"], m["content"]) for m in messages)
            self._shared[key] = None
            self._shared.move_to_end(key)
        while len(self._shared) > SHARED_PROMPTS:
            self._shared.popitem(last=False)

    def is_shared(self, request: ChatRequest) -> bool:
        return _fingerprint(request.messages) in self._shared

    async def ensure_ready(self) -> None:
        await self.inner.ensure_ready()
        self.name = self.inner.name

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        return (await self._complete_with_usage(request))[0]

    async def _complete_with_usage(self, request: ChatRequest) -> tuple[list[Completion], Usage]:
        if not self.is_shared(request):
            return await self.inner.complete_with_usage(request)
        await self.ensure_ready()
        key = share_key(self.name, request)
        found = await self.coordinator.lease(key, self.wait)
        if found is not None:
            read = [dataclasses.replace(c, cached=True, cache_key=None) for c in found]
            return read, Usage(cached_calls=len(read))
        try:
            out, spent = await self.inner.complete_with_usage(request)
        except BaseException:
            await self.coordinator.publish(key, None)  # a waiter writes it instead
            raise
        await self.coordinator.publish(key, [dataclasses.replace(c, cache_key=None) for c in out])
        return out, spent

    async def reject(self, completions: Sequence[Completion]) -> None:
        await self.inner.reject(completions)

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def open_shared_reward(
    spec: RewardSpec, coordinator: Coordinator, *, wait: float = 240.0
) -> AsyncIterator[tuple[RewardModel, SharedJudge]]:
    """The reward of ``spec`` on a :class:`SharedJudge` (judge closed on exit)."""
    spec.config()  # fail on bad settings before a model is loaded
    async with load_chat_model(spec.judge, spec.options) as inner:
        await inner.ensure_ready()
        judge = SharedJudge(inner, coordinator, wait=wait)
        yield spec.load(judge), judge
