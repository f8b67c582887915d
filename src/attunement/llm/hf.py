"""A transformers checkpoint folder as a ChatModel (spec ``hf:/path/to/checkpoint``).

Meant for a policy trained with attunement (or any chat model saved with
``save_pretrained``) answering through the same interface as every other
model, on a CPU or a single device. It needs ``torch`` and ``transformers``
(``pip install torch==2.13.0 'attunement[train]'``).

- The model and tokenizer are loaded from the local folder only
  (``local_files_only=True``), on first use, and held by this object.
- Prompts go through the tokenizer's chat template; a checkpoint without one
  is refused with a clear error.
- Sample ``i`` of a request is generated with its own seed
  (:meth:`ChatRequest.sample_seed`), so it is the same whether it was asked
  for alone or among ``n`` (the seed is set on torch's global generator,
  under this model's lock); greedy requests (temperature 0) are decoded once
  and the text repeated.
- Stop strings end generation and are cut from the text, as OpenAI servers
  do. Token counts are exact.
- Calls are serialised and run in a worker thread, so the event loop stays
  free; ``max_concurrency`` is 1.
- ``json_schema`` (constrained output) is not supported: the call fails with
  an :class:`LLMError` instead of returning unconstrained text.

The model name is ``hf:<folder name>@<fingerprint>``, where the fingerprint
covers everything that changes an answer: the config and generation config,
the tokenizer files (chat template included), the weight files' sizes and
modification times, and the dtype the model is run in. A re-trained
checkpoint saved to the same folder, or the same one run in bfloat16, gets a
new name, so cached completions of the other are not served for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
from pathlib import Path
from typing import Any

from attunement.llm.base import ChatModel, ChatRequest, Completion, LLMError
from attunement.llm.options import DEFAULT_HF_DEVICE, DEFAULT_HF_DTYPE

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
#: small files whose content decides how a prompt is encoded or decoded
_CONTENT_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)


def checkpoint_fingerprint(path: Path, dtype: str = DEFAULT_HF_DTYPE) -> str:
    """A short hash of what decides a checkpoint's answers: its config,
    generation config and tokenizer files (by content), its weight files (by
    name, size and modification time) and the dtype it runs in."""
    h = hashlib.sha256(f"dtype:{dtype}".encode())
    for f in sorted(path.iterdir()):
        if f.name in _CONTENT_FILES:
            h.update(f"{f.name}:".encode() + f.read_bytes())
        elif f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:10]


def _stop_on_text(tokenizer: Any, stops: tuple[str, ...], prompt_len: int) -> Any:
    """Stop when the *generated* text contains a stop string.

    transformers' own ``stop_strings`` also match across the end of the
    prompt (e.g. a prompt ending in a newline and a stop of two newlines),
    unlike OpenAI servers; this criterion looks at the completion only.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnText(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = [
                any(
                    s in tokenizer.decode(row[prompt_len:], skip_special_tokens=True) for s in stops
                )
                for row in input_ids
            ]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopOnText()])


