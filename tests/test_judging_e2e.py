"""Smoke test on the embedded model: real judge calls through the whole reward.

SmolLM2-135M is far too small to tell a warm reply from a curt one reliably, so
this test does not compare rewards (the scripted-judge tests in
test_judging_rewards.py check the arithmetic and every rule of parsing). It
checks what only a real model exercises: the schemas the answer models
generate are accepted by llama.cpp's grammar sampler, the grammar-constrained
answers parse, every dimension lands on its scale, and the prompts the judge
received carry the fenced reply and only the files the manifest lists.
"""

from __future__ import annotations

import asyncio

import pytest

from attunement.judging import PereGRMConfig, PermConfig, peregrm_reward, perm_reward
from attunement.records import Example, MemoryItem, Persona, Reply, Situation

pytestmark = pytest.mark.slow

EXAMPLE = Example(
    example_id="e2e",
    query="I failed the driving test again. My brother passed first try.",
    persona=Persona(profile="Anxious about being compared with an older brother."),
    memories=[MemoryItem(memory_id="m1", value="Feels overshadowed by an older brother.")],
    situation=Situation(category="ES", description="Second failed driving test this month."),
)
REPLIES = [
    Reply(
        example_id="e2e",
        reply_id="warm",
        analysis="Shame and comparison with the brother; needs to hear it is not a verdict on them.",
        response="That is really discouraging, especially with your brother's result in your "
        "head. A second try says nothing about your worth. Want to go over what went "
        "wrong together?",
    ),
    Reply(
        example_id="e2e", reply_id="curt", analysis="They failed.", response="Just practise more."
    ),
]
# short free-text fields keep the tiny model quick; one sample per dimension
SMALL = {"k": 1, "json_text_chars": 60, "max_tokens": 256, "max_resamples": 1, "output": "json"}


@pytest.mark.parametrize("make", ["perm", "peregrm"])
def test_smoke_scores_real_replies_with_the_embedded_model(local_model, make):
    from attunement.judging.templates import recording

    # the bystander prompt is the same for both rewards: judged once, in the PERM run
    reward = (
        perm_reward(local_model, PermConfig(**SMALL))
        if make == "perm"
        else peregrm_reward(local_model, PereGRMConfig(**SMALL, use_bystander=False))
    )
    with recording() as used:
        breakdowns = asyncio.run(reward.score(EXAMPLE, REPLIES))
    assert used == set(reward.manifest()["prompts"])
    assert [b.reply_id for b in breakdowns] == ["warm", "curt"]
    for b in breakdowns:
        assert not b.unscorable, b.reason
        for dim in ("resonation", "expression", "reception"):
            assert 1 <= b.dimensions[dim] <= 5
        if make == "perm":
            assert 0 <= b.dimensions["bystander"] <= 100
        assert -0.5 <= b.reward <= 1.0
        assert b.reward == pytest.approx(sum(b.terms.values()))
        assert b.usage.calls > 0 and all(j.raw for j in b.judgements)
        assert all(j.score is None or j.reason is None for j in b.judgements)
