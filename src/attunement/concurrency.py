"""Run many async jobs with a bound on how many are in flight, with progress.

Every long job (building, generation, scoring) goes through :func:`run_bounded`
so that it shows one progress bar, never holds more than ``limit`` coroutines
alive, and hands each result to a callback as soon as it is ready (so the
caller can append it to its output file at once).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def progress_bar(total: int | None, description: str, *, enabled: bool | None = None):
    """A rich progress bar (a no-op object when disabled or not on a terminal)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    if enabled is None:
        enabled = sys.stderr.isatty()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled,
                        transient=False)
    return _Bar(progress, total, description)


class _Bar:
    def __init__(self, progress, total, description):
        self._progress = progress
        self._total = total
        self._description = description
        self._task = None

    def __enter__(self) -> _Bar:
        self._progress.__enter__()
        self._task = self._progress.add_task(self._description, total=self._total)
        return self

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)


async def run_bounded(
    items: Iterable[T],
    fn: Callable[[T], Awaitable[R]],
    *,
    limit: int,
    on_result: Callable[[T, R], None] | None = None,
    description: str | None = None,
    total: int | None = None,
    show_progress: bool | None = None,
) -> list[R]:
    """Apply ``fn`` to every item, at most ``limit`` at a time, keeping input order.

    ``on_result(item, result)`` runs in the event loop as each job finishes
    (in completion order). The first exception cancels the remaining jobs and
    is raised, after the results already delivered were handed to
    ``on_result``, so nothing finished is lost.
    """
    if limit < 1:
        raise ValueError("limit must be >= 1")
    items = list(items)
    results: list[R | None] = [None] * len(items)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(items)):
        queue.put_nowait(i)

    with progress_bar(total if total is not None else len(items), description or "working",
                      enabled=show_progress) as bar:

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                res = await fn(items[i])
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
    return results  # type: ignore[return-value]
