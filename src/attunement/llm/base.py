"""The one chat-model interface every part of attunement calls.

A :class:`ChatModel` answers a list of chat messages with ``n`` completions.
Backends (an OpenAI-compatible endpoint, the embedded llama.cpp model, a
transformers checkpoint, the scripted test model) subclass it and implement
:meth:`ChatModel._complete`; the base class validates the request and keeps the
token accounting, so every backend reports usage the same way.

Samples are numbered. ``complete(..., n=4, sample_start=8)`` asks for samples
8..11 of this request; the cache keys each sample by its number, so asking for
k samples never collapses them into one, and a retry that wants *fresh*
samples asks for numbers it has not used yet.

Usage is counted per HTTP request, not per ``complete()`` call: a backend that
needs several requests for one call (a server that rejects ``n``) reports each,
through :meth:`ChatModel.complete_with_usage`, so a wrapper (the cache) can add
up exactly what it spent. A call that fails after some samples were drawn
raises with those samples in :attr:`LLMError.partial` and their cost in
:attr:`LLMError.spent`, so nothing paid for is lost.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from attunement.llm.options import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
)
from attunement.records import Usage

Message = dict[str, str]


class LLMError(RuntimeError):
    """A chat call failed for good (after any retries the backend makes).

    ``partial`` holds the samples of the call that did arrive (a fan-out that
    lost one sibling keeps the others) and ``spent`` what the failed call cost.
    """

    partial: tuple[Completion, ...] = ()
    spent: Usage | None = None
    #: the name of the model whose call failed (set by :meth:`ChatModel.complete_with_usage`)
    source: str | None = None

    def keeping(self, partial: Sequence[Completion], spent: Usage) -> LLMError:
        """This error, carrying the samples that did arrive and their cost."""
        self.partial = tuple(partial)
        self.spent = spent
        return self


class LLMTimeoutError(LLMError):
    """A call did not finish within its deadline."""


class LLMStatusError(LLMError):
    """The server answered with an error status; ``body`` is the start of its text."""

    def __init__(self, message: str, status: int | None = None, body: str = ""):
        super().__init__(message)
        self.status = status
        self.body = body


class LLMResponseError(LLMError):
    """The server answered with something that is not a chat completion."""


class LLMConnectionError(LLMError):
    """The server could not be reached, or closed the connection without answering."""


@dataclass(frozen=True)
class Completion:
    """One sampled answer with its token counts."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    finish_reason: str | None = None
    sample_index: int = 0
    #: where a cache keeps this sample (set by the cache; see ChatModel.reject)
    cache_key: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ChatRequest:
    """Everything that determines an answer (and so the cache key)."""

    messages: tuple[tuple[str, str], ...]
    n: int = 1
    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    json_schema: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    sample_start: int = 0

    @property
    def message_dicts(self) -> list[Message]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def sample_seed(self, index: int) -> int:
        """A per-sample seed, so the k samples of one request differ but repeat."""
        return (self.seed if self.seed is not None else 0) * 1_000_003 + index

    def cache_key(self, model: str, index: int) -> str:
        """A stable key for sample ``index`` of this request on ``model``.

        Retry, timeout and concurrency settings are deliberately not part of it:
        changing them must not invalidate a cache.
        """
        doc = {
            "model": model,
            "messages": self.messages,
            "temperature": round(float(self.temperature), 6),
            "max_tokens": self.max_tokens,
            "json_schema": self.json_schema,
            "seed": self.seed,
            "stop": self.stop,
            "sample": index,
        }
        blob = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def make_request(
    messages: Sequence[Message],
    *,
    n: int = 1,
    temperature: float = DEFAULT_TEMPERATURE,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    json_schema: dict[str, Any] | None = None,
    seed: int | None = None,
    stop: Sequence[str] | None = None,
    sample_start: int = 0,
) -> ChatRequest:
    """Validate arguments once and freeze them into a :class:`ChatRequest`."""
    if not messages:
        raise ValueError("messages must not be empty")
    frozen = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}].role must be system/user/assistant, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string")  # noqa: TRY004 - bad input
        frozen.append((role, content))
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
        raise ValueError(
            f"temperature must be in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}], got {temperature}"
        )
    if sample_start < 0:
        raise ValueError("sample_start must be >= 0")
    return ChatRequest(
        messages=tuple(frozen),
        n=n,
        temperature=float(temperature),
        max_tokens=int(max_tokens),
        json_schema=json_schema,
        seed=seed,
        stop=tuple(stop) if stop else None,
        sample_start=sample_start,
    )


