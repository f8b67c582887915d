"""The retry policy of the OpenAI-compatible client, one decision at a time.

The loop itself runs against a fake call, a frozen clock that only the
patched sleep (and the fake call) move, and counts what happened.
"""

from __future__ import annotations

import email.utils
import importlib
import json

import openai
import pytest

from attunement.llm import (
    LLMConnectionError,
    LLMError,
    LLMOptions,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
    make_request,
)
from attunement.llm.endpoint import (
    Endpoint,
    api_key_for,
    endpoint_for,
    forget_endpoints,
    rejects_json_format,
    rejects_n,
)
from attunement.llm.openai_compat import OpenAIChatModel
from attunement.llm.retry import (
    Deadline,
    backoff_delay,
    is_request_error,
    retry_after_seconds,
    retry_delay,
    should_retry,
    why_not_retry,
)
from attunement.llm.wire import (
    parse_choices,
    request_body,
    response_format_for,
    split_tokens,
    to_llm_error,
    with_schema_instruction,
)

httpx = next(
    importlib.import_module(m)
    for m in ("httpx2", "httpx")
    if importlib.util.find_spec(m) is not None
)

VALIDATION_500 = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
    "'response_format', 'type'), 'msg': \"Input should be 'text' or "
    "'json_object'\", 'input': 'json_schema'}"
)


@pytest.fixture(autouse=True)
def fresh_endpoints():
    forget_endpoints()
    yield
    forget_endpoints()


@pytest.mark.parametrize(
    "error, expected",
    [
        (LLMTimeoutError("t"), True),
        (LLMConnectionError("c"), True),
        (LLMResponseError("garbled"), True),
        (LLMStatusError("", status=408), True),
        (LLMStatusError("", status=409), True),
        (LLMStatusError("", status=429), True),
        (LLMStatusError("", status=500), True),
        (LLMStatusError("", status=503, body="upstream connect error"), True),
        (LLMStatusError("", status=400), False),
        (LLMStatusError("", status=401), False),
        (LLMStatusError("", status=404), False),
        (LLMStatusError("", status=422), False),
        (LLMStatusError("", status=None), False),
        # a 500 whose body says the request is invalid: resending it cannot help
        (LLMStatusError("", status=500, body=VALIDATION_500), False),
        (LLMStatusError("", status=500, body="Only one completion choice is allowed"), False),
        # a rate limit is retried whatever its body calls itself
        (LLMStatusError("", status=429, body='{"type": "invalid_request_error"}'), True),
        (LLMError("other"), False),
    ],
)
def test_should_retry(error, expected):
    assert should_retry(error) is expected


def test_request_errors_are_told_from_server_errors():
    assert is_request_error(LLMStatusError("", 500, body=VALIDATION_500))
    assert is_request_error(
        LLMStatusError("", 400, body='{"error": {"type": "invalid_request_error"}}')
    )
    assert not is_request_error(LLMStatusError("", 500, body="CUDA error: out of memory"))
    assert not is_request_error(LLMTimeoutError("no body"))


def test_n_and_format_refusals_are_recognised():
    assert rejects_n(LLMStatusError("", 400, body="Only one completion choice is allowed"))
    assert rejects_n(
        LLMStatusError(
            "", 500, body='{"error":{"message":"only one completion choice is allowed"}}'
        )
    )
    assert rejects_n(LLMStatusError("", 400, body="n must be 1 for this model"))
    assert not rejects_n(LLMStatusError("", 400, body="prompt is too long"))
    assert rejects_json_format(LLMStatusError("", 500, body=VALIDATION_500))
    assert rejects_json_format(
        LLMStatusError("", 400, body="response_format json_schema is not supported")
    )
    # a 500 that mentions the format but is a crash, not a refusal, is retried instead
    assert not rejects_json_format(LLMStatusError("", 500, body="segfault in json_schema grammar"))
    assert not rejects_json_format(LLMStatusError("", 400, body="prompt is too long"))


