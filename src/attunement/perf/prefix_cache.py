"""An ideal prefix cache over chat prompts, for the simulated server and the benchmarks.

Servers with automatic prefix caching (vLLM, SGLang, llama.cpp's server) keep
the computed prompt in fixed-size blocks, each keyed by its own content *and*
everything before it, and reuse the longest run of leading blocks a new prompt
shares with one seen before. Only the rest is prefilled. So what a prompt
layout costs in prefill depends on where the parts that change sit: a part
that differs between two prompts ends the reuse for everything after it.

:class:`PrefixCache` models that and nothing more: a prompt (its messages in
order, each opened by a role marker) is cut into blocks of ``block`` units,
a block is served from the cache when the same chain of blocks was seen before,
the last partial block is always computed (with character blocks, at least the
last character of a prompt is, as a server always computes the last position
to sample from), and nothing is ever evicted, so the
figures show what the layout allows, not one server's eviction policy. The
unit is a character (the simulated server: 64-character blocks) or a token
(``attune bench converse``: blocks of 16 tokens). Either way the cache answers
in tokens, counted as :func:`attunement.llm.scripted.count_tokens` counts them
(words and punctuation runs): with character blocks, a token counts as cached
when it ends inside the cached characters.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from typing import Any, Literal

Unit = Literal["char", "token"]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def _chain_hits(pieces: list[str], seen: set[bytes]) -> int:
    """How many leading pieces were seen before as the same chain; remember the chain."""
    chain, hits, missed = b"", 0, False
    for piece in pieces:
        chain = hashlib.sha256(chain + piece.encode("utf-8")).digest()
        if not missed and chain in seen:
            hits += 1
        else:
            missed = True
            seen.add(chain)
    return hits


class PrefixCache:
    """An ideal prefix cache (see the module docstring).

    ``serve(messages)`` returns ``(prompt tokens, tokens served from the cache)``.

    >>> cache = PrefixCache(block=2)  # tokens
    >>> cache.serve([{"role": "user", "content": "a b c d"}])  # <user> a | b c | d
    (5, 0)
    >>> cache.serve([{"role": "user", "content": "a b c d e f"}])  # two blocks seen before
    (7, 4)
    >>> chars = PrefixCache(block=4, unit="char")  # "<|user|>" opens the message: 8 characters
    >>> chars.serve([{"role": "user", "content": "ab cd"}])
    (2, 0)
    >>> chars.serve([{"role": "user", "content": "ab cx"}])  # "<|us" "er|>" "ab c" cached
    (2, 1)
    """

    def __init__(self, block: int = 16, unit: Unit = "token"):
        if block < 1:
            raise ValueError("block must be >= 1")
        if unit not in ("char", "token"):
            raise ValueError("unit must be 'char' or 'token'")
        self.block = block
        self.unit = unit
        self._seen: set[bytes] = set()
        self._lock = threading.Lock()

    def serve(self, messages: Sequence[dict[str, Any]]) -> tuple[int, int]:
        if self.unit == "token":
            return self._serve_tokens(messages)
        return self._serve_chars(messages)

    def _blocks(self, units: Sequence[str]) -> list[str]:
        whole = len(units) - len(units) % self.block
        return ["\x1f".join(units[i : i + self.block]) for i in range(0, whole, self.block)]

    def _serve_tokens(self, messages: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Token blocks; the role markers count as tokens (one each)."""
        tokens: list[str] = []
        for m in messages:
            tokens += [f"<{m.get('role')}>", *_TOKEN.findall(str(m.get("content", "")))]
        with self._lock:
            hits = _chain_hits(self._blocks(tokens), self._seen)
        return len(tokens), hits * self.block

    def _serve_chars(self, messages: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Character blocks over the messages with their role markers; the markers
        are not counted as prompt tokens (the server counts the contents)."""
        text, ends = "", []
        for m in messages:
            text += f"<|{m.get('role')}|>"
            content = str(m.get("content", ""))
            ends += [len(text) + t.end() for t in _TOKEN.finditer(content)]
            text += content
        whole = max(0, len(text) - 1) // self.block * self.block
        pieces = [text[i : i + self.block] for i in range(0, whole, self.block)]
        with self._lock:
            cached_chars = _chain_hits(pieces, self._seen) * self.block
        return len(ends), sum(1 for end in ends if end <= cached_chars)
