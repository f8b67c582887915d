"""run_bounded: the limit, the order, and what happens on failure."""

from __future__ import annotations

import asyncio

import pytest

from attunement.concurrency import run_bounded


async def test_limit_respected_and_order_kept():
    state = {"now": 0, "peak": 0}

    async def job(i: int) -> int:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.001 * (i % 4))  # finish out of order
        state["now"] -= 1
        return i * i

    seen = []
    out = await run_bounded(range(30), job, limit=4, on_result=lambda i, r: seen.append(i),
                            show_progress=False)
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
        await run_bounded(range(8), job, limit=2,
                          on_result=lambda i, r: delivered.append(r), show_progress=False)
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
