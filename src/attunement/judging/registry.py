"""Reward models by name, and :class:`RewardSpec`: a reward that any process can build.

Names: every registered kind (``reward_names()``: ``perm``, ``peregrm``,
``rlpa``), optionally with ``@k`` for the judge samples per dimension
(``peregrm@8``). Each reward registers itself where it is defined, pairing its
config class with its class (:mod:`attunement.judging.kinds`); the package's
face imports every built-in reward, so importing anything from
``attunement.judging`` registers them. Settings are validated by building the
config, before any model is loaded.

A trainer's reward function, a verl worker and ``attune serve`` all receive a
:class:`RewardSpec` (plain data: reward name, judge spec, LLM options, config
overrides) and build the judge and reward where they run, instead of pickling
a live client across processes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from attunement.judging.base import RewardModel
from attunement.judging.kinds import KINDS as _KINDS
from attunement.judging.kinds import RewardKind, register_reward
from attunement.judging.settings import RewardSettings
from attunement.judging.tokens import TokenCounter
from attunement.llm import LLMOptions, load_chat_model, preflight
from attunement.llm.base import ChatModel

__all__ = [
    "RewardKind",
    "RewardSpec",
    "load_reward",
    "parse_reward_name",
    "register_reward",
    "reward_config",
    "reward_names",
]

_NAME = re.compile(r"^([a-z][a-z0-9_]*)(?:@(\d+))?$")


def reward_names() -> tuple[str, ...]:
    """The registered reward kinds, sorted (the command line lists these).

    >>> reward_names()[:3]
    ('peregrm', 'perm', 'rlpa')
    """
    return tuple(sorted(_KINDS))


def parse_reward_name(name: str) -> tuple[str, int | None]:
    """``"peregrm@8"`` -> ``("peregrm", 8)``; unknown names are a ``ValueError``.

    >>> parse_reward_name("PereGRM@8"), parse_reward_name("perm")
    (('peregrm', 8), ('perm', None))
    """
    match = _NAME.match(name.strip().lower())
    if not match or match.group(1) not in _KINDS:
        raise ValueError(
            f"unknown reward {name!r}; expected one of {', '.join(reward_names())} "
            "(optionally with @k, e.g. peregrm@8)"
        )
    k = match.group(2)
    return match.group(1), (int(k) if k is not None else None)


def reward_config(name: str, **overrides: Any) -> BaseModel:
    """The validated config a reward name and overrides describe (no model needed).

    >>> reward_config("peregrm@4", use_bystander=False).k
    4
    """
    kind, k = parse_reward_name(name)
    if k is not None:
        if "k" in overrides and overrides["k"] is not None and overrides["k"] != k:
            raise ValueError(f"{name!r} asks for k={k} but k={overrides['k']} was also given")
        overrides["k"] = k
    return _KINDS[kind].config(**overrides)


def load_reward(
    name: str, judge: ChatModel, *, token_counter: TokenCounter | None = None, **overrides: Any
) -> RewardModel:
    """A reward model by name; ``@k`` sets the number of judge samples.

    ``overrides`` are fields of the kind's config (:class:`PermConfig`,
    :class:`PereGRMConfig`, ...); unknown fields are an error.

    >>> from attunement.llm import ScriptedChatModel
    >>> load_reward("peregrm@4", ScriptedChatModel(outputs=[])).config.k
    4
    """
    kind, _ = parse_reward_name(name)
    config = reward_config(name, **overrides)
    return _KINDS[kind].factory(judge, config, token_counter=token_counter)


class RewardSpec(BaseModel):
    """A reward as plain data: what to build, on which judge, with which settings.

    >>> spec = RewardSpec(reward="perm", judge="local", overrides={"use_bystander": False})
    >>> spec.config().use_bystander
    False
    """

    model_config = ConfigDict(extra="forbid")

    reward: str = Field(
        "peregrm", description="a registered reward (reward_names()), optionally @k: peregrm@4"
    )
    judge: str = Field("local", description="judge model spec")
    options: LLMOptions = Field(
        default_factory=LLMOptions, description="how to run the judge (concurrency, timeout, cache)"
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="fields of the reward's config"
    )

    def config(self) -> RewardSettings | BaseModel:
        """Validate the reward name and overrides (raises ``ValueError``)."""
        return reward_config(self.reward, **dict(self.overrides))

    def load(self, judge: ChatModel, *, token_counter: TokenCounter | None = None) -> RewardModel:
        """The reward on an already open judge."""
        return load_reward(self.reward, judge, token_counter=token_counter, **dict(self.overrides))

    @asynccontextmanager
    async def open(
        self, *, token_counter: TokenCounter | None = None
    ) -> AsyncIterator[RewardModel]:
        """Load the judge, build the reward, close the judge afterwards.

        >>> async with spec.open() as reward:                      # doctest: +SKIP
        ...     breakdowns = await reward.score(example, replies)
        """
        self.config()  # fail on bad settings before a model is loaded
        async with load_chat_model(self.judge, self.options) as judge:
            await preflight(judge)  # up, and serving the model, before any work
            yield self.load(judge, token_counter=token_counter)
