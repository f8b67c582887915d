"""One home for the policy prompt: every caller shows the policy the same messages."""

from __future__ import annotations

import asyncio
import json
import re
from typing import get_args

import pytest
from train_scripted import examples

from attunement.building.export import prompt_row
from attunement.integrations.verl import verl_rows
from attunement.llm import ScriptedChatModel
from attunement.policy import generate_replies
from attunement.policy.context import PromptContext, policy_prompts, render_policy_prompt
from attunement.policy.memory import (
    MEMORY_MODES,
    MODEL_FREE_MEMORY_MODES,
    MemoryMode,
    ModelFreeMemoryMode,
    memory_strategy,
)
from attunement.training.config import GRPOSettings, TrainMemory
from attunement.training.data import build_grpo_rows


class WordTokenizer:
    def apply_chat_template(self, messages, **kwargs):
        return {"input_ids": " ".join(m["content"] for m in messages).split()}


def answer(request, index) -> str:
    return "# Analysis\na\n# Response\nr"


async def generated_prompts(tmp_path, name: str, **settings) -> dict[str, list[dict]]:
    policy = ScriptedChatModel(answer)
    out = tmp_path / f"{name}.prompts.jsonl"
    await generate_replies(
        examples(4), policy, tmp_path / f"{name}.jsonl", prompts_out=out, **settings
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {r["example_id"]: r["messages"] for r in rows}


def grpo_prompts(**settings) -> dict[str, list[dict]]:
    rows, _ = build_grpo_rows(
        examples(4), WordTokenizer(), seed=0, max_prompt_length=10_000, **settings
    )
    return {r["example_id"]: r["prompt"] for r in rows}


@pytest.mark.parametrize("mode", ["full", "none", "rag"])
async def test_generate_train_and_exports_show_the_same_prompt(tmp_path, mode):
    generated = await generated_prompts(
        tmp_path, mode, memory_mode=mode, with_persona=True, with_situation=True
    )
    trained = await asyncio.to_thread(grpo_prompts, memory=mode, persona=True, situation=True)
    exported = {
        r["extra_info"]["example_id"]: r["prompt"]
        for r in await verl_rows(examples(4), memory_mode=mode, persona=True, situation=True)
    }
    assert generated == trained == exported
    first = generated["ex0"][1]["content"]
    assert "Quiet engineer" in first and "Honestly, my manager" in first


async def test_the_build_export_shows_what_generate_shows_by_default(tmp_path):
    generated = await generated_prompts(tmp_path, "default")
    assert {e.example_id: prompt_row(e)["prompt"] for e in examples(4)} == generated
    shown = generated["ex0"][1]["content"]  # memories and query only
    assert "Mentioned before" in shown and "## User profile" not in shown


async def test_whose_persona_a_mismatched_prompt_shows_is_one_setting():
    exs = examples(4)  # the pool grpo_prompts uses
    strategy = memory_strategy("mismatch", pool=exs, seed=0)
    view = await strategy.select(exs[0])
    assert view.source_user_id != exs[0].user_id
    theirs = persona_shown(render_policy_prompt(exs[0], view, PromptContext(persona=True)))
    own = PromptContext(persona=True, context_of="example")
    assert theirs == view.persona.profile != exs[0].persona.profile
    assert persona_shown(render_policy_prompt(exs[0], view, own)) == exs[0].persona.profile
    # generate, training and the exports all show the memories' owner (issue 17, finding 2)
    trained = await asyncio.to_thread(
        grpo_prompts, memory="mismatch", persona=True, situation=False
    )
    assert persona_shown(trained["ex0"]) == view.persona.profile != exs[0].persona.profile
    exported = await verl_rows(exs, memory_mode="mismatch", persona=True)
    assert persona_shown(exported[0]["prompt"]) == view.persona.profile


def persona_shown(messages: list[dict]) -> str:
    return re.search(r"<persona>\n(.*?)\n</persona>", messages[1]["content"], re.DOTALL).group(1)


async def test_prompts_keep_the_examples_order_and_say_what_they_show():
    exs = examples(4)
    prompts = await policy_prompts(exs, PromptContext(memory_mode="none"))
    assert [p.example.example_id for p in prompts] == [e.example_id for e in exs]
    row = prompts[0].record()
    assert row["memory_mode"] == "none" and row["memory_ids"] == []
    assert row["messages"] == prompts[0].messages
    with pytest.raises(ValueError, match="summary memory needs a model"):
        await policy_prompts(exs, PromptContext(memory_mode="summary"))


def test_memory_modes_are_defined_once():
    assert get_args(MemoryMode) == MEMORY_MODES
    assert MODEL_FREE_MEMORY_MODES == tuple(m for m in MEMORY_MODES if m != "summary")
    assert TrainMemory is ModelFreeMemoryMode
    assert GRPOSettings.model_fields["memory"].annotation is ModelFreeMemoryMode
    with pytest.raises(ValueError, match="memory"):
        GRPOSettings(data="x.jsonl", memory="summary")
