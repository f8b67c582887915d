"""A ChatModel for any OpenAI-compatible server (vLLM, SGLang, llama.cpp
server, hosted APIs), built on the official ``openai`` SDK.

The SDK does the HTTP; this module owns the policy around it, one decision per
function so each can be tested on its own:

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
- :func:`api_key_for`: which key, if any, an endpoint is sent.

Deadline: ``options.timeout`` bounds a whole ``complete()`` call, every
attempt, backoff, cool-down and fallback request included. It starts when the
call's first request gets a concurrency slot (a long queue of calls does not
time out by itself); a retry that could not finish in the time left is not
started. The SDK's own retries are off, so retries are never stacked.

What a server has shown about itself is remembered per endpoint (base URL and
model id, for every model instance in the process, see :class:`Endpoint`):

- ``n``: asked for in one request. A server that ignores it (fewer choices)
  or rejects it (llama.cpp server: "Only one completion choice is allowed")
  gets ``n`` single requests instead, now and from then on. A fan-out that
  loses one request keeps the others (:attr:`LLMError.partial`).
- JSON output: ``response_format: json_schema`` first; a server that rejects
  it gets ``json_object`` (with the schema, which llama-cpp-python enforces,
  and the shape written into the prompt), and one that rejects that too gets
  plain text with the shape in the prompt.
- 429: the wait the server asked for becomes a cool-down that every request
  to the endpoint observes before it is sent, not only the one that was told.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

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
    Message,
)
from attunement.llm.endpoint import redact_url
from attunement.llm.options import (
    DEFAULT_API_KEY_ENV,
    JITTER,
    NO_API_KEY,
    RETRY_STATUSES,
    LLMOptions,
)
from attunement.records import Usage

log = logging.getLogger(__name__)
T = TypeVar("T")

#: how JSON output is asked for, from the most to the least constrained
JsonMode = Literal["json_schema", "json_object", "text"]
JSON_MODES: tuple[JsonMode, ...] = get_args(JsonMode)

#: a response body saying the request itself is invalid (pydantic/FastAPI,
#: OpenAI-style errors, the llama.cpp server's refusal of n)
_REQUEST_INVALID = re.compile(
    r"validation error|input should be|field required|extra inputs are not permitted"
    r"|invalid_request_error|only one completion choice",
    re.IGNORECASE,
)
#: a body refusing n > 1
_N_REJECTED = re.compile(
    r"only one completion choice|\bn\b\W{0,3}(must|should) be 1\b"
    r"|\bn\b\W{0,3}(> ?1|greater than 1)\W{0,3}(is )?not supported"
    r"|multiple (choices|completions) (is|are) not supported",
    re.IGNORECASE,
)
#: a body that is about the requested output format
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object", re.IGNORECASE)
#: how much of an error body is kept on the error
_BODY_CHARS = 2000


# --------------------------------------------------------------------------- retry policy


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
    """
    if retry_after is not None:
        return retry_after if retry_after <= options.retry_after_max else None
    return backoff_delay(attempt, base=options.backoff_base, cap=options.backoff_max, rand=rand)


