"""Record validation: strict fields, coercions, cross-field rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from attunement.records import (
    BigFive,
    Category,
    Example,
    Judgement,
    MemoryItem,
    Query,
    RewardBreakdown,
    Situation,
    Usage,
    UserHistory,
)

FIVE = {
    "openness": "high",
    "conscientiousness": "medium",
    "extraversion": "low",
    "agreeableness": "high",
    "neuroticism": "medium",
}


def test_unknown_field_rejected():
    with pytest.raises(ValidationError, match="extra"):
        MemoryItem(memory_id="m1", value="likes tea", colour="red")


def test_category_accepts_codes_and_titles():
    assert Category.parse("es") is Category.ES
    assert Category.parse("High-EQ Interaction") is Category.HEQ
    assert Category.parse("social_strategy") is Category.SS
    with pytest.raises(ValueError, match="unknown query category"):
        Category.parse("Small talk")
    s = Situation(category="Emotional Support", description="lost a job")
    assert s.category is Category.ES


def test_big_five_levels_and_justifications():
    b = BigFive(**{**FIVE, "openness": " HIGH "})
    assert b.levels() == ("high", "medium", "low", "high", "medium")
    with pytest.raises(ValidationError):
        BigFive(**{**FIVE, "openness": "very high"})
    with pytest.raises(ValidationError, match="unknown traits"):
        BigFive(**FIVE, justifications={"charm": "x"})


def test_duplicate_memory_ids_rejected():
    mem = MemoryItem(memory_id="m1", value="has a dog")
    with pytest.raises(ValidationError, match="duplicate memory_id"):
        UserHistory(user_id="u", memories=[mem, mem])


def test_example_criteria_only_for_empathy_dimensions():
    Example(example_id="e", query="q", criteria={"resonation": "notice the loss"})
    with pytest.raises(ValidationError, match="unknown dimensions"):
        Example(example_id="e", query="q", criteria={"bystander": "x"})


def test_query_needs_text_and_situation():
    sit = Situation(category="SS", description="a coworker takes credit")
    q = Query(query_id="q1", category="SS", text="What do I say?", situation=sit)
    assert q.category is Category.SS
    with pytest.raises(ValidationError):
        Query(query_id="q1", category="SS", text="", situation=sit)


def test_breakdown_reward_and_unscorable_agree():
    RewardBreakdown(
        example_id="e",
        reply_id="r",
        reward_model="perm",
        reward=None,
        unscorable=True,
        reason="resonation: no score line",
    )
    with pytest.raises(ValidationError, match="unscorable"):
        RewardBreakdown(
            example_id="e", reply_id="r", reward_model="perm", reward=0.5, unscorable=True
        )
    with pytest.raises(ValidationError, match="reward is None"):
        RewardBreakdown(example_id="e", reply_id="r", reward_model="perm", reward=None)


def test_judgement_score_may_be_none_with_reason():
    j = Judgement(dimension="reception", score=None, reason="no Score: line")
    assert j.score is None and j.reason
    with pytest.raises(ValidationError):
        Judgement(dimension="humour", score=3)


def test_usage_adds():
    total = Usage(calls=1, prompt_tokens=10) + Usage(calls=2, cached_calls=1, completion_tokens=5)
    assert total == Usage(calls=3, cached_calls=1, prompt_tokens=10, completion_tokens=5)


def test_round_trip_through_json():
    ex = Example(
        example_id="e1",
        query="help",
        category="HEQ",
        memories=[MemoryItem(memory_id="m", value="plays chess", confidence=0.9)],
    )
    assert Example.model_validate_json(ex.model_dump_json()) == ex
