"""Memory modes: which of the user's memories the policy gets to see.

Each mode is a :class:`MemoryStrategy` whose ``select(example)`` returns a
:class:`MemoryView` (memory items and/or a summary) that the reply prompt
renders. Build one with :func:`memory_strategy`:

==========  ==========================================================================
mode        what the policy sees
==========  ==========================================================================
full        all of the user's memory items
none        no memory (the "w/o memory" ablation)
mismatch    all memory items of *another* user, chosen deterministically from the
            seed and the example id (the "mismatched memory" ablation)
summary     an LLM-written description of the user drawn from their memories, made
            once per user (the "Memory" baseline)
rag         the ``k`` (default 3) memory items most relevant to the query, best
            first, by BM25 or by embeddings (the "RAG" baseline)
==========  ==========================================================================

A view also carries the memory-derived context of the user whose memories it
shows: their persona and the situation of the query. The policy sees them only
when asked (``with_persona`` / ``with_situation`` in generation): the paper's
task is reply = policy(memory, query). ``mismatch`` swaps them too (the other
user's persona, and their situation of the same category), so an ablation
never leaks the real user through text derived from their memories; ``none``
has no memories, but shows the user's own persona and situation when they are
asked for (PERM's persona-and-scenario setting).
"""

from __future__ import annotations

import asyncio
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from attunement.llm.base import ChatModel, LLMError
from attunement.policy.prompting import SUMMARY_PROMPT, render_summary_messages
from attunement.policy.retrieval import BM25Retriever, Retriever
from attunement.prompts import load_prompt
from attunement.records import Example, MemoryItem, Persona, Situation, UserHistory

#: every memory mode, in the order tables list them
MemoryMode = Literal["full", "none", "mismatch", "summary", "rag"]
MEMORY_MODES: tuple[str, ...] = get_args(MemoryMode)
#: the modes that need no model besides the policy (``summary`` needs a summariser),
#: so training rows and exports, which are written without one, can use them
ModelFreeMemoryMode = Literal["full", "none", "mismatch", "rag"]
MODEL_FREE_MEMORY_MODES: tuple[str, ...] = get_args(ModelFreeMemoryMode)


@dataclass(frozen=True)
class MemoryView:
    """What a memory mode lets the policy see for one example.

    ``source_user_id`` is the user the memories belong to (another user's in
    ``mismatch`` mode), recorded so an ablation can be audited; ``persona``
    and ``situation`` are that user's (shown only when generation asks).
    """

    memories: tuple[MemoryItem, ...] = ()
    summary: str | None = None
    source_user_id: str | None = None
    persona: Persona | None = None
    situation: Situation | None = None


class MemoryStrategy(ABC):
    """Chooses the memory view of an example."""

    mode: str

    @abstractmethod
    async def select(self, example: Example) -> MemoryView:
        """The memories (and/or summary) the policy sees when answering ``example``."""

    def settings(self) -> dict[str, Any]:
        """Everything that determines this strategy's output (for manifests)."""
        return {"mode": self.mode}


class FullMemory(MemoryStrategy):
    mode = "full"

    @staticmethod
    def view(example: Example) -> MemoryView:
        """The example's own memories, persona and situation (needs no await)."""
        return MemoryView(
            memories=tuple(example.memories),
            source_user_id=example.user_id,
            persona=example.persona,
            situation=example.situation,
        )

    async def select(self, example: Example) -> MemoryView:
        return self.view(example)


class NoMemory(MemoryStrategy):
    mode = "none"

    async def select(self, example: Example) -> MemoryView:
        return MemoryView(persona=example.persona, situation=example.situation)


def memories_by_user(
    pool: Sequence[Example] | Sequence[UserHistory],
) -> dict[str, tuple[MemoryItem, ...]]:
    """Each user's memory items in a pool of examples or user histories.

    For examples, a user's memories are the union over their examples (by
    ``memory_id``, first occurrence kept, in order). Every example must carry a
    ``user_id``, else users could not be told apart.
    """
    found: dict[str, dict[str, MemoryItem]] = {}
    for entry in pool:
        if isinstance(entry, UserHistory):
            items = found.setdefault(entry.user_id, {})
            for m in entry.memories:
                items.setdefault(m.memory_id, m)
        elif isinstance(entry, Example):
            if entry.user_id is None:
                raise ValueError(
                    f"example {entry.example_id!r} has no user_id: the memory pool "
                    "needs user ids to pick another user's memories"
                )
            items = found.setdefault(entry.user_id, {})
            for m in entry.memories:
                items.setdefault(m.memory_id, m)
        else:
            raise TypeError(
                f"a memory pool holds Example or UserHistory records, not {type(entry).__name__}"
            )
    return {user: tuple(items.values()) for user, items in found.items()}


def _stable_index(seed: int, key: str, size: int) -> int:
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % size


