"""Token counters for the length penalty.

PERM's length term is ``-0.001 * max(|y| - 768, 0)`` with ``|y|`` in the
*policy's* tokens, so the count should come from the policy tokenizer. In
order of preference:

1. ``Reply.completion_tokens``: the trainer's own count of the completion
   (``len(completion_ids)``), used by ``length_on="completion"``;
2. a ``token_counter`` callable passed to the reward (a trainer passes
   ``lambda text: len(tokenizer(text).input_ids)``);
3. the ``tokenizer`` setting of the config, loaded here by :func:`load_token_counter`:

   - ``approx`` (default): :func:`approx_tokens`, no tokenizer at all;
   - ``local`` / ``local:PATH.gguf``: the llama.cpp tokenizer of the embedded
     GGUF model (or of that file), loaded without weights (``vocab_only``);
   - ``hf:DIR``: a transformers tokenizer saved in folder ``DIR`` (read
     offline).

The approximate count is one token per word or punctuation mark and one per
CJK character (Chinese, Japanese kana, Korean syllables), which is close to
what the BPE tokenizers of current models produce for those scripts; counting
a Chinese sentence as one "word" would make the length penalty never fire.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

TokenCounter = Callable[[str], int]

TOKENIZER_PATTERN = r"^(approx|local|local:.+|hf:.+)$"

_CJK = (
    "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)
_APPROX = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """Words, numbers and punctuation marks count one each; so does every CJK character.

    >>> approx_tokens("I failed again, sorry."), approx_tokens("我又没考过驾照了。")
    (6, 9)
    """
    return len(_APPROX.findall(text))


class _Named:
    """A counter with a name for manifests."""

    def __init__(self, name: str, count: TokenCounter):
        self.__name__ = name
        self._count = count

    def __call__(self, text: str) -> int:
        return self._count(text)

    def __repr__(self) -> str:
        return self.__name__


def load_token_counter(spec: str) -> TokenCounter:
    """The counter a ``tokenizer`` setting names (see the module docstring)."""
    if not re.match(TOKENIZER_PATTERN, spec):
        raise ValueError(f"tokenizer {spec!r}: expected approx, local, local:PATH.gguf or hf:DIR")
    if spec == "approx":
        return _Named("approx_tokens (words, punctuation, CJK characters)", approx_tokens)
    if spec.startswith("local"):
        return _llama_counter(spec.partition(":")[2] or None)
    return _hf_counter(spec.partition(":")[2])


def _llama_counter(path: str | None) -> TokenCounter:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise ValueError(
            "tokenizer 'local' needs llama-cpp-python: pip install 'attunement[local]'"
        ) from exc
    from attunement.llm.local import find_default_gguf

    gguf = Path(path) if path else find_default_gguf()
    if not gguf.exists():
        raise ValueError(f"tokenizer {gguf}: no such GGUF file")
    vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    return _Named(f"llama.cpp tokenizer of {gguf.name}", count)


def _hf_counter(folder: str) -> TokenCounter:
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"tokenizer hf:{folder}: not a folder")
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise ValueError(
            "tokenizer 'hf:' needs transformers: pip install 'attunement[train]'"
        ) from exc
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return _Named(f"transformers tokenizer of {path.name}", count)
