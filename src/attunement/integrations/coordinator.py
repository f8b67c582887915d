"""One criteria round per group across every reward worker: the coordinator.

verl sends each finished sample to a reward worker picked at random (its agent
loop's ``_compute_score`` draws one of the reward-loop actors per sample), so
the replies of one prompt are judged in several processes at once. PereGRM
writes criteria once per group and round and scores every reply against them;
with the group state kept per process, 8 workers wrote 5 to 6 criteria sets
per group of 8 and, counting rounds each on its own, judged the replies of
one step under different rounds from the second epoch on. So the state that
decides a group's round, and the criteria written for it, live in one place
that every worker of the run asks:

- :class:`GroupBook` is that state, plain and synchronous: the group tracker
  (which round a reply joins; :class:`~attunement.integrations.groups.GroupTracker`),
  the rewards seen per group (for the group-mean fallback), and the shared
  judge answers (a criteria request is written by the first worker that needs
  it; the others wait for it and read it). Both stores are bounded by sizes
  computed from the batch (:class:`CacheSizes`) and count their evictions.
- :class:`LocalCoordinator` keeps the book in this process (``attune serve``,
  a single verl worker, tests); it may be called from several event loops.
- :class:`~attunement.integrations.ray_coordinator.RayCoordinator` keeps it
  in a named Ray actor that every verl reward worker of the job finds by name.

Both answer the same asynchronous calls (:class:`Coordinator`): ``join``,
``record``, ``lease``, ``publish`` and ``stats``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from attunement.integrations.groups import Group, GroupTracker, ScoringPolicy

log = logging.getLogger(__name__)

#: judge answers kept per group: one criteria request per dimension (3), with
#: room for the re-draws of failed samples
ANSWERS_PER_GROUP = 6


@dataclass(frozen=True)
class CacheSizes:
    """How many groups and shared judge answers the book keeps.

    >>> CacheSizes.of(ScoringPolicy(prompts_per_step=1024))
    CacheSizes(groups=4096, answers=24576)
    """

    groups: int
    answers: int

    @classmethod
    def of(cls, policy: ScoringPolicy) -> CacheSizes:
        groups = policy.group_capacity()
        return cls(groups=groups, answers=policy.prompts_held() * ANSWERS_PER_GROUP)


@dataclass(frozen=True)
class GroupTicket:
    """The group a call joined: its generation and criteria round."""

    key: str
    generation: int
    criteria_round: int


@dataclass
class BookStats:
    """What the book has done (exported by the server's ``/metrics``)."""

    groups: int = 0
    groups_opened: int = 0
    groups_evicted: int = 0
    #: groups evicted before they were complete: the cache is too small
    open_groups_evicted: int = 0
    answers: int = 0
    answers_written: int = 0
    answers_shared: int = 0
    answers_evicted: int = 0
    group_capacity: int = 0
    answer_capacity: int = 0


class GroupBook:
    """The shared state: groups, their rewards, and shared judge answers."""

    def __init__(
        self,
        policy: ScoringPolicy,
        *,
        sizes: CacheSizes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.policy = policy
        self.sizes = sizes or CacheSizes.of(policy)
        self.tracker = GroupTracker(
            size=policy.group_size,
            window=policy.group_window,
            idle=policy.group_idle,
            max_groups=self.sizes.groups,
            clock=clock,
            on_evict=self._evicted,
        )
        self._answers: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self._writing: dict[str, concurrent.futures.Future[tuple[Any, ...] | None]] = {}
        #: callers waiting for each answer being written
        self._waiting: dict[str, int] = {}
        self.stats = BookStats(group_capacity=self.sizes.groups, answer_capacity=self.sizes.answers)

    def _evicted(self, group: Group, still_open: bool) -> None:
        self.stats.groups_evicted += 1
        if still_open:
            self.stats.open_groups_evicted += 1
            if self.stats.open_groups_evicted in (1, 10, 100, 1000):
                log.warning(
                    "attunement: %d groups evicted before they were complete; raise "
                    "prompts_per_step (or max_groups) to at least the prompts of a step",
                    self.stats.open_groups_evicted,
                )

    # ------------------------------------------------------------------ groups

    def join(
        self, key: str, count: int, fixed_round: int | None = None, new: bool = False
    ) -> GroupTicket:
        group = self.tracker.join(key, count, fixed_round=fixed_round, new=new)
        return GroupTicket(key, group.generation, group.criteria_round)

    def record(self, key: str, generation: int, rewards: Sequence[float]) -> float | None:
        """Add rewards to a group; the mean reward of that group so far."""
        group = self.tracker.get(key)
        if group is None or group.generation != generation:  # evicted or replaced meanwhile
            return sum(rewards) / len(rewards) if rewards else None
        group.add_rewards(rewards)
        return group.mean_reward()

    # ------------------------------------------------------------------ shared answers

    def lease(
        self, key: str
    ) -> tuple[tuple[Any, ...] | None, concurrent.futures.Future[tuple[Any, ...] | None] | None]:
        """``(answer, None)`` when written; ``(None, future)`` while another caller
        writes it (the future gives the answer, or None if that writer gave up);
        ``(None, None)``: the caller writes it and must :meth:`publish`."""
        found = self._answers.get(key)
        if found is not None:
            self._answers.move_to_end(key)
            self.stats.answers_shared += 1
            return found, None
        writing = self._writing.get(key)
        if writing is not None:
            self._waiting[key] = self._waiting.get(key, 0) + 1
            return None, writing
        self._writing[key] = concurrent.futures.Future()
        return None, None

    def publish(self, key: str, answer: Sequence[Any] | None) -> None:
        """The answer of a request the caller wrote (None: it failed; a waiter writes)."""
        writing = self._writing.pop(key, None)
        waiting = self._waiting.pop(key, 0)
        value = tuple(answer) if answer is not None else None
        if value is not None and key not in self._answers:
            self.stats.answers_written += 1
            self.stats.answers_shared += waiting
            self._answers[key] = value
            while len(self._answers) > self.sizes.answers:
                self._answers.popitem(last=False)
                self.stats.answers_evicted += 1
        if writing is not None and not writing.done():
            writing.set_result(value)

    def snapshot(self) -> BookStats:
        self.stats.groups = len(self.tracker)
        self.stats.groups_opened = self.tracker.opened
        self.stats.answers = len(self._answers)
        return BookStats(**vars(self.stats))


class Coordinator(Protocol):
    """What every reward worker asks the shared book (in-process or remote)."""

    async def join(
        self, key: str, count: int, fixed_round: int | None = None, new: bool = False
    ) -> GroupTicket: ...

    async def record(self, key: str, generation: int, rewards: Sequence[float]) -> float | None: ...

    async def lease(self, key: str, wait: float) -> tuple[Any, ...] | None: ...

    async def publish(self, key: str, answer: Sequence[Any] | None) -> None: ...

    async def stats(self) -> BookStats: ...


async def wait_for_answer(
    take: Callable[[], Any],
    key: str,
    wait: float,
) -> tuple[Any, ...] | None:
    """The lease loop shared by both coordinators: ``take()`` is the book's
    :meth:`GroupBook.lease` for ``key`` (called under the caller's lock). Returns
    the answer, or None when the caller is to write it (nobody is writing it,
    the writer gave up, or ``wait`` seconds passed)."""
    deadline = time.monotonic() + wait
    while True:
        answer, writing = take()
        if writing is None:
            return answer
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            # shielded: a waiter that gives up must not cancel the others' future
            got = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(writing)), left)
        except TimeoutError:
            log.warning("attunement: waited %.0f s for a shared judge answer; writing it", wait)
            return None
        if got is not None:
            return got


class LocalCoordinator:
    """The book in this process, callable from any event loop or thread."""

    def __init__(self, book: GroupBook):
        self.book = book
        self._lock = threading.Lock()

    @classmethod
    def for_policy(cls, policy: ScoringPolicy, **kwargs: Any) -> LocalCoordinator:
        return cls(GroupBook(policy, **kwargs))

    async def join(
        self, key: str, count: int, fixed_round: int | None = None, new: bool = False
    ) -> GroupTicket:
        with self._lock:
            return self.book.join(key, count, fixed_round, new)

    async def record(self, key: str, generation: int, rewards: Sequence[float]) -> float | None:
        with self._lock:
            return self.book.record(key, generation, rewards)

    def _take(self, key: str):
        with self._lock:
            return self.book.lease(key)

    async def lease(self, key: str, wait: float) -> tuple[Any, ...] | None:
        return await wait_for_answer(lambda: self._take(key), key, wait)

    async def publish(self, key: str, answer: Sequence[Any] | None) -> None:
        with self._lock:
            self.book.publish(key, answer)

    async def stats(self) -> BookStats:
        with self._lock:
            return self.book.snapshot()
