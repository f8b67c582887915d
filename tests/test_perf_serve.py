"""The load test at a small size: three processes on loopback (simulated judge,
attune serve, client); every request answered, none lost, no 5xx, and the
overload phase refuses the excess with 503 + Retry-After."""

from __future__ import annotations

import json

import pytest

from attunement.perf.serve_bench import ServeBenchSettings, check_results, run_serve_bench

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


@pytest.mark.slow
def test_small_load_test_meets_every_claim():
    settings = ServeBenchSettings(
        requests=48,
        concurrency=48,
        groups=8,
        slots=16,
        base_latency=0.005,
        per_output_token=0.00005,
        judge_concurrency=32,
        max_active=64,
        overload_pending=8,
        overload_wait=0.0,  # refuse at once: the patient client waits out Retry-After
        client="retry-after",
        retry_budget=60.0,
    )
    results = run_serve_bench(settings)
    assert [r.phase for r in results] == ["capacity", "overload"]
    failed = [(what, figure) for what, met, figure in check_results(results) if not met]
    assert not failed, failed
    capacity, overload = results
    assert capacity.status_counts == {200: 48} and capacity.unscorable == 0
    assert overload.refused_503 > 0 and overload.answered == 48
    assert 0 < capacity.percentile(0.5) <= capacity.percentile(0.99)


def test_the_load_client_counts_refusals_transport_retries_and_losses():
    """503s are waited out and retried, a request that never reached the server is
    sent again and counted by error, and an answer without numbers is lost."""
    import asyncio

    import httpx2

    from attunement.perf.serve_bench import fire

    seen: dict[str, int] = {}

    def handler(request: httpx2.Request) -> httpx2.Response:
        label = json.loads(request.content)["labels"][0]
        seen[label] = seen.get(label, 0) + 1
        if label == "flaky" and seen[label] == 1:
            raise httpx2.ConnectError("connection refused", request=request)
        if label == "busy" and seen[label] == 1:
            return httpx2.Response(503, headers={"Retry-After": "0"}, json={})
        if label == "broken":
            return httpx2.Response(200, json={"rewards": ["x"]})
        return httpx2.Response(
            200, json={"rewards": [0.5], "extra_logs": {"attune/unscorable": [1.0]}}
        )

    bodies = [
        {"query": ["q"], "prompts": ["p"], "labels": [x]} for x in ("flaky", "busy", "broken")
    ]
    result = asyncio.run(
        fire(
            "http://bench.invalid",
            bodies,
            concurrency=2,
            retry_budget=10.0,
            phase="capacity",
            transport=httpx2.MockTransport(handler),
        )
    )
    assert result.transport_retries == {"ConnectError": 1}
    assert result.refused_503 == 1 and result.retries == 1 and result.retry_after == [0]
    assert result.answered == 2 and result.lost == 1 and result.unscorable == 2
    assert result.status_counts == {200: 3, 503: 1} and len(result.latencies) == 2
