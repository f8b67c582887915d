"""Every default of the LLM layer, in one place.

The options model (:class:`LLMOptions`, below), the CLI flags and
the OpenAI-compatible client read their defaults from here, so a default is
changed once and the help text, the docs and the code cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

#: requests in flight at once, per model instance
DEFAULT_CONCURRENCY = 8
#: seconds one ``complete()`` call may take, retries and backoff included
#: (counted from when its first request gets a concurrency slot)
DEFAULT_TIMEOUT = 120.0
#: retries after the first attempt
DEFAULT_MAX_RETRIES = 4
#: first backoff delay in seconds; it doubles per retry
DEFAULT_BACKOFF_BASE = 0.5
#: cap of one backoff delay, seconds
DEFAULT_BACKOFF_MAX = 20.0
#: how much of a backoff delay the jitter may remove
JITTER = 0.25
#: the longest ``Retry-After`` honoured; a server asking for more fails the call
DEFAULT_RETRY_AFTER_MAX = 300.0
#: statuses retried besides every 5xx: request timeout, conflict, rate limit
RETRY_STATUSES = frozenset({408, 409, 429})

#: environment variable holding the key sent to https endpoints when no other is named
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
#: the placeholder sent when no key is to be sent (the SDK insists on one;
#: servers that need no key ignore it)
NO_API_KEY = "EMPTY"

#: context size of local GGUF models
DEFAULT_N_CTX = 4096
#: sampling defaults of ``ChatModel.complete``
DEFAULT_MAX_TOKENS = 512
DEFAULT_TEMPERATURE = 0.0


class LLMOptions(BaseModel):
    """How to run a model: limits, retries, cache. Never part of a cache key."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(
        default=DEFAULT_CONCURRENCY, ge=1, description="requests in flight at once"
    )
    timeout: float = Field(
        default=DEFAULT_TIMEOUT,
        gt=0,
        description="deadline of one call, retries and backoff included, s",
    )
    max_retries: int = Field(
        default=DEFAULT_MAX_RETRIES, ge=0, description="retries on timeouts, 429 and 5xx"
    )
    backoff_base: float = Field(default=DEFAULT_BACKOFF_BASE, ge=0)
    backoff_max: float = Field(default=DEFAULT_BACKOFF_MAX, ge=0)
    retry_after_max: float = Field(
        default=DEFAULT_RETRY_AFTER_MAX,
        ge=0,
        description="longest Retry-After honoured, s; a longer wish fails the call",
    )
    api_key_env: str | None = Field(
        default=None,
        description="environment variable holding the API key, sent to any URL; "
        "unset: OPENAI_API_KEY, sent to https URLs only",
    )
    cache: Path | None = Field(default=None, description="sqlite file caching completions")
    n_ctx: int = Field(default=DEFAULT_N_CTX, ge=256, description="context size of local models")
    n_threads: int | None = Field(default=None, ge=1)
