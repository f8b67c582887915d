"""The sqlite completion cache: hits, the per-sample key, what the key ignores."""

from __future__ import annotations

import pytest

from attunement.llm import CachedChatModel, CompletionCache, ScriptedChatModel, make_request

MSG = [{"role": "user", "content": "I failed my driving test again."}]


def numbered(request, index):
    return f"sample {index} of {request.messages[-1][1][:10]}"


@pytest.fixture
def cache(tmp_path):
    c = CompletionCache(tmp_path / "cache.sqlite")
    yield c
    c.close()


async def test_second_run_makes_no_inner_calls(cache):
    inner = ScriptedChatModel(numbered)
    model = CachedChatModel(inner, cache)
    first = await model.complete(MSG, max_tokens=32)
    assert len(inner.calls) == 1 and not first[0].cached
    again = await model.complete(MSG, max_tokens=32)
    assert len(inner.calls) == 1
    assert again[0].cached and again[0].text == first[0].text
    usage = model.usage.snapshot()
    assert (usage.calls, usage.cached_calls) == (1, 1)


async def test_cache_persists_across_processes(tmp_path):
    path = tmp_path / "c.sqlite"
    inner = ScriptedChatModel(numbered)
    await CachedChatModel(inner, CompletionCache(path)).complete(MSG)
    fresh_inner = ScriptedChatModel(numbered)
    out = await CachedChatModel(fresh_inner, CompletionCache(path)).complete(MSG)
    assert fresh_inner.calls == [] and out[0].cached


async def test_k_samples_are_not_collapsed(cache):
    inner = ScriptedChatModel(numbered)
    model = CachedChatModel(inner, cache)
    four = await model.complete(MSG, n=4, temperature=1.0)
    assert len({c.text for c in four}) == 4
    assert [c.sample_index for c in four] == [0, 1, 2, 3]
    assert len(cache) == 4

    six = await model.complete(MSG, n=6, temperature=1.0)
    assert [c.text for c in six[:4]] == [c.text for c in four]
    assert [c.cached for c in six] == [True] * 4 + [False] * 2
    # only the two new samples were asked for, numbered 4 and 5
    last = inner.calls[-1]
    assert (len(inner.calls), last.n, last.sample_start) == (2, 2, 4)
    assert len(cache) == 6


async def test_sample_window_served_from_cache(cache):
    inner = ScriptedChatModel(numbered)
    model = CachedChatModel(inner, cache)
    await model.complete(MSG, n=4, temperature=1.0)
    window = await model.complete(MSG, n=2, temperature=1.0, sample_start=1)
    assert [c.sample_index for c in window] == [1, 2]
    assert all(c.cached for c in window) and len(inner.calls) == 1


async def test_gaps_are_fetched_as_contiguous_runs(cache):
    inner = ScriptedChatModel(numbered)
    model = CachedChatModel(inner, cache)
    await model.complete(MSG, n=1, temperature=1.0, sample_start=2)
    out = await model.complete(MSG, n=5, temperature=1.0)
    assert [c.sample_index for c in out] == [0, 1, 2, 3, 4]
    assert [(r.sample_start, r.n) for r in inner.calls[1:]] == [(0, 2), (3, 2)]


BASE = dict(n=1, temperature=0.7, max_tokens=64, json_schema=None, seed=1, stop=None)


@pytest.mark.parametrize("change", [
    {"temperature": 0.8},
    {"max_tokens": 65},
    {"json_schema": {"type": "object"}},
    {"seed": 2},
    {"stop": ["\n"]},
])
def test_key_covers_every_answer_parameter(change):
    a = make_request(MSG, **BASE)
    b = make_request(MSG, **{**BASE, **change})
    assert a.cache_key("m", 0) != b.cache_key("m", 0)


def test_key_covers_model_messages_and_sample_index():
    req = make_request(MSG, **BASE)
    other = make_request([{"role": "user", "content": "something else"}], **BASE)
    assert req.cache_key("m", 0) != req.cache_key("m2", 0)
    assert req.cache_key("m", 0) != req.cache_key("m", 1)
    assert req.cache_key("m", 0) != other.cache_key("m", 0)


def test_key_ignores_how_many_samples_a_call_asks_for():
    """Sample 3 is the same sample whether it came in a call for 4 or for 1."""
    big = make_request(MSG, **{**BASE, "n": 4})
    one = make_request(MSG, **{**BASE, "n": 1, "sample_start": 3})
    assert big.cache_key("m", 3) == one.cache_key("m", 3)


async def test_inner_failure_caches_nothing(cache):
    inner = ScriptedChatModel(outputs=[RuntimeError("server down")])
    model = CachedChatModel(inner, cache)
    with pytest.raises(RuntimeError):
        await model.complete(MSG)
    assert len(cache) == 0
