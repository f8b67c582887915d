"""The judge sampler alone: derived seeds, its concurrency bound, failed calls."""

from __future__ import annotations

import asyncio

import pytest

from attunement.judging.sampler import JudgeSampler, round_seed
from attunement.judging.verdicts import Parsed
from attunement.llm import LLMError, ScriptedChatModel, Step

MESSAGES = [{"role": "user", "content": "Rate it."}]


def parse(text: str) -> Parsed:
    return Parsed(score=float(text)) if text.isdigit() else Parsed(score=None, reason="no digit")


def test_round_zero_keeps_the_base_seed():
    assert round_seed(7, 0) == 7 and round_seed(0, 0) == 0 and round_seed(None, 0) is None


def test_later_rounds_draw_distinct_valid_seeds():
    for base in (None, 0, 7, 2**30, 2**31 - 2):
        seeds = [round_seed(base, r) for r in range(1, 200)]
        assert all(isinstance(s, int) and 0 <= s < 2**31 - 1 for s in seeds), base
        assert len(set(seeds)) == len(seeds)
        assert base not in seeds


def test_derived_seeds_are_part_of_the_record():
    """A recorded run's criteria draws depend on these values: changing the
    derivation would silently change every round after the first."""
    assert [round_seed(None, 1), round_seed(0, 2), round_seed(5, 3)] == [7920, 15839, 5023923]
    assert round_seed(2**30, 1) == 1074249760


def test_the_bound_is_the_judges_unless_given():
    one = ScriptedChatModel(outputs=[])
    one.max_concurrency = 1
    assert JudgeSampler(one, fmt="text", max_tokens=8, max_resamples=0, seed=0).limit == 1
    many = ScriptedChatModel(outputs=[])
    assert JudgeSampler(many, fmt="text", max_tokens=8, max_resamples=0, seed=0).limit == 64
    bound = JudgeSampler(many, fmt="text", max_tokens=8, max_resamples=0, seed=0, limit=3)
    assert bound.limit == 3


def test_a_sampler_serves_one_event_loop_after_another():
    judge = ScriptedChatModel(lambda request, index: Step("4", delay=0.01))
    sampler = JudgeSampler(judge, fmt="text", max_tokens=8, max_resamples=0, seed=0, limit=1)

    async def batch():
        jobs = [
            sampler.sample(MESSAGES, k=1, temperature=0.0, schema=None, parse=parse)
            for _ in range(3)
        ]
        return await asyncio.gather(*jobs)

    for _ in range(2):  # e.g. two training steps, each in its own asyncio.run
        results = asyncio.run(batch())
        assert all(samples[0].ok for samples, _ in results)
    assert judge.peak_in_flight == 1


def test_a_failed_call_records_every_sample_it_owed():
    judge = ScriptedChatModel(outputs=["x", "4", "x", LLMError("HTTP 500")])
    sampler = JudgeSampler(judge, fmt="text", max_tokens=8, max_resamples=3, seed=0)
    samples, usage = asyncio.run(
        sampler.sample(MESSAGES, k=3, temperature=0.0, schema=None, parse=parse, first_index=10)
    )
    assert [(s.index, s.attempt, s.ok) for s in samples[:3]] == [
        (10, 1, False),
        (11, 1, True),
        (12, 1, False),
    ]
    # the re-draw of the two failures fails as a call: both samples carry the error
    failed = samples[3:]
    assert [(s.index, s.attempt) for s in failed] == [(13, 2), (14, 2)]
    assert all(s.error and "judge call failed" in s.error and s.raw == "" for s in failed)
    assert usage.calls == 1


def test_a_schema_is_sent_only_with_json_answers():
    judge = ScriptedChatModel(outputs=["4", "4"])
    schema = {"type": "object"}
    text = JudgeSampler(judge, fmt="text", max_tokens=8, max_resamples=0, seed=0)
    asyncio.run(text.sample(MESSAGES, k=1, temperature=0.0, schema=schema, parse=parse))
    asyncio.run(text.sample(MESSAGES, k=1, temperature=0.0, schema=schema, parse=parse, fmt="json"))
    assert [c.json_schema for c in judge.calls] == [None, schema]


@pytest.mark.parametrize("seed, given, sent", [(3, None, 3), (3, 9, 9), (None, None, None)])
def test_the_seed_of_a_call(seed, given, sent):
    judge = ScriptedChatModel(outputs=["4"])
    sampler = JudgeSampler(judge, fmt="text", max_tokens=8, max_resamples=0, seed=seed)
    asyncio.run(
        sampler.sample(MESSAGES, k=1, temperature=0.0, schema=None, parse=parse, seed=given)
    )
    assert judge.calls[0].seed == sent
