"""A ChatModel for any OpenAI-compatible server (vLLM, SGLang, llama.cpp
server, hosted APIs), built on the official ``openai`` SDK.

The SDK does the HTTP; this class owns the policy around it, one decision per
function so each can be tested on its own:

- :func:`should_retry`: timeouts, connection failures, garbled bodies and the
  statuses 408/409/429/5xx are retried; any other 4xx is final.
- :func:`retry_after_seconds`: the server's ``Retry-After-Ms`` /
  ``Retry-After`` header (seconds or an HTTP date), when it sent one.
- :func:`backoff_delay`: exponential backoff with jitter, capped.
- :func:`retry_delay`: the server's wish when it is reasonable, else backoff.

The SDK's own retries are switched off (``max_retries=0``) so that retries are
never stacked. At most ``options.concurrency`` HTTP requests are in flight per
model instance; each attempt gets ``options.timeout`` seconds once it holds a
slot (waiting for a slot does not eat into the deadline). When the retries run
out, the typed :class:`~attunement.llm.base.LLMError` of the last failure is
raised; nothing is ever returned in place of an answer.

``n`` samples are asked for in one request. A server that answers with fewer
choices than asked (some ignore ``n``) gets the rest as separate ``n=1``
requests, sent concurrently, and is remembered: later multi-sample requests to
it fan out directly. Fanned-out requests carry per-sample seeds
(:meth:`ChatRequest.sample_seed`) so the samples differ yet repeat.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import openai
from pydantic import ValidationError

from attunement.llm.base import (
    ChatModel,
    ChatRequest,
    Completion,
    LLMConnectionError,
    LLMError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
)
from attunement.llm.spec import LLMOptions

log = logging.getLogger(__name__)
T = TypeVar("T")

#: API key sent when the environment holds none (local servers ignore it)
DEFAULT_API_KEY = "EMPTY"
#: retried statuses besides every 5xx: request timeout, conflict, rate limit
RETRY_STATUSES = frozenset({408, 409, 429})
#: a Retry-After longer than this is not waited for; backoff is used instead
MAX_RETRY_AFTER_SECONDS = 60.0
#: how much of a backoff delay the jitter may remove
JITTER = 0.25


# --------------------------------------------------------------------------- retry policy


def should_retry(error: LLMError) -> bool:
    """Is this failure worth another attempt?

    >>> should_retry(LLMStatusError("busy", status=429)), should_retry(LLMStatusError("no", 400))
    (True, False)
    """
    if isinstance(error, LLMStatusError):
        return error.status is not None and (error.status in RETRY_STATUSES or error.status >= 500)
    return isinstance(error, LLMTimeoutError | LLMConnectionError | LLMResponseError)


def retry_after_seconds(headers: Mapping[str, str] | None, *,
                        now: Callable[[], float] = time.time) -> float | None:
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
    ms = lower.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
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


def backoff_delay(attempt: int, *, base: float, cap: float,
                  rand: Callable[[], float] = random.random) -> float:
    """Delay before retry number ``attempt + 1``: ``base * 2**attempt``, at most
    ``cap``, minus up to 25% jitter so that many clients do not retry in step.

    >>> [backoff_delay(a, base=0.5, cap=20, rand=lambda: 0.0) for a in (0, 1, 10)]
    [0.5, 1.0, 20.0]
    """
    delay = min(cap, base * (2.0 ** attempt))
    return delay * (1.0 - JITTER * rand())


def retry_delay(attempt: int, retry_after: float | None, options: LLMOptions, *,
                rand: Callable[[], float] = random.random) -> float:
    """The server's Retry-After when it gave a reasonable one, else backoff."""
    if retry_after is not None and 0 <= retry_after <= MAX_RETRY_AFTER_SECONDS:
        return retry_after
    return backoff_delay(attempt, base=options.backoff_base, cap=options.backoff_max, rand=rand)


