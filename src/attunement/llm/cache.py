"""A sqlite3 (WAL) cache of chat completions, and a ChatModel that uses it.

Each *sample* is cached under :meth:`ChatRequest.cache_key`, which covers the
model name, messages, sampling parameters and the sample number. Asking again
for the same k samples costs no call; asking for samples k..2k-1 calls the
backend for the new ones only.

- sqlite runs in a worker thread (one hop per request, not per sample), so a
  slow disk never stalls the event loop that hundreds of judge calls share.
- A caller that finds a sample unusable (an empty summary, an answer that
  does not parse) calls :meth:`CachedChatModel.reject`; the sample is deleted
  and the next identical request asks the backend again.
- A call that fails after some samples arrived (a fan-out that lost one
  request) still caches those samples, so a retry fetches only what is missing.
- The wrapper's ``usage`` is what it really spent: every request the backend
  made (several when a server rejects ``n``) plus the samples it served.
- A file that is not a readable cache fails with a :class:`CacheError` naming
  the file, never a sqlite traceback.
- The pre-flight check (:meth:`CachedChatModel.check_serving`) counts only
  when a call would be made: when the server cannot be reached but the cache
  holds answers of this model, the check is deferred to the first sample the
  cache cannot serve, so a run the cache serves whole needs no server, and a
  run that does need it fails on that sample with the check's cause.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from attunement.llm.base import ChatModel, ChatRequest, Completion, LLMError
from attunement.records import Usage

#: seconds a writer waits for another process's lock on the file before failing
LOCK_TIMEOUT = 30.0
#: keys looked up per query (sqlite allows 999 variables in one statement)
LOOKUP_CHUNK = 500

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


class CacheError(LLMError):
    """The cache file cannot be used (corrupt, not a database, unwritable)."""


class CompletionCache:
    """Persistent store of completions keyed by request and sample number.

    The plain methods block; :class:`CachedChatModel` calls the ``a``-prefixed
    ones, which run them in a worker thread.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, timeout=LOCK_TIMEOUT
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._error(exc) from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.Error as exc:
            self._db.close()
            raise self._error(exc) from None

    def _error(self, exc: BaseException) -> CacheError:
        return CacheError(
            f"{self.path}: cannot use this completion cache ({exc}); delete the "
            "file or point --cache elsewhere"
        )

    def _run(
        self,
        sql: str,
        rows: Sequence[tuple] = ((),),
        *,
        many: bool = False,
    ) -> list[tuple]:
        with self._lock:
            try:
                if many:
                    self._db.executemany(sql, rows)
                    self._db.commit()
                    return []
                return self._db.execute(sql, rows[0]).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    # ------------------------------------------------------------------ blocking

    def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        """The cached samples among ``keys`` (absent keys are left out)."""
        found: dict[str, Completion] = {}
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = list(keys[start : start + LOOKUP_CHUNK])
            marks = ",".join("?" * len(chunk))
            for key, text, prompt, completion, finish in self._run(
                "SELECT key, text, prompt_tokens, completion_tokens, finish_reason "
                f"FROM completions WHERE key IN ({marks})",
                (tuple(chunk),),
            ):
                found[key] = Completion(
                    text=text,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    finish_reason=finish,
                    cached=True,
                    cache_key=key,
                )
        return found

    def get(self, key: str) -> Completion | None:
        return self.get_many([key]).get(key)

    def put_many(self, model: str, items: Sequence[tuple[str, Completion]]) -> None:
        now = time.time()
        self._run(
            "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (key, model, c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason, now)
                for key, c in items
            ],
            many=True,
        )

    def put(self, key: str, model: str, completion: Completion) -> None:
        self.put_many(model, [(key, completion)])

    def delete_many(self, keys: Sequence[str]) -> None:
        self._run("DELETE FROM completions WHERE key = ?", [(k,) for k in keys], many=True)

    def holds(self, model: str) -> bool:
        """Whether any answer of ``model`` is stored."""
        return bool(self._run("SELECT 1 FROM completions WHERE model = ? LIMIT 1", [(model,)]))

    def __len__(self) -> int:
        return self._run("SELECT COUNT(*) FROM completions")[0][0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ off the loop

    async def aget_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        return await asyncio.to_thread(self.get_many, keys)

    async def aput_many(self, model: str, items: Sequence[tuple[str, Completion]]) -> None:
        if items:
            await asyncio.to_thread(self.put_many, model, items)

    async def aholds(self, model: str) -> bool:
        return await asyncio.to_thread(self.holds, model)

    async def adelete_many(self, keys: Sequence[str]) -> None:
        if keys:
            await asyncio.to_thread(self.delete_many, keys)


def _numbered(c: Completion, index: int, key: str, *, cached: bool) -> Completion:
    return Completion(
        text=c.text,
        prompt_tokens=c.prompt_tokens,
        completion_tokens=c.completion_tokens,
        finish_reason=c.finish_reason,
        cached=cached,
        sample_index=index,
        cache_key=key,
    )


class CachedChatModel(ChatModel):
    """Wrap a ChatModel so that every sample is served from the cache if present."""

    def __init__(self, inner: ChatModel, cache: CompletionCache):
        super().__init__()
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.max_concurrency = inner.max_concurrency
        self.enforces_json_schema = inner.enforces_json_schema
        self.stand_in = inner.stand_in
        #: the pre-flight failed while the cache held answers: check again on a miss
        self._unchecked = False
        self._check_lock = asyncio.Lock()

    async def ensure_ready(self) -> None:
        await self.inner.ensure_ready()
        self.name = self.inner.name

    async def check_serving(self) -> None:
        """The server's check, deferred to the first miss when it fails but the
        cache holds answers of this model (it may serve the whole run)."""
        try:
            await self.inner.check_serving()
        except LLMError:
            if not await self.cache.aholds(self.name):
                raise
            self._unchecked = True

    async def _check_before_call(self) -> None:
        """On a miss after a deferred check: the check, once it passes."""
        async with self._check_lock:
            if not self._unchecked:
                return
            try:
                await self.inner.check_serving()
            except LLMError as exc:
                if exc.source is None:
                    exc.source = self.name
                raise
            self._unchecked = False

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        return (await self._complete_with_usage(request))[0]

    async def _complete_with_usage(self, request: ChatRequest) -> tuple[list[Completion], Usage]:
        # the key needs the inner model's final name (an endpoint built without
        # a model id learns it from the server on first use)
        await self.ensure_ready()
        indices = range(request.sample_start, request.sample_start + request.n)
        keys = {i: request.cache_key(self.name, i) for i in indices}
        hits = await self.cache.aget_many(list(keys.values()))
        found = {
            i: _numbered(hits[keys[i]], i, keys[i], cached=True) for i in indices if keys[i] in hits
        }
        spent = Usage(cached_calls=len(found))
        missing = [i for i in indices if i not in found]
        # fetch missing samples in contiguous runs so that each run's samples
        # keep their own numbers (and so their own per-sample seeds)
        if missing and self._unchecked:
            await self._check_before_call()
        for start, count in contiguous_runs(missing):
            sub = dataclasses.replace(request, n=count, sample_start=start)
            try:
                fresh, cost = await self.inner.complete_with_usage(sub)
            except LLMError as exc:
                # keep what did arrive: a retry then asks only for the rest
                exc.keeping(await self._store(keys, exc.partial), spent + (exc.spent or Usage()))
                raise
            spent = spent + cost
            for comp in await self._store(keys, fresh):
                found[comp.sample_index] = comp
        return [found[i] for i in indices], spent

    async def _store(
        self,
        keys: dict[int, str],
        samples: Sequence[Completion],
    ) -> list[Completion]:
        stored = [
            _numbered(c, c.sample_index, keys[c.sample_index], cached=False)
            for c in samples
            if c.sample_index in keys
        ]
        await self.cache.aput_many(self.name, [(keys[c.sample_index], c) for c in stored])
        return stored

    async def reject(self, completions: Sequence[Completion]) -> None:
        await self.cache.adelete_many([c.cache_key for c in completions if c.cache_key])

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
