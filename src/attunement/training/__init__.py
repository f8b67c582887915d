"""Training policies on attunement's rewards, on one machine, with TRL.

- :class:`GRPOReward`: any registered reward (PERM, PereGRM, RLPA) as TRL's
  GRPO reward function (group-aware, bounded, unscorable replies as None).
- :func:`train_grpo`, :func:`train_sft`, :func:`merge_adapter`: the
  ``attune train grpo|sft|merge`` verbs as functions.

torch, transformers, TRL and peft are imported only when a trainer is built
(``pip install torch==2.13.0 'attunement[train]'``). See docs/training.md.
"""

from attunement.training.reward import GRPOReward, JudgeUnavailableError, group_bounds

__all__ = ["GRPOReward", "JudgeUnavailableError", "group_bounds"]
