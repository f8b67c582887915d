"""attune evaluate's judge cost does not depend on the order of the systems, and work the
completion cache served is reported as work (issue 17, finding 8)."""

from __future__ import annotations

from eval_scripted import judge, replies, split_examples

from attunement.evaluation.cost import ALL_SYSTEMS
from attunement.evaluation.evaluate import EvalInputs, EvalSettings, run_evaluation
from attunement.evaluation.report import results_markdown
from attunement.llm.cache import CachedChatModel, CompletionCache


async def evaluate(out, order, judge_model=None, **settings):
    files = {"base": replies("base"), "mism": replies("mism")}
    inputs = EvalInputs(splits=split_examples(), replies={k: files[k] for k in order})
    return await run_evaluation(
        inputs,
        {"A": judge_model or judge()},
        out,
        EvalSettings(plots=False, **settings),
        show_progress=False,
    )


def scaling_lines(run):
    return [c for c in run.results.cost if c.what.startswith("k scaling")]


async def test_shared_criteria_are_one_line_whatever_the_order_of_the_systems(tmp_path):
    first = await evaluate(tmp_path / "ab", ["base", "mism"], k_scaling=2)
    second = await evaluate(tmp_path / "ba", ["mism", "base"], k_scaling=2)
    (a,), (b,) = scaling_lines(first), scaling_lines(second)
    # one line for both systems: the criteria (written once, booked on whichever system
    # was scored first) are no system's own
    assert a.system == b.system == ALL_SYSTEMS
    key = lambda c: (c.replies, c.samples, c.calls, c.prompt_tokens, c.completion_tokens)
    assert key(a) == key(b)
    # 8 replies x 3 dims x 2 scoring samples, and 4 examples x 3 dims x 2 criteria samples
    assert a.samples == 48 + 24 and a.calls == 12 + 48
    # each system's tokens per reply are the same whether it came first or second
    tokens = lambda run: {
        (p.system, p.split, p.k): p.tokens_per_reply for p in run.results.k_scaling
    }
    assert tokens(first) == tokens(second)
    assert tokens(first)[("base", "random", 2)] == tokens(first)[("mism", "random", 2)]
    assert "criteria shared by the systems" in results_markdown(first.results)


async def test_replies_the_cache_served_are_shown_as_cached_work(tmp_path):
    cache = CompletionCache(tmp_path / "cache.sqlite")
    fresh = await evaluate(tmp_path / "one", ["base"], CachedChatModel(judge(), cache))
    cached = await evaluate(tmp_path / "two", ["base"], CachedChatModel(judge(), cache))
    line = lambda run: next(c for c in run.results.cost if c.system == "base")
    paid, served = line(fresh), line(cached)
    assert paid.calls == 12 and paid.cached_calls == 0 and paid.samples == 12
    # the same work, served by the cache: no call made, every sample counted as cached
    assert served.calls == 0 and served.cached_calls == 12 and served.samples == 12
    md = results_markdown(cached.results)
    assert "| A | base | scoring | 4 | 12 | 0 | 12 | - (cache) | - (cache) |" in md
