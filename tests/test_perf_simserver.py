"""The simulated server itself: HTTP, keep-alive, latency model, slot queue, stats."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest

from attunement.perf.simserver import SimConfig, SimServer, truncate_tokens


def post(server: SimServer, body: dict, conn: http.client.HTTPConnection | None = None):
    url = urlparse(server.base_url)
    own = conn is None
    conn = conn or http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    conn.request(
        "POST",
        "/v1/chat/completions",
        body=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    data = resp.read()
    if own:
        conn.close()
    return resp, data


def chat(text: str = "hello there", **extra) -> dict:
    return {"model": "sim-judge", "messages": [{"role": "user", "content": text}], **extra}


def test_models_and_chat_shape():
    with SimServer(SimConfig(base_latency=0.0, per_output_token=0.0)) as server:
        url = urlparse(server.base_url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        conn.request("GET", "/v1/models")
        models = json.loads(conn.getresponse().read())
        assert models["data"][0]["id"] == "sim-judge"
        resp, data = post(server, chat(n=3), conn)  # same connection: keep-alive
        doc = json.loads(data)
        assert resp.status == 200
        assert [c["index"] for c in doc["choices"]] == [0, 1, 2]
        assert doc["usage"]["prompt_tokens"] == 2
        assert doc["usage"]["completion_tokens"] == server.stats().completion_tokens
        conn.request("GET", "/v1/nothing")
        assert conn.getresponse().status == 404
        conn.close()


def test_bad_requests_are_400():
    with SimServer(SimConfig(base_latency=0.0)) as server:
        resp, _ = post(server, {"messages": []})
        assert resp.status == 400
        resp, _ = post(server, chat(n=0))
        assert resp.status == 400


def test_unknown_fault_and_bad_slots_rejected():
    with pytest.raises(ValueError, match="unknown faults"):
        SimConfig(faults=["boom"])
    with pytest.raises(ValueError, match="slots"):
        SimConfig(slots=0)


def test_supports_n_false_returns_one_choice():
    with SimServer(SimConfig(base_latency=0.0, supports_n=False)) as server:
        _, data = post(server, chat(n=4))
        assert len(json.loads(data)["choices"]) == 1
        assert server.stats().samples == 1


def test_max_tokens_cuts_the_answer():
    assert truncate_tokens("a b c d", 2) == ("a b", 2, True)
    assert truncate_tokens("a b", 5) == ("a b", 2, False)
    cfg = SimConfig(base_latency=0.0, responder=lambda m, i, p: "one two three four five")
    with SimServer(cfg) as server:
        _, data = post(server, chat(max_tokens=3))
        choice = json.loads(data)["choices"][0]
        assert choice["message"]["content"] == "one two three"
        assert choice["finish_reason"] == "length"


def test_service_time_uses_longest_sample_and_prompt_tokens():
    def responder(messages, index, params):
        return " ".join(["w"] * (10 if index == 0 else 40))

    cfg = SimConfig(
        base_latency=0.01, per_prompt_token=0.001, per_output_token=0.001, responder=responder
    )
    with SimServer(cfg) as server:
        post(server, chat("a b c d e", n=2, max_tokens=100))
        stats = server.stats()
    # each sample: 0.01 + 5 prompt tokens * 0.001 + its own tokens * 0.001
    assert stats.max_request_seconds == pytest.approx(0.055)
    assert stats.busy_seconds == pytest.approx(0.025 + 0.055)
    assert stats.completion_tokens == 50 and stats.samples == 2

    # one slot for the longest sample
    with SimServer(
        SimConfig(
            base_latency=0.01,
            per_prompt_token=0.001,
            per_output_token=0.001,
            responder=responder,
            n_shares_slot=True,
        )
    ) as server:
        post(server, chat("a b c d e", n=2, max_tokens=100))
        assert server.stats().busy_seconds == pytest.approx(0.055)


def test_samples_of_one_request_occupy_sequence_slots():
    cfg = SimConfig(slots=2, base_latency=0.08, per_output_token=0.0)
    with SimServer(cfg) as server:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            statuses = [
                r.status for r, _ in pool.map(lambda i: post(server, chat(f"q{i}", n=2)), range(2))
            ]
        wall = time.perf_counter() - t0
        bound = server.lower_bound_seconds()
    assert statuses == [200, 200]
    assert bound == pytest.approx(2 * 0.08)  # 4 samples x 0.08 s on 2 slots
    assert wall >= bound * 0.98  # two samples had to wait for a slot


def test_slots_queue_requests_and_bound_holds():
    cfg = SimConfig(slots=2, base_latency=0.08, per_output_token=0.0)
    with SimServer(cfg) as server:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(6) as pool:
            statuses = [
                r.status for r, _ in pool.map(lambda i: post(server, chat(f"q{i}")), range(6))
            ]
        wall = time.perf_counter() - t0
        stats = server.stats()
        bound = server.lower_bound_seconds()
    assert statuses == [200] * 6
    assert bound == pytest.approx(max(0.08, 6 * 0.08 / 2))
    assert wall >= bound * 0.98  # a slot is held for the whole service time
    assert stats.peak_in_flight > 2  # queued requests count as in flight


def test_faults_apply_in_order_then_normal_service():
    with SimServer(SimConfig(base_latency=0.0, faults=["500", "429", "garbled", "400"])) as s:
        first, _ = post(s, chat())
        second, _ = post(s, chat())
        third, body = post(s, chat())
        fourth, _ = post(s, chat())
        fifth, _ = post(s, chat())
        assert (first.status, second.status, third.status, fourth.status, fifth.status) == (
            500,
            429,
            200,
            400,
            200,
        )
        assert second.getheader("Retry-After") == "0"
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
        stats = s.stats()
        assert (stats.requests, stats.faults_served, stats.samples) == (5, 4, 1)


def test_drop_closes_without_answer():
    with SimServer(SimConfig(base_latency=0.0, faults=["drop"])) as server:
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            post(server, chat())
        resp, _ = post(server, chat())
        assert resp.status == 200


def test_reset_stats_and_received_log():
    with SimServer(SimConfig(base_latency=0.0)) as server:
        post(server, chat(seed=5))
        assert server.received()[0]["seed"] == 5
        server.reset_stats()
        assert server.stats().requests == 0 and server.received() == []
        assert server.lower_bound_seconds() == 0.0


def test_stop_is_idempotent_and_base_url_needs_running_server():
    server = SimServer(SimConfig())
    with pytest.raises(RuntimeError):
        _ = server.base_url
    server.start()
    server.stop()
    server.stop()


def test_the_prefix_cache_serves_whole_64_character_blocks_of_a_shared_start():
    # "<|user|>" (8 characters) opens the message; then 30 five-character words
    shared = "word " * 30
    cfg = SimConfig(base_latency=0.0, per_prompt_token=0.001, per_output_token=0.0)
    with SimServer(cfg) as server:
        post(server, chat(shared + "tail1"))
        first = server.stats()
        post(server, chat(shared + "tail2"))
        second = server.stats()
    assert cfg.prefix_block == 64
    assert (first.prompt_tokens, first.cached_prompt_tokens) == (31, 0)
    # 164 characters: blocks 0-63 and 64-127 are shared; the 24 words ending by
    # character 128 (word i ends at 8 + 5 i + 4) are served, the other 7 tokens computed
    assert (second.prompt_tokens, second.cached_prompt_tokens) == (62, 24)
    assert second.prefill_seconds == pytest.approx(0.031 + 0.007)
    assert second.busy_seconds == pytest.approx(second.prefill_seconds)
    assert second.base_seconds == 0.0 and second.decode_seconds == 0.0

    # without a prefix cache every prompt token is prefilled
    with SimServer(SimConfig(base_latency=0.0, per_output_token=0.0, prefix_block=0)) as server:
        post(server, chat(shared + "tail1"))
        post(server, chat(shared + "tail2"))
        assert server.stats().cached_prompt_tokens == 0


def test_the_bound_splits_into_base_prefill_and_decode_seconds():
    def responder(messages, index, params):
        return " ".join(["w"] * (10 if index == 0 else 40))

    cfg = SimConfig(
        base_latency=0.01, per_prompt_token=0.001, per_output_token=0.001, responder=responder
    )
    with SimServer(cfg) as server:
        post(server, chat("a b c d e", n=2, max_tokens=100))
        stats = server.stats()
    assert stats.base_seconds == pytest.approx(0.02)
    assert stats.prefill_seconds == pytest.approx(0.01)  # 5 tokens, each of 2 samples
    assert stats.decode_seconds == pytest.approx(0.05)
    assert stats.busy_seconds == pytest.approx(0.08)
