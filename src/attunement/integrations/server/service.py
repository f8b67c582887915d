"""The work of ``attune serve``, independent of the HTTP framework.

:class:`RewardService` turns a request body into replies, has them admitted
(:mod:`~attunement.integrations.server.admission`), scores them as groups
within the deadline (:class:`~attunement.integrations.scorer.ReplyScorer`, its
groups and shared criteria kept by an in-process coordinator sized from the
batch) and returns the answer body (:mod:`~attunement.integrations.server.protocol`).
Every refusal is an :class:`HTTPProblem`; a request that was accepted is always
answered with numbers, an unscorable reply with the fallback, flagged. The
ASGI app (:mod:`~attunement.integrations.server.app`) only routes, checks the
token, reads bodies and counts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from attunement.integrations.coordinator import Coordinator, LocalCoordinator
from attunement.integrations.outcomes import Outcome
from attunement.integrations.scorer import ReplyScorer
from attunement.integrations.server.admission import Admission, Refused
from attunement.integrations.server.metrics import Metrics
from attunement.integrations.server.protocol import (
    GroupRequest,
    HTTPProblem,
    OpenRLHFRequest,
    clean_json,
    group_answer,
    openrlhf_answer,
    parse_body,
    split_query,
    validation_message,
)
from attunement.integrations.server.settings import ServeSettings
from attunement.integrations.shared_judge import SharedJudge, open_shared_reward
from attunement.jsonl import read_jsonl
from attunement.judging import RewardModel, RewardSpec
from attunement.policy.prompting import parse_reply
from attunement.records import Example, Reply

T = TypeVar("T")

NOT_LOCATED = "the response could not be located in the query (its prompt is not in it)"


class RewardService:
    """The server's work, independent of the HTTP framework."""

    def __init__(
        self,
        reward: RewardModel,
        settings: ServeSettings | None = None,
        *,
        examples: Mapping[str, Example] | None = None,
        clock: Callable[[], float] = time.monotonic,
        coordinator: Coordinator | None = None,
        shared: SharedJudge | None = None,
    ):
        self.settings = settings or ServeSettings()
        self.reward = reward
        policy = self.settings.scoring_policy()
        self.coordinator: Coordinator = coordinator or LocalCoordinator.for_policy(
            policy, clock=clock
        )
        self.scorer = ReplyScorer(
            reward, policy, coordinator=self.coordinator, shared=shared, clock=clock
        )
        self.examples = dict(examples or {})
        self.admission = Admission(
            self.settings.max_active,
            self.settings.max_pending,
            retry_after_max=self.settings.retry_after_max,
            max_waiting=self.settings.waiting_room,
        )
        self.metrics = Metrics()
        self.clock = clock
        self._ids = count()

    @property
    def draining(self) -> bool:
        """While set, new requests are refused (those accepted are finished)."""
        return self.admission.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.admission.draining = value

    # ------------------------------------------------------------------ helpers

    def example_for(self, label: str | dict[str, Any], where: str) -> Example:
        try:
            if isinstance(label, dict):
                return Example.model_validate(label)
            text = label.strip()
            if text.startswith("{"):  # the example as a JSON string: checked like a body
                return Example.model_validate(clean_json(_json_label(text, where)))
        except ValidationError as exc:
            raise HTTPProblem(
                422, f"{where}: not a valid example: {validation_message(exc)}"
            ) from None
        found = self.examples.get(text)
        if found is None:
            known = f"{len(self.examples)} examples loaded" if self.examples else "no --data loaded"
            raise HTTPProblem(422, f"{where}: unknown example id {text!r} ({known})")
        return found

    def _check(self, example: Example, where: str) -> None:
        try:
            self.scorer.check(example)
        except ValueError as exc:
            raise HTTPProblem(422, f"{where}: {exc}") from None

    def _check_batch(self, size: int, what: str) -> None:
        if size > self.settings.max_batch:
            raise HTTPProblem(
                422,
                f"{size} {what} in one request; the limit is "
                f"{self.settings.max_batch} (--max-batch)",
            )

    async def _admitted(self, n: int, work: Callable[[float], Awaitable[T]]) -> T:
        """Run ``work(seconds_left)`` for ``n`` replies once admitted (or raise 503)."""
        s = self.settings
        try:
            async with self.admission.hold(
                n, s.deadline, self.clock, wait=s.wait_seconds, answer_within=s.answer_within
            ) as seconds_left:
                return await work(seconds_left)
        except Refused as refused:
            self.metrics.reject(refused.reason)
            wait = self.admission.retry_after(self.metrics.typical_seconds())
            raise HTTPProblem(503, refused.message, {"Retry-After": str(wait)}) from None

    # ------------------------------------------------------------------ OpenRLHF

    async def get_reward(self, body: Any) -> dict[str, Any]:
        req = parse_body(OpenRLHFRequest, body)
        if not req.query:  # OpenRLHF's share for every URL but the first
            return openrlhf_answer([], self.scorer.keys)
        self._check_batch(len(req.query), "items")
        groups, order, unplaced = self._openrlhf_groups(req, next(self._ids))

        async def work(seconds_left: float) -> list[Outcome]:
            results = await asyncio.gather(
                *(
                    self._score_placed(example, replies, unplaced, seconds_left)
                    for example, replies in groups.values()
                )
            )
            return [o for outcomes in results for o in outcomes]

        by_reply = {o.reply_id: o for o in await self._admitted(len(order), work)}
        return openrlhf_answer([by_reply[rid] for rid in order], self.scorer.keys)

    def _openrlhf_groups(
        self, req: OpenRLHFRequest, request_no: int
    ) -> tuple[dict[str, tuple[Example, list[Reply]]], list[str], set[str]]:
        """The items of a request as replies grouped by example, the reply ids in
        request order, and the ids of replies whose response was not found."""
        groups: dict[str, tuple[Example, list[Reply]]] = {}
        order: list[str] = []
        unplaced: set[str] = set()
        for i, (query, prompt, label) in enumerate(
            zip(req.query, req.prompts, req.labels, strict=True)
        ):
            example = self.example_for(label, f"labels[{i}]")
            self._check(example, f"labels[{i}]")
            response = split_query(query, prompt, self.settings.end_markers)
            reply_id = f"{example.example_id}#r{request_no}.{i}"
            if response is None:
                unplaced.add(reply_id)
                response = ""
            parsed = parse_reply(response)
            reply = Reply(
                example_id=example.example_id,
                reply_id=reply_id,
                raw=response,
                response=parsed.response,
                analysis=parsed.analysis,
                format_ok=parsed.format_ok,
                policy="openrlhf",
            )
            key = example.example_id
            if key in groups and groups[key][0] != example:
                raise HTTPProblem(
                    422,
                    f"labels[{i}]: example {key!r} differs from an earlier "
                    "item of this request with the same id",
                )
            groups.setdefault(key, (example, []))[1].append(reply)
            order.append(reply_id)
        return groups, order, unplaced

    async def _score_placed(
        self, example: Example, replies: list[Reply], unplaced: set[str], seconds_left: float
    ) -> list[Outcome]:
        """Score a group; replies whose response was not found are unscorable."""
        failed = {r.reply_id: NOT_LOCATED for r in replies if r.reply_id in unplaced}
        return await self.scorer.score(example, replies, deadline=seconds_left, failed=failed)

    # ------------------------------------------------------------------ groups

    async def score_group(self, body: Any) -> dict[str, Any]:
        req = parse_body(GroupRequest, body)
        self._check_batch(len(req.replies), "replies")
        example = (
            req.example
            if req.example is not None
            else self.example_for(req.example_id or "", "example_id")
        )
        self._check(example, "example")
        replies = _group_replies(req, example, next(self._ids))

        async def work(seconds_left: float) -> list[Outcome]:
            return await self.scorer.score(
                example,
                replies,
                split=req.split,
                criteria_round=req.criteria_round,
                deadline=seconds_left,
                whole_group=True,
            )

        outcomes = await self._admitted(len(replies), work)
        return group_answer(
            self.reward.name, example.example_id, outcomes, judgements=req.judgements
        )

    def health(self) -> dict[str, Any]:
        return {
            "status": "draining" if self.draining else "ok",
            "reward_model": self.reward.name,
            "examples": len(self.examples),
            "in_flight": self.admission.active,
            "queued": self.admission.queued,
            "waiting": self.admission.waiting,
        }