class HFChatModel(ChatModel):
    """Chat with a local transformers causal-LM checkpoint."""

    max_concurrency = 1

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = DEFAULT_HF_DEVICE,
        dtype: str = DEFAULT_HF_DTYPE,
        name: str | None = None,
    ):
        super().__init__()
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise LLMError(f"{self.path}: no such checkpoint folder")
        if not (self.path / "config.json").exists():
            raise LLMError(f"{self.path}: not a transformers checkpoint (no config.json)")
        self.device = device
        self.dtype = dtype
        self.name = name or f"hf:{self.path.name}@{checkpoint_fingerprint(self.path, dtype)}"
        self._model: Any = None
        self._tokenizer: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    # ------------------------------------------------------------------ loading

    def _load(self) -> tuple[Any, Any]:
        with self._load_lock:
            if self._model is None:
                try:
                    import torch
                    from transformers import AutoModelForCausalLM, AutoTokenizer
                except ImportError as exc:
                    raise LLMError(
                        "the hf backend needs torch and transformers: "
                        "pip install torch==2.13.0 'attunement[train]'"
                    ) from exc
                torch_dtype = getattr(torch, self.dtype, None)
                if not isinstance(torch_dtype, torch.dtype):
                    raise LLMError(f"unknown torch dtype {self.dtype!r} (e.g. float32, bfloat16)")
                try:
                    tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
                    model = AutoModelForCausalLM.from_pretrained(
                        self.path, local_files_only=True, dtype=torch_dtype
                    )
                except (OSError, ValueError) as exc:
                    raise LLMError(f"{self.path}: cannot load the checkpoint: {exc}") from exc
                if not getattr(tokenizer, "chat_template", None):
                    raise LLMError(
                        f"{self.path}: the tokenizer has no chat template, so chat "
                        "messages cannot be turned into a prompt"
                    )
                model.to(self.device)
                model.eval()
                self._tokenizer, self._model = tokenizer, model
            return self._model, self._tokenizer

    # ------------------------------------------------------------------ generation

    def _eos_ids(self, model: Any, tokenizer: Any) -> set[int]:
        ids = model.generation_config.eos_token_id
        if ids is None:
            ids = tokenizer.eos_token_id
        if ids is None:
            return set()
        return set(ids) if isinstance(ids, list | tuple) else {int(ids)}

    def _generate(self, request: ChatRequest) -> list[Completion]:
        model, tokenizer = self._load()  # imports torch and transformers under a lock
        import torch

        encoded = tokenizer.apply_chat_template(
            request.message_dicts, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        input_ids = encoded["input_ids"].to(self.device)
        attention = encoded["attention_mask"].to(self.device)
        prompt_len = int(input_ids.shape[1])
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and prompt_len >= limit:
            raise LLMError(
                f"{self.name}: the prompt has {prompt_len} tokens, the model's context is {limit}"
            )
        eos = self._eos_ids(model, tokenizer)
        kwargs = self._generation_kwargs(request, tokenizer, eos, prompt_len)
        kwargs["attention_mask"] = attention
        sample = request.temperature > 0
        out: list[Completion] = []
        with self._run_lock, torch.inference_mode():
            for index in range(request.sample_start, request.sample_start + request.n):
                if out and not sample:  # greedy decoding: every sample is the same
                    out.append(dataclasses.replace(out[0], sample_index=index))
                    continue
                torch.manual_seed(request.sample_seed(index))  # sampling draws from torch's RNG
                generated = model.generate(input_ids, **kwargs)[0, prompt_len:].tolist()
                out.append(self._decode(generated, tokenizer, eos, request, prompt_len, index))
        return out

    @staticmethod
    def _generation_kwargs(
        request: ChatRequest, tokenizer: Any, eos: set[int], prompt_len: int
    ) -> dict[str, Any]:
        """``model.generate`` settings of a request: sampling at its temperature, or
        greedy whatever the checkpoint's generation_config says; its stop strings."""
        pad = tokenizer.pad_token_id
        sample = request.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "do_sample": sample,
            "pad_token_id": pad if pad is not None else (min(eos) if eos else 0),
        }
        if sample:
            kwargs.update(temperature=request.temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if request.stop:
            kwargs["stopping_criteria"] = _stop_on_text(tokenizer, request.stop, prompt_len)
        return kwargs

    @staticmethod
    def _decode(
        ids: list[int],
        tokenizer: Any,
        eos: set[int],
        request: ChatRequest,
        prompt_len: int,
        index: int,
    ) -> Completion:
        finish = "length"
        for pos, tok in enumerate(ids):
            if tok in eos:
                ids, finish = ids[:pos], "stop"
                break
        text = tokenizer.decode(ids, skip_special_tokens=True)
        if request.stop:
            cuts = [text.find(s) for s in request.stop if s and s in text]
            if cuts:
                text, finish = text[: min(cuts)], "stop"
        return Completion(
            text=text,
            prompt_tokens=prompt_len,
            completion_tokens=len(ids),
            finish_reason=finish,
            sample_index=index,
        )

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        if request.json_schema is not None:
            raise LLMError(
                f"{self.name}: constrained output (json_schema) is not supported by "
                "the hf backend; use a local: (llama.cpp) or openai: (e.g. vLLM) "
                "model for steps that need JSON"
            )
        return await asyncio.to_thread(self._generate, request)

    async def aclose(self) -> None:
        with self._load_lock:
            self._model = None
            self._tokenizer = None
