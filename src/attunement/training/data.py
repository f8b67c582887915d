"""Training data: PersonaEmp examples as GRPO prompts, and SFT rows.

GRPO rows are TRL's conversational prompt format, their prompts built by the
one home of the policy prompt (:func:`attunement.policy.context.policy_prompts`,
the renderer ``attune generate`` uses too), so a policy is trained on the
prompt it is later evaluated with::

    {"prompt": [{"role": "system", ...}, {"role": "user", ...}], "example_id": "u12-q3"}

A row carries the example's id and nothing else of it. TRL hands every
column to the reward function, but it also writes columns into its logs: the
warning it prints for a row whose rewards are all ``None`` holds every column
of that row, and ``log_completions`` tables hold the prompt. So the persona,
memories and situation do not travel in a column; the reward looks the
:class:`~attunement.records.Example` up by id in the examples it was given
(:class:`~attunement.training.reward.GRPOReward`), and the judge sees the
record exactly as it was written. The prompt itself shows the policy what
the memory mode lets it see, which may be the persona and memories; TRL's
all-``None`` warning is therefore rewritten by :func:`redacted_trl_warnings`
to name the row's id only.

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
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from attunement.jsonl import manifest_path, read_jsonl, read_manifest
from attunement.llm.base import Message
from attunement.policy import (
    PROMPT_MANIFEST_KEY,
    GenerationSettings,
    ModelFreeMemoryMode,
    PolicyPrompt,
    PromptContext,
    policy_prompts,
)
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
    """What a training prompt shows: the :class:`PromptContext` generation builds
    from the same switches (``GRPOSettings`` names them ``memory``, ``persona``,
    ``situation``), so a run records, and ``generate`` replays, exactly this."""
    return PromptContext(memory_mode=memory, persona=persona, situation=situation, seed=seed)


def grpo_row(prompt: PolicyPrompt) -> dict[str, Any]:
    """One TRL row: the conversational prompt and the example's id (never the record)."""
    return {"prompt": prompt.messages, "example_id": prompt.example.example_id}


#: the logger of TRL's GRPO trainer (its all-None warning prints a whole row)
TRL_GRPO_LOGGER = "trl.trainer.grpo_trainer"
_ALL_NONE = "All reward functions returned None"
_ROW_ID = re.compile(r"'example_id': '([^'\\]*)'")


class _RowRedactor(logging.Filter):
    """Rewrites TRL's all-None warning to the row's id: the warning prints every
    column of the row, the prompt and the completion, which show the user's persona
    and memories."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        at = message.find(_ALL_NONE)  # accelerate's adapter puts "[RANK n] " before it
        if at >= 0:
            found = _ROW_ID.search(message)
            row = f"example_id {found.group(1)!r}" if found else "a row"
            record.msg = (
                f"{message[:at]}{_ALL_NONE} for {row}; its prompt and completion are not "
                "logged (they show the user's persona and memories); the reasons are in "
                "breakdowns.jsonl and the completions table's unscorable column"
            )
            record.args = ()
        return True


@contextmanager
def redacted_trl_warnings() -> Iterator[None]:
    """While open, TRL's warning about a row whose rewards are all ``None`` names the
    row's ``example_id`` instead of printing the row."""
    logger = logging.getLogger(TRL_GRPO_LOGGER)
    redactor = _RowRedactor()
    logger.addFilter(redactor)
    try:
        yield
    finally:
        logger.removeFilter(redactor)


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


def rows_prompt(path: str | Path) -> tuple[PromptContext | None, str | None]:
    """The policy prompt SFT rows were written with: the settings ``attune distill``
    recorded in their manifest, or None and why not."""
    manifest = manifest_path(path)
    doc = read_manifest(manifest)
    if doc is None:
        return None, f"the rows have no readable {manifest.name}: not written by attune distill"
    try:
        if doc.get("command") != "distill":
            raise ValueError(f"written by {doc.get('command')!r}")
        return GenerationSettings.model_validate(doc["settings"]).context(), None
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"{manifest.name} records no distill settings ({exc})"


def prompt_record(path: str | Path) -> dict[str, Any]:
    """The manifest fields of an SFT run on ``path``: the prompt its rows show
    (``policy_prompt``) or why it is unknown (``policy_prompt_missing``)."""
    context, missing = rows_prompt(path)
    if context is None:
        return {PROMPT_MANIFEST_KEY: None, f"{PROMPT_MANIFEST_KEY}_missing": missing}
    return {PROMPT_MANIFEST_KEY: context.model_dump(mode="json")}


def read_sft_rows(path: str | Path) -> list[dict[str, list[dict[str, str]]]]:
    """SFT rows from JSONL (file:line errors), as prompt-completion pairs."""
    rows = [row.prompt_completion() for row in read_jsonl(path, SFTRow)]
    if not rows:
        raise ValueError(f"{path}: no SFT rows")
    return rows
