"""Training policies on attunement's rewards, on one machine, with TRL.

- :class:`GRPOReward`: any registered reward (PERM, PereGRM, RLPA) as TRL's
  GRPO reward function (group-aware, bounded, unscorable replies as None).
- :func:`train_grpo`, :func:`train_sft`, :func:`merge_adapter`: the
  ``attune train grpo|sft|merge`` verbs as functions.
- :class:`MonitorSettings`, :class:`HackingMonitor`, :class:`StreamMonitor`: the
  hacking monitor (in TRL, and in per-sample trainers: verl, ``attune serve``).
- :data:`PRESETS`: the authors' training recipes (``--preset``).

torch, transformers, TRL and peft are imported only when a trainer is built
(``pip install torch==2.13.0 'attunement[train]'``). See docs/training.md.
"""

from attunement.training.monitor import HackingMonitor, MonitorSettings, StreamMonitor
from attunement.training.presets import PRESETS
from attunement.training.reward import GRPOReward, JudgeUnavailableError, group_bounds

__all__ = [
    "PRESETS",
    "GRPOReward",
    "HackingMonitor",
    "JudgeUnavailableError",
    "MonitorSettings",
    "StreamMonitor",
    "group_bounds",
]