def usage_of(completions: Sequence[Completion]) -> Usage:
    """What one request returning ``completions`` cost: one call (if any sample
    was not cached), its prompt once, every sample's completion tokens."""
    live = [c for c in completions if not c.cached]
    return Usage(
        calls=1 if live else 0,
        cached_calls=len(completions) - len(live),
        prompt_tokens=max((c.prompt_tokens for c in live), default=0),
        completion_tokens=sum(c.completion_tokens for c in live),
    )


class UsageMeter:
    """Running totals of calls and tokens (cheap to update on the hot path)."""

    __slots__ = ("cached_calls", "calls", "completion_tokens", "prompt_tokens")

    def __init__(self) -> None:
        self.calls = self.cached_calls = self.prompt_tokens = self.completion_tokens = 0

    def add(self, usage: Usage) -> None:
        self.calls += usage.calls
        self.cached_calls += usage.cached_calls
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens

    def snapshot(self) -> Usage:
        return Usage(
            calls=self.calls,
            cached_calls=self.cached_calls,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
        )


class ChatModel(ABC):
    """Async chat model. Subclasses implement :meth:`_complete`.

    ``name`` identifies the model in cache keys and manifests; two models with
    the same name must give the same answers to the same request.
    """

    name: str = "chat-model"
    #: how many requests this backend serves at once (a scheduler hint)
    max_concurrency: int = 1
    #: True when the backend itself guarantees output matching ``json_schema``
    #: (a grammar sampler), so schema-constrained prompts are the safe choice
    #: even for a weak model
    enforces_json_schema: bool = False
    #: True for the embedded 135M stand-in (the bare spec ``local``): whatever it
    #: judges carries :data:`attunement.llm.stand_in.STAND_IN_NOTE`; wrappers copy it
    stand_in: bool = False

    def __init__(self) -> None:
        self.usage = UsageMeter()

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = DEFAULT_TEMPERATURE,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        json_schema: dict[str, Any] | None = None,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        sample_start: int = 0,
    ) -> list[Completion]:
        """Return ``n`` completions, numbered ``sample_start`` onwards."""
        request = make_request(
            messages,
            n=n,
            temperature=temperature,
            max_tokens=max_tokens,
            json_schema=json_schema,
            seed=seed,
            stop=stop,
            sample_start=sample_start,
        )
        return await self.complete_request(request)

    async def complete_request(self, request: ChatRequest) -> list[Completion]:
        return (await self.complete_with_usage(request))[0]

    async def complete_with_usage(self, request: ChatRequest) -> tuple[list[Completion], Usage]:
        """Answer ``request`` and say what it cost (also added to :attr:`usage`)."""
        try:
            out, spent = await self._complete_with_usage(request)
        except LLMError as exc:
            if exc.spent is not None:
                self.usage.add(exc.spent)
            if exc.source is None:
                exc.source = self.name
            raise
        self.usage.add(spent)
        if len(out) != request.n:
            raise LLMResponseError(
                f"{self.name}: asked for {request.n} completions, backend returned {len(out)}"
            )
        return out, spent

    async def _complete_with_usage(self, request: ChatRequest) -> tuple[list[Completion], Usage]:
        """Backends that make several requests per call override this to bill each."""
        out = await self._complete(request)
        return out, usage_of(out)

    @abstractmethod
    async def _complete(self, request: ChatRequest) -> list[Completion]:
        """Produce exactly ``request.n`` completions."""

    async def reject(self, completions: Sequence[Completion]) -> None:
        """Tell the model these samples were unusable (empty, unparseable).

        A cache forgets them, so a later identical request asks the backend
        again instead of serving the same useless answer forever. A no-op for
        models without a cache.
        """

    async def ensure_ready(self) -> None:
        """Finish any set-up that :attr:`name` depends on (no-op by default).

        An OpenAI-compatible model built without a model id asks the server
        for it here; wrappers that key on ``name`` (the cache) call this first.
        """

    async def check_serving(self) -> None:
        """Raise :class:`LLMError` if the model cannot answer now (a no-op by default).

        An OpenAI-compatible model asks its server whether it is up and serves
        the model id; in-process models have nothing to check. See
        :func:`attunement.llm.failures.preflight`.
        """

    async def aclose(self) -> None:
        """Release connections or model memory. Safe to call twice."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
