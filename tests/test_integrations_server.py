"""attune serve on 127.0.0.1: OpenRLHF protocol conformance, the group endpoint,
auth, limits, malformed input, overload (503 + Retry-After), deadlines, draining."""

from __future__ import annotations

import json
import threading
import time

import pytest
from scale_helpers import ScriptedJudge, bench_batch
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.integrations.server import (
    NOT_LOCATED,
    ServerThread,
    ServeSettings,
    check_bind,
    load_token,
    split_query,
)
from attunement.judging import load_reward

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx2")

TOKEN = "t0k3n-for-tests-only-0123456789"
PROMPT = "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
ANSWER = "# Analysis\nShe is tired.\n\n# Response\nThat sounds like a long week."


def reward_on(judge: ScriptedJudge, name: str = "peregrm"):
    return load_reward(name, judge.model(), output="text")


@pytest.fixture(scope="module")
def data():
    examples, _ = bench_batch(3, 1)
    return examples, {e.example_id: e for e in examples}


@pytest.fixture(scope="module")
def server(data):
    judge = ScriptedJudge()
    settings = ServeSettings(
        group_size=8,
        max_batch=4,
        max_active=8,
        max_pending=16,
        max_body_bytes=64 * 1024,
        log_level="warning",
    )
    with ServerThread(reward_on(judge), settings, token=TOKEN, examples=data[1]) as srv:
        srv.judge = judge
        yield srv


def client(srv, token: str | None = TOKEN, timeout: float = 30.0):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=srv.url, headers=headers, timeout=timeout)


def openrlhf_body(example_ids, answer=ANSWER, prompt=PROMPT):
    return {
        "query": [prompt + answer + "<|im_end|>" for _ in example_ids],
        "prompts": [prompt for _ in example_ids],
        "labels": list(example_ids),
    }


# --------------------------------------------------------------------------- protocol


def test_openrlhf_body_in_rewards_out(server, data):
    examples, _ = data
    ids = [examples[0].example_id, examples[1].example_id, examples[0].example_id]
    with client(server) as c:
        r = c.post("/get_reward", json=openrlhf_body(ids))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert set(doc) == {"rewards", "scores", "extra_logs"}
    assert len(doc["rewards"]) == 3 and doc["scores"] == doc["rewards"]
    assert all(isinstance(x, float) and 0 < x <= 1 for x in doc["rewards"])
    # OpenRLHF makes a tensor of every extra_logs value: numbers only, one per item
    for key, values in doc["extra_logs"].items():
        assert len(values) == 3 and all(isinstance(v, (int, float)) for v in values), key
    assert doc["extra_logs"]["attune/unscorable"] == [0.0, 0.0, 0.0]
    assert "attune/resonation" in doc["extra_logs"] and "score" not in doc["extra_logs"]


def test_label_may_carry_the_example_json(server, data):
    example = data[0][2].model_copy(update={"example_id": "inline-1"})
    with client(server) as c:
        r = c.post("/get_reward", json=openrlhf_body([example.model_dump_json()]))
        r2 = c.post("/get_reward", json=openrlhf_body([example.model_dump(mode="json")]))
    assert r.status_code == 200 and r2.status_code == 200, (r.text, r2.text)
    assert r.json()["extra_logs"]["attune/unscorable"] == [0.0]


def test_group_endpoint_answers_breakdowns(server, data):
    example = data[0][1]
    body = {
        "example_id": example.example_id,
        "criteria_round": 7,
        "judgements": False,
        "replies": [
            {"reply_id": "a", "response": "That sounds hard."},
            {"reply_id": "b", "text": ANSWER},
        ],
    }
    with client(server) as c:
        r = c.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["criteria_round"] == 7 and [x["reply_id"] for x in doc["results"]] == ["a", "b"]
    b = doc["results"][1]["breakdown"]
    assert b["reply_id"] == "b" and b["reward"] == doc["results"][1]["score"]
    assert "judgements" not in b and set(b["dimensions"]) >= {"resonation", "bystander"}


def test_health_and_metrics(server):
    with client(server, token=None) as c:
        assert c.get("/healthz").json()["status"] == "ok"  # open to load balancers
        assert c.get("/metrics").status_code == 401
    with client(server) as c:
        # a 422, counted (an empty body is OpenRLHF's share for a second URL: a 200)
        c.post("/get_reward", json={"query": ["q"], "prompts": [], "labels": []})
        text = c.get("/metrics").text
    assert "# TYPE attune_request_seconds histogram" in text
    assert 'attune_requests_total{path="/get_reward",code="200"}' in text
    assert 'attune_requests_total{path="/get_reward",code="422"}' in text
    for name in (
        "attune_judge_calls_total",
        "attune_unscorable_total",
        "attune_queue_depth",
        'attune_request_seconds_bucket{path="/get_reward",le="+Inf"}',
    ):
        assert name in text


# --------------------------------------------------------------------------- auth and limits


