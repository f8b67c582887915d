"""Reward models that judge empathetic replies with LLM judges: PERM and PereGRM.

>>> from attunement.judging import load_reward, score_dataset       # doctest: +SKIP
>>> reward = load_reward("peregrm@4", judge)                        # doctest: +SKIP
>>> breakdowns = await reward.score(example, replies)               # doctest: +SKIP

Formulas, options and defaults: docs/rewards.md.
"""

from attunement.judging.aggregate import (
    arithmetic_mean,
    bystander_penalty,
    geometric_mean,
    harmonic_mean,
    length_penalty,
    normalize,
    softmin,
)
from attunement.judging.base import (
    JudgeReward,
    JudgeSampler,
    PereGRMConfig,
    PermConfig,
    RewardConfig,
    RewardModel,
    round_seed,
)
from attunement.judging.criteria import CriteriaConfig, prepare_criteria
from attunement.judging.parsing import (
    Parsed,
    parse_bystander,
    parse_criteria,
    parse_rating,
    strip_fenced,
)
from attunement.judging.peregrm import PereGRMReward, peregrm_reward
from attunement.judging.perm import PermReward, perm_reward
from attunement.judging.registry import (
    RewardSpec,
    load_reward,
    register_reward,
    reward_config,
    reward_names,
)
from attunement.judging.rlpa import RLPAConfig, RLPAReward, rlpa_reward
from attunement.judging.scoring import ScoreSummary, score_dataset
from attunement.judging.tokens import approx_tokens, load_token_counter

__all__ = [
    "CriteriaConfig",
    "JudgeReward",
    "JudgeSampler",
    "Parsed",
    "PereGRMConfig",
    "PereGRMReward",
    "PermConfig",
    "PermReward",
    "RLPAConfig",
    "RLPAReward",
    "RewardConfig",
    "RewardModel",
    "RewardSpec",
    "ScoreSummary",
    "approx_tokens",
    "arithmetic_mean",
    "bystander_penalty",
    "geometric_mean",
    "harmonic_mean",
    "length_penalty",
    "load_reward",
    "load_token_counter",
    "normalize",
    "parse_bystander",
    "parse_criteria",
    "parse_rating",
    "peregrm_reward",
    "perm_reward",
    "prepare_criteria",
    "register_reward",
    "reward_config",
    "reward_names",
    "rlpa_reward",
    "round_seed",
    "score_dataset",
    "softmin",
    "strip_fenced",
]
