"""The judges' scales are defined once (judging/scale.py): the parsers, the JSON
schemas, the normalisation, the prompts and the docs all agree with it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from attunement.judging.answers import (
    CRITERIA_ITEMS,
    BystanderAnswer,
    InlineAnswer,
    RatingAnswer,
    ScoreAnswer,
    answer_schema,
    criteria_answer,
)
from attunement.judging.parsing import parse_bystander, parse_rating
from attunement.judging.scale import (
    BYSTANDER_KEYS,
    BYSTANDER_MAX,
    BYSTANDER_PART_MAX,
    RATING_MAX,
    RATING_MIN,
    Part,
    Rating,
    normalize,
    normalize_bystander,
)
from attunement.prompts import load_prompt

DOCS = Path(__file__).resolve().parents[1] / "docs"
RATING_WORDS = f"one whole number from {RATING_MIN} to {RATING_MAX}"


def prompt_text(name: str) -> str:
    return "\n".join(body for _, body in load_prompt(name).messages)


def test_the_rating_literal_spans_the_scale():
    assert get_args(Rating) == tuple(range(RATING_MIN, RATING_MAX + 1))
    assert get_args(Part) == tuple(range(BYSTANDER_PART_MAX + 1))
    assert BYSTANDER_MAX == BYSTANDER_PART_MAX * len(BYSTANDER_KEYS) == 100


@pytest.mark.parametrize("answer", [RatingAnswer, ScoreAnswer, InlineAnswer])
def test_rating_schemas_ask_for_the_scale(answer):
    assert answer_schema(answer, 100)["properties"]["score"]["enum"] == list(
        range(RATING_MIN, RATING_MAX + 1)
    )


def test_the_bystander_schema_asks_for_its_five_parts():
    schema = answer_schema(BystanderAnswer, 100)
    assert list(schema["properties"]) == ["assessment", *BYSTANDER_KEYS]
    assert schema["required"] == ["assessment", *BYSTANDER_KEYS]
    for key in BYSTANDER_KEYS:
        assert schema["properties"][key]["enum"] == list(range(BYSTANDER_PART_MAX + 1))


def test_criteria_schema_holds_the_set_size():
    schema = answer_schema(criteria_answer(), 100)["properties"]["criteria"]
    assert (schema["minItems"], schema["maxItems"]) == CRITERIA_ITEMS


def test_the_parsers_read_the_ends_of_the_scale_and_nothing_beyond():
    assert parse_rating(f"Score: {RATING_MIN}").score == RATING_MIN
    assert parse_rating(f"Score: {RATING_MAX}").score == RATING_MAX
    assert not parse_rating(f"Score: {RATING_MAX + 1}").ok
    assert not parse_rating(f"Score: {RATING_MIN - 1}").ok
    assert parse_rating(f"Score: 4/{RATING_MAX}").score == 4
    assert not parse_rating(f"Score: 4/{RATING_MAX + 1}").ok
    assert parse_bystander(f"Total Score: {BYSTANDER_MAX} / {BYSTANDER_MAX}", fmt="text").ok
    assert not parse_bystander(f"Total Score: {BYSTANDER_MAX + 1} / {BYSTANDER_MAX}", fmt="text").ok


def test_normalisation_maps_the_scale_onto_zero_to_one():
    assert normalize(RATING_MAX) == 1.0 == normalize(RATING_MAX, method="minmax")
    assert normalize(RATING_MIN, method="minmax") == 0.0
    assert normalize(RATING_MIN) == RATING_MIN / RATING_MAX
    assert normalize_bystander(BYSTANDER_MAX) == 1.0 and normalize_bystander(0) == 0.0
    with pytest.raises(ValueError):
        normalize_bystander(BYSTANDER_MAX + 1)


@pytest.mark.parametrize(
    "name",
    [
        "judge_format_reason_score_text",
        "judge_format_reason_score_json",
        "peregrm_format_score_text",
        "peregrm_format_score_json",
        "peregrm_format_inline_text",
        "peregrm_format_inline_json",
    ],
)
def test_rating_prompts_state_the_scale(name):
    assert RATING_WORDS in prompt_text(name)


@pytest.mark.parametrize("name", ["perm_resonation", "perm_expression", "perm_reception"])
def test_perm_rubrics_have_one_level_per_rating(name):
    text = prompt_text(name)
    levels = [int(n) for n in re.findall(r"^(\d+) = ", text, re.MULTILINE)]
    assert levels == list(range(RATING_MIN, RATING_MAX + 1))
    assert f"{RATING_MIN}-{RATING_MAX} scale" in text


def test_bystander_prompts_state_its_scale():
    parts = f"0 to {BYSTANDER_PART_MAX}"
    assert parts in prompt_text("judge_bystander")
    assert parts in prompt_text("judge_format_bystander_json")
    text = prompt_text("judge_format_bystander_text")
    assert text.count(f"<0-{BYSTANDER_PART_MAX}> / {BYSTANDER_PART_MAX}") == len(BYSTANDER_KEYS)
    assert f"0-{BYSTANDER_MAX}> / {BYSTANDER_MAX}" in text


def test_criteria_prompts_state_the_set_size():
    low, high = CRITERIA_ITEMS
    for name in (
        "peregrm_write_or_score",
        "peregrm_format_criteria_text",
        "peregrm_format_criteria_json",
    ):
        assert f"{low} to {high}" in prompt_text(name), name


def test_the_docs_state_the_scale_and_its_normalisation():
    text = (DOCS / "rewards.md").read_text(encoding="utf-8")
    assert f"$s_d \\in [{RATING_MIN},{RATING_MAX}]$" in text
    assert f"$r_d = s_d / {RATING_MAX}$" in text
    assert f"$r_d = (s_d - {RATING_MIN}) / {RATING_MAX - RATING_MIN}$" in text
    assert f"$R_{{bys}} = S_{{bys}} / {BYSTANDER_MAX}$" in text
    assert f"p_i \\in [0, {BYSTANDER_PART_MAX}]" in text
