"""What the policy sees: one home for the policy prompt of every caller.

``attune generate``, ``attune distill`` (so the SFT rows), ``attune train grpo``
(its rows, single- and multi-turn), the build's ``prompts.jsonl`` and the verl /
OpenRLHF exports all show the policy the same prompt, built the same way: a
memory mode picks a :class:`~attunement.policy.memory.MemoryView` for the
example, and :func:`render_policy_prompt` turns example, view and
:class:`PromptContext` into the messages (through
:func:`attunement.policy.prompting.render_reply_messages`, the one renderer of
the user-context block). :func:`policy_prompts` does it for a whole file
without a model (every mode but ``summary``): the rows of training and of the
exports are built from its :class:`PolicyPrompt` values, never by a second loop
of their own.

The defaults are defined once, here (:data:`SHOW_PERSONA`,
:data:`SHOW_SITUATION`, :data:`DEFAULT_MEMORY_MODE`), and every settings model
that shows the policy a prompt takes them from here. They follow the papers'
task: PersonaEmp / PereGRM define the reply as policy(memories, query) (seed
000, eq. 1); the persona and the situation are what the *judges* condition on
(eq. 3), both derived from the memories when the dataset is built. So the
policy sees memory and query only, unless asked; PERM's persona-and-scenario
prompt (seed 003, figures 11-12) is the ``persona`` and ``situation`` switches.
Showing the policy the persona during training would hand it the judge's own
reading of the user, which evaluation on memory alone then takes away.

Whose persona and situation a prompt shows when the memories are another
user's (``mismatch``) is one setting too, :attr:`PromptContext.context_of`,
``memories`` by default for every caller: the ablation replaces the user's
whole context, so the real user never leaks through text derived from their
memories.

A training run records the :class:`PromptContext` it trained with in its
manifest (``policy_prompt``), and ``attune generate --policy hf:RUN/final``
shows the policy that prompt unless a flag says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from attunement.llm.base import Message
from attunement.policy.memory import MemoryMode, MemoryStrategy, MemoryView, memory_strategy
from attunement.policy.prompting import render_reply_messages
from attunement.records import Example, UserHistory

#: whose persona and situation the prompt shows (see :class:`PromptContext`)
ContextOf = Literal["memories", "example"]

#: the memory mode a policy prompt shows unless asked for another
DEFAULT_MEMORY_MODE: MemoryMode = "full"
#: the policy sees the persona only when asked (the papers' task: memories and query)
SHOW_PERSONA = False
#: the policy sees the situation only when asked (the papers' task: memories and query)
SHOW_SITUATION = False
#: the key of a run manifest that records the prompt a policy was trained on
PROMPT_MANIFEST_KEY = "policy_prompt"


class PromptContext(BaseModel):
    """What the policy is shown besides the user's message.

    ``persona`` and ``situation`` switch those sections on. ``context_of``
    says whose they are: ``memories``, the user whose memories the view holds
    (another user's in ``mismatch`` mode, so an ablation does not leak the
    real user); ``example``, the example's own user whatever the view.
    ``seed`` picks the other user in ``mismatch`` mode, ``k`` the number of
    memories in ``rag`` mode.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mode: MemoryMode = DEFAULT_MEMORY_MODE
    persona: bool = SHOW_PERSONA
    situation: bool = SHOW_SITUATION
    context_of: ContextOf = "memories"
    seed: int = 0
    k: int = Field(default=3, ge=1)


@dataclass(frozen=True)
class PolicyPrompt:
    """The messages the policy answers for one example, and the view they show."""

    example: Example
    mode: str
    view: MemoryView
    messages: list[Message]

    def record(self) -> dict[str, Any]:
        """What the policy saw, as one JSONL row (``generate_replies(prompts_out=...)``)."""
        return {
            "example_id": self.example.example_id,
            "memory_mode": self.mode,
            "messages": self.messages,
            "memory_ids": [m.memory_id for m in self.view.memories],
            "summary": self.view.summary,
            "source_user_id": self.view.source_user_id,
        }


def render_policy_prompt(
    example: Example, view: MemoryView, context: PromptContext
) -> list[Message]:
    """The policy's messages for ``example`` under a memory ``view``.

    >>> from attunement.policy.memory import FullMemory
    >>> from attunement.records import Persona
    >>> ex = Example(example_id="e", query="Hi", persona=Persona(profile="Night nurse"))
    >>> "Night nurse" in render_policy_prompt(ex, FullMemory.view(ex), PromptContext())[1]["content"]
    False
    >>> shown = PromptContext(persona=True)
    >>> "Night nurse" in render_policy_prompt(ex, FullMemory.view(ex), shown)[1]["content"]
    True
    """
    if context.context_of == "memories":
        persona = view.persona if context.persona else None
        situation = view.situation if context.situation else None
        return render_reply_messages(
            example, list(view.memories), summary=view.summary, persona=persona, situation=situation
        )
    return render_reply_messages(
        example,
        list(view.memories),
        summary=view.summary,
        persona=context.persona,
        situation=context.situation,
    )


async def policy_prompt(
    example: Example, strategy: MemoryStrategy, context: PromptContext
) -> PolicyPrompt:
    """The prompt of one example under ``strategy`` (which may call a summariser)."""
    view = await strategy.select(example)
    return PolicyPrompt(example, strategy.mode, view, render_policy_prompt(example, view, context))


async def policy_prompts(
    examples: Sequence[Example],
    context: PromptContext,
    *,
    pool: Sequence[Example] | Sequence[UserHistory] | None = None,
) -> list[PolicyPrompt]:
    """The prompt of every example, in order, without a model (``summary`` needs one).

    ``pool`` is where ``mismatch`` finds the other users (default: ``examples``).
    """
    strategy = memory_strategy(
        context.memory_mode,
        pool=pool if pool is not None else examples,
        seed=context.seed,
        k=context.k,
    )
    return [await policy_prompt(ex, strategy, context) for ex in examples]