def to_llm_error(exc: BaseException) -> LLMError:
    """Map a transport or parsing failure to attunement's typed errors."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, TimeoutError | openai.APITimeoutError):
        return LLMTimeoutError("no answer within the deadline")
    if isinstance(exc, openai.APIStatusError):
        return LLMStatusError(
            f"HTTP {exc.status_code}: {exc.message}", status=exc.status_code, body=_body_text(exc)
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f" ({type(cause).__name__}: {cause})" if cause else ""
        return LLMConnectionError(f"connection failed{detail}")
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError | ValidationError):
        return LLMResponseError(f"the body is not a chat completion ({exc})")
    if isinstance(exc, openai.APIError):
        return LLMError(f"API error: {exc}")
    raise TypeError(f"not a transport failure: {exc!r}") from exc


def _body_text(exc: openai.APIStatusError) -> str:
    try:
        text = exc.response.text
    except Exception:  # noqa: BLE001 - a body that cannot be read says nothing
        text = ""
    return (text or json.dumps(exc.body, default=str))[:_BODY_CHARS]


#: exceptions of one HTTP attempt that become an LLMError (anything else is a bug)
_ATTEMPT_FAILURES = (
    TimeoutError,
    openai.APIError,
    json.JSONDecodeError,
    ValidationError,
    LLMResponseError,
)


def _status_headers(exc: BaseException) -> Mapping[str, str] | None:
    if isinstance(exc, openai.APIStatusError):
        return exc.response.headers
    return None


def _with_message(error: LLMError, message: str) -> LLMError:
    if isinstance(error, LLMStatusError):
        return LLMStatusError(message, status=error.status, body=error.body)
    return type(error)(message)


# --------------------------------------------------------------------------- fallbacks


def rejects_n(error: LLMError) -> bool:
    """Did the server refuse a request for several choices?"""
    return isinstance(error, LLMStatusError) and bool(_N_REJECTED.search(error.body))


def rejects_json_format(error: LLMError) -> bool:
    """Did the server refuse the requested ``response_format``?"""
    if not isinstance(error, LLMStatusError) or error.status is None:
        return False
    about_format = bool(_FORMAT_WORDS.search(error.body)) or "'json_object'" in error.body
    return about_format and (400 <= error.status < 500 or is_request_error(error))


def schema_instruction(schema: dict[str, Any]) -> str:
    """The shape of the answer, written out for a server that cannot enforce it."""
    return (
        "Answer with one JSON object and nothing else (no code fence, no comment). "
        "It must be valid against this JSON schema:\n"
        + json.dumps(schema, ensure_ascii=False, sort_keys=True)
    )


def with_schema_instruction(
    messages: Sequence[Message],
    schema: dict[str, Any],
) -> list[Message]:
    """The messages with the answer's shape appended to the last user message
    (not as an extra system message: many chat templates allow only one, first)."""
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m["role"] == "user":
            m["content"] = m["content"].rstrip() + "\n\n" + schema_instruction(schema)
            return out
    return [*out, {"role": "user", "content": schema_instruction(schema)}]


def response_format_for(
    schema: dict[str, Any],
    mode: JsonMode = "json_schema",
) -> dict[str, Any] | None:
    """The ``response_format`` asking for JSON valid against ``schema`` in ``mode``.

    ``json_object`` carries the schema too: llama-cpp-python's server turns it
    into a grammar; servers that only know plain JSON mode ignore it.
    """
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True},
        }
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


def request_body(
    request: ChatRequest, *, model: str | None, n: int, seed: int | None, json_mode: JsonMode
) -> dict[str, Any]:
    """The keyword arguments of one ``chat.completions.create`` call."""
    messages = request.message_dicts
    body: dict[str, Any] = {
        "model": model,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    if n > 1:
        body["n"] = n
    if seed is not None:
        body["seed"] = seed
    if request.stop:
        body["stop"] = list(request.stop)
    if request.json_schema is not None:
        if json_mode != "json_schema":
            messages = with_schema_instruction(messages, request.json_schema)
        fmt = response_format_for(request.json_schema, json_mode)
        if fmt is not None:
            body["response_format"] = fmt
    body["messages"] = messages
    return body


# --------------------------------------------------------------------------- keys


def api_key_for(base_url: str, key_env: str | None, environ: Mapping[str, str]) -> str | None:
    """The API key an endpoint is sent, or None to send none.

    A key named by the spec (``,key=NAME``) or by ``LLMOptions.api_key_env`` is
    read from that variable and sent whatever the URL (it must be set). Without
    a name, ``OPENAI_API_KEY`` is sent to https URLs only: a plain-http URL is
    a local server or a mistake, and a key sent there can be read on the way.

    >>> api_key_for("http://localhost:8000/v1", None, {"OPENAI_API_KEY": "sk-1"}) is None
    True
    >>> api_key_for("https://api.example.com/v1", None, {"OPENAI_API_KEY": "sk-1"})
    'sk-1'
    >>> api_key_for("http://gpu:8000/v1", "VLLM_KEY", {"VLLM_KEY": "k2"})
    'k2'
    """
    if key_env is not None:
        value = environ.get(key_env)
        if not value:
            raise LLMError(
                f"the API key of {redact_url(base_url)} is to come from the "
                f"environment variable {key_env}, which is not set"
            )
        return value
    if urllib.parse.urlsplit(base_url).scheme == "https":
        return environ.get(DEFAULT_API_KEY_ENV) or None
    return None


def _keyless_headers(environ: Mapping[str, str]) -> dict[str, Any]:
    """Headers to leave out when no key is sent: the SDK would otherwise add the
    organisation, project and custom headers it reads from the environment."""
    names = ["Authorization", "OpenAI-Organization", "OpenAI-Project"]
    for line in environ.get("OPENAI_CUSTOM_HEADERS", "").splitlines():
        if ":" in line:
            names.append(line.split(":", 1)[0].strip())
    return {name: openai.Omit() for name in names if name}


# --------------------------------------------------------------------------- endpoints


@dataclass
class Endpoint:
    """What one endpoint (base URL and model id) has shown about itself.

    Shared by every :class:`OpenAIChatModel` of the process that talks to it,
    so a capability is found out once and a cool-down applies to all.
    """

    n_supported: bool | None = None
    json_mode: JsonMode = "json_schema"
    #: no request is sent before this ``time.monotonic()`` value (after a 429)
    cooldown_until: float = 0.0


_ENDPOINTS: dict[str, Endpoint] = {}
_ENDPOINTS_LOCK = threading.Lock()


def endpoint_for(base_url: str, model: str | None) -> Endpoint:
    """The shared record of an endpoint (created on first use)."""
    key = f"{redact_url(base_url).rstrip('/')}#{model or ''}"
    with _ENDPOINTS_LOCK:
        return _ENDPOINTS.setdefault(key, Endpoint())


def forget_endpoints() -> None:
    """Drop everything learnt about endpoints (tests, or a server that was upgraded)."""
    with _ENDPOINTS_LOCK:
        _ENDPOINTS.clear()


class Deadline:
    """The time budget of one ``complete()`` call.

    It starts when the call's first request gets a concurrency slot; from then
    on every attempt, backoff, cool-down and fallback request draws on it.
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