def to_llm_error(exc: BaseException) -> LLMError:
    """Map a transport or parsing failure to attunement's typed errors."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, TimeoutError | openai.APITimeoutError):
        return LLMTimeoutError("no answer within the deadline")
    if isinstance(exc, openai.APIStatusError):
        return LLMStatusError(f"HTTP {exc.status_code}: {exc.message}", status=exc.status_code)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f" ({type(cause).__name__}: {cause})" if cause else ""
        return LLMConnectionError(f"connection failed{detail}")
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError
                  | ValidationError):
        return LLMResponseError(f"the body is not a chat completion ({exc})")
    if isinstance(exc, openai.APIError):
        return LLMError(f"API error: {exc}")
    raise TypeError(f"not a transport failure: {exc!r}") from exc


#: exceptions of one HTTP attempt that become an LLMError (anything else is a bug)
_ATTEMPT_FAILURES = (TimeoutError, openai.APIError, json.JSONDecodeError, ValidationError,
                     LLMResponseError)


def _status_headers(exc: BaseException) -> Mapping[str, str] | None:
    if isinstance(exc, openai.APIStatusError):
        return exc.response.headers
    return None


def _with_message(error: LLMError, message: str) -> LLMError:
    if isinstance(error, LLMStatusError):
        return LLMStatusError(message, status=error.status)
    return type(error)(message)


# --------------------------------------------------------------------------- responses


def response_format_for(schema: dict[str, Any]) -> dict[str, Any]:
    """The ``response_format`` asking for JSON valid against ``schema``."""
    return {"type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True}}


def parse_choices(response: Any) -> list[tuple[str, str | None]]:
    """``(text, finish_reason)`` of each choice, in choice order.

    Raises :class:`LLMResponseError` when the body is not a chat completion
    (the SDK hands back plain text for a non-JSON content type, and builds
    models without validation).
    """
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        shown = response[:200] if isinstance(response, str) else type(response).__name__
        raise LLMResponseError(f"the body is not a chat completion with choices: {shown!r}")
    out = []
    for pos, choice in enumerate(sorted(choices, key=lambda c: getattr(c, "index", 0) or 0)):
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None) if message is not None else None
        if message is None or not (content is None or isinstance(content, str)):
            raise LLMResponseError(f"choice {pos} has no message text")
        out.append((content or "", getattr(choice, "finish_reason", None)))
    return out


def usage_of(response: Any) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) the server reported, zeros if absent."""
    usage = getattr(response, "usage", None)
    prompt = getattr(usage, "prompt_tokens", None) if usage is not None else None
    completion = getattr(usage, "completion_tokens", None) if usage is not None else None
    return int(prompt or 0), int(completion or 0)


