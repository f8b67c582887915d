"""Bounded admission: how much work ``attune serve`` accepts, and in which order.

A trainer sends every finished sample at once, with no limit of its own. A
server that accepted them all would pile up work it cannot finish before the
clients give up, and every answer would come too late. So at most
``max_pending`` replies are accepted and unanswered at once; ``max_active`` of
them are being judged, the rest wait in arrival order (first come, first
served: a large request waiting is not overtaken by later small ones).

A request that finds ``max_pending`` replies already accepted is not refused
at once: it waits in a *waiting room*, also in arrival order, for up to
``wait`` seconds (the caller sets it below the client's own timeout), and is
accepted as soon as room frees up. Only a request that waited that long, or
that finds the waiting room full (``max_waiting`` replies), is refused
(:class:`Refused`, answered 503 with a Retry-After estimated from the queue
ahead and the recent latency). The reason is OpenRLHF's client: it retries a
refused request only 5 times, 1 s apart, whatever Retry-After says, and
loses the sample after that; a request held in line loses nothing and keeps
its place, where a refused one would go to the back. While the server drains
for shutdown every new request, and every one still in the waiting room, is
refused the same way.

Waiting counts against a request's time: :meth:`Admission.hold` yields the
seconds left once the request may start, which may be none at all (the caller
then answers with fallbacks rather than judging).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

Refusal = Literal["draining", "overload"]


class Refused(Exception):
    """A request the server does not take now (``reason`` names why)."""

    def __init__(self, reason: Refusal, message: str):
        super().__init__(message)
        self.reason: Refusal = reason
        self.message = message


@dataclass(eq=False)
class _Waiter:
    n: int
    future: asyncio.Future[Ticket]


class Admission:
    """At most ``max_pending`` replies accepted, ``max_active`` of them judged, FIFO;
    up to ``max_waiting`` more wait for room."""

    def __init__(
        self,
        max_active: int,
        max_pending: int,
        *,
        retry_after_max: int = 60,
        max_waiting: int = 0,
    ):
        self.max_active = max_active
        self.max_pending = max_pending
        self.max_waiting = max_waiting
        self.retry_after_max = retry_after_max
        self.active = 0
        self.pending = 0
        #: replies in the waiting room (not accepted yet)
        self.waiting = 0
        self._draining = False
        self._waiters: deque[Ticket] = deque()
        self._room: deque[_Waiter] = deque()

    @property
    def queued(self) -> int:
        return self.pending - self.active

    @property
    def idle(self) -> bool:
        """Nothing accepted and nothing waiting."""
        return self.pending == 0 and self.waiting == 0

    @property
    def draining(self) -> bool:
        """While set, every new request (and every one still waiting for room) is refused."""
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value
        if value:
            while self._room:
                waiter = self._room.popleft()
                self.waiting -= waiter.n
                if not waiter.future.done():
                    waiter.future.set_exception(Refused("draining", "the server is shutting down"))

    def admit(self, n: int) -> Ticket:
        """Accept ``n`` replies now (a :class:`Ticket` to wait on), or raise :class:`Refused`."""
        if self._draining:
            raise Refused("draining", "the server is shutting down")
        if self._room or self.pending + n > self.max_pending:
            raise Refused(
                "overload",
                f"over capacity: {self.pending} replies pending (limit "
                f"{self.max_pending}); retry later",
            )
        self.pending += n
        return Ticket(self, n)

    async def enter(self, n: int, wait: float) -> Ticket:
        """Accept ``n`` replies, waiting up to ``wait`` seconds for room."""
        if self._draining or (not self._room and self.pending + n <= self.max_pending):
            return self.admit(n)
        if wait <= 0 or self.waiting + n > self.max_waiting:
            return self.admit(n)  # refused: no room, and no waiting allowed or left
        waiter = _Waiter(n, asyncio.get_running_loop().create_future())
        self._room.append(waiter)
        self.waiting += n
        try:
            done, _ = await asyncio.wait({waiter.future}, timeout=wait)
        except asyncio.CancelledError:
            self._leave(waiter)
            raise
        if not done:
            self._leave(waiter)
            raise Refused(
                "overload",
                f"over capacity: no room for {wait:.0f} s ({self.pending} replies pending, "
                f"limit {self.max_pending}); retry later",
            )
        return waiter.future.result()

    def _leave(self, waiter: _Waiter) -> None:
        """A waiter gives up: out of the room, or its ticket released if it got one."""
        if waiter.future.done():
            if not waiter.future.cancelled() and waiter.future.exception() is None:
                waiter.future.result().release()
            return
        waiter.future.cancel()
        if waiter in self._room:
            self._room.remove(waiter)
            self.waiting -= waiter.n

    def _promote(self) -> None:
        """Accept waiters from the room, in arrival order, while there is room."""
        while self._room and self.pending + self._room[0].n <= self.max_pending:
            waiter = self._room.popleft()
            self.waiting -= waiter.n
            self.pending += waiter.n
            waiter.future.set_result(Ticket(self, waiter.n))

    def retry_after(self, typical_seconds: float) -> int:
        """Seconds a refused client should wait: the waves of work ahead of it at
        ``typical_seconds`` each, between 1 and ``retry_after_max``.

        >>> Admission(max_active=4, max_pending=8, retry_after_max=60).retry_after(2.5)
        3
        """
        waves = (self.pending + self.waiting) / max(1, self.max_active) + 1
        return max(1, min(self.retry_after_max, math.ceil(waves * typical_seconds)))

    @asynccontextmanager
    async def hold(
        self,
        n: int,
        deadline: float,
        clock: Callable[[], float],
        *,
        wait: float = 0.0,
        answer_within: float | None = None,
    ) -> AsyncIterator[float]:
        """Accept ``n`` replies (waiting up to ``wait`` s for room), wait for their
        turn, and yield the seconds left: at most ``deadline`` from acceptance and
        ``answer_within`` from arrival. Release them on leaving."""
        arrived = clock()
        ticket = await self.enter(n, wait)
        accepted = clock()
        limit = deadline
        if answer_within is not None:
            limit = min(deadline, answer_within - (accepted - arrived))
        try:
            try:
                await asyncio.wait_for(ticket.acquire(), timeout=max(0.0, limit))
            except TimeoutError:
                pass  # the time passed in the queue: the caller answers with fallbacks
            yield limit - (clock() - accepted)
        finally:
            ticket.release()

    def _wake(self) -> None:
        while self._waiters and self.active + self._waiters[0].n <= self.max_active:
            ticket = self._waiters.popleft()
            self.active += ticket.n
            ticket.held = True
            if ticket.future is not None and not ticket.future.done():
                ticket.future.set_result(None)


@dataclass(eq=False)
class Ticket:
    """``n`` accepted replies: :meth:`acquire` waits for their turn to be judged."""

    admission: Admission
    n: int
    held: bool = False
    released: bool = False
    future: asyncio.Future[None] | None = None

    async def acquire(self) -> None:
        adm = self.admission
        if not adm._waiters and adm.active + self.n <= adm.max_active:
            adm.active += self.n
            self.held = True
            return
        self.future = asyncio.get_running_loop().create_future()
        adm._waiters.append(self)
        try:
            await self.future
        except asyncio.CancelledError:
            if not self.held:
                adm._waiters.remove(self)
                adm._wake()
            raise

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        adm = self.admission
        adm.pending -= self.n
        if self.held:
            adm.active -= self.n
        adm._promote()
        adm._wake()