def test_retry_after_header_forms():
    assert retry_after_seconds(None) is None
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "0.5"}) == 0.5
    assert retry_after_seconds({"Retry-After-Ms": "1500", "Retry-After": "9"}) == 1.5
    assert retry_after_seconds({"Retry-After-Ms": "soon", "Retry-After": "9"}) == 9.0
    assert retry_after_seconds({"Retry-After": "-1"}) is None
    assert retry_after_seconds({"Retry-After": "0"}) == 0.0  # "now" is a wish too
    assert retry_after_seconds({"Retry-After-Ms": "0", "Retry-After": "9"}) == 0.0
    assert retry_after_seconds({"Retry-After-Ms": "-5", "Retry-After": "9"}) == 9.0
    assert retry_after_seconds({"Retry-After": "whenever"}) is None


def test_retry_after_http_date_uses_the_clock():
    frozen = 1_700_000_000.0
    date = email.utils.formatdate(frozen + 7, usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, now=lambda: frozen) == pytest.approx(7.0)
    past = email.utils.formatdate(frozen - 30, usegmt=True)
    assert retry_after_seconds({"Retry-After": past}, now=lambda: frozen) == 0.0


def test_backoff_doubles_caps_and_jitters():
    no_jitter = [backoff_delay(a, base=0.5, cap=3.0, rand=lambda: 0.0) for a in range(5)]
    assert no_jitter == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(1, base=0.5, cap=3.0, rand=lambda: 1.0) == pytest.approx(0.75)
    assert backoff_delay(50, base=1.0, cap=20.0, rand=lambda: 0.5) <= 20.0


def test_retry_delay_prefers_a_reasonable_retry_after():
    opts = LLMOptions(backoff_base=1.0, backoff_max=8.0, retry_after_max=120.0)
    never = lambda: 0.0
    # no wish: the backoff of this attempt
    assert retry_delay(0, None, opts, rand=never) == 1.0
    assert retry_delay(2, None, opts, rand=never) == 4.0
    # a wish is honoured as given, however it compares with the backoff
    assert retry_delay(2, 0.0, opts, rand=never) == 0.0
    assert retry_delay(2, 0.25, opts, rand=never) == 0.25
    assert retry_delay(0, 90.0, opts, rand=never) == 90.0  # beyond the old 60 s limit
    assert retry_delay(0, 120.0, opts, rand=never) == 120.0  # the cap itself
    # longer than the cap: the call ends instead of waiting or hammering
    assert retry_delay(0, 120.5, opts, rand=never) is None


def test_why_not_retry_names_what_ran_out():
    opts = LLMOptions(max_retries=3, timeout=30.0, retry_after_max=60.0)
    assert why_not_retry(1.0, None, 0, 30.0, opts) is None
    assert why_not_retry(1.0, None, 2, 30.0, opts) is None  # the last retry is still allowed
    assert why_not_retry(1.0, None, 3, 30.0, opts) == ""  # attempts used up: the count says so
    assert why_not_retry(None, 90.0, 0, 30.0, opts) == (
        "the server asks to wait 90 s, more than retry_after_max (60 s)"
    )
    assert "deadline" in why_not_retry(5.0, None, 0, 5.0, opts)  # a wait that uses it all
    assert why_not_retry(4.99, None, 0, 5.0, opts) is None


def test_an_endpoint_learns_n_once_and_keeps_the_refusal():
    endpoint = Endpoint()
    assert endpoint.learn_n(True) is False and endpoint.n_supported is True
    assert endpoint.learn_n(False) is True and endpoint.n_supported is False
    assert endpoint.learn_n(False) is False  # told once, not warned again
    assert endpoint.learn_n(True) is False and endpoint.n_supported is False
    fresh = Endpoint()
    assert fresh.learn_n(False) is True and fresh.n_supported is False


