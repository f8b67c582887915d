"""The embedded llama.cpp model through the ChatModel interface (slow)."""

from __future__ import annotations

import json

import pytest

from attunement.perf.llm_bench import bench_local_llm

pytestmark = pytest.mark.slow

MSG = [{"role": "user", "content": "My cat is sick and I am worried. Any advice?"}]


async def test_embedded_model_answers(local_model):
    before = local_model.usage.snapshot()
    [c] = await local_model.complete(MSG, max_tokens=16)
    assert c.text.strip()
    assert c.prompt_tokens > 0 and 0 < c.completion_tokens <= 16
    after = local_model.usage.snapshot()
    assert after.calls == before.calls + 1


async def test_embedded_model_json_schema_output_parses(local_model):
    schema = {
        "type": "object",
        "properties": {
            "feeling": {"type": "string", "maxLength": 20},
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
        },
        "required": ["feeling", "score"],
        "additionalProperties": False,
    }
    [c] = await local_model.complete(MSG, json_schema=schema, max_tokens=60)
    doc = json.loads(c.text)
    assert set(doc) == {"feeling", "score"} and isinstance(doc["score"], int)


async def test_embedded_samples_are_numbered_and_repeatable(local_model):
    a = await local_model.complete(MSG, n=2, temperature=1.0, max_tokens=8, seed=11, sample_start=3)
    b = await local_model.complete(MSG, n=1, temperature=1.0, max_tokens=8, seed=11, sample_start=4)
    assert [c.sample_index for c in a] == [3, 4]
    assert b[0].text == a[1].text  # sample 4 is sample 4, however it was asked for


def test_bench_compares_like_with_like(local_model):
    result = bench_local_llm(local_model, max_tokens=8, repeat=1, warmup=False)
    assert result.interface.tokens == result.raw.tokens  # same prompt, settings and seed
    assert result.interface.tokens_per_second > 0 and result.raw.tokens_per_second > 0
    assert result.overhead_ratio > 0
