"""run_bounded: the limit, the order, what happens on failure, progress in logs."""

from __future__ import annotations

import asyncio
import io

import pytest

from attunement import concurrency
from attunement.concurrency import FailureLog, LogProgress, run_bounded


async def test_limit_respected_and_order_kept():
    state = {"now": 0, "peak": 0}

    async def job(i: int) -> int:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.001 * (i % 4))  # finish out of order
        state["now"] -= 1
        return i * i

    seen = []
    out = await run_bounded(
        range(30), job, limit=4, on_result=lambda i, r: seen.append(i), show_progress=False
    )
    assert out == [i * i for i in range(30)]
    assert state["peak"] == 4
    assert sorted(seen) == list(range(30))


async def test_results_delivered_before_error_is_raised():
    delivered = []

    async def job(i: int) -> int:
        if i == 5:
            await asyncio.sleep(0.01)
            raise RuntimeError("item 5 failed")
        await asyncio.sleep(0.001)
        return i

    with pytest.raises(RuntimeError, match="item 5 failed"):
        await run_bounded(
            range(8), job, limit=2, on_result=lambda i, r: delivered.append(r), show_progress=False
        )
    # everything finished before the failure was handed over
    assert {0, 1, 2, 3, 4} <= set(delivered) and 5 not in delivered


async def test_failure_cancels_remaining_jobs():
    started = []

    async def job(i: int) -> int:
        started.append(i)
        if i == 0:
            raise ValueError("bad input")
        await asyncio.sleep(0.05)
        return i

    with pytest.raises(ValueError):
        await run_bounded(range(20), job, limit=2, show_progress=False)
    assert len(started) < 20


async def test_empty_and_bad_limit():
    async def job(i: int) -> int:
        return i

    assert await run_bounded([], job, limit=3, show_progress=False) == []
    with pytest.raises(ValueError, match="limit"):
        await run_bounded([1], job, limit=0, show_progress=False)


async def test_on_failure_records_the_item_and_the_run_goes_on():
    delivered = []
    failures = FailureLog(lambda i: f"item-{i}")

    async def job(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 3))
        if i in (2, 5):
            raise ValueError(f"HTTP 400: item {i} is refused\nfor good")
        return i * 10

    out = await run_bounded(
        range(8),
        job,
        limit=3,
        on_result=lambda i, r: delivered.append(i),
        on_failure=failures,
        show_progress=False,
    )
    assert out == [0, 10, None, 30, 40, None, 60, 70]
    assert sorted(delivered) == [0, 1, 3, 4, 6, 7]
    assert [(f.key, f.reason) for f in sorted(failures.items, key=lambda f: f.key)] == [
        ("item-2", "ValueError: HTTP 400: item 2 is refused for good"),
        ("item-5", "ValueError: HTTP 400: item 5 is refused for good"),
    ]


async def test_on_failure_does_not_swallow_cancellation():
    async def job(i: int) -> int:
        await asyncio.sleep(10)
        return i

    task = asyncio.ensure_future(
        run_bounded(range(4), job, limit=2, on_failure=lambda i, e: None, show_progress=False)
    )
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_progress_lines_have_counts_rate_and_eta():
    clock, stream = Clock(), io.StringIO()
    with LogProgress(100, "scoring (perm)", interval=30, clock=clock, stream=stream) as p:
        clock.now = 10
        p.advance(10)  # before the interval: quiet
        assert stream.getvalue() == ""
        clock.now = 40
        p.advance(10, failed=True)
        p.advance(20)  # within the next interval: still one line
        clock.now = 75
        p.advance(10)
        clock.now = 100
        p.advance(50)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "scoring (perm): 20/100 (20%), 10 failed, 0.50/s, 40s elapsed, ETA 2m40s"
    assert lines[1] == "scoring (perm): 50/100 (50%), 10 failed, 0.67/s, 1m15s elapsed, ETA 1m15s"
    assert lines[-1] == "scoring (perm): 100 done in 1m40s, 10 failed"
    assert len(lines) == 3  # 25 s after the last line: only the closing one


def test_short_jobs_print_no_progress_lines():
    clock, stream = Clock(), io.StringIO()
    with LogProgress(3, "quick", interval=30, clock=clock, stream=stream) as p:
        clock.now = 1
        p.advance(3)
    assert stream.getvalue() == ""


async def test_run_bounded_logs_progress_when_stderr_is_not_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(concurrency, "PROGRESS_LOG_SECONDS", 0.0)

    async def job(i: int) -> int:
        return i

    await run_bounded(range(3), job, limit=1, description="generate (full)")
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("generate (full): 1/3 (33%), ") and "ETA" in err[0]
    assert err[-1].startswith("generate (full): 3 done in ")


def test_docstring_examples_hold():
    import doctest

    result = doctest.testmod(concurrency)
    assert result.failed == 0 and result.attempted > 0