def test_an_endpoint_steps_down_the_json_modes_and_never_back_up():
    endpoint = Endpoint()
    assert endpoint.step_down_json("json_schema") == "json_object"
    assert endpoint.json_mode == "json_object"
    assert endpoint.step_down_json("json_object") == "text" and endpoint.json_mode == "text"
    # a late refusal of a mode already left behind does not raise the mode again
    assert endpoint.step_down_json("json_schema") == "json_object"
    assert endpoint.json_mode == "text"
    assert endpoint.step_down_json("text") is None


def test_only_an_error_status_can_refuse_a_format():
    assert not rejects_json_format(LLMTimeoutError("json_schema took too long"))
    assert not rejects_json_format(LLMStatusError("json_schema", status=None, body="json_schema"))
    assert not rejects_n(LLMConnectionError("only one completion choice is allowed"))


def test_endpoints_are_remembered_per_url_and_model():
    a = endpoint_for("http://gpu:8000/v1", "judge")
    assert endpoint_for("http://gpu:8000/v1/", "judge") is a
    assert endpoint_for("http://user:pw@gpu:8000/v1", "judge") is a  # credentials are no key
    assert endpoint_for("http://gpu:8000/v1", "policy") is not a
    assert endpoint_for("http://gpu:8000/v1", None) is not a
    assert endpoint_for("http://gpu:9000/v1", "judge") is not a


def test_a_cool_down_only_grows():
    endpoint = Endpoint()
    endpoint.cool_down(50.0)
    endpoint.cool_down(20.0)
    assert endpoint.cooldown_until == 50.0
    endpoint.cool_down(70.0)
    assert endpoint.cooldown_until == 70.0


def test_to_llm_error_maps_transport_failures():
    assert isinstance(to_llm_error(TimeoutError()), LLMTimeoutError)
    garbled = to_llm_error(json.JSONDecodeError("x", "{", 0))
    assert isinstance(garbled, LLMResponseError)
    status = to_llm_error(status_error(500, body=VALIDATION_500))
    assert isinstance(status, LLMStatusError) and status.status == 500
    assert "Input should be" in status.body
    with pytest.raises(TypeError):
        to_llm_error(KeyError("a bug, not a transport failure"))


def test_parse_choices_rejects_non_completions():
    with pytest.raises(LLMResponseError):
        parse_choices("<html>gateway error</html>")

    class Choice:
        def __init__(self, index, content):
            self.index = index
            self.message = type("M", (), {"content": content})()
            self.finish_reason = "stop"

    class Resp:
        def __init__(self) -> None:
            self.choices = [Choice(1, "b"), Choice(0, None)]

    assert parse_choices(Resp()) == [("", "stop"), ("b", "stop")]

    class Empty:
        def __init__(self) -> None:
            self.choices = []

    with pytest.raises(LLMResponseError):
        parse_choices(Empty())


def test_split_tokens_keeps_the_total():
    assert split_tokens(7, ["a"]) == [7]
    shares = split_tokens(101, ["short", "a much longer answer", "mid length"])
    assert sum(shares) == 101 and shares[1] == max(shares)
    assert split_tokens(3, ["", ""]) in ([2, 1], [1, 2])


SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
MSGS = [{"role": "system", "content": "Rate."}, {"role": "user", "content": "The reply."}]


def test_response_format_per_json_mode():
    assert response_format_for(SCHEMA) == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA, "strict": True},
    }
    assert response_format_for(SCHEMA, "json_object") == {"type": "json_object", "schema": SCHEMA}
    assert response_format_for(SCHEMA, "text") is None


def test_request_body_writes_the_shape_into_the_prompt_when_not_enforced():
    req = make_request(MSGS, json_schema=SCHEMA, max_tokens=40)
    strict = request_body(req, model="m", n=1, seed=None, json_mode="json_schema")
    assert strict["messages"] == MSGS and strict["response_format"]["type"] == "json_schema"
    for mode in ("json_object", "text"):
        body = request_body(req, model="m", n=1, seed=None, json_mode=mode)
        assert body["messages"][0] == MSGS[0]  # the system message is left alone
        last = body["messages"][-1]["content"]
        assert last.startswith("The reply.") and '"score"' in last and "JSON" in last
        assert ("response_format" in body) is (mode == "json_object")
    plain = request_body(make_request(MSGS), model="m", n=3, seed=7, json_mode="text")
    assert plain["messages"] == MSGS and plain["n"] == 3 and plain["seed"] == 7
    assert "response_format" not in plain


