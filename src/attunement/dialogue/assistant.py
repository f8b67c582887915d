"""The assistant's side of a simulated talk: what the policy is shown, and its reply.

The simulator always knows the user's whole record; the policy sees what its
setting allows. Two settings exist:

- :class:`MemoryAssistant`, attunement's: the reply prompt of
  :mod:`attunement.policy` under a memory mode (full / none / mismatch /
  summary / rag), exactly as single-turn generation builds it, with the
  earlier turns of the talk as real chat turns before the user's latest
  message (:func:`example_at`). The memory view is chosen per turn from the
  latest message (``rag`` retrieves for what the user just said; ``summary``
  is made once per user; ``mismatch`` picks the same other user every turn,
  since the example id does not change). The reply is the ``# Response``
  part; the ``# Analysis`` is kept beside it and never shown to the user.
- :class:`SystemPromptAssistant`: one fixed system prompt and the talk as
  chat turns, nothing else (SAGE's tested model, the random baseline).
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from attunement.dialogue.records import DialogueTurn, SimulatedUser, as_turns
from attunement.llm.base import Message
from attunement.policy import (
    SHOW_PERSONA,
    SHOW_SITUATION,
    MemoryStrategy,
    PromptContext,
    parse_reply,
    render_policy_prompt,
)
from attunement.prompts import load_prompt
from attunement.records import Example

_THINK_END = re.compile(r"</think>", re.IGNORECASE)


def example_at(user: SimulatedUser, turns: Sequence[DialogueTurn]) -> Example:
    """The user's example as of the latest user message ``turns[-1]``: that
    message as the query, the turns before it as the dialogue.

    Fixed evaluation criteria are dropped: they were written for the opening
    query, not for a later turn.
    """
    if not turns or turns[-1].role != "user":
        raise ValueError("the assistant answers a user message: turns must end with one")
    return user.example.model_copy(
        update={"query": turns[-1].text, "dialogue": as_turns(turns[:-1]), "criteria": {}}
    )


class AssistantSide(ABC):
    """Builds the policy's prompt for the next reply and reads the reply back."""

    #: the memory mode (``None`` when the setting has no memory list)
    memory_mode: str | None = None

    @abstractmethod
    async def prompt(
        self, user: SimulatedUser, turns: Sequence[DialogueTurn]
    ) -> tuple[list[Message], list[str] | None]:
        """The messages for the reply to ``turns[-1]`` and the memory ids shown."""

    @abstractmethod
    def read(self, text: str) -> tuple[str, str]:
        """``(reasoning, reply)`` of a completion."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Everything that shapes the prompt, for manifests."""


class MemoryAssistant(AssistantSide):
    """attunement's reply prompt under a memory strategy."""

    def __init__(
        self,
        strategy: MemoryStrategy,
        *,
        with_persona: bool = SHOW_PERSONA,
        with_situation: bool = SHOW_SITUATION,
    ):
        self.strategy = strategy
        self.memory_mode = strategy.mode
        self.with_persona = with_persona
        self.with_situation = with_situation

    async def prompt(
        self, user: SimulatedUser, turns: Sequence[DialogueTurn]
    ) -> tuple[list[Message], list[str] | None]:
        example = example_at(user, turns)
        view = await self.strategy.select(example)
        shown = PromptContext(
            memory_mode=self.memory_mode, persona=self.with_persona, situation=self.with_situation
        )
        messages = render_policy_prompt(example, view, shown)
        return messages, [m.memory_id for m in view.memories]

    def read(self, text: str) -> tuple[str, str]:
        parsed = parse_reply(text)
        return parsed.analysis, parsed.response

    def settings(self) -> dict[str, Any]:
        return {
            "kind": "memory",
            "memory": self.strategy.settings(),
            "with_persona": self.with_persona,
            "with_situation": self.with_situation,
            "prompt": {"policy_reply": load_prompt("policy_reply").version},
        }


class SystemPromptAssistant(AssistantSide):
    """A fixed system prompt, then the talk as chat turns.

    The reply is the whole completion (after a ``</think>`` block, if the
    model wrote one; the thinking is kept as the reasoning).
    """

    def __init__(self, system: str, *, name: str = "system-prompt"):
        if not system.strip():
            raise ValueError("the assistant's system prompt is empty")
        self.system = system
        self.name = name

    async def prompt(
        self, user: SimulatedUser, turns: Sequence[DialogueTurn]
    ) -> tuple[list[Message], list[str] | None]:
        chat: list[Message] = [{"role": t.role, "content": t.text} for t in turns]
        return [{"role": "system", "content": self.system}, *chat], None

    def read(self, text: str) -> tuple[str, str]:
        end = None
        for end in _THINK_END.finditer(text):
            pass
        if end is None:
            return "", text.strip()
        thought = re.sub(r"^\s*<think>", "", text[: end.start()], flags=re.IGNORECASE)
        return thought.strip(), text[end.end() :].strip()

    def settings(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.system.encode("utf-8")).hexdigest()[:12]
        return {"kind": "system_prompt", "name": self.name, "system_prompt": digest}


class TranscriptAssistant(AssistantSide):
    """A fixed opening prompt, then the talk as chat turns, each earlier reply as
    the policy wrote it (its analysis included).

    Every turn's prompt extends the one before it, message by message, so a
    whole talk is one growing sequence a trainer can learn from in one pass
    (multi-turn GRPO): the opening is the training row's prompt (the reply
    prompt under the row's memory mode, which shows the opening query), and
    the policy sees exactly what it wrote before. The simulated user is shown
    only the ``# Response`` part, as everywhere.
    """

    def __init__(self, opening: Sequence[Message], *, memory_mode: str | None = None):
        if not opening or opening[-1]["role"] != "user":
            raise ValueError("the opening prompt must end with the user's message")
        self.opening = [dict(m) for m in opening]
        self.memory_mode = memory_mode

    async def prompt(
        self, user: SimulatedUser, turns: Sequence[DialogueTurn]
    ) -> tuple[list[Message], list[str] | None]:
        if not turns or turns[-1].role != "user":
            raise ValueError("the assistant answers a user message: turns must end with one")
        later: list[Message] = [
            {"role": t.role, "content": t.raw if t.role == "assistant" else t.text}
            for t in turns[1:]
        ]
        return [*self.opening, *later], None

    def read(self, text: str) -> tuple[str, str]:
        parsed = parse_reply(text)
        return parsed.analysis, parsed.response

    def settings(self) -> dict[str, Any]:
        return {
            "kind": "transcript",
            "memory_mode": self.memory_mode,
            "prompt": {"policy_reply": load_prompt("policy_reply").version},
        }
