"""Settings declared once, rewards registered where they are defined, and the
shared pieces of every judge reward (judgements, means, terms) on their own."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from pydantic import BaseModel, ValidationError
from test_judging_rewards import example, reply, scripted

from attunement.judging import (
    CriteriaConfig,
    JudgeSettings,
    PereGRMConfig,
    PermConfig,
    PermReward,
    RewardSettings,
    RLPAConfig,
    load_reward,
    reward_config,
    reward_names,
)
from attunement.judging.base import dimension_means, to_judgements
from attunement.judging.kinds import KINDS, register_reward
from attunement.judging.perm import RewardConfig
from attunement.judging.sampler import Sample
from attunement.judging.verdicts import Parsed
from attunement.llm import LLMOptions, ScriptedChatModel
from attunement.llm.options import MAX_TEMPERATURE
from attunement.records import Judgement

CONFIGS = (PermConfig, PereGRMConfig, RLPAConfig, CriteriaConfig)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("config", CONFIGS)
def test_every_judge_config_builds_on_the_one_settings_base(config):
    assert issubclass(config, JudgeSettings)
    for name in JudgeSettings.model_fields:
        assert name in config.model_fields, (config.__name__, name)
    if config is not CriteriaConfig:
        assert issubclass(config, RewardSettings)


@pytest.mark.parametrize("config", CONFIGS)
def test_the_shared_bounds_hold_in_every_config(config):
    with pytest.raises(ValidationError):
        config(temperature=MAX_TEMPERATURE + 0.1)
    with pytest.raises(ValidationError):
        config(max_resamples=-1)
    with pytest.raises(ValidationError):
        config(output="yaml")
    with pytest.raises(ValidationError):
        config(judge_context="everything")
    assert config(temperature=MAX_TEMPERATURE).temperature == MAX_TEMPERATURE


def test_each_paper_changes_only_its_own_defaults():
    assert (PermConfig().temperature, PereGRMConfig().temperature) == (0.3, 0.3)
    assert RLPAConfig().temperature == 0.3 and CriteriaConfig().temperature == 0.2
    assert (PermConfig().max_tokens, RLPAConfig().max_tokens) == (1024, 512)
    assert (PermConfig().unformatted, PereGRMConfig().unformatted) == ("empty", "judge_whole")
    assert RLPAConfig().unformatted == "empty"
    assert (PermConfig().include_memories, PereGRMConfig().include_memories) == (False, True)
    with pytest.raises(ValidationError):
        PereGRMConfig(criteria_temperature=MAX_TEMPERATURE + 1)
    with pytest.raises(ValidationError):
        RLPAConfig(k=0)


@pytest.mark.parametrize("model", [*CONFIGS, LLMOptions], ids=lambda m: m.__name__)
def test_every_field_has_help_text(model: type[BaseModel]):
    """The command line builds its options from these fields: each needs its help."""
    missing = [name for name, f in model.model_fields.items() if not f.description]
    assert not missing, f"{model.__name__}: no description for {missing}"


def test_criteria_config_refuses_what_cannot_be_written():
    with pytest.raises(ValidationError, match="min_items must not exceed max_items"):
        CriteriaConfig(min_items=5, max_items=4)
    with pytest.raises(ValidationError, match="only, not"):
        CriteriaConfig(dimensions=("resonation", "bystander"))
    assert CriteriaConfig(min_items=4, max_items=4).max_items == 4


@pytest.mark.parametrize(
    "use_bystander, length_penalty", list(itertools.product([True, False], repeat=2))
)
def test_term_names_are_the_terms_a_breakdown_holds(use_bystander, length_penalty):
    config = PermConfig(use_bystander=use_bystander, length_penalty=length_penalty)
    [b] = asyncio.run(PermReward(scripted(), config).score(example(), [reply("r1")]))
    assert tuple(b.terms) == config.term_names
    assert b.reward == pytest.approx(sum(b.terms.values()))


def test_rlpa_terms_are_its_judges():
    assert RLPAConfig().term_names == ("profile_match", "would_continue")
    assert RLPAConfig(use_would_continue=False).term_names == ("profile_match",)


# --------------------------------------------------------------------------- registration


def test_the_built_in_rewards_are_registered_where_defined():
    assert reward_names() == tuple(sorted(reward_names()))
    assert {"perm", "peregrm", "rlpa"} <= set(reward_names())
    for name in ("perm", "peregrm", "rlpa"):
        reward = load_reward(name, ScriptedChatModel(outputs=[]))
        assert reward.kind == name == reward.name
        assert isinstance(reward.config, KINDS[name].config)


def test_the_decorator_names_a_class_once_and_registers_it():
    @register_reward("decorated_perm", config=PermConfig)
    class Decorated(PermReward):
        pass

    try:
        assert Decorated.kind == "decorated_perm" and PermReward.kind == "perm"
        reward = load_reward("decorated_perm@3", ScriptedChatModel(outputs=[]))
        assert type(reward) is Decorated and reward.name == "decorated_perm@3"
        assert "decorated_perm" in reward_names()
    finally:
        KINDS.pop("decorated_perm")


def test_a_factory_registered_by_call_is_left_as_it_is():
    def factory(judge, config, token_counter=None):
        return PermReward(judge, config)

    assert register_reward("by_call", PermConfig, factory) is factory
    try:
        assert not hasattr(factory, "kind")
        assert isinstance(reward_config("by_call", k=2), PermConfig)
        assert load_reward("by_call", ScriptedChatModel(outputs=[])).kind == "perm"
    finally:
        KINDS.pop("by_call")


def test_an_unknown_name_lists_the_registered_ones():
    with pytest.raises(ValueError, match="peregrm, perm, rlpa"):
        reward_config("nope")


# --------------------------------------------------------------------------- shared pieces


def sample(index: int, score: float | None, *, error: str | None = None, **extra) -> Sample:
    verdict = None if error else Parsed(score=score, reason=None if score else "bad", **extra)
    return Sample(index=index, attempt=1 + index, raw=f"raw {index}", verdict=verdict, error=error)


def test_to_judgements_keeps_every_sample_and_why_it_failed():
    samples = [
        sample(0, 4.0, rationale="warm", criteria="own"),
        sample(1, None),
        sample(2, None, error="judge call failed: HTTP 500"),
        sample(3, 80.0, sub_scores={"accuracy": 16.0}),
    ]
    out = to_judgements("expression", samples, lambda s: s / 100)
    assert [j.score for j in out] == [4.0, None, None, 80.0]
    assert [j.normalized for j in out] == [0.04, None, None, 0.8]
    assert [j.reason for j in out] == [None, "bad", "judge call failed: HTTP 500", None]
    assert [j.sample_index for j in out] == [0, 1, 2, 3]
    assert [j.attempts for j in out] == [1, 2, 3, 4]
    assert [j.raw for j in out] == ["raw 0", "raw 1", "raw 2", "raw 3"]
    assert out[0].rationale == "warm" and out[0].criteria == "own"
    assert out[3].sub_scores == {"accuracy": 16.0} and out[0].sub_scores == {}
    assert out[2].rationale is None and out[2].criteria is None


def test_to_judgements_records_given_criteria_and_slot():
    out = to_judgements(
        "reception", [sample(5, 3.0, criteria="own")], float, criteria="given", index=1
    )
    assert out[0].criteria == "given" and out[0].sample_index == 1


def judgement(dimension: str, score: float | None, normalized: float | None = None, reason=None):
    return Judgement(dimension=dimension, score=score, normalized=normalized, reason=reason)


def test_dimension_means_average_the_valid_samples_only():
    raw, norm, problems = dimension_means(
        [
            judgement("resonation", 4, 0.8),
            judgement("resonation", None, reason="unreadable"),
            judgement("resonation", 2, 0.4),
            judgement("bystander", 70, 0.7),
        ],
        ("resonation", "bystander"),
    )
    assert raw == {"resonation": 3.0, "bystander": 70.0}
    assert norm == pytest.approx({"resonation": 0.6, "bystander": 0.7})
    assert problems == []


def test_a_dimension_without_a_valid_sample_is_a_problem_with_its_reasons():
    raw, norm, problems = dimension_means(
        [
            judgement("expression", None, reason="b"),
            judgement("expression", None, reason="a"),
            judgement("expression", None, reason="a"),
            judgement("reception", 5, 1.0),
        ],
        ("expression", "reception", "resonation"),
    )
    assert raw == {"expression": None, "reception": 5.0, "resonation": None}
    assert norm == {"reception": 1.0}
    assert problems == [
        "expression: no valid judge sample out of 3 (a; b)",
        "resonation: no valid judge sample out of 0 ()",
    ]


def test_reward_config_needs_an_empathy_dimension():
    with pytest.raises(ValidationError, match="at least one of resonation"):
        RewardConfig(use_resonation=False, use_expression=False, use_reception=False)
    assert RewardConfig(use_resonation=False).empathy_dimensions == ("expression", "reception")


# --------------------------------------------------------------------------- PERM's own numbers


def test_perm_defaults_are_the_papers():
    config = RewardConfig()
    assert (config.aggregation, config.softmin_beta, config.normalization) == (
        "harmonic",
        1.0,
        "max",
    )
    assert (config.lambda_bys, config.length_limit, config.length_coef) == (0.5, 768, 0.001)
    assert PermConfig().length_penalty and not PereGRMConfig().length_penalty


def test_perm_settings_take_the_papers_alternatives():
    # PERM table 7 tries lambda 0.1 and 1.0; any positive softmin temperature; no allowance
    assert RewardConfig(lambda_bys=0.1).lambda_bys == 0.1
    assert RewardConfig(lambda_bys=0.0).lambda_bys == 0.0
    assert RewardConfig(softmin_beta=0.5).softmin_beta == 0.5
    assert RewardConfig(length_limit=0).length_limit == 0
    assert RewardConfig(length_coef=0.0).length_coef == 0.0
    for bad in ({"lambda_bys": -0.1}, {"softmin_beta": 0.0}, {"length_limit": -1}):
        with pytest.raises(ValidationError):
            RewardConfig(**bad)


def test_the_bystander_never_sees_the_memories():
    reward = PermReward(scripted(), PermConfig(include_memories=True, judge_context="full"))
    memory = example().memories[0].value
    assert memory in reward.context(example())
    assert memory not in reward.bystander_context(example())
    assert memory not in reward.bystander_messages(example(), reply("r1"))[-1]["content"]


def test_what_is_judged_of_a_reply_that_broke_the_format():
    broken = reply("r1", response="the response part", analysis="the analysis part")
    broken = broken.model_copy(update={"format_ok": False, "raw": "  THE RAW TEXT  "})
    whole = PermReward(scripted(), PermConfig(unformatted="judge_whole"))
    assert whole.judged_texts(broken) == ("THE RAW TEXT", "THE RAW TEXT")
    no_raw = broken.model_copy(update={"raw": ""})
    joined = "the analysis part\n\nthe response part"
    assert whole.judged_texts(no_raw) == (joined, joined)
    empty = PermReward(scripted(), PermConfig(unformatted="empty"))
    assert empty.judged_texts(broken) == ("", "")
    fine = reply("r2", response="resp", analysis="ana")
    assert empty.judged_texts(fine) == ("ana", "resp")


def test_a_breakdown_records_the_groups_wall_time():
    [b] = asyncio.run(PermReward(scripted(), PermConfig()).score(example(), [reply("r1")]))
    assert 0.0 <= b.seconds < 60.0 and b.seconds == round(b.seconds, 4)