def test_auth_required_when_a_token_is_set(server, data):
    body = openrlhf_body([data[0][0].example_id])
    with client(server, token=None) as c:
        r = c.post("/get_reward", json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    with client(server, token="wrong-token-wrong-token-wrong") as c:
        assert c.post("/get_reward", json=body).status_code == 401
        assert c.post("/v1/score", json={}).status_code == 401


def test_public_bind_needs_a_token(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="refusing to bind 0.0.0.0"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", TOKEN)
    check_bind("127.0.0.1", None)
    result = CliRunner().invoke(build_app(), ["serve", "--host", "0.0.0.0", "--judge", "local"])
    assert result.exit_code == 1 and "refusing to bind 0.0.0.0" in result.output
    monkeypatch.setenv("ATTUNE_TEST_TOKEN", "short")
    with pytest.raises(ValueError, match="at least 16"):
        load_token("ATTUNE_TEST_TOKEN")
    (tmp_path / "tok").write_text(TOKEN + "\n")
    assert load_token(token_file=tmp_path / "tok") == TOKEN
    with pytest.raises(ValueError, match="not set"):
        load_token("ATTUNE_TEST_NO_SUCH_VARIABLE")


@pytest.mark.parametrize(
    "case",
    [
        "bad_json",
        "not_json_type",
        "missing_labels",
        "lengths",
        "unknown_id",
        "too_many",
        "too_large",
        "too_large_chunked",
        "group_both",
    ],
)
def test_malformed_requests_get_4xx_with_a_message(server, data, case):
    ids = [data[0][0].example_id]
    with client(server) as c:
        if case == "bad_json":
            r = c.post("/get_reward", content=b"{not json")
            expected = 400
        elif case == "not_json_type":
            r = c.post("/get_reward", content=b"x", headers={"Content-Type": "text/plain"})
            expected = 415
        elif case == "missing_labels":
            r = c.post("/get_reward", json={"query": ["q"], "prompts": ["p"]})
            expected = 422
        elif case == "lengths":
            body = openrlhf_body(ids)
            body["prompts"].append("extra")
            r = c.post("/get_reward", json=body)
            expected = 422
        elif case == "unknown_id":
            r = c.post("/get_reward", json=openrlhf_body(["no-such-example"]))
            expected = 422
        elif case == "too_many":
            r = c.post("/get_reward", json=openrlhf_body(ids * 5))  # max_batch 4
            expected = 422
        elif case == "too_large":
            r = c.post("/get_reward", json=openrlhf_body(ids, answer="x" * 70_000))
            expected = 413
        elif case == "too_large_chunked":  # no Content-Length: counted while streaming
            r = c.post(
                "/get_reward",
                content=(b"x" * 8192 for _ in range(10)),
                headers={"Content-Type": "application/json"},
            )
            expected = 413
        else:
            r = c.post(
                "/v1/score",
                json={"example_id": ids[0], "example": {}, "replies": [{"response": "x"}]},
            )
            expected = 422
    assert r.status_code == expected, r.text
    assert r.json()["error"]["message"]


def test_split_query_finds_the_response():
    assert split_query(PROMPT + ANSWER + "<|im_end|>", PROMPT) == ANSWER
    truncated = PROMPT[40:]  # the query's prompt was cut on the left
    assert split_query(truncated + "Hello<|endoftext|></s>", PROMPT) == "Hello"
    assert split_query("something else entirely", PROMPT) is None


# --------------------------------------------------------------------------- failures


def test_unscorable_reply_gets_the_documented_fallback(data):
    judge = ScriptedJudge()
    judge.garble = True
    settings = ServeSettings(fallback="constant", fallback_score=-0.5, log_level="warning")
    with ServerThread(reward_on(judge), settings, examples=data[1]) as srv, client(srv) as c:
        r = c.post("/get_reward", json=openrlhf_body([data[0][0].example_id]))
        lost = c.post(
            "/get_reward", json=openrlhf_body([data[0][0].example_id], prompt="a different prompt")
        )
        group = c.post(
            "/v1/score", json={"example_id": data[0][0].example_id, "replies": [{"response": "ok"}]}
        )
    doc = r.json()
    assert r.status_code == 200 and doc["rewards"] == [-0.5]
    assert doc["extra_logs"]["attune/unscorable"] == [1.0] and doc["extra_logs"][
        "attune/resonation"
    ] == [0.0]
    assert lost.status_code == 200 and lost.json()["extra_logs"]["attune/unscorable"] == [1.0]
    result = group.json()["results"][0]
    assert result["unscorable"] and result["breakdown"]["reward"] is None
    assert result["score"] == -0.5 and result["fallback"] == "constant"
    assert NOT_LOCATED


def test_deadline_answers_in_time_with_the_fallback(data):
    judge = ScriptedJudge(delay=3.0)
    settings = ServeSettings(deadline=0.3, log_level="warning")
    with ServerThread(reward_on(judge), settings, examples=data[1]) as srv, client(srv) as c:
        started = time.monotonic()
        r = c.post("/get_reward", json=openrlhf_body([data[0][0].example_id]))
        took = time.monotonic() - started
    assert r.status_code == 200 and took < 2.0
    assert r.json()["extra_logs"]["attune/timed_out"] == [1.0]


def test_overload_answers_503_with_retry_after(data):
    judge = ScriptedJudge(delay=0.4)
    settings = ServeSettings(
        max_active=1, max_pending=2, max_batch=1, max_wait=0, log_level="warning"
    )
    statuses: list[int] = []
    retry_after: list[str] = []
    with ServerThread(reward_on(judge, "perm"), settings, examples=data[1]) as srv:

        def one() -> None:
            with client(srv) as c:
                r = c.post("/get_reward", json=openrlhf_body([data[0][0].example_id]))
            statuses.append(r.status_code)
            if r.status_code == 503:
                retry_after.append(r.headers["retry-after"])

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        with client(srv) as c:
            metrics = c.get("/metrics").text
    assert sorted(set(statuses)) == [200, 503], statuses
    assert statuses.count(200) >= 2 and len(statuses) == 6
    assert all(int(v) >= 1 for v in retry_after)
    assert 'attune_rejected_total{reason="overload"}' in metrics


def test_shutdown_finishes_accepted_requests(data):
    judge = ScriptedJudge(delay=0.5)
    settings = ServeSettings(log_level="warning")
    results: list[int] = []
    srv = ServerThread(reward_on(judge, "perm"), settings, examples=data[1]).start()

    def one() -> None:
        with client(srv) as c:
            results.append(
                c.post("/get_reward", json=openrlhf_body([data[0][0].example_id])).status_code
            )

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while srv.service.admission.pending < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.service.admission.pending == 3  # all three accepted and in progress
    srv.stop()  # what SIGTERM does: drain, then exit
    for t in threads:
        t.join(30)
    assert results == [200, 200, 200]
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/healthz", timeout=2)


def test_cli_serve_help_names_the_endpoints():
    result = CliRunner().invoke(build_app(), ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "/get_reward" in result.output and "--token-file" in result.output
    assert json.dumps  # keep json imported for debugging output


@pytest.mark.slow
def test_attune_serve_drains_on_sigterm(tmp_path, data):
    """The real CLI: judge opened from a spec, SIGTERM during a request, the
    request is answered, the process exits cleanly."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    from attunement.jsonl import write_jsonl
    from attunement.perf.reward_bench import RealisticJudge
    from attunement.perf.simserver import SimConfig, SimServer

    write_jsonl(tmp_path / "examples.jsonl", data[0])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sim = SimConfig(slots=4, base_latency=0.6, per_output_token=0.0, responder=RealisticJudge())
    with SimServer(sim) as judge:
        cmd = [
            sys.executable,
            "-c",
            "from attunement.cli import main; main()",
            "serve",
            "--reward",
            "perm",
            "--judge",
            f"openai:{judge.base_url}#sim-judge",
            "--data",
            str(tmp_path / "examples.jsonl"),
            "--port",
            str(port),
            "--deadline",
            "30",
        ]
        env = dict(os.environ, COLUMNS="200")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.1)
            answers: list[httpx.Response] = []
            t = threading.Thread(
                target=lambda: answers.append(
                    httpx.post(
                        url + "/get_reward", json=openrlhf_body([data[0][0].example_id]), timeout=60
                    )
                )
            )
            t.start()
            time.sleep(0.3)  # accepted, waiting on the judge
            proc.send_signal(signal.SIGTERM)
            t.join(60)
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
        output = proc.stdout.read().decode() if proc.stdout else ""
    assert answers and answers[0].status_code == 200, output
    assert answers[0].json()["extra_logs"]["attune/unscorable"] == [0.0]
    # uvicorn re-raises the captured SIGTERM once drained: exit by that signal
    assert code in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output


def test_openrlhf_reward_func_sends_the_token_and_waits_out_a_503(server, data, monkeypatch):
    from attunement.integrations import openrlhf

    prompt, example_id = PROMPT, data[0][0].example_id
    func = openrlhf.RemoteReward(server.url, token=TOKEN)
    doc = func([prompt + ANSWER + "<|im_end|>"], [prompt], [example_id])
    assert len(doc["rewards"]) == 1 and doc["extra_logs"]["attune/unscorable"] == [0.0]

    waits: list[float] = []
    server.service.draining = True  # the server answers 503 + Retry-After

    def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        server.service.draining = False  # back after the wait

    monkeypatch.setattr(openrlhf.time, "sleep", fake_sleep)
    doc = func([prompt + ANSWER], [prompt], [example_id])
    assert len(doc["rewards"]) == 1 and len(waits) == 1 and waits[0] >= 1

    with pytest.raises(RuntimeError, match="HTTP 401"):
        openrlhf.RemoteReward(server.url, token="not-the-token-not-the-token")(
            [prompt + ANSWER], [prompt], [example_id]
        )
    with pytest.raises(RuntimeError, match="unknown example id"):
        func([prompt + ANSWER], [prompt], ["no-such-example"])
