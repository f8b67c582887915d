"""Training data: PersonaEmp examples as GRPO prompts, and SFT rows.

GRPO rows are TRL's conversational prompt format, their prompts built by the
one home of the policy prompt (:func:`attunement.policy.context.policy_prompts`,
the renderer ``attune generate`` uses too), so a policy is trained on the
prompt it is later evaluated with::

    {"prompt": [{"role": "system", ...}, {"role": "user", ...}],
     "example": "<the Example as JSON>", "example_id": "u12-q3"}

The whole :class:`~attunement.records.Example` travels as one JSON string
column: TRL hands every column to the reward function, and one string
survives ``datasets``' column typing untouched (nested optional fields in
Arrow columns get padded with nulls), so the judge sees the persona,
memories and situation exactly as they were written.

A prompt longer than ``max_prompt_length`` tokens is left out and reported,
never truncated: cutting the front of a chat drops the instructions, cutting
the end drops the user's message.

SFT rows are what ``attune distill`` writes: ``prompt``/``completion``
message lists, or ``messages`` (turned into prompt/completion, last turn the
completion), so TRL's ``SFTTrainer`` computes the loss on the reply only,
whatever the chat template.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from attunement.jsonl import read_jsonl
from attunement.llm.base import Message
from attunement.policy import ModelFreeMemoryMode, PolicyPrompt, PromptContext, policy_prompts
from attunement.records import Example


def read_examples(path: str | Path) -> list[Example]:
    """Examples from JSONL, validated line by line; duplicate ids are an error."""
    examples = read_jsonl(path, Example)
    if not examples:
        raise ValueError(f"{path}: no examples")
    seen: dict[str, int] = {}
    for i, ex in enumerate(examples, start=1):
        if ex.example_id in seen:
            raise ValueError(
                f"{path}:{i}: example_id {ex.example_id!r} already on line "
                f"{seen[ex.example_id]}; GRPO groups are joined by id"
            )
        seen[ex.example_id] = i
    return examples


def training_context(
    *, memory: ModelFreeMemoryMode, persona: bool, situation: bool, seed: int
) -> PromptContext:
    """What a training prompt shows: the example's own persona and situation when
    switched on, whatever the memory mode (see :class:`PromptContext`)."""
    return PromptContext(
        memory_mode=memory, persona=persona, situation=situation, seed=seed, context_of="example"
    )


def grpo_row(prompt: PolicyPrompt) -> dict[str, Any]:
    """One TRL row: the conversational prompt and the whole example as JSON."""
    example = prompt.example
    return {
        "prompt": prompt.messages,
        "example": example.model_dump_json(),
        "example_id": example.example_id,
    }


def prompt_tokens(tokenizer: Any, prompt: list[Message]) -> int:
    """Tokens of a chat prompt as the policy sees it (template and generation prompt)."""
    encoded = tokenizer.apply_chat_template(
        prompt, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return len(encoded["input_ids"])


def build_grpo_rows(
    examples: Sequence[Example],
    tokenizer: Any,
    *,
    memory: ModelFreeMemoryMode,
    persona: bool,
    situation: bool,
    seed: int,
    max_prompt_length: int,
) -> tuple[list[dict], list[str]]:
    """GRPO rows that fit ``max_prompt_length``, and the ids of those that did not."""
    context = training_context(memory=memory, persona=persona, situation=situation, seed=seed)
    prompts = asyncio.run(policy_prompts(examples, context))
    rows, too_long = [], []
    for row in map(grpo_row, prompts):
        if prompt_tokens(tokenizer, row["prompt"]) > max_prompt_length:
            too_long.append(row["example_id"])
        else:
            rows.append(row)
    return rows, too_long


# --------------------------------------------------------------------------- SFT rows


class ChatTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class SFTRow(BaseModel):
    """One row of ``attune distill`` output (extra id columns are kept)."""

    model_config = ConfigDict(extra="allow")

    prompt: list[ChatTurn] | None = None
    completion: list[ChatTurn] | None = None
    messages: list[ChatTurn] | None = Field(None, min_length=2)

    @model_validator(mode="after")
    def _one_shape(self) -> SFTRow:
        if self.messages is not None:
            if self.prompt is not None or self.completion is not None:
                raise ValueError("give either messages or prompt/completion, not both")
            if self.messages[-1].role != "assistant":
                raise ValueError("messages must end with the assistant turn to learn")
            return self
        if not self.prompt or not self.completion:
            raise ValueError("expected prompt and completion (attune distill's format) or messages")
        if any(t.role != "assistant" for t in self.completion):
            raise ValueError("completion must hold assistant turns only")
        return self

    def prompt_completion(self) -> dict[str, list[dict[str, str]]]:
        """The row as TRL's conversational prompt-completion pair."""
        if self.messages is not None:
            turns = [t.model_dump() for t in self.messages]
            return {"prompt": turns[:-1], "completion": turns[-1:]}
        return {
            "prompt": [t.model_dump() for t in self.prompt or []],
            "completion": [t.model_dump() for t in self.completion or []],
        }


def read_sft_rows(path: str | Path) -> list[dict[str, list[dict[str, str]]]]:
    """SFT rows from JSONL (file:line errors), as prompt-completion pairs."""
    rows = [row.prompt_completion() for row in read_jsonl(path, SFTRow)]
    if not rows:
        raise ValueError(f"{path}: no SFT rows")
    return rows
