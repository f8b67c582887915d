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

An ``openai:`` spec may end in ``,key=NAME``: the API key is then read from
the environment variable ``NAME`` and sent whatever the URL
(``openai:http://gpu:8000/v1#qwen,key=VLLM_API_KEY``). Without it a key is sent
to https URLs only (see :func:`attunement.llm.endpoint.api_key_for`).

Runtime settings (concurrency, deadline, retries, cache) are not part of the
spec; they come from :class:`LLMOptions`, built once at the edge (CLI flags or a
config file) and passed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from attunement.llm.base import ChatModel
from attunement.llm.cache import CachedChatModel, CompletionCache
from attunement.llm.endpoint import redact_url
from attunement.llm.hf import HFChatModel  # torch and transformers load on first use
from attunement.llm.local import LocalChatModel  # llama_cpp loads on first use
from attunement.llm.options import ENV_NAME, LLMOptions

#: ``,key=NAME`` at the end of an openai spec: the environment variable of its key
_KEY_SUFFIX = re.compile(rf",key=({ENV_NAME})$")


@dataclass(frozen=True)
class ModelSpec:
    kind: str
    target: str = ""
    model: str | None = None
    #: environment variable holding the API key (``,key=NAME``), openai specs only
    api_key_env: str | None = None

    def __str__(self) -> str:
        text = self.kind + (f":{self.target}" if self.target else "")
        text += f"#{self.model}" if self.model else ""
        return text + (f",key={self.api_key_env}" if self.api_key_env else "")


def redact_spec(spec: str) -> str:
    """A spec string with the credentials of its URL removed (for manifests).

    >>> redact_spec("openai:http://u:pw@localhost:8000/v1#judge")
    'openai:http://localhost:8000/v1#judge'
    """
    parsed = parse_spec(spec)
    if parsed.kind != "openai":
        return str(parsed)
    return str(ModelSpec(parsed.kind, redact_url(parsed.target), parsed.model, parsed.api_key_env))


def parse_spec(spec: str) -> ModelSpec:
    """Split a spec string into kind, target and model name.

    >>> parse_spec("openai:http://localhost:8000/v1#qwen")
    ModelSpec(kind='openai', target='http://localhost:8000/v1', model='qwen', api_key_env=None)
    >>> parse_spec("openai:http://gpu:8000/v1#qwen,key=VLLM_API_KEY").api_key_env
    'VLLM_API_KEY'
    >>> parse_spec("local")
    ModelSpec(kind='local', target='', model=None, api_key_env=None)
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
    model = key_env = None
    if kind == "openai":
        suffix = _KEY_SUFFIX.search(rest)
        if suffix:
            key_env, rest = suffix.group(1), rest[: suffix.start()]
        rest, _, model = rest.partition("#")
        model = model or None
        if not rest.startswith(("http://", "https://")):
            raise ValueError(
                f"{spec!r}: an openai spec needs a URL, e.g. "
                "openai:http://localhost:8000/v1#model-name"
            )
    return ModelSpec(kind=kind, target=rest, model=model, api_key_env=key_env)


def _make_local(spec: ModelSpec, options: LLMOptions) -> ChatModel:
    return LocalChatModel(spec.target or None, n_ctx=options.n_ctx, n_threads=options.n_threads)


def _make_openai(spec: ModelSpec, options: LLMOptions) -> ChatModel:
    # imported here: the openai SDK loads only when an openai spec is used
    from attunement.llm.openai_compat import OpenAIChatModel

    return OpenAIChatModel(
        spec.target,
        spec.model,
        options=options,
        api_key_env=spec.api_key_env or options.api_key_env,
    )


def _make_hf(spec: ModelSpec, options: LLMOptions) -> ChatModel:
    if not spec.target:
        raise ValueError("an hf spec needs a checkpoint folder: hf:/path/to/checkpoint")
    return HFChatModel(spec.target)


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
        model = CachedChatModel(model, CompletionCache(options.cache))
    return model
