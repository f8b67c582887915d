"""The retry policy of the OpenAI-compatible client, one decision per function.

Each question the retry loop asks is answered by one small function with no
I/O, so each is unit-tested on its own (tests/test_llm_retry.py freezes the
clock and counts):

- :func:`should_retry`: timeouts, connection failures, garbled bodies and the
  statuses 408/409/429/5xx are retried; any other 4xx is final, and so is a
  5xx whose body says the *request* is invalid (:func:`is_request_error`:
  llama-cpp-python answers a schema it does not know with HTTP 500 and a
  validation message; resending the same body cannot help).
- :func:`retry_after_seconds`: the server's ``Retry-After-Ms`` /
  ``Retry-After`` header (seconds or an HTTP date), when it sent one.
- :func:`backoff_delay`: exponential backoff with jitter, capped.
- :func:`retry_delay`: the server's wish up to ``retry_after_max``, else
  backoff; a longer wish ends the call.
- :func:`why_not_retry`: with a delay in hand, whether the attempts or the
  deadline have run out.

:class:`Deadline` is the time budget of one ``complete()`` call: it starts
when the call's first request gets a concurrency slot (a long queue of calls
does not time out by itself), and every attempt, backoff, cool-down and
fallback request draws on it.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Callable, Mapping

from attunement.llm.base import (
    LLMConnectionError,
    LLMError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
)
from attunement.llm.options import JITTER, RETRY_STATUSES, LLMOptions

#: a response body saying the request itself is invalid (pydantic/FastAPI,
#: OpenAI-style errors, the llama.cpp server's refusal of n)
_REQUEST_INVALID = re.compile(
    r"validation error|input should be|field required|extra inputs are not permitted"
    r"|invalid_request_error|only one completion choice",
    re.IGNORECASE,
)


def is_request_error(error: LLMError) -> bool:
    """Does the server say the request itself is invalid (so resending it cannot help)?

    >>> is_request_error(LLMStatusError("HTTP 500", 500, body="1 validation error: Input should be 'text'"))
    True
    >>> is_request_error(LLMStatusError("HTTP 500", 500, body="CUDA out of memory"))
    False
    """
    return isinstance(error, LLMStatusError) and bool(_REQUEST_INVALID.search(error.body))


def should_retry(error: LLMError) -> bool:
    """Is this failure worth another attempt?

    >>> should_retry(LLMStatusError("busy", status=429)), should_retry(LLMStatusError("no", 400))
    (True, False)
    """
    if isinstance(error, LLMStatusError):
        if error.status is None:
            return False
        if error.status in RETRY_STATUSES:
            return True
        return error.status >= 500 and not is_request_error(error)
    return isinstance(error, LLMTimeoutError | LLMConnectionError | LLMResponseError)


def _milliseconds_header(value: str | None) -> float | None:
    """``Retry-After-Ms`` in seconds, or None when absent, unreadable or negative."""
    if value is None:
        return None
    try:
        seconds = float(value) / 1000.0
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def retry_after_seconds(
    headers: Mapping[str, str] | None, *, now: Callable[[], float] = time.time
) -> float | None:
    """How long the server asked us to wait, or None if it did not say.

    Reads ``Retry-After-Ms`` (milliseconds), then ``Retry-After`` as a number
    of seconds or as an HTTP date (a date in the past means "now").

    >>> retry_after_seconds({"Retry-After": "2"})
    2.0
    >>> retry_after_seconds({"retry-after-ms": "250"})
    0.25
    """
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    ms = _milliseconds_header(lower.get("retry-after-ms"))
    if ms is not None:
        return ms
    raw = lower.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - now())
    return value if value >= 0 else None


def backoff_delay(
    attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before retry number ``attempt + 1``: ``base * 2**attempt``, at most
    ``cap``, minus up to 25% jitter so that many clients do not retry in step.

    >>> [backoff_delay(a, base=0.5, cap=20, rand=lambda: 0.0) for a in (0, 1, 10)]
    [0.5, 1.0, 20.0]
    """
    delay = min(cap, base * (2.0**attempt))
    return delay * (1.0 - JITTER * rand())


def retry_delay(
    attempt: int,
    retry_after: float | None,
    options: LLMOptions,
    *,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """How long to wait before the next attempt.

    The server's ``Retry-After`` when it sent one, up to
    ``options.retry_after_max`` (None: it asks for longer than we wait, so the
    call ends now); otherwise the jittered backoff.

    >>> retry_delay(0, 400.0, LLMOptions(retry_after_max=300)) is None
    True
    """
    if retry_after is not None:
        return retry_after if retry_after <= options.retry_after_max else None
    return backoff_delay(attempt, base=options.backoff_base, cap=options.backoff_max, rand=rand)


def why_not_retry(
    delay: float | None,
    wish: float | None,
    attempt: int,
    remaining: float,
    options: LLMOptions,
) -> str | None:
    """Why attempt number ``attempt`` (from 0) that failed is not followed by
    another one after ``delay`` seconds, or None when it is. An empty string
    means the attempts ran out (the count says so already).

    >>> opts = LLMOptions(max_retries=2, timeout=10)
    >>> why_not_retry(1.0, None, 0, 10.0, opts) is None, why_not_retry(1.0, None, 2, 10.0, opts)
    (True, '')
    >>> why_not_retry(4.0, None, 0, 3.0, opts)
    'no time left for a retry within the 10 s deadline'
    """
    if attempt >= options.max_retries:
        return ""
    if delay is None:
        return (
            f"the server asks to wait {wish or 0:.0f} s, more than retry_after_max "
            f"({options.retry_after_max:.0f} s)"
        )
    if delay >= remaining:
        return f"no time left for a retry within the {options.timeout:g} s deadline"
    return None


class Deadline:
    """The time budget of one ``complete()`` call.

    It starts when the call's first request gets a concurrency slot; from then
    on every attempt, backoff, cool-down and fallback request draws on it.

    >>> clock = iter([5.0, 7.5]).__next__
    >>> d = Deadline(10.0, clock)
    >>> d.remaining()
    10.0
    >>> d.start(); d.remaining()
    7.5
    """

    def __init__(self, seconds: float, clock: Callable[[], float]):
        self.seconds = seconds
        self._clock = clock
        self.started: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = self._clock()

    def remaining(self) -> float:
        if self.started is None:
            return self.seconds
        return self.seconds - (self._clock() - self.started)