def split_tokens(total: int, texts: list[str]) -> list[int]:
    """Share a request's completion tokens among its samples by text length.

    The API reports one total for all ``n`` choices; the shares sum exactly to
    it (largest remainder), so totals stay right even though per-sample counts
    are estimates.

    >>> split_tokens(10, ["aaa", "a"]), split_tokens(5, ["only"])
    ([8, 2], [5])
    """
    if len(texts) == 1:
        return [total]
    weights = [len(t) for t in texts]
    if sum(weights) == 0:
        weights = [1] * len(texts)
    exact = [total * w / sum(weights) for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(texts)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


# --------------------------------------------------------------------------- the model


@dataclass
class _LoopState:
    """The SDK client and limits of one event loop (they cannot cross loops)."""

    loop: asyncio.AbstractEventLoop
    client: openai.AsyncOpenAI
    slots: asyncio.Semaphore
    models_lock: asyncio.Lock


@dataclass(frozen=True)
class _Bill:
    prompt_tokens: int
    completion_tokens: int


class OpenAIChatModel(ChatModel):
    """Chat with an OpenAI-compatible endpoint.

    ``model=None`` uses the first model the server lists (asked once). The API
    key is read from ``os.environ[options.api_key_env]`` when the model is
    built, unless given; local servers accept the placeholder ``"EMPTY"``.

    ``retries`` counts retries made so far and ``n_supported`` records what the
    server showed about ``n`` (``None`` until a multi-sample request answered).
    """

    def __init__(self, base_url: str, model: str | None, *, options: LLMOptions,
                 api_key: str | None = None):
        super().__init__()
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.options = options
        self.max_concurrency = options.concurrency
        self._api_key = api_key if api_key is not None else (
            os.environ.get(options.api_key_env) or DEFAULT_API_KEY)
        self.n_supported: bool | None = None
        self.retries = 0
        self._state_: _LoopState | None = None
        # seams for tests: the sleep between attempts and the jitter source
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._rand: Callable[[], float] = random.random
        self._update_name()

    def _update_name(self) -> None:
        self.name = f"openai:{self.base_url}" + (f"#{self.model}" if self.model else "")

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state_ is None or self._state_.loop is not loop:
            # a client from a finished loop cannot be closed or reused; drop it
            client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key,
                                        max_retries=0, timeout=self.options.timeout)
            self._state_ = _LoopState(loop=loop, client=client,
                                      slots=asyncio.Semaphore(self.options.concurrency),
                                      models_lock=asyncio.Lock())
        return self._state_

    async def aclose(self) -> None:
        state, self._state_ = self._state_, None
        if state is not None and state.loop is asyncio.get_running_loop():
            await state.client.close()

    # ------------------------------------------------------------------ retries

    async def _with_retries(self, what: str, call: Callable[[openai.AsyncOpenAI], Awaitable[T]],
                            ) -> T:
        """Run one HTTP exchange under the slot limit and the deadline, retrying."""
        state = self._state()
        attempt = 0
        while True:
            try:
                async with state.slots:
                    async with asyncio.timeout(self.options.timeout):
                        return await call(state.client)
            except _ATTEMPT_FAILURES as exc:
                error = to_llm_error(exc)
                if not should_retry(error) or attempt >= self.options.max_retries:
                    tries = f"after {attempt + 1} attempts" if attempt else "on the first attempt"
                    raise _with_message(error, f"{self.name}: {what} failed {tries}: {error}"
                                        ) from exc
                delay = retry_delay(attempt, retry_after_seconds(_status_headers(exc)),
                                    self.options, rand=self._rand)
                log.info("%s: %s failed (%s); retry %d in %.2fs", self.name, what, error,
                         attempt + 1, delay)
            attempt += 1
            self.retries += 1
            await self._sleep(delay)

    # ------------------------------------------------------------------ model id

    async def ensure_ready(self) -> None:
        if self.model is not None:
            return
        state = self._state()
        async with state.models_lock:
            if self.model is not None:
                return

            async def first_model(client: openai.AsyncOpenAI) -> str:
                page = await client.models.list()
                ids = [getattr(m, "id", None) for m in (getattr(page, "data", None) or [])]
                ids = [i for i in ids if isinstance(i, str) and i]
                if not ids:
                    raise LLMResponseError("the server lists no models")
                return ids[0]

            self.model = await self._with_retries("listing models", first_model)
            self._update_name()

    # ------------------------------------------------------------------ completions

    async def complete_request(self, request: ChatRequest) -> list[Completion]:
        out, bills = await self._complete_billed(request)
        if len(out) != request.n:
            raise LLMResponseError(
                f"{self.name}: asked for {request.n} completions, got {len(out)}")
        # bill each HTTP request: a request's prompt is paid once, however many
        # samples it returned, but again by every fanned-out request
        self.usage.calls += len(bills)
        self.usage.prompt_tokens += sum(b.prompt_tokens for b in bills)
        self.usage.completion_tokens += sum(b.completion_tokens for b in bills)
        return out

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        return (await self._complete_billed(request))[0]

    async def _complete_billed(self, request: ChatRequest) -> tuple[list[Completion], list[_Bill]]:
        await self.ensure_ready()
        start, n = request.sample_start, request.n
        if n > 1 and self.n_supported is False:
            return await self._fan_out(request, range(start, start + n))
        seed = request.sample_seed(start) if request.seed is not None else None
        got, bill = await self._request(request, n=n, first=start, seed=seed)
        if n == 1:
            return got, [bill]
        if len(got) >= n:
            self.n_supported = True
            return got[:n], [bill]
        if self.n_supported is not False:
            log.warning("%s returned %d of %d samples: it ignores n; fanning out from now on",
                        self.name, len(got), n)
        self.n_supported = False
        more, bills = await self._fan_out(request, range(start + len(got), start + n))
        return got + more, [bill, *bills]

    async def _fan_out(self, request: ChatRequest, indices: range,
                       ) -> tuple[list[Completion], list[_Bill]]:
        tasks = [asyncio.ensure_future(
            self._request(request, n=1, first=i, seed=request.sample_seed(i))) for i in indices]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [r[0][0] for r in results], [r[1] for r in results]

    async def _request(self, request: ChatRequest, *, n: int, first: int, seed: int | None,
                       ) -> tuple[list[Completion], _Bill]:
        """One chat request for up to ``n`` samples numbered from ``first``."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": request.message_dicts,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if n > 1:
            kwargs["n"] = n
        if seed is not None:
            kwargs["seed"] = seed
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.json_schema is not None:
            kwargs["response_format"] = response_format_for(request.json_schema)

        async def call(client: openai.AsyncOpenAI) -> tuple[list[tuple[str, str | None]], Any]:
            response = await client.chat.completions.create(**kwargs)
            return parse_choices(response), response

        choices, response = await self._with_retries("chat completion", call)
        choices = choices[:n]
        prompt_tokens, completion_tokens = usage_of(response)
        shares = split_tokens(completion_tokens, [text for text, _ in choices])
        out = [Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=share,
                          finish_reason=finish, sample_index=first + j)
               for j, ((text, finish), share) in enumerate(zip(choices, shares, strict=True))]
        return out, _Bill(prompt_tokens, completion_tokens)