def test_schema_instruction_added_when_there_is_no_user_message():
    out = with_schema_instruction([{"role": "system", "content": "s"}], SCHEMA)
    assert [m["role"] for m in out] == ["system", "user"]


@pytest.mark.parametrize(
    "url, named, env, expected",
    [
        ("http://localhost:8000/v1", None, {"OPENAI_API_KEY": "sk-1"}, None),
        ("http://10.0.0.5:8000/v1", None, {"OPENAI_API_KEY": "sk-1"}, None),
        ("https://api.example.com/v1", None, {"OPENAI_API_KEY": "sk-1"}, "sk-1"),
        ("https://api.example.com/v1", None, {}, None),
        ("http://gpu:8000/v1", "VLLM_KEY", {"VLLM_KEY": "k2", "OPENAI_API_KEY": "sk-1"}, "k2"),
        ("https://api.example.com/v1", "OTHER", {"OTHER": "k3", "OPENAI_API_KEY": "sk-1"}, "k3"),
    ],
)
def test_api_key_policy(url, named, env, expected):
    assert api_key_for(url, named, env) == expected


def test_a_named_key_that_is_not_set_is_an_error():
    with pytest.raises(LLMError, match="VLLM_KEY.*not set"):
        api_key_for("http://u:pw@gpu:8000/v1", "VLLM_KEY", {})
    with pytest.raises(LLMError) as info:
        api_key_for("http://u:pw@gpu:8000/v1", "VLLM_KEY", {})
    assert "pw" not in str(info.value)


# --------------------------------------------------------------------------- the loop


