"""Build a reward model by name: ``"perm"``, ``"peregrm"``, ``"peregrm@8"``."""

from __future__ import annotations

import re
from typing import Any

from attunement.judging.base import JudgeReward, PereGRMConfig, PermConfig, TokenCounter
from attunement.judging.peregrm import peregrm_reward
from attunement.judging.perm import perm_reward
from attunement.llm.base import ChatModel

REWARDS = ("perm", "peregrm")
_NAME = re.compile(r"^(perm|peregrm)(?:@(\d+))?$")


def load_reward(name: str, judge: ChatModel, *, token_counter: TokenCounter | None = None,
                **overrides: Any) -> JudgeReward:
    """A reward model by name; ``@k`` sets the number of judge samples.

    ``overrides`` are fields of :class:`PermConfig` / :class:`PereGRMConfig`
    (unknown fields are an error).

    >>> from attunement.llm import ScriptedChatModel
    >>> load_reward("peregrm@4", ScriptedChatModel(outputs=[])).config.k
    4
    """
    match = _NAME.match(name.strip().lower())
    if not match:
        raise ValueError(f"unknown reward {name!r}; expected one of {', '.join(REWARDS)} "
                         "(optionally with @k, e.g. peregrm@8)")
    kind, k = match.group(1), match.group(2)
    if k is not None:
        if "k" in overrides and overrides["k"] != int(k):
            raise ValueError(f"{name!r} asks for k={k} but k={overrides['k']} was also given")
        overrides["k"] = int(k)
    if kind == "perm":
        return perm_reward(judge, PermConfig(**overrides), token_counter=token_counter)
    return peregrm_reward(judge, PereGRMConfig(**overrides), token_counter=token_counter)
