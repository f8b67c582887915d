"""The reward server's admission and metrics on their own, without HTTP: bounded
acceptance, first come first served, Retry-After, draining, Prometheus text."""

from __future__ import annotations

import asyncio

import pytest

from attunement.integrations.coordinator import BookStats
from attunement.integrations.scorer import ReplyScorer
from attunement.integrations.server import Admission, Metrics, Refused
from attunement.judging import load_reward
from attunement.llm import ScriptedChatModel


def test_acceptance_is_bounded_and_draining_refuses_everything():
    adm = Admission(max_active=2, max_pending=3)
    first = adm.admit(2)
    with pytest.raises(Refused) as over:
        adm.admit(2)
    assert over.value.reason == "overload" and "2 replies pending (limit 3)" in over.value.message
    adm.admit(1)
    assert adm.pending == 3
    first.release()
    first.release()  # twice is harmless
    assert adm.pending == 1
    adm.draining = True
    with pytest.raises(Refused) as closed:
        adm.admit(1)
    assert closed.value.reason == "draining"


def test_waiting_tickets_start_in_arrival_order():
    async def main() -> list[str]:
        adm = Admission(max_active=2, max_pending=10)
        started: list[str] = []
        running = adm.admit(1)
        await running.acquire()

        async def job(name: str, n: int) -> None:
            ticket = adm.admit(n)
            await ticket.acquire()
            started.append(name)
            await asyncio.sleep(0.01)
            ticket.release()

        tasks = [asyncio.create_task(job("big", 2)), asyncio.create_task(job("small", 1))]
        await asyncio.sleep(0.01)
        assert started == [] and adm.queued == 3  # "small" would fit, but "big" came first
        running.release()
        await asyncio.gather(*tasks)
        return started

    assert asyncio.run(main()) == ["big", "small"]  # the small one does not overtake


def test_a_cancelled_waiter_gives_its_place_back():
    async def main() -> tuple[int, int]:
        adm = Admission(max_active=1, max_pending=5)
        running = adm.admit(1)
        await running.acquire()
        waiting = adm.admit(1)
        task = asyncio.create_task(waiting.acquire())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        running.release()
        later = adm.admit(1)
        await asyncio.wait_for(later.acquire(), timeout=1)  # not held by the cancelled one
        waiting.release()
        return adm.pending, adm.active

    assert asyncio.run(main()) == (1, 1)


def test_hold_yields_the_deadline_left_even_after_waiting_too_long():
    now = [0.0]

    async def main() -> tuple[float, float, int]:
        adm = Admission(max_active=1, max_pending=5)
        async with adm.hold(1, 10.0, lambda: now[0]) as left:
            first = left
            now[0] = 4.0
            async with adm.hold(1, 0.05, lambda: now[0]) as late:
                second = late  # the queue wait ran out: the caller answers with fallbacks
        return first, second, adm.pending

    first, second, pending = asyncio.run(main())
    assert first == 10.0 and second == 0.05 and pending == 0


def test_retry_after_grows_with_the_queue_and_is_capped():
    adm = Admission(max_active=10, max_pending=1000, retry_after_max=30)
    assert adm.retry_after(0.1) == 1
    assert adm.retry_after(2.0) == 2
    adm.admit(40)
    assert adm.retry_after(2.0) == 10  # four waves ahead, plus this one, at 2 s each
    assert adm.retry_after(60.0) == 30


def test_metrics_render_counters_histogram_and_gauges():
    scorer = ReplyScorer(load_reward("perm", ScriptedChatModel(outputs=[])))
    scorer.counts.judge_calls = 7
    adm = Admission(max_active=2, max_pending=4)
    adm.admit(3)
    metrics = Metrics()
    metrics.request("/get_reward", 200)
    metrics.request("/get_reward", 200)
    metrics.reject("overload")
    metrics.observe("/get_reward", 0.2)
    metrics.observe("/get_reward", 7.0)
    metrics.request("/get_reward", 500)
    metrics.request("/get_reward", 503)
    book = BookStats(groups_opened=5, open_groups_evicted=1, answers_written=3, answers_shared=21)
    text = metrics.render(scorer, adm, book)
    assert 'attune_requests_total{path="/get_reward",code="500"} 1' in text
    assert "attune_server_errors_total 1" in text  # 503 is a refusal, not an error
    assert "attune_groups_opened_total 5" in text and "attune_open_groups_evicted_total 1" in text
    assert "attune_criteria_written_total 3" in text and "attune_criteria_shared_total 21" in text
    assert 'attune_requests_total{path="/get_reward",code="200"} 2' in text
    assert 'attune_rejected_total{reason="overload"} 1' in text
    assert 'attune_request_seconds_bucket{path="/get_reward",le="0.25"} 1' in text
    assert 'attune_request_seconds_bucket{path="/get_reward",le="10"} 2' in text
    assert 'attune_request_seconds_sum{path="/get_reward"} 7.2' in text
    assert "attune_judge_calls_total 7" in text and "attune_replies_total 0" in text
    assert "attune_queue_depth 3" in text and "attune_draining 0" in text
    assert "# TYPE attune_request_seconds histogram" in text
    assert metrics.typical_seconds() == 7.0  # the median of the recent latencies
