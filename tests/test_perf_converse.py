"""``attune bench converse``: talks on the simulated server, and the prefix-cache model."""

from __future__ import annotations

from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.perf.converse_bench import ConverseBenchSettings, PrefixCache, run_converse_bench


def test_the_prefix_cache_serves_only_a_shared_start():
    cache = PrefixCache(block=2)
    first = [{"role": "system", "content": "a b c"}, {"role": "user", "content": "x y"}]
    assert cache.serve(first) == (7, 0)
    # same system message, another user message: the first blocks are cached
    total, cached = cache.serve([first[0], {"role": "user", "content": "z w"}])
    assert (total, cached) == (7, 4)
    # the same text in another order shares nothing (a chain, not a bag of blocks)
    assert cache.serve([first[1], first[0]])[1] == 0


def test_the_simulators_profile_is_served_from_the_cache_after_the_first_turn():
    settings = ConverseBenchSettings(
        users=3, max_turns=3, base_latency=0.0, per_output_token=0.0, concurrency=3
    )
    result = run_converse_bench(settings)
    assert result.dialogues == 3 and result.user_turns >= 3
    assess = result.steps["assess"]
    assert assess.requests >= 3
    # every later assessment re-reads the profile: a cache serves most of it
    assert 0 < assess.uncached_tokens < assess.prompt_tokens
    assert result.per_turn("assess", "uncached_tokens") < result.per_turn("assess", "prompt_tokens")
    assert result.dialogues_per_minute > 0


def test_bench_converse_prints_the_figures():
    result = CliRunner().invoke(
        build_app(),
        ["bench", "converse", "--users", "2", "--max-turns", "2", "--base-latency", "0",
         "--per-output-token", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dialogues per minute:" in result.output
    assert "uncached simulator prompt tokens per turn:" in result.output
