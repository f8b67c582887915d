"""Model specs: one string names a chat model on the CLI and in configs.

==========================================  =========================================
spec                                        model
==========================================  =========================================
``local``                                   embedded SmolLM2-135M-Instruct (llama.cpp)
``local:/path/model.gguf``                  any GGUF file, in-process
``openai:http://host:8000/v1#model-name``   an OpenAI-compatible server (vLLM, SGLang,
                                            llama.cpp server, a hosted API); without
                                            ``#model`` the server's first model is used
``hf:/path/to/checkpoint``                  a transformers checkpoint folder (CPU), e.g.
                                            a trained policy
==========================================  =========================================

Runtime settings (concurrency, deadline, retries, cache) are not part of the
spec; they come from :class:`LLMOptions`, built once at the edge (CLI flags or a
config file) and passed in.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from attunement.llm.base import ChatModel


class LLMOptions(BaseModel):
    """How to run a model: limits, retries, cache. Never part of a cache key."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(default=8, ge=1, description="requests in flight at once")
    timeout: float = Field(default=120.0, gt=0, description="deadline per call, seconds")
    max_retries: int = Field(default=4, ge=0, description="retries on timeouts, 429 and 5xx")
    backoff_base: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=20.0, ge=0)
    api_key_env: str = Field(default="OPENAI_API_KEY",
                             description="environment variable holding the API key")
    cache: Path | None = Field(default=None, description="sqlite file caching completions")
    n_ctx: int = Field(default=4096, ge=256, description="context size of local models")
    n_threads: int | None = Field(default=None, ge=1)


@dataclass(frozen=True)
class ModelSpec:
    kind: str
    target: str = ""
    model: str | None = None

    def __str__(self) -> str:
        text = self.kind + (f":{self.target}" if self.target else "")
        return text + (f"#{self.model}" if self.model else "")


def parse_spec(spec: str) -> ModelSpec:
    """Split a spec string into kind, target and model name.

    >>> parse_spec("openai:http://localhost:8000/v1#qwen")
    ModelSpec(kind='openai', target='http://localhost:8000/v1', model='qwen')
    >>> parse_spec("local")
    ModelSpec(kind='local', target='', model=None)
    """
    text = spec.strip()
    if not text:
        raise ValueError("empty model spec")
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    if kind not in _BACKENDS:
        raise ValueError(
            f"unknown model spec {spec!r}: it must start with one of "
            + ", ".join(f"'{k}'" for k in sorted(_BACKENDS))
            + " (e.g. local, local:/path/model.gguf, openai:http://host:8000/v1#model)"
        )
    model = None
    if kind == "openai":
        rest, _, model = rest.partition("#")
        model = model or None
        if not rest.startswith(("http://", "https://")):
            raise ValueError(f"{spec!r}: an openai spec needs a URL, e.g. "
                             "openai:http://localhost:8000/v1#model-name")
    return ModelSpec(kind=kind, target=rest, model=model)


def _make_local(spec: ModelSpec, options: LLMOptions) -> ChatModel:
    from attunement.llm.local import LocalChatModel

    return LocalChatModel(spec.target or None, n_ctx=options.n_ctx, n_threads=options.n_threads)


def _make_openai(spec: ModelSpec, options: LLMOptions) -> ChatModel:
    from attunement.llm.openai_compat import OpenAIChatModel

    return OpenAIChatModel(spec.target, spec.model, options=options)


def _make_hf(spec: ModelSpec, options: LLMOptions) -> ChatModel:
    module = importlib.import_module("attunement.llm.hf")
    if not spec.target:
        raise ValueError("an hf spec needs a checkpoint folder: hf:/path/to/checkpoint")
    return module.HFChatModel(spec.target)


Factory = Callable[[ModelSpec, LLMOptions], ChatModel]
_BACKENDS: dict[str, Factory] = {"local": _make_local, "openai": _make_openai, "hf": _make_hf}


def register_backend(kind: str, factory: Factory) -> None:
    """Add a spec prefix (e.g. for a custom in-house serving stack)."""
    _BACKENDS[kind.lower()] = factory


def load_chat_model(spec: str | ModelSpec, options: LLMOptions | None = None) -> ChatModel:
    """Build the ChatModel a spec names, wrapped in the cache if one is set."""
    options = options or LLMOptions()
    parsed = spec if isinstance(spec, ModelSpec) else parse_spec(spec)
    model = _BACKENDS[parsed.kind](parsed, options)
    if options.cache is not None:
        from attunement.llm.cache import CachedChatModel, CompletionCache

        model = CachedChatModel(model, CompletionCache(options.cache))
    return model
