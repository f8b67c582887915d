"""The coordinator of a verl run: the group book in a named Ray actor.

verl runs its reward workers as Ray actors of one job, so Ray is already there
to hold state they all share. :func:`ray_coordinator` finds (or creates) one
actor per run and settings by name (``get_if_exists``: whichever worker comes
first creates it, the others attach), and :class:`RayCoordinator` forwards the
coordinator calls to it. The actor is asynchronous: a worker waiting for
criteria another worker is writing waits inside the actor without blocking
anyone else's calls. It lives as long as the worker that created it (no
``detached`` lifetime, so a finished run leaves nothing behind).

Ray is imported only here, and only when a verl run asks for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from attunement.integrations.coordinator import (
    BookStats,
    GroupBook,
    GroupTicket,
    wait_for_answer,
)
from attunement.integrations.groups import ScoringPolicy

#: requests an actor serves at once (waiting leases included)
ACTOR_CONCURRENCY = 4096


class _BookActor:
    """The actor's body: a :class:`GroupBook` behind async methods."""

    def __init__(self, policy: dict[str, Any]):
        self.book = GroupBook(ScoringPolicy.model_validate(policy))

    async def join(
        self, key: str, count: int, fixed_round: int | None, new: bool
    ) -> tuple[str, int, int]:
        t = self.book.join(key, count, fixed_round, new)
        return t.key, t.generation, t.criteria_round

    async def record(self, key: str, generation: int, rewards: list[float]) -> float | None:
        return self.book.record(key, generation, rewards)

    async def lease(self, key: str, wait: float) -> tuple[Any, ...] | None:
        # one event loop in the actor: the book needs no lock
        return await wait_for_answer(lambda: self.book.lease(key), key, wait)

    async def publish(self, key: str, answer: list[Any] | None) -> None:
        self.book.publish(key, answer)

    async def stats(self) -> dict[str, int]:
        return vars(self.book.snapshot())


def actor_name(policy: ScoringPolicy, scope: str) -> str:
    """One actor per run scope and grouping settings.

    >>> actor_name(ScoringPolicy(), "peregrm@4|judge").startswith("attunement-groups-")
    True
    """
    digest = hashlib.sha256(f"{scope}|{policy.model_dump_json()}".encode()).hexdigest()[:16]
    return f"attunement-groups-{digest}"


class RayCoordinator:
    """The coordinator calls, answered by the named actor."""

    def __init__(self, actor: Any, name: str):
        self.actor = actor
        self.name = name

    async def join(
        self, key: str, count: int, fixed_round: int | None = None, new: bool = False
    ) -> GroupTicket:
        return GroupTicket(*await self.actor.join.remote(key, count, fixed_round, new))

    async def record(self, key: str, generation: int, rewards: Sequence[float]) -> float | None:
        return await self.actor.record.remote(key, generation, list(rewards))

    async def lease(self, key: str, wait: float) -> tuple[Any, ...] | None:
        return await self.actor.lease.remote(key, wait)

    async def publish(self, key: str, answer: Sequence[Any] | None) -> None:
        await self.actor.publish.remote(key, list(answer) if answer is not None else None)

    async def stats(self) -> BookStats:
        return BookStats(**await self.actor.stats.remote())


def ray_coordinator(policy: ScoringPolicy, scope: str) -> RayCoordinator:
    """The run's coordinator actor (created by the first worker that asks).

    Needs a connected Ray (inside a verl worker it is).
    """
    import ray

    if not ray.is_initialized():
        raise RuntimeError(
            "coordinator='ray' needs Ray (run inside verl's reward workers, or ray.init())"
        )
    name = actor_name(policy, scope)
    actor_class = ray.remote(num_cpus=0, max_concurrency=ACTOR_CONCURRENCY)(_BookActor)
    actor = actor_class.options(name=name, get_if_exists=True).remote(policy.model_dump())
    return RayCoordinator(actor, name)
