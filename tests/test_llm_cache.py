"""The sqlite completion cache: hits, the per-sample key, what the key ignores,
rejected samples, usage, its thread, corrupt files, keys of local models."""

from __future__ import annotations

import pytest

from attunement.llm import (
    CachedChatModel,
    CompletionCache,
    LLMError,
    ScriptedChatModel,
    make_request,
)
from attunement.llm.cache import CacheError

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


BASE = {"n": 1, "temperature": 0.7, "max_tokens": 64, "json_schema": None, "seed": 1, "stop": None}


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.8},
        {"max_tokens": 65},
        {"json_schema": {"type": "object"}},
        {"seed": 2},
        {"stop": ["\n"]},
    ],
)
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


async def test_a_rejected_sample_is_asked_for_again(cache):
    """An empty summary must not be served from the cache forever."""
    answers = iter(["", "a real summary"])
    inner = ScriptedChatModel(lambda request, index: next(answers))
    model = CachedChatModel(inner, cache)
    [empty] = await model.complete(MSG, seed=0)
    assert empty.text == "" and len(cache) == 1
    await model.reject([empty])
    assert len(cache) == 0
    [again] = await model.complete(MSG, seed=0)
    assert again.text == "a real summary" and not again.cached and len(inner.calls) == 2
    [kept] = await model.complete(MSG, seed=0)
    assert kept.cached and kept.text == "a real summary"


async def test_reject_forgets_only_the_samples_named(cache):
    model = CachedChatModel(ScriptedChatModel(numbered), cache)
    out = await model.complete(MSG, n=3, temperature=1.0)
    await model.reject([out[1]])
    assert len(cache) == 2
    await ScriptedChatModel(numbered).reject(out)  # a model without a cache: a no-op


async def test_usage_counts_every_request_and_token_the_wrapper_makes(cache):
    """Two gaps are two requests, each paying its prompt; hits are counted apart."""
    inner = ScriptedChatModel(numbered)
    model = CachedChatModel(inner, cache)
    await model.complete(MSG, n=1, temperature=1.0, sample_start=2)
    before = inner.usage.snapshot()
    out = await model.complete(MSG, n=5, temperature=1.0)
    spent = model.usage.snapshot()
    inner_spent = inner.usage.snapshot()
    assert len(inner.calls) == 3  # samples 0-1 and 3-4, as two requests
    assert spent.calls == 1 + 2 == inner_spent.calls
    assert spent.cached_calls == 1
    assert spent.prompt_tokens == inner_spent.prompt_tokens == 3 * out[0].prompt_tokens
    assert spent.completion_tokens == inner_spent.completion_tokens
    assert inner_spent.prompt_tokens - before.prompt_tokens == 2 * out[0].prompt_tokens


async def test_sqlite_runs_off_the_event_loop(cache, monkeypatch):
    import threading

    seen = []
    for name in ("get_many", "put_many"):
        original = getattr(cache, name)

        def spy(*args, _original=original, **kw):
            seen.append(threading.current_thread() is threading.main_thread())
            return _original(*args, **kw)

        monkeypatch.setattr(cache, name, spy)
    await CachedChatModel(ScriptedChatModel(numbered), cache).complete(MSG)
    assert seen == [False, False]  # one lookup and one write, both in a worker thread


def test_a_corrupt_cache_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "cache.sqlite"
    bad.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(CacheError, match=r"cache\.sqlite: cannot use this completion cache"):
        CompletionCache(bad)
    assert issubclass(CacheError, LLMError)  # the CLI turns it into one line, exit 1


def test_local_models_are_keyed_by_their_weights(tmp_path):
    import os

    from attunement.llm.local import LocalChatModel

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    first = LocalChatModel(gguf).name
    assert first.startswith("local:tiny.gguf@") and LocalChatModel(gguf).name == first
    gguf.write_bytes(b"GGUF" + b"\1" * 80)  # other weights under the same file name
    assert LocalChatModel(gguf).name != first
    same_size = tmp_path / "b.gguf"
    same_size.write_bytes(b"GGUF" + b"\0" * 80)
    stat = same_size.stat()
    os.utime(same_size, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000_000))
    assert LocalChatModel(same_size).name.split("@")[1] != LocalChatModel(gguf).name.split("@")[1]


@pytest.mark.parametrize(
    "change",
    [
        "generation_config.json",
        "tokenizer_config.json",
        "tokenizer.json",
        "config.json",
        "model.safetensors",
        "dtype",
    ],
)
def test_hf_checkpoints_are_keyed_by_what_changes_an_answer(tmp_path, change):
    from attunement.llm.hf import checkpoint_fingerprint

    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        (tmp_path / name).write_text('{"a": 1}')
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 32)
    (tmp_path / "README.md").write_text("notes")
    before = checkpoint_fingerprint(tmp_path)
    (tmp_path / "README.md").write_text("other notes")  # does not change an answer
    assert checkpoint_fingerprint(tmp_path) == before
    if change == "dtype":
        assert checkpoint_fingerprint(tmp_path, "bfloat16") != before
        return
    target = tmp_path / change
    if change.endswith(".safetensors"):
        target.write_bytes(b"\1" * 48)
    else:
        target.write_text('{"a": 2}')
    assert checkpoint_fingerprint(tmp_path) != before


async def test_an_empty_summary_is_not_kept_by_the_cache(cache):
    """The summary memory rejects an empty answer, so a re-run asks again."""
    from attunement.policy.memory import SummaryMemory
    from attunement.records import MemoryItem

    answers = iter(["   ", "Likes hiking; anxious about work."])
    inner = ScriptedChatModel(lambda request, index: next(answers))
    memories = [MemoryItem(memory_id="m1", value="hikes every weekend")]
    with pytest.raises(LLMError, match="empty memory summary"):
        await SummaryMemory(CachedChatModel(inner, cache)).summary_of("u1", memories)
    summary = await SummaryMemory(CachedChatModel(inner, cache)).summary_of("u1", memories)
    assert summary == "Likes hiking; anxious about work." and len(inner.calls) == 2
