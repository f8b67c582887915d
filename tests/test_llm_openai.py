"""OpenAIChatModel against the simulated server: faults, deadlines, limits, n,
JSON fallbacks, keys."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from attunement.llm import (
    CachedChatModel,
    CompletionCache,
    LLMConnectionError,
    LLMError,
    LLMOptions,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
    load_chat_model,
)
from attunement.llm.endpoint import forget_endpoints
from attunement.llm.openai_compat import OpenAIChatModel
from attunement.llm.wire import schema_instruction, with_schema_instruction
from attunement.perf.simserver import SimConfig, SimServer

MSG = [{"role": "user", "content": "How should I tell my sister I cannot come?"}]


def fast_config(**kw) -> SimConfig:
    kw.setdefault("base_latency", 0.001)
    kw.setdefault("per_output_token", 0.0)
    return SimConfig(**kw)


@pytest.fixture(autouse=True)
def fresh_endpoints():
    """What servers showed about themselves is remembered per process: start clean."""
    forget_endpoints()
    yield
    forget_endpoints()


def new_model(
    server: SimServer, model: str | None = "sim-judge", *, environ=None, **opts
) -> OpenAIChatModel:
    """A model whose backoff sleeps are recorded instead of slept (its clock
    moves by what it would have slept, so deadlines see the time pass)."""
    opts.setdefault("timeout", 30.0)
    opts.setdefault("backoff_base", 5.0)  # would be visible if it were slept
    m = OpenAIChatModel(
        server.base_url,
        model,
        options=LLMOptions(**opts),
        environ=environ if environ is not None else {},
    )
    m.slept = []

    async def no_sleep(seconds: float) -> None:
        m.slept.append(seconds)

    m._sleep = no_sleep
    m._rand = lambda: 0.0
    m._clock = lambda: time.monotonic() + sum(m.slept)
    return m


@pytest.fixture
async def make_model():
    """new_model, closing every model (and its connections) after the test."""
    made = []

    def make(*args, **kw) -> OpenAIChatModel:
        made.append(new_model(*args, **kw))
        return made[-1]

    yield make
    for m in made:
        await m.aclose()


@pytest.fixture
def serve():
    servers = []

    def start(**kw) -> SimServer:
        server = SimServer(fast_config(**kw)).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


async def test_plain_answer_and_usage(serve, make_model):
    server = serve()
    async with make_model(server) as model:
        [c] = await model.complete(MSG, max_tokens=64)
    assert c.text.startswith("Simulated answer")
    assert c.sample_index == 0 and c.finish_reason == "stop"
    stats = server.stats()
    assert c.prompt_tokens == stats.prompt_tokens > 0
    assert c.completion_tokens == stats.completion_tokens > 0
    usage = model.usage.snapshot()
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens) == (
        1,
        stats.prompt_tokens,
        stats.completion_tokens,
    )


async def test_500_then_success(serve, make_model):
    server = serve(faults=["500"])
    model = make_model(server)
    [c] = await model.complete(MSG)
    assert c.text
    assert server.stats().requests == 2 and server.stats().faults_served == 1
    assert model.retries == 1
    assert model.slept == [5.0]  # backoff_base * 2**0, no jitter


async def test_429_waits_for_retry_after_not_backoff(serve, make_model):
    server = serve(faults=["429", "429"])
    model = make_model(server)
    await model.complete(MSG)
    assert model.slept == [0.0, 0.0]  # the server said Retry-After: 0
    assert server.stats().requests == 3


async def test_staying_slow_raises_timeout_error(serve, make_model):
    """The deadline bounds the whole call: a hung first attempt leaves no time
    for the two retries, so the call ends after 0.4 s, not 3 x 0.4 s."""
    server = serve(faults=["slow"] * 3, slow_seconds=3.0)
    model = make_model(server, timeout=0.4, max_retries=2)
    t0 = time.perf_counter()
    with pytest.raises(LLMTimeoutError, match="0.4 s deadline"):
        await model.complete(MSG)
    assert time.perf_counter() - t0 < 0.8
    assert server.stats().samples == 0


async def test_retries_fit_inside_the_deadline(serve, make_model):
    """Fast failures are retried within the deadline; a backoff that would run
    past it is not started."""
    server = serve(faults=["500", "500", "500"])
    model = make_model(server, timeout=3.0, max_retries=5, backoff_base=1.0)
    with pytest.raises(LLMStatusError, match="after 2 attempts.*3 s deadline"):
        await model.complete(MSG)
    assert model.slept == [1.0]  # the next backoff (2 s) would not fit in the time left
    assert server.stats().requests == 2


async def test_garbled_body_is_retried(serve, make_model):
    server = serve(faults=["garbled"])
    model = make_model(server)
    [c] = await model.complete(MSG)
    assert c.text.startswith("Simulated")
    assert model.retries == 1


async def test_dropped_connection_is_retried(serve, make_model):
    server = serve(faults=["drop"])
    model = make_model(server)
    [c] = await model.complete(MSG)
    assert c.text.startswith("Simulated")
    assert model.retries == 1


async def test_garbled_forever_raises_response_error(serve, make_model):
    server = serve(faults=["garbled"] * 3)
    model = make_model(server, max_retries=2)
    with pytest.raises(LLMResponseError, match="after 3 attempts"):
        await model.complete(MSG)


async def test_drop_forever_raises_connection_error(serve, make_model):
    server = serve(faults=["drop"] * 2)
    model = make_model(server, max_retries=1)
    with pytest.raises(LLMConnectionError):
        await model.complete(MSG)


async def test_400_is_not_retried(serve, make_model):
    server = serve(faults=["400"])
    model = make_model(server)
    with pytest.raises(LLMStatusError) as info:
        await model.complete(MSG)
    assert info.value.status == 400
    assert "first attempt" in str(info.value)
    assert server.stats().requests == 1 and model.slept == []


async def test_retries_run_out_with_typed_error_and_growing_backoff(serve, make_model):
    server = serve(faults=["500"] * 3)
    model = make_model(server, max_retries=2, backoff_base=0.5, backoff_max=0.8)
    with pytest.raises(LLMStatusError) as info:
        await model.complete(MSG)
    assert info.value.status == 500
    assert server.stats().requests == 3
    assert model.slept == [0.5, 0.8]  # doubled, then capped by backoff_max


async def test_concurrency_bound_respected(serve, make_model):
    server = serve(slots=32, base_latency=0.02)
    model = make_model(server, concurrency=3)
    assert model.max_concurrency == 3
    results = await asyncio.gather(
        *(model.complete([{"role": "user", "content": f"question {i}"}]) for i in range(24))
    )
    assert len(results) == 24
    assert server.stats().peak_in_flight == 3  # reached, never exceeded


async def test_n_samples_in_one_request(serve, make_model):
    server = serve()
    model = make_model(server)
    out = await model.complete(MSG, n=4, temperature=1.0, sample_start=2)
    assert [c.sample_index for c in out] == [2, 3, 4, 5]
    assert server.stats().requests == 1 and server.received()[0]["n"] == 4
    assert model.n_supported is True
    # the prompt is billed once for the request; completions are summed
    stats = server.stats()
    usage = model.usage.snapshot()
    assert (usage.calls, usage.prompt_tokens) == (1, stats.prompt_tokens)
    assert (
        usage.completion_tokens == stats.completion_tokens == sum(c.completion_tokens for c in out)
    )


async def test_n_fallback_when_server_ignores_n(serve, make_model):
    server = serve(supports_n=False)
    model = make_model(server)
    out = await model.complete(MSG, n=4, temperature=1.0, seed=3)
    assert [c.sample_index for c in out] == [0, 1, 2, 3]
    assert len({c.text for c in out}) == 4  # fanned-out samples carry their own seeds
    bodies = server.received()
    assert bodies[0]["n"] == 4 and all("n" not in b for b in bodies[1:])
    assert sorted(b["seed"] for b in bodies[1:]) == [3 * 1_000_003 + i for i in (1, 2, 3)]
    assert model.n_supported is False
    assert model.usage.snapshot().calls == 4

    server.reset_stats()
    out = await model.complete(MSG, n=3, temperature=1.0, sample_start=10)
    assert [c.sample_index for c in out] == [10, 11, 12]
    bodies = server.received()
    assert len(bodies) == 3 and all("n" not in b for b in bodies)  # fans out directly


async def test_json_schema_passed_through(serve, make_model):
    schema = {
        "type": "object",
        "properties": {"score": {"type": "integer"}},
        "required": ["score"],
        "additionalProperties": False,
    }

    def responder(messages, index, params):
        fmt = params.get("response_format") or {}
        return json.dumps({"score": 4}) if fmt.get("type") == "json_schema" else "free text"

    server = serve(responder=responder)
    model = make_model(server)
    [c] = await model.complete(MSG, json_schema=schema)
    assert json.loads(c.text) == {"score": 4}
    assert server.received()[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


async def test_model_id_from_server_when_not_given(serve, make_model):
    server = serve()
    model = make_model(server, model=None)
    assert model.name == f"openai:{server.base_url}"
    await model.complete(MSG)
    await model.complete(MSG)
    assert model.model == "sim-judge"
    assert model.name == f"openai:{server.base_url}#sim-judge"
    assert [b["model"] for b in server.received()] == ["sim-judge", "sim-judge"]


async def test_cache_keys_on_resolved_model_name(serve, tmp_path, make_model):
    """A model built without an id learns it before keying: its samples are
    then found by a model that named the id from the start."""
    server = serve()
    db = tmp_path / "c.db"
    learnt = CachedChatModel(make_model(server, model=None), CompletionCache(db))
    first = await learnt.complete(MSG, n=2, temperature=0.7)
    assert learnt.name.endswith("#sim-judge")
    named = CachedChatModel(make_model(server, model="sim-judge"), CompletionCache(db))
    again = await named.complete(MSG, n=2, temperature=0.7)
    assert all(c.cached for c in again) and [c.text for c in again] == [c.text for c in first]
    assert server.stats().requests == 1


async def test_cache_survives_changed_retry_and_timeout_options(serve, tmp_path):
    server = serve()
    db = tmp_path / "cache.sqlite"
    spec = f"openai:{server.base_url}#sim-judge"
    first = load_chat_model(spec, LLMOptions(cache=db, timeout=5, max_retries=1, concurrency=2))
    async with first:
        a = await first.complete(MSG, n=2, temperature=0.7)
    second = load_chat_model(
        spec, LLMOptions(cache=db, timeout=60, max_retries=9, concurrency=16, backoff_base=2.0)
    )
    async with second:
        b = await second.complete(MSG, n=2, temperature=0.7)
    assert server.stats().requests == 1
    assert [c.text for c in a] == [c.text for c in b] and all(c.cached for c in b)


def test_api_key_read_from_env_at_construction(monkeypatch):
    opts = LLMOptions(api_key_env="ATTUNE_TEST_KEY")
    monkeypatch.delenv("ATTUNE_TEST_KEY", raising=False)
    with pytest.raises(LLMError, match="ATTUNE_TEST_KEY"):
        OpenAIChatModel("http://localhost:1/v1", "m", options=opts)
    monkeypatch.setenv("ATTUNE_TEST_KEY", "sk-test")
    assert OpenAIChatModel("http://localhost:1/v1", "m", options=opts)._api_key == "sk-test"
    explicit = OpenAIChatModel("http://localhost:1/v1", "m", options=opts, api_key="given")
    assert explicit._api_key == "given"


async def test_no_key_or_openai_header_goes_to_a_plain_http_endpoint(serve, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-leak")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-do-not-leak")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-do-not-leak")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "X-Secret-Header: do-not-leak")
    server = serve()
    async with load_chat_model(f"openai:{server.base_url}#sim-judge") as model:
        await model.complete(MSG)
    [headers] = server.received_headers()
    assert "do-not-leak" not in json.dumps(headers)
    assert "authorization" not in headers


async def test_a_key_named_by_the_spec_is_sent(serve, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-leak")
    monkeypatch.setenv("MY_VLLM_KEY", "k-for-this-server")
    server = serve()
    spec = f"openai:{server.base_url}#sim-judge,key=MY_VLLM_KEY"
    async with load_chat_model(spec) as model:
        await model.complete(MSG)
        assert model.name == f"openai:{server.base_url}#sim-judge"  # the name holds no key
    [headers] = server.received_headers()
    assert headers["authorization"] == "Bearer k-for-this-server"


async def test_url_credentials_stay_out_of_names_and_cache(serve, tmp_path):
    server = serve()
    url = server.base_url.replace("http://", "http://user:hunter2@")
    db = tmp_path / "c.sqlite"
    async with load_chat_model(f"openai:{url}#sim-judge", LLMOptions(cache=db)) as model:
        await model.complete(MSG)
        assert model.name == f"openai:{server.base_url}#sim-judge"
    blob = b"".join(f.read_bytes() for f in tmp_path.iterdir())
    assert b"hunter2" not in blob
    assert server.stats().samples == 1


def test_bad_base_url_rejected():
    with pytest.raises(ValueError, match="http"):
        OpenAIChatModel("localhost:8000", "m", options=LLMOptions())


async def test_unreachable_server_raises_connection_error():
    model = OpenAIChatModel(
        "http://127.0.0.1:9/v1", "m", options=LLMOptions(max_retries=0, timeout=2)
    )
    with pytest.raises(LLMConnectionError):
        await model.complete(MSG)


def test_model_reused_across_event_loops(serve):
    """Each asyncio.run gets its own SDK client and slots (they cannot cross loops)."""
    server = serve()
    model = new_model(server, concurrency=2)

    async def ask() -> str:
        [c] = await model.complete(MSG)
        await model.aclose()
        return c.text

    assert asyncio.run(ask()) == asyncio.run(ask())
    assert server.stats().requests == 2

    async def close_twice() -> None:
        await model.complete(MSG)
        await model.aclose()
        await model.aclose()

    asyncio.run(close_twice())


# --------------------------------------------------------------------------- fallbacks


@pytest.mark.parametrize("status", [400, 500])
async def test_server_that_refuses_n_gets_single_requests_remembered_per_endpoint(
    serve, make_model, status
):
    """llama.cpp server: 'Only one completion choice is allowed'."""
    server = serve(n_rejection=status)
    model = make_model(server)
    out = await model.complete(MSG, n=3, temperature=1.0, seed=2)
    assert [c.sample_index for c in out] == [0, 1, 2] and len({c.text for c in out}) == 3
    bodies = server.received()
    assert bodies[0]["n"] == 3 and all("n" not in b for b in bodies[1:]) and len(bodies) == 4
    assert model.n_supported is False and model.retries == 0  # the refusal is not retried
    assert model.usage.snapshot().calls == 3

    # another model instance on the same endpoint fans out directly
    server.reset_stats()
    other = make_model(server)
    await other.complete(MSG, n=2, temperature=1.0)
    assert len(server.received()) == 2 and all("n" not in b for b in server.received())


async def test_fan_out_that_loses_one_request_keeps_the_others(serve, tmp_path, make_model):
    server = serve(n_rejection=400, faults=["none", "400"])
    cached = CachedChatModel(make_model(server), CompletionCache(tmp_path / "c.db"))
    with pytest.raises(LLMStatusError) as info:
        await cached.complete(MSG, n=3, temperature=1.0)
    assert info.value.status == 400
    kept = info.value.partial
    assert len(kept) == 2 and len(cached.cache) == 2  # the two siblings that answered
    assert cached.usage.snapshot().calls == 2  # what they cost is counted too

    server.reset_stats()
    out = await cached.complete(MSG, n=3, temperature=1.0)
    assert [c.cached for c in out].count(True) == 2
    assert len(server.received()) == 1  # only the lost sample is asked for again


SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer"}},
    "required": ["score"],
    "additionalProperties": False,
}


def _json_aware(messages, index, params):
    fmt = (params.get("response_format") or {}).get("type")
    if fmt in ("json_schema", "json_object"):
        return json.dumps({"score": 4})
    # plain text: a model following the shape the client wrote into its prompt
    written = messages[-1]["content"].endswith(schema_instruction(SCHEMA))
    return json.dumps({"score": 3}) if written else "free"


async def test_server_without_json_schema_falls_back_to_json_object(serve, make_model):
    """llama-cpp-python's server answers json_schema with HTTP 500 and a validation
    error: it is not retried, json_object (with the schema) is used instead, and
    every later request to the endpoint asks for json_object directly."""
    server = serve(response_formats=("text", "json_object"), responder=_json_aware)
    model = make_model(server, max_retries=4)
    [c] = await model.complete(MSG, json_schema=SCHEMA)
    assert json.loads(c.text) == {"score": 4}
    first, second = server.received()
    assert first["response_format"]["type"] == "json_schema"
    assert second["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert second["messages"] == with_schema_instruction(MSG, SCHEMA)  # the shape, in the prompt
    assert model.retries == 0 and model.slept == [] and model.json_mode == "json_object"

    server.reset_stats()
    again = make_model(server)
    await again.complete(MSG, json_schema=SCHEMA)
    await again.complete(MSG)  # no schema: the prompt is left alone
    with_schema, plain = server.received()
    assert with_schema["response_format"]["type"] == "json_object"
    assert plain["messages"] == MSG and "response_format" not in plain


async def test_server_without_any_json_mode_gets_the_shape_in_the_prompt(serve, make_model):
    server = serve(response_formats=("text",), responder=_json_aware)
    model = make_model(server)
    [c] = await model.complete(MSG, json_schema=SCHEMA)
    assert json.loads(c.text) == {"score": 3}
    kinds = [(b.get("response_format") or {}).get("type") for b in server.received()]
    assert kinds == ["json_schema", "json_object", None]
    assert model.json_mode == "text"
