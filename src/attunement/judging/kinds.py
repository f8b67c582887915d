"""The table of reward kinds, filled where each reward is defined.

A reward registers itself next to its code::

    @register_reward("perm", config=PermConfig)
    class PermReward(EmpathyReward): ...

so its name sits beside its class, as the class's ``kind``, and the table in
this module is the one truth about which rewards exist: ``load_reward``,
``reward_names`` and the command line's choices read it
(:mod:`attunement.judging.registry`). The built-in rewards (PERM, PereGRM,
RLPA) are registered as soon as anything of ``attunement.judging`` is
imported: the package's face imports their modules, whose names it exports.
Code outside the package may add its own kind with a factory:
``register_reward("mine", MyConfig, make_mine)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from attunement.judging.base import RewardModel

F = TypeVar("F", bound=Callable[..., RewardModel])


@dataclass(frozen=True)
class RewardKind:
    """A named reward: its config class and the factory that builds it on a judge."""

    config: type[BaseModel]
    factory: Callable[..., RewardModel]


#: every registered reward kind by name, in the order they were registered
KINDS: dict[str, RewardKind] = {}


def register_reward(name: str, config: type[BaseModel], factory: F | None = None) -> Any:
    """Register a reward kind; ``factory(judge, config, token_counter=...)`` builds it.

    Called with a factory, registers it. Without one, returns a decorator: on a
    reward class it also sets the class's ``kind`` to ``name`` (the name its
    rewards report), so the name is written once.
    """
    key = name.lower()
    if factory is not None:
        KINDS[key] = RewardKind(config, factory)
        return factory

    def decorate(target: F) -> F:
        if isinstance(target, type):
            target.kind = key  # type: ignore[attr-defined]
        KINDS[key] = RewardKind(config, target)
        return target

    return decorate