class MismatchedMemory(MemoryStrategy):
    """Another user's memories, picked from the pool by ``(seed, example_id)``.

    The same seed and example always get the same other user, in any process
    and whatever the order of the examples; the example's own user is never
    picked. Users without memories are not candidates.
    """

    mode = "mismatch"

    def __init__(self, pool: Sequence[Example] | Sequence[UserHistory], *, seed: int = 0):
        by_user = {u: m for u, m in memories_by_user(pool).items() if m}
        if len(by_user) < 2:
            raise ValueError(
                "mismatch memory needs a pool with the memories of at least two users; "
                f"this pool has {len(by_user)} user(s) with memories "
                f"({', '.join(sorted(by_user)) or 'none'})"
            )
        self._by_user = by_user
        self._users = sorted(by_user)
        self.seed = seed
        self._examples: dict[str, list[Example]] = {}
        for entry in pool:
            if isinstance(entry, Example) and entry.user_id is not None:
                self._examples.setdefault(entry.user_id, []).append(entry)

    def other_user(self, example: Example) -> str:
        """The user whose memories ``example`` gets."""
        if example.user_id is None:
            raise ValueError(
                f"example {example.example_id!r} has no user_id, so another "
                "user's memories cannot be chosen for it"
            )
        candidates = [u for u in self._users if u != example.user_id]
        return candidates[_stable_index(self.seed, example.example_id, len(candidates))]

    def context_of(self, user: str, example: Example) -> tuple[Persona | None, Situation | None]:
        """The other user's persona and situation (same category first), from the pool."""
        theirs = self._examples.get(user, [])
        persona = next((e.persona for e in theirs if e.persona is not None), None)
        situations = [e.situation for e in theirs if e.situation is not None]
        same = [s for s in situations if s.category == example.category]
        return persona, (same or situations or [None])[0]

    async def select(self, example: Example) -> MemoryView:
        user = self.other_user(example)
        persona, situation = self.context_of(user, example)
        return MemoryView(
            memories=self._by_user[user], source_user_id=user, persona=persona, situation=situation
        )

    def settings(self) -> dict[str, Any]:
        return {"mode": self.mode, "seed": self.seed, "pool_users": len(self._users)}


class SummaryMemory(MemoryStrategy):
    """An LLM's description of the user drawn from their memories.

    One summary per user (per distinct memory list): it is made once and
    shared by all of the user's examples, also when they are answered
    concurrently. Greedy decoding with a fixed seed makes the request
    repeatable, so a :class:`~attunement.llm.CachedChatModel` keeps summaries
    on disk across runs. An empty summary is an error, never silently
    replaced.
    """

    mode = "summary"

    def __init__(
        self,
        model: ChatModel,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
        max_points: int = 6,
    ):
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.max_points = max_points
        self._summaries: dict[tuple[str | None, str], asyncio.Task[str]] = {}

    async def _summarise(self, user: str | None, memories: Sequence[MemoryItem]) -> str:
        messages = render_summary_messages(memories, max_points=self.max_points)
        [completion] = await self.model.complete(
            messages, n=1, temperature=self.temperature, max_tokens=self.max_tokens, seed=self.seed
        )
        text = completion.text.strip()
        if not text:
            await self.model.reject([completion])  # a cache must ask again next time
            raise LLMError(f"{self.model.name} returned an empty memory summary for user {user!r}")
        return text

    async def summary_of(self, user: str | None, memories: Sequence[MemoryItem]) -> str:
        """The (cached) summary of ``user``'s ``memories``."""
        digest = hashlib.sha256(
            "\x1e".join(f"{m.memory_id}\x1f{m.value}" for m in memories).encode()
        ).hexdigest()
        key = (user, digest)
        task = self._summaries.get(key)
        if task is None:
            task = asyncio.ensure_future(self._summarise(user, memories))
            self._summaries[key] = task
        try:
            return await asyncio.shield(task)
        except Exception:
            if self._summaries.get(key) is task and task.done():
                del self._summaries[key]  # let a later call try again
            raise

    async def select(self, example: Example) -> MemoryView:
        own = {
            "source_user_id": example.user_id,
            "persona": example.persona,
            "situation": example.situation,
        }
        if not example.memories:
            return MemoryView(**own)
        summary = await self.summary_of(example.user_id, example.memories)
        return MemoryView(summary=summary, **own)

    def settings(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "summarizer": self.model.name,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "max_points": self.max_points,
            "prompt": {SUMMARY_PROMPT: load_prompt(SUMMARY_PROMPT).version},
        }


class RetrievedMemory(MemoryStrategy):
    """The ``k`` memory items a retriever ranks highest for the query, best first."""

    mode = "rag"

    def __init__(self, retriever: Retriever, *, k: int = 3):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.retriever = retriever
        self.k = k

    async def select(self, example: Example) -> MemoryView:
        items = list(example.memories)
        own = {
            "source_user_id": example.user_id,
            "persona": example.persona,
            "situation": example.situation,
        }
        if not items:
            return MemoryView(**own)
        order = await asyncio.to_thread(
            self.retriever.rank, example.query, [m.value for m in items]
        )
        return MemoryView(memories=tuple(items[i] for i in order[: self.k]), **own)

    def settings(self) -> dict[str, Any]:
        return {"mode": self.mode, "retriever": self.retriever.name, "k": self.k}


def memory_strategy(
    mode: MemoryMode,
    *,
    pool: Sequence[Example] | Sequence[UserHistory] | None = None,
    model: ChatModel | None = None,
    retriever: Retriever | None = None,
    k: int = 3,
    seed: int = 0,
    summary_max_tokens: int = 256,
) -> MemoryStrategy:
    """Build the strategy for a memory ``mode`` (one of :data:`MEMORY_MODES`).

    - ``mismatch`` needs ``pool`` (examples or user histories of at least two
      users) and uses ``seed``;
    - ``summary`` needs ``model`` (the summariser);
    - ``rag`` uses ``retriever`` (default: :class:`BM25Retriever`) and ``k``.
    """
    if mode == "full":
        return FullMemory()
    if mode == "none":
        return NoMemory()
    if mode == "mismatch":
        if pool is None:
            raise ValueError("mismatch memory needs a pool of examples or user histories")
        return MismatchedMemory(pool, seed=seed)
    if mode == "summary":
        if model is None:
            raise ValueError("summary memory needs a model to write the summaries")
        return SummaryMemory(model, max_tokens=summary_max_tokens)
    if mode == "rag":
        return RetrievedMemory(retriever or BM25Retriever(), k=k)
    raise ValueError(f"unknown memory mode {mode!r}; expected one of {', '.join(MEMORY_MODES)}")
