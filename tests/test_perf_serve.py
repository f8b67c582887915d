"""The load test at a small size: three processes on loopback (simulated judge,
attune serve, client); every request answered, none lost, no 5xx, and the
overload phase refuses the excess with 503 + Retry-After."""

from __future__ import annotations

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
