"""Run many async jobs with a bound on how many are in flight, with progress.

Every long job (building, generation, scoring, training data) goes through
:func:`run_bounded` so that it never holds more than ``limit`` coroutines
alive, hands each result to a callback as soon as it is ready (so the caller
can append it to its output file at once), and shows its progress:

- on a terminal, a rich progress bar;
- otherwise (a batch job's log file, CI), one plain line every
  :data:`PROGRESS_LOG_SECONDS` with the count, failures, rate and time left,
  and a last line when the job ends.

A job that raises stops the run, unless the caller passes ``on_failure``: the
item is then recorded as failed, with its reason, and the run goes on (one
example that a server always refuses must not cancel a night of work).
:class:`FailureLog` is the ready-made recorder.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import IO, Any, Generic, Self, TypeVar

from pydantic import BaseModel, Field
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

#: seconds between two progress lines when stderr is not a terminal
PROGRESS_LOG_SECONDS = 30.0


class FailedItem(BaseModel):
    """An item whose job failed for good, and why (for reports and manifests)."""

    key: str
    reason: str
    #: what went wrong, when a model call failed (``attunement.llm.failure_cause``):
    #: the run then ends with one line naming it
    cause: str | None = Field(None, repr=False)


def reason_of(exc: BaseException) -> str:
    """``ErrorType: message``, one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class FailureLog(Generic[T]):
    """An ``on_failure`` callback that keeps each failed item's key and reason.

    >>> failures = FailureLog(lambda item: item["id"])
    >>> failures({"id": "e7"}, ValueError("HTTP 400: bad request"))
    >>> failures.items
    [FailedItem(key='e7', reason='ValueError: HTTP 400: bad request')]
    """

    def __init__(self, key: Callable[[T], str]):
        self._key = key
        self.items: list[FailedItem] = []

    def __call__(self, item: T, exc: BaseException) -> None:
        failed = FailedItem(key=self._key(item), reason=reason_of(exc))
        self.items.append(failed)
        log.warning("%s failed: %s", failed.key, failed.reason)

    def __len__(self) -> int:
        return len(self.items)


def _duration(seconds: float) -> str:
    """Short human duration: 42s, 3m05s, 1h02m.

    >>> _duration(42.4), _duration(185), _duration(3720)
    ('42s', '3m05s', '1h02m')
    """
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class LogProgress:
    """Progress as plain lines, for logs: count, failures, rate, time left.

    A line is written when ``interval`` seconds have passed since the last
    one; the closing line is written when any line was (short jobs stay quiet).
    """

    def __init__(
        self,
        total: int | None,
        description: str,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        stream: IO[str] | None = None,
    ):
        self.total = total
        self.description = description
        self.interval = PROGRESS_LOG_SECONDS if interval is None else interval
        self._clock = clock
        self._stream = stream
        self.done = self.failed = 0
        self._started = self._last = 0.0
        self._lines = 0

    def _write(self, line: str) -> None:
        stream = self._stream or sys.stderr  # looked up late: tests swap sys.stderr
        print(line, file=stream, flush=True)
        self._lines += 1

    def line(self) -> str:
        elapsed = max(self._clock() - self._started, 1e-9)
        rate = self.done / elapsed
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        if self.total:
            count += f" ({100 * self.done / self.total:.0f}%)"
        parts = [f"{self.description}: {count}"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        parts.append(f"{rate:.2f}/s" if rate < 10 else f"{rate:.0f}/s")
        parts.append(f"{_duration(elapsed)} elapsed")
        if self.total and self.done:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        return ", ".join(parts)

    def __enter__(self) -> Self:
        self._started = self._last = self._clock()
        return self

    def advance(self, n: int = 1, *, failed: bool = False) -> None:
        self.done += n
        self.failed += n if failed else 0
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            self._write(self.line())

    def __exit__(self, *exc: object) -> None:
        if self._lines:
            elapsed = _duration(self._clock() - self._started)
            failed = f", {self.failed} failed" if self.failed else ""
            self._write(f"{self.description}: {self.done} done in {elapsed}{failed}")


class _Bar:
    """A rich progress bar on a terminal."""

    def __init__(self, total: int | None, description: str):
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._total = total
        self._description = description
        self._task: Any = None
        self.failed = 0

    def __enter__(self) -> Self:
        self._progress.__enter__()
        self._task = self._progress.add_task(self._description, total=self._total)
        return self

    def advance(self, n: int = 1, *, failed: bool = False) -> None:
        if failed:
            self.failed += n
            self._progress.update(
                self._task, description=f"{self._description} ({self.failed} failed)"
            )
        self._progress.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)


class _Silent:
    def __enter__(self) -> Self:
        return self

    def advance(self, n: int = 1, *, failed: bool = False) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(
    total: int | None,
    description: str,
    *,
    enabled: bool | None = None,
) -> _Bar | LogProgress | _Silent:
    """A progress display: ``enabled=None`` picks a bar on a terminal and log
    lines elsewhere; True forces the bar, False shows nothing."""
    if enabled is False:
        return _Silent()
    if enabled is None and not sys.stderr.isatty():
        return LogProgress(total, description)
    return _Bar(total, description)


async def run_bounded(
    items: Iterable[T],
    fn: Callable[[T], Awaitable[R]],
    *,
    limit: int,
    on_result: Callable[[T, R], None] | None = None,
    on_failure: Callable[[T, Exception], None] | None = None,
    description: str | None = None,
    total: int | None = None,
    show_progress: bool | None = None,
) -> list[R | None]:
    """Apply ``fn`` to every item, at most ``limit`` at a time, keeping input order.

    ``on_result(item, result)`` runs in the event loop as each job finishes
    (in completion order).

    Without ``on_failure``, the first exception cancels the remaining jobs and
    is raised, after the results already delivered were handed to
    ``on_result``, so nothing finished is lost. With it, a job that raises an
    ``Exception`` is handed to ``on_failure(item, exc)``, its result is None,
    and the run goes on (cancellation and interrupts still stop it).
    """
    if limit < 1:
        raise ValueError("limit must be >= 1")
    items = list(items)
    results: list[R | None] = [None] * len(items)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(items)):
        queue.put_nowait(i)

    with progress_bar(
        total if total is not None else len(items), description or "working", enabled=show_progress
    ) as bar:

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    res = await fn(items[i])
                except Exception as exc:
                    if on_failure is None:
                        raise
                    on_failure(items[i], exc)
                    bar.advance(failed=True)
                    continue
                results[i] = res
                if on_result is not None:
                    on_result(items[i], res)
                bar.advance()

        workers = [asyncio.create_task(worker()) for _ in range(min(limit, len(items)) or 0)]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
    return results
