"""A sqlite3 (WAL) cache of chat completions, and a ChatModel that uses it.

Each *sample* is cached under :meth:`ChatRequest.cache_key`, which covers the
model name, messages, sampling parameters and the sample number. Asking again
for the same k samples costs no call; asking for samples k..2k-1 calls the
backend for the new ones only.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from attunement.llm.base import ChatModel, ChatRequest, Completion, make_request

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason TEXT,
    created REAL NOT NULL
)
"""


class CompletionCache:
    """Persistent store of completions keyed by request and sample number."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens, finish_reason "
                "FROM completions WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return Completion(text=row[0], prompt_tokens=row[1], completion_tokens=row[2],
                          finish_reason=row[3], cached=True)

    def put(self, key: str, model: str, completion: Completion) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, model, completion.text, completion.prompt_tokens,
                 completion.completion_tokens, completion.finish_reason, time.time()))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedChatModel(ChatModel):
    """Wrap a ChatModel so that every sample is served from the cache if present."""

    def __init__(self, inner: ChatModel, cache: CompletionCache):
        super().__init__()
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.max_concurrency = inner.max_concurrency
        self.enforces_json_schema = inner.enforces_json_schema

    async def ensure_ready(self) -> None:
        await self.inner.ensure_ready()
        self.name = self.inner.name

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        # the key needs the inner model's final name (an endpoint built without
        # a model id learns it from the server on first use)
        await self.ensure_ready()
        indices = range(request.sample_start, request.sample_start + request.n)
        keys = {i: request.cache_key(self.name, i) for i in indices}
        found: dict[int, Completion] = {}
        for i in indices:
            hit = self.cache.get(keys[i])
            if hit is not None:
                found[i] = Completion(text=hit.text, prompt_tokens=hit.prompt_tokens,
                                      completion_tokens=hit.completion_tokens,
                                      finish_reason=hit.finish_reason, cached=True,
                                      sample_index=i)
        missing = [i for i in indices if i not in found]
        # fetch missing samples in contiguous runs so that each run's samples
        # keep their own numbers (and so their own per-sample seeds)
        for start, count in contiguous_runs(missing):
            sub = make_request(request.message_dicts, n=count, temperature=request.temperature,
                               max_tokens=request.max_tokens, json_schema=request.json_schema,
                               seed=request.seed, stop=request.stop, sample_start=start)
            fresh = await self.inner.complete_request(sub)
            for j, comp in enumerate(fresh):
                i = start + j
                comp = Completion(text=comp.text, prompt_tokens=comp.prompt_tokens,
                                  completion_tokens=comp.completion_tokens,
                                  finish_reason=comp.finish_reason, cached=False, sample_index=i)
                self.cache.put(keys[i], self.name, comp)
                found[i] = comp
        return [found[i] for i in indices]

    async def aclose(self) -> None:
        await self.inner.aclose()


def contiguous_runs(indices: list[int]) -> list[tuple[int, int]]:
    """Sorted sample numbers as (start, count) runs: [3, 4, 5, 9] -> [(3, 3), (9, 1)]."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs
