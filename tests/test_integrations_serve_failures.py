"""attune serve against OpenRLHF's own client and against bad input, on 127.0.0.1:
empty lists (OpenRLHF's share for every URL after the first), a burst at 4x
capacity from a client that tries 5 times 1 s apart and ignores Retry-After,
deep nesting and lone surrogates (4xx or sanitised, never 500), every 5xx
counted, and /healthz answering 503 "draining" from SIGTERM until the last
accepted request is answered."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from scale_helpers import ScriptedJudge, bench_batch

from attunement.integrations.outcomes import key
from attunement.integrations.server import ServerThread, ServeSettings
from attunement.judging import load_reward
from attunement.perf.serve_bench import ClientSettings, fire

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx2")

PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
ANSWER = "# Analysis\nShe is tired.\n\n# Response\nThat sounds like a long week."


@pytest.fixture(scope="module")
def data():
    examples, _ = bench_batch(4, 1)
    return examples, {e.example_id: e for e in examples}


def body(example_id: str, answer: str = ANSWER) -> dict:
    return {"query": [PROMPT + answer + "<|im_end|>"], "prompts": [PROMPT], "labels": [example_id]}


def serve(judge: ScriptedJudge, data, **settings) -> ServerThread:
    reward = load_reward("perm", judge.model(), output="text")
    return ServerThread(reward, ServeSettings(log_level="warning", **settings), examples=data[1])


def test_empty_lists_are_answered_with_empty_lists(data):
    """OpenRLHF 0.11.0 sends the sample to the first --reward.remote_url and empty lists
    to the others; any failure there loses the sample."""
    with serve(ScriptedJudge(), data) as srv:
        r = httpx.post(srv.url + "/get_reward", json={"query": [], "prompts": [], "labels": []})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["rewards"] == [] and doc["scores"] == []
    assert doc["extra_logs"] and all(v == [] for v in doc["extra_logs"].values())


def test_a_burst_at_four_times_capacity_from_openrlhfs_client_loses_nothing(data):
    """32 samples at once against --max-pending 8, sent as OpenRLHF sends them (5 tries,
    1 s apart, Retry-After ignored): each wave takes 1.5 s, so refusing at once would
    lose the last wave; held in line, every sample is answered on its first try."""
    judge = ScriptedJudge(delay=1.5)
    ids = [e.example_id for e in data[0]]
    bodies = [body(ids[i % len(ids)]) for i in range(32)]
    with serve(judge, data, max_active=8, max_pending=8, max_batch=1) as srv:
        result = asyncio.run(
            fire(
                srv.url,
                bodies,
                concurrency=32,
                retry_budget=60.0,
                phase="overload",
                client=ClientSettings(),  # OpenRLHF's client
            )
        )
    assert result.lost == 0 and result.answered == 32, result
    assert result.status_counts == {200: 32} and result.retries == 0
    # latencies run from the first try: the last wave waited about three waves
    assert max(result.latencies) > 3 * 1.5 - 0.5


def test_a_request_that_waits_too_long_for_room_is_refused_with_retry_after(data):
    judge = ScriptedJudge(delay=1.0)
    with serve(judge, data, max_active=1, max_pending=1, max_batch=1, max_wait=0.2) as srv:
        first = threading.Thread(
            target=lambda: httpx.post(
                srv.url + "/get_reward", json=body(data[0][0].example_id), timeout=30
            )
        )
        first.start()
        time.sleep(0.2)
        started = time.monotonic()
        r = httpx.post(srv.url + "/get_reward", json=body(data[0][1].example_id), timeout=30)
        waited = time.monotonic() - started
        first.join(30)
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    assert 0.15 < waited < 0.9  # held for max_wait, not refused at once nor judged


@pytest.mark.parametrize(
    "case", ["deep_json", "deep_label", "surrogate_query", "surrogate_label_json"]
)
def test_bad_input_is_a_4xx_or_is_sanitised_never_a_500(data, case):
    example = data[0][0]
    with serve(ScriptedJudge(), data) as srv:
        if case == "deep_json":  # RecursionError in the JSON parser
            content = b'{"query": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
            r = httpx.post(
                srv.url + "/get_reward",
                content=content,
                headers={"Content-Type": "application/json"},
            )
            expected = 400
        elif case == "deep_label":  # parses, but nested beyond any real body
            label: object = "x"
            for _ in range(500):
                label = {"a": label}
            r = httpx.post(
                srv.url + "/get_reward",
                json={"query": ["q"], "prompts": ["p"], "labels": [label]},
            )
            expected = 400
        elif case == "surrogate_query":  # a lone surrogate, valid as a JSON escape
            content = json.dumps(body(example.example_id, answer="Hi \ud800 there")).encode()
            assert b"\\ud800" in content
            r = httpx.post(
                srv.url + "/get_reward",
                content=content,
                headers={"Content-Type": "application/json"},
            )
            expected = 200
        else:
            inline = example.model_copy(update={"example_id": "inline-\ud800"}).model_dump(
                mode="json"
            )
            content = json.dumps(body(json.dumps(inline))).encode()
            r = httpx.post(
                srv.url + "/get_reward",
                content=content,
                headers={"Content-Type": "application/json"},
            )
            expected = 200
        metrics = httpx.get(srv.url + "/metrics").text
    assert r.status_code == expected, r.text
    if expected == 200:
        assert r.json()["extra_logs"][key("unscorable")] == [0.0]  # scored, not dropped
    assert "attune_server_errors_total 0" in metrics


def test_an_unexpected_failure_is_a_500_and_is_counted(data, monkeypatch):
    from attunement.integrations.server.service import RewardService

    async def broken(self, body):
        raise RuntimeError("a bug")

    monkeypatch.setattr(RewardService, "get_reward", broken)
    with serve(ScriptedJudge(), data) as srv:
        r = httpx.post(srv.url + "/get_reward", json=body(data[0][0].example_id))
        metrics = httpx.get(srv.url + "/metrics").text
    assert r.status_code == 500 and r.json()["error"]["type"] == "internal"
    assert 'attune_requests_total{path="/get_reward",code="500"} 1' in metrics
    assert "attune_server_errors_total 1" in metrics


def test_healthz_answers_503_draining_until_the_last_accepted_request_is_answered(data):
    judge = ScriptedJudge(delay=1.5)
    srv = serve(judge, data).start()
    answers: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: answers.append(
            httpx.post(srv.url + "/get_reward", json=body(data[0][0].example_id), timeout=30)
        )
    )
    request.start()
    deadline = time.monotonic() + 10
    while srv.service.admission.pending < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    stopping = threading.Thread(target=srv.stop)  # what SIGTERM does
    stopping.start()
    time.sleep(0.2)
    health = httpx.get(srv.url + "/healthz", timeout=5)
    refused = httpx.post(srv.url + "/get_reward", json=body(data[0][1].example_id), timeout=5)
    assert not answers  # still being judged
    request.join(30)
    stopping.join(60)
    assert health.status_code == 503 and health.json()["status"] == "draining"
    assert refused.status_code == 503 and "retry-after" in refused.headers
    assert answers and answers[0].status_code == 200
    with pytest.raises(httpx.ConnectError):  # and then it is gone
        httpx.get(srv.url + "/healthz", timeout=2)
