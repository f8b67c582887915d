"""A ChatModel for any OpenAI-compatible server (vLLM, SGLang, llama.cpp
server, hosted APIs), built on the official ``openai`` SDK.

The SDK does the HTTP; this module runs the loop around it and leaves each
decision to a small function of its own module, so each is tested alone:

- :mod:`attunement.llm.retry`: whether a failure is retried, how long to
  wait (``Retry-After`` or jittered backoff), and the call's :class:`Deadline`;
- :mod:`attunement.llm.endpoint`: which key an endpoint is sent, and what it
  has shown about itself (``n``, JSON modes, a 429 cool-down), remembered for
  every model of the process;
- :mod:`attunement.llm.wire`: the request body, the choices and usage read
  back, the SDK's exceptions mapped to attunement's typed errors.

Deadline: ``options.timeout`` bounds a whole ``complete()`` call, every
attempt, backoff, cool-down and fallback request included. It starts when the
call's first request gets a concurrency slot; a retry that could not finish
in the time left is not started. The SDK's own retries are off, so retries
are never stacked, and the retry loop holds a concurrency slot only for the
attempt, never for the wait between attempts.

``n`` samples are asked for in one request; a server that ignores or refuses
``n`` gets one request per sample (a fan-out), and a fan-out that loses one
request keeps the others (:attr:`LLMError.partial`). A refused JSON mode is
stepped down at once, without a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import openai

from attunement.llm.base import (
    ChatModel,
    ChatRequest,
    Completion,
    LLMError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
    make_request,
)
from attunement.llm.endpoint import (
    JSON_MODES,
    Endpoint,
    JsonMode,
    api_key_for,
    endpoint_for,
    redact_url,
    rejects_json_format,
    rejects_n,
)
from attunement.llm.options import NO_API_KEY, LLMOptions
from attunement.llm.retry import (
    Deadline,
    retry_after_seconds,
    retry_delay,
    should_retry,
    why_not_retry,
)
from attunement.llm.wire import (
    ATTEMPT_FAILURES,
    keyless_headers,
    parse_choices,
    reported_usage,
    request_body,
    split_tokens,
    status_headers,
    to_llm_error,
    with_message,
)
from attunement.records import Usage

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _LoopState:
    """The SDK client and limits of one event loop (they cannot cross loops)."""

    loop: asyncio.AbstractEventLoop
    client: openai.AsyncOpenAI
    slots: asyncio.Semaphore
    models_lock: asyncio.Lock


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
        self._headers = {} if self._api_key is not None else keyless_headers(environ)
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
            except ATTEMPT_FAILURES as exc:
                error = to_llm_error(exc)
                delay, why = self._next_delay(error, status_headers(exc), attempt, deadline)
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
        why = why_not_retry(delay, wish, attempt, deadline.remaining(), self.options)
        return (delay, "") if why is None else (None, why)

    def _final_error(self, what: str, error: LLMError, attempts: int, why: str) -> LLMError:
        tries = f"after {attempts} attempts" if attempts > 1 else "on the first attempt"
        if isinstance(error, LLMTimeoutError):
            error = LLMTimeoutError(f"no answer within the {self.options.timeout:g} s deadline")
        return with_message(
            error, f"{self.name}: {what} failed {tries}: {error}" + (f" ({why})" if why else "")
        )

    def _cool_down(self, seconds: float) -> None:
        """Hold every request to this endpoint back for ``seconds`` (after a 429)."""
        self.endpoint.cool_down(self._clock() + seconds)

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

    async def check_serving(self) -> None:
        """The server is up and serves the model: it lists the model id, or, when it
        lists another (llama.cpp's server takes any name) or cannot list, answers
        one token to it (an unknown model then gets the server's HTTP 404)."""
        await self.ensure_ready()

        async def model_ids(client: openai.AsyncOpenAI) -> list[str]:
            page = await client.models.list(extra_headers=self._headers or None)
            return [str(getattr(m, "id", "")) for m in (getattr(page, "data", None) or [])]

        deadline = Deadline(self.options.timeout, self._clock)
        try:
            ids = await self._with_retries("listing models", model_ids, deadline)
        except LLMStatusError as exc:
            if exc.status not in (404, 405, 501):
                raise
            ids = []  # no listing: the one-token call below decides
        if self.model in ids:
            return
        probe = make_request([{"role": "user", "content": "ping"}], max_tokens=1)
        await self._complete_with_usage(probe)  # not counted in the model's usage

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
        if self.endpoint.learn_n(supported):
            log.warning("%s: %s; asking for one sample per request from now on", self.name, why)

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
        endpoint = self.endpoint
        before = endpoint.json_mode
        lower = endpoint.step_down_json(refused)
        if lower is not None and endpoint.json_mode != before:
            log.warning(
                "%s refuses response_format %s (%s); using %s from now on",
                self.name,
                refused,
                error.body[:120],
                lower,
            )
        return lower is not None
