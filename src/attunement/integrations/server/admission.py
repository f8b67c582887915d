"""Bounded admission: how much work ``attune serve`` accepts, and in which order.

A trainer sends every finished sample at once, with no limit of its own. A
server that accepted them all would pile up work it cannot finish before the
clients give up, and every answer would come too late. So at most
``max_pending`` replies are accepted and unanswered at once; ``max_active`` of
them are being judged, the rest wait in arrival order (first come, first
served: a large request waiting is not overtaken by later small ones). Past
``max_pending`` a request is refused at once (:class:`Refused`, answered 503)
with a Retry-After estimated from the queue ahead and the recent latency, and
while the server drains for shutdown every new request is refused the same way.

Waiting counts against a request's deadline: :meth:`Admission.hold` yields the
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


class Admission:
    """At most ``max_pending`` replies accepted, ``max_active`` of them judged, FIFO."""

    def __init__(self, max_active: int, max_pending: int, *, retry_after_max: int = 60):
        self.max_active = max_active
        self.max_pending = max_pending
        self.retry_after_max = retry_after_max
        self.active = 0
        self.pending = 0
        #: set when the server shuts down: every new request is refused
        self.draining = False
        self._waiters: deque[Ticket] = deque()

    @property
    def queued(self) -> int:
        return self.pending - self.active

    def admit(self, n: int) -> Ticket:
        """Accept ``n`` replies (a :class:`Ticket` to wait on), or raise :class:`Refused`."""
        if self.draining:
            raise Refused("draining", "the server is shutting down")
        if self.pending + n > self.max_pending:
            raise Refused(
                "overload",
                f"over capacity: {self.pending} replies pending (limit "
                f"{self.max_pending}); retry later",
            )
        self.pending += n
        return Ticket(self, n)

    def retry_after(self, typical_seconds: float) -> int:
        """Seconds a refused client should wait: the waves of work ahead of it at
        ``typical_seconds`` each, between 1 and ``retry_after_max``.

        >>> Admission(max_active=4, max_pending=8, retry_after_max=60).retry_after(2.5)
        3
        """
        waves = self.pending / max(1, self.max_active) + 1
        return max(1, min(self.retry_after_max, math.ceil(waves * typical_seconds)))

    @asynccontextmanager
    async def hold(
        self, n: int, deadline: float, clock: Callable[[], float]
    ) -> AsyncIterator[float]:
        """Admit ``n`` replies, wait for their turn (at most ``deadline`` seconds),
        and yield the seconds left of the deadline; release them on leaving."""
        ticket = self.admit(n)
        accepted = clock()
        try:
            try:
                await asyncio.wait_for(ticket.acquire(), timeout=deadline)
            except TimeoutError:
                pass  # the deadline passed in the queue: the caller answers with fallbacks
            yield deadline - (clock() - accepted)
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
        adm._wake()
