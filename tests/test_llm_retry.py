"""The retry policy of the OpenAI-compatible client, one decision at a time."""

from __future__ import annotations

import email.utils
import json

import pytest

from attunement.llm import (
    LLMConnectionError,
    LLMError,
    LLMOptions,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
)
from attunement.llm.openai_compat import (
    MAX_RETRY_AFTER_SECONDS,
    backoff_delay,
    parse_choices,
    response_format_for,
    retry_after_seconds,
    retry_delay,
    should_retry,
    split_tokens,
    to_llm_error,
)


@pytest.mark.parametrize("error, expected", [
    (LLMTimeoutError("t"), True),
    (LLMConnectionError("c"), True),
    (LLMResponseError("garbled"), True),
    (LLMStatusError("", status=408), True),
    (LLMStatusError("", status=409), True),
    (LLMStatusError("", status=429), True),
    (LLMStatusError("", status=500), True),
    (LLMStatusError("", status=503), True),
    (LLMStatusError("", status=400), False),
    (LLMStatusError("", status=401), False),
    (LLMStatusError("", status=404), False),
    (LLMStatusError("", status=422), False),
    (LLMStatusError("", status=None), False),
    (LLMError("other"), False),
])
def test_should_retry(error, expected):
    assert should_retry(error) is expected


def test_retry_after_header_forms():
    assert retry_after_seconds(None) is None
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "0.5"}) == 0.5
    assert retry_after_seconds({"Retry-After-Ms": "1500", "Retry-After": "9"}) == 1.5
    assert retry_after_seconds({"Retry-After-Ms": "soon", "Retry-After": "9"}) == 9.0
    assert retry_after_seconds({"Retry-After": "-1"}) is None
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
    opts = LLMOptions(backoff_base=1.0, backoff_max=8.0)
    assert retry_delay(2, 0.25, opts, rand=lambda: 0.0) == 0.25
    assert retry_delay(2, None, opts, rand=lambda: 0.0) == 4.0
    # an unreasonable wish is ignored in favour of the capped backoff
    assert retry_delay(2, MAX_RETRY_AFTER_SECONDS + 1, opts, rand=lambda: 0.0) == 4.0


def test_to_llm_error_maps_transport_failures():
    assert isinstance(to_llm_error(TimeoutError()), LLMTimeoutError)
    garbled = to_llm_error(json.JSONDecodeError("x", "{", 0))
    assert isinstance(garbled, LLMResponseError)
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
        choices = [Choice(1, "b"), Choice(0, None)]

    assert parse_choices(Resp()) == [("", "stop"), ("b", "stop")]

    class Empty:
        choices = []

    with pytest.raises(LLMResponseError):
        parse_choices(Empty())


def test_split_tokens_keeps_the_total():
    assert split_tokens(7, ["a"]) == [7]
    shares = split_tokens(101, ["short", "a much longer answer", "mid length"])
    assert sum(shares) == 101 and shares[1] == max(shares)
    assert split_tokens(3, ["", ""]) in ([2, 1], [1, 2])


def test_response_format_shape():
    schema = {"type": "object"}
    assert response_format_for(schema) == {
        "type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}}


def test_docstring_examples_hold():
    import doctest

    from attunement.llm import openai_compat, spec

    for module in (openai_compat, spec):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