class FrozenTime:
    """A clock that only moves when told to: by the patched sleep or a fake call."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def rigged(t: FrozenTime, url: str = "http://sim.invalid:1/v1", **opts) -> OpenAIChatModel:
    opts.setdefault("backoff_base", 0.5)
    model = OpenAIChatModel(url, "m", options=LLMOptions(**opts), environ={})
    model._clock, model._sleep, model._rand = t.clock, t.sleep, (lambda: 0.0)
    return model


def status_error(
    status: int,
    *,
    body: str = "{}",
    headers: dict | None = None,
) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://sim.invalid:1/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, text=body, request=request)
    cls = openai.RateLimitError if status == 429 else openai.InternalServerError
    return cls(f"Error code: {status}", response=response, body=None)


def failing(t: FrozenTime, errors: list[BaseException], *, takes: float = 0.0, answer: str = "ok"):
    """A fake HTTP exchange: raises the given errors in turn, then answers;
    each attempt moves the clock by ``takes`` seconds."""
    calls = []

    async def call(client):
        calls.append(t.now)
        t.now += takes
        if errors:
            raise errors.pop(0)
        return answer

    return call, calls


async def test_retry_loop_retries_then_answers_with_growing_backoff():
    t = FrozenTime()
    model = rigged(t, max_retries=4, backoff_base=0.5, backoff_max=8.0)
    call, calls = failing(t, [LLMResponseError("x"), status_error(503), TimeoutError()])
    assert await model._with_retries("chat", call, Deadline(60, t.clock)) == "ok"
    assert len(calls) == 4 and model.retries == 3
    assert t.slept == [0.5, 1.0, 2.0]


async def test_retry_loop_bound_is_max_retries_plus_one():
    t = FrozenTime()
    model = rigged(t, max_retries=2)
    call, calls = failing(t, [status_error(500)] * 10)
    with pytest.raises(LLMStatusError, match="after 3 attempts") as info:
        await model._with_retries("chat", call, Deadline(60, t.clock))
    assert len(calls) == 3 and info.value.status == 500


async def test_request_error_in_a_500_is_not_retried():
    t = FrozenTime()
    model = rigged(t, max_retries=5)
    call, calls = failing(t, [status_error(500, body=VALIDATION_500)])
    with pytest.raises(LLMStatusError, match="first attempt"):
        await model._with_retries("chat", call, Deadline(60, t.clock))
    assert len(calls) == 1 and t.slept == []


async def test_deadline_bounds_attempts_and_backoff_together():
    """Each attempt takes 0.4 s; with a 1 s deadline there is room for two, and
    the third is not started although nine retries are allowed."""
    t = FrozenTime()
    model = rigged(t, max_retries=9, timeout=1.0, backoff_base=0.1)
    call, calls = failing(t, [status_error(500)] * 10, takes=0.4)
    with pytest.raises(LLMStatusError, match="deadline") as info:
        await model._with_retries("chat", call, Deadline(1.0, t.clock))
    assert len(calls) == 2 and t.slept == [0.1]
    assert "after 2 attempts" in str(info.value)
    assert t.now - calls[0] <= 1.0


async def test_deadline_starts_with_the_first_slot_not_before():
    t = FrozenTime()
    deadline = Deadline(5.0, t.clock)
    t.now += 100  # queued for a long time before the first request is sent
    assert deadline.remaining() == 5.0
    deadline.start()
    t.now += 2
    assert deadline.remaining() == pytest.approx(3.0)


async def test_retry_after_beyond_the_cap_ends_the_call_at_once():
    t = FrozenTime()
    model = rigged(t, max_retries=5, retry_after_max=30)
    call, calls = failing(t, [status_error(429, headers={"Retry-After": "400"})])
    with pytest.raises(LLMStatusError, match="400 s, more than retry_after_max") as info:
        await model._with_retries("chat", call, Deadline(600, t.clock))
    assert info.value.status == 429 and len(calls) == 1 and t.slept == []


async def test_retry_after_longer_than_sixty_seconds_is_honoured():
    t = FrozenTime()
    model = rigged(t, max_retries=2, timeout=600, retry_after_max=300)
    call, calls = failing(t, [status_error(429, headers={"Retry-After": "90"})])
    assert await model._with_retries("chat", call, Deadline(600, t.clock)) == "ok"
    assert t.slept == [90.0] and len(calls) == 2


async def test_a_429_cools_down_every_request_to_the_endpoint():
    """Model B never saw the 429, yet waits out the pause model A was asked for."""
    t = FrozenTime()
    a = rigged(t, max_retries=0, timeout=60)
    b = rigged(t, max_retries=1, timeout=60)
    call_a, _ = failing(t, [status_error(429, headers={"Retry-After": "5"})])
    with pytest.raises(LLMStatusError):
        await a._with_retries("chat", call_a, Deadline(60, t.clock))
    t.now += 1.0
    call_b, calls_b = failing(t, [])
    assert await b._with_retries("chat", call_b, Deadline(60, t.clock)) == "ok"
    assert t.slept == [pytest.approx(4.0)]  # the 5 s pause, 1 s of which had passed
    assert calls_b == [pytest.approx(1005.0)]  # sent when the pause was over
    other = rigged(t, url="http://elsewhere.invalid:1/v1")
    await other._with_retries("chat", failing(t, [])[0], Deadline(60, t.clock))
    assert len(t.slept) == 1  # another endpoint is not held back


async def test_a_cool_down_longer_than_the_time_left_fails_fast():
    t = FrozenTime()
    model = rigged(t, max_retries=3, timeout=2.0)
    model._cool_down(30.0)
    deadline = Deadline(2.0, t.clock)
    deadline.start()
    call, calls = failing(t, [])
    with pytest.raises(LLMTimeoutError, match="pause of 30.0 s"):
        await model._with_retries("chat", call, deadline)
    assert calls == []


def test_docstring_examples_hold():
    import doctest

    from attunement.llm import endpoint, retry, spec, wire

    for module in (retry, endpoint, wire, spec):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