# --------------------------------------------------------------------------- the model


@dataclass
class _LoopState:
    """The SDK client and limits of one event loop (they cannot cross loops)."""

    loop: asyncio.AbstractEventLoop
    client: openai.AsyncOpenAI
    slots: asyncio.Semaphore
    models_lock: asyncio.Lock


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


def reported_usage(response: Any) -> tuple[int, int]:
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


class OpenAIChatModel(ChatModel):
    """Chat with an OpenAI-compatible endpoint.

    ``model=None`` uses the first model the server lists (asked once). The key
    follows :func:`api_key_for`, read when the model is built; ``api_key``
    gives one directly. The name (cache keys, manifests) never holds the
    credentials a URL may carry.

    ``retries`` counts retries made so far; ``n_supported`` and ``json_mode``
    show what the endpoint has shown (see :class:`Endpoint`).
    """

    def __init__(
        self,
        base_url: str,
        model: str | None,
        *,
        options: LLMOptions,
        api_key: str | None = None,
        api_key_env: str | None = None,
        environ: Mapping[str, str] | None = None,
    ):
        super().__init__()
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.options = options
        self.max_concurrency = options.concurrency
        environ = os.environ if environ is None else environ
        self._api_key = (
            api_key
            if api_key is not None
            else api_key_for(self.base_url, api_key_env or options.api_key_env, environ)
        )
        # sent with every request (the SDK only honours a left-out Authorization there)
        self._headers = {} if self._api_key is not None else _keyless_headers(environ)
        self.retries = 0
        self._state_: _LoopState | None = None
        # seams for tests: the sleep between attempts, the jitter source, the clock
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._rand: Callable[[], float] = random.random
        self._clock: Callable[[], float] = time.monotonic
        self._update_name()

    def _update_name(self) -> None:
        self.name = f"openai:{redact_url(self.base_url)}" + (f"#{self.model}" if self.model else "")

    @property
    def endpoint(self) -> Endpoint:
        return endpoint_for(self.base_url, self.model)

    @property
    def n_supported(self) -> bool | None:
        return self.endpoint.n_supported

    @property
    def json_mode(self) -> JsonMode:
        return self.endpoint.json_mode

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state_ is None or self._state_.loop is not loop:
            # a client from a finished loop cannot be closed or reused; drop it
            client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key or NO_API_KEY,
                max_retries=0,
                timeout=self.options.timeout,
            )
            self._state_ = _LoopState(
                loop=loop,
                client=client,
                slots=asyncio.Semaphore(self.options.concurrency),
                models_lock=asyncio.Lock(),
            )
        return self._state_

    async def aclose(self) -> None:
        state, self._state_ = self._state_, None
        if state is not None and state.loop is asyncio.get_running_loop():
            await state.client.close()

    # ------------------------------------------------------------------ retries

    async def _with_retries(
        self, what: str, call: Callable[[openai.AsyncOpenAI], Awaitable[T]], deadline: Deadline
    ) -> T:
        """Run one HTTP exchange under the slot limit and the deadline, retrying."""
        for attempt in range(self.options.max_retries + 1):
            try:
                return await self._attempt(call, deadline)
            except _ATTEMPT_FAILURES as exc:
                error = to_llm_error(exc)
                delay, why = self._next_delay(error, _status_headers(exc), attempt, deadline)
                if delay is None:
                    raise self._final_error(what, error, attempt + 1, why) from exc
                log.info(
                    "%s: %s failed (%s); retry %d in %.2fs",
                    self.name,
                    what,
                    error,
                    attempt + 1,
                    delay,
                )
            self.retries += 1
            await self._sleep(delay)
        raise AssertionError("the last attempt returns or raises")  # pragma: no cover

    def _next_delay(
        self, error: LLMError, headers: Mapping[str, str] | None, attempt: int, deadline: Deadline
    ) -> tuple[float | None, str]:
        """The wait before the next attempt, or None and why there is none."""
        if not should_retry(error):
            return None, ""
        wish = retry_after_seconds(headers)
        delay = retry_delay(attempt, wish, self.options, rand=self._rand)
        if isinstance(error, LLMStatusError) and error.status == 429 and delay is not None:
            self._cool_down(delay)  # for every request to the endpoint, retried or not
        if attempt >= self.options.max_retries:
            return None, ""
        if delay is None:
            return None, (
                f"the server asks to wait {wish:.0f} s, more than retry_after_max "
                f"({self.options.retry_after_max:.0f} s)"
            )
        if delay >= deadline.remaining():
            return None, f"no time left for a retry within the {self.options.timeout:g} s deadline"
        return delay, ""

    def _final_error(self, what: str, error: LLMError, attempts: int, why: str) -> LLMError:
        tries = f"after {attempts} attempts" if attempts > 1 else "on the first attempt"
        if isinstance(error, LLMTimeoutError):
            error = LLMTimeoutError(f"no answer within the {self.options.timeout:g} s deadline")
        return _with_message(
            error, f"{self.name}: {what} failed {tries}: {error}" + (f" ({why})" if why else "")
        )

    def _cool_down(self, seconds: float) -> None:
        """Hold every request to this endpoint back for ``seconds`` (after a 429)."""
        endpoint = self.endpoint
        endpoint.cooldown_until = max(endpoint.cooldown_until, self._clock() + seconds)

    async def _attempt(
        self, call: Callable[[openai.AsyncOpenAI], Awaitable[T]], deadline: Deadline
    ) -> T:
        state = self._state()
        await self._wait_for_cool_down(deadline)
        async with self._slot(state.slots, deadline):
            budget = deadline.remaining()
            if budget <= 0:
                raise TimeoutError
            async with asyncio.timeout(budget):
                return await call(state.client)

    async def _wait_for_cool_down(self, deadline: Deadline) -> None:
        wait = self.endpoint.cooldown_until - self._clock()
        if wait <= 0:
            return
        if deadline.started is not None and wait >= deadline.remaining():
            raise LLMTimeoutError(
                f"{self.name}: the server asked for a pause of {wait:.1f} s (HTTP 429), more "
                f"than the {max(0.0, deadline.remaining()):.1f} s left of the deadline"
            )
        await self._sleep(wait)

    @contextlib.asynccontextmanager
    async def _slot(self, slots: asyncio.Semaphore, deadline: Deadline) -> AsyncIterator[None]:
        """One concurrency slot; the first one a call gets starts its deadline."""
        if deadline.started is None:
            await slots.acquire()
            deadline.start()
        else:
            async with asyncio.timeout(max(0.0, deadline.remaining())):
                await slots.acquire()
        try:
            yield
        finally:
            slots.release()

    # ------------------------------------------------------------------ model id

    async def ensure_ready(self) -> None:
        if self.model is not None:
            return
        state = self._state()
        async with state.models_lock:
            if self.model is not None:
                return

            async def first_model(client: openai.AsyncOpenAI) -> str:
                page = await client.models.list(extra_headers=self._headers or None)
                ids = [getattr(m, "id", None) for m in (getattr(page, "data", None) or [])]
                ids = [i for i in ids if isinstance(i, str) and i]
                if not ids:
                    raise LLMResponseError("the server lists no models")
                return ids[0]

            deadline = Deadline(self.options.timeout, self._clock)
            self.model = await self._with_retries("listing models", first_model, deadline)
            self._update_name()

    # ------------------------------------------------------------------ completions

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        return (await self._complete_with_usage(request))[0]

    async def _complete_with_usage(self, request: ChatRequest) -> tuple[list[Completion], Usage]:
        await self.ensure_ready()
        deadline = Deadline(self.options.timeout, self._clock)
        start, n = request.sample_start, request.n
        if n == 1 or self.endpoint.n_supported is False:
            return await self._fan_out(request, range(start, start + n), deadline)
        seed = request.sample_seed(start) if request.seed is not None else None
        try:
            got, spent = await self._request(
                request, n=n, first=start, seed=seed, deadline=deadline
            )
        except LLMStatusError as exc:
            if not rejects_n(exc):
                raise
            self._learn_n(False, f"it refuses n ({exc.body[:80]!r})")
            return await self._fan_out(request, range(start, start + n), deadline)
        if len(got) >= n:
            self._learn_n(True, "")
            return got[:n], spent
        self._learn_n(False, f"it returned {len(got)} of {n} samples")
        return await self._fan_out(
            request, range(start + len(got), start + n), deadline, kept=got, spent=spent
        )

    def _learn_n(self, supported: bool, why: str) -> None:
        endpoint = self.endpoint
        if endpoint.n_supported is not False and not supported:
            log.warning("%s: %s; asking for one sample per request from now on", self.name, why)
        endpoint.n_supported = endpoint.n_supported is not False and supported

    async def _fan_out(
        self,
        request: ChatRequest,
        indices: range,
        deadline: Deadline,
        *,
        kept: Sequence[Completion] = (),
        spent: Usage | None = None,
    ) -> tuple[list[Completion], Usage]:
        """One request per sample, concurrently. A request that fails does not
        cancel its siblings: their samples travel on the error (``partial``)."""
        spent = spent or Usage()
        if len(indices) == 1 and not kept:
            i = indices[0]
            seed = request.sample_seed(i) if request.seed is not None or request.n > 1 else None
            return await self._request(request, n=1, first=i, seed=seed, deadline=deadline)
        tasks = [
            asyncio.ensure_future(
                self._request(request, n=1, first=i, seed=request.sample_seed(i), deadline=deadline)
            )
            for i in indices
        ]
        try:
            results = await asyncio.gather(*tasks, return_exceptions=True)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        out = list(kept)
        failures: list[BaseException] = []
        for result in results:
            if isinstance(result, BaseException):
                failures.append(result)
            else:
                out += result[0]
                spent = spent + result[1]
        if failures:
            first = failures[0]
            if not isinstance(first, LLMError):
                raise first
            raise first.keeping(out, spent)
        return out, spent

    async def _request(
        self, request: ChatRequest, *, n: int, first: int, seed: int | None, deadline: Deadline
    ) -> tuple[list[Completion], Usage]:
        """One chat request for up to ``n`` samples numbered from ``first``,
        stepping down the JSON modes the endpoint refuses."""
        for _ in JSON_MODES:
            mode = self.endpoint.json_mode
            body = request_body(request, model=self.model, n=n, seed=seed, json_mode=mode)

            async def call(
                client: openai.AsyncOpenAI,
                body: dict[str, Any] = body,
            ) -> tuple[list[tuple[str, str | None]], Any]:
                response = await client.chat.completions.create(
                    **body, extra_headers=self._headers or None
                )
                return parse_choices(response), response

            try:
                choices, response = await self._with_retries("chat completion", call, deadline)
            except LLMStatusError as exc:
                if request.json_schema is None or not rejects_json_format(exc):
                    raise
                if not self._step_down_json(mode, exc):
                    raise
                continue
            choices = choices[:n]
            prompt_tokens, completion_tokens = reported_usage(response)
            shares = split_tokens(completion_tokens, [text for text, _ in choices])
            out = [
                Completion(
                    text=text,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=share,
                    finish_reason=finish,
                    sample_index=first + j,
                )
                for j, ((text, finish), share) in enumerate(zip(choices, shares, strict=True))
            ]
            return out, Usage(
                calls=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
        raise AssertionError("every JSON mode was refused")  # pragma: no cover

    def _step_down_json(self, refused: JsonMode, error: LLMStatusError) -> bool:
        """Remember that the endpoint refuses ``refused``; False if nothing is left."""
        position = JSON_MODES.index(refused)
        if position + 1 >= len(JSON_MODES):
            return False
        endpoint = self.endpoint
        lower = JSON_MODES[position + 1]
        if JSON_MODES.index(endpoint.json_mode) < position + 1:
            log.warning(
                "%s refuses response_format %s (%s); using %s from now on",
                self.name,
                refused,
                error.body[:120],
                lower,
            )
            endpoint.json_mode = lower
        return True