@asynccontextmanager
async def open_service(
    source: RewardSpec | RewardModel,
    settings: ServeSettings,
    *,
    examples: Mapping[str, Example] | None = None,
) -> AsyncIterator[RewardService]:
    """The service of a server: with a spec, the judge is opened here (and closed on
    exit) and shares criteria requests through the service's coordinator; a ready
    reward model is used as it is."""
    coordinator = LocalCoordinator.for_policy(settings.scoring_policy())
    async with AsyncExitStack() as stack:
        shared: SharedJudge | None = None
        if isinstance(source, RewardSpec):
            reward, shared = await stack.enter_async_context(
                open_shared_reward(source, coordinator, wait=settings.deadline)
            )
        else:
            reward = source
        yield RewardService(
            reward, settings, examples=examples, coordinator=coordinator, shared=shared
        )


def _group_replies(req: GroupRequest, example: Example, request_no: int) -> list[Reply]:
    """The replies of a whole-group request (a raw ``text`` is split like a policy's)."""
    replies, seen = [], set()
    for i, r in enumerate(req.replies):
        reply_id = r.reply_id or f"{example.example_id}#g{request_no}.{i}"
        if reply_id in seen:
            raise HTTPProblem(422, f"replies[{i}].reply_id {reply_id!r} appears twice")
        seen.add(reply_id)
        if r.text is not None:
            parsed = parse_reply(r.text)
            response, analysis, format_ok, raw = (
                parsed.response,
                parsed.analysis,
                parsed.format_ok,
                r.text,
            )
        else:
            response, analysis, format_ok, raw = r.response or "", r.analysis, True, ""
        replies.append(
            Reply(
                example_id=example.example_id,
                reply_id=reply_id,
                response=response,
                analysis=analysis,
                raw=raw,
                format_ok=format_ok,
                completion_tokens=r.completion_tokens,
            )
        )
    return replies


def _json_label(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HTTPProblem(422, f"{where}: not a valid example: {exc}") from None
    except RecursionError:
        raise HTTPProblem(400, f"{where}: nested too deeply") from None


def load_examples(paths: Sequence[str | Path]) -> dict[str, Example]:
    """Examples by id from JSONL files (a duplicate id is an error)."""
    out: dict[str, Example] = {}
    for path in paths:
        for example in read_jsonl(path, Example):
            if example.example_id in out:
                raise ValueError(f"{path}: example id {example.example_id!r} appears twice")
            out[example.example_id] = example
    return out
