"""``attune bench train`` on a tiny run: every step is timed, and the split into
generation, reward and optimisation adds up and counts the judge's calls."""

from __future__ import annotations

import importlib.util

import pytest
from train_scripted import examples

from attunement.perf import train_bench
from attunement.perf.train_bench import TrainBenchSettings, run_train_bench

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("trl") is None,
        reason="training needs the 'train' extra (torch, TRL, peft)",
    ),
]


def test_each_step_is_split_into_generation_reward_and_optimisation(monkeypatch):
    # short prompts keep the policy's CPU work small; the judge is the simulated server
    monkeypatch.setattr(
        train_bench, "bench_batch", lambda prompts, replies: (examples(prompts), [])
    )
    timings = run_train_bench(
        TrainBenchSettings(
            reward="perm",
            steps=2,
            prompts=1,
            generations=2,
            completion_tokens=8,
            base_latency=0.2,
            per_output_token=0.0,
        )
    )
    assert [t.step for t in timings] == [1, 2]
    for t in timings:
        assert t.generation > 0 and t.optimisation > 0
        assert t.reward >= 0.2  # at least one judge round trip of the simulated latency
        assert t.total == pytest.approx(t.generation + t.reward + t.optimisation)
        assert t.judge_calls == 2 * 4  # two replies x (three empathy judges + bystander)
        assert t.bound >= 0.2 and t.judge_output_tokens > 0
