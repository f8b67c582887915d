"""Reward models that judge empathetic replies with LLM judges: PERM, PereGRM, RLPA.

>>> from attunement.judging import load_reward, score_dataset       # doctest: +SKIP
>>> reward = load_reward("peregrm@4", judge)                        # doctest: +SKIP
>>> breakdowns = await reward.score(example, replies)               # doctest: +SKIP

Where things live (docs/rewards.md has the full map): the settings every
judge shares in ``settings``, the scales in ``scale``, sampling in
``sampler``, the common base in ``base``; each reward with its own arithmetic
in ``perm``, ``peregrm`` and ``rlpa``; the parsers behind the ``parsing``
face. Importing this package registers the built-in rewards (their modules
are imported below).

Formulas, options and defaults: docs/rewards.md.
"""

from attunement.judging.aggregate import (
    Aggregation,
    arithmetic_mean,
    geometric_mean,
    harmonic_mean,
    softmin,
)
from attunement.judging.base import JudgeReward, RewardModel, call_failure
from attunement.judging.criteria import CriteriaConfig, prepare_criteria
from attunement.judging.injections import (
    FENCE_KINDS,
    VERDICT_KINDS,
    fence_marks,
    injection_marks,
    verdict_marks,
)
from attunement.judging.parsing import (
    Parsed,
    parse_bystander,
    parse_criteria,
    parse_rating,
    strip_fenced,
)
from attunement.judging.peregrm import PereGRMConfig, PereGRMReward, peregrm_reward
from attunement.judging.perm import (
    EmpathyReward,
    PermConfig,
    PermReward,
    RewardConfig,
    bystander_penalty,
    length_penalty,
    perm_reward,
    perm_terms,
)
from attunement.judging.registry import (
    RewardSpec,
    load_reward,
    register_reward,
    reward_config,
    reward_names,
)
from attunement.judging.rlpa import RLPAConfig, RLPAReward, rlpa_reward
from attunement.judging.sampler import JudgeSampler, round_seed
from attunement.judging.scale import (
    BYSTANDER_MAX,
    RATING_MAX,
    RATING_MIN,
    Normalization,
    normalize,
)
from attunement.judging.scoring import ScoreSummary, score_dataset, unfinished
from attunement.judging.settings import (
    BystanderOutput,
    CriteriaMode,
    Definitions,
    JudgeContext,
    JudgeSettings,
    LengthOn,
    OutputChoice,
    ResonationOn,
    RewardSettings,
    Unformatted,
    VerdictInReply,
)
from attunement.judging.templates import named_criteria, named_in, named_task
from attunement.judging.tokens import approx_tokens, load_token_counter

__all__ = [
    "BYSTANDER_MAX",
    "FENCE_KINDS",
    "RATING_MAX",
    "RATING_MIN",
    "VERDICT_KINDS",
    "Aggregation",
    "BystanderOutput",
    "CriteriaConfig",
    "CriteriaMode",
    "Definitions",
    "EmpathyReward",
    "JudgeContext",
    "JudgeReward",
    "JudgeSampler",
    "JudgeSettings",
    "LengthOn",
    "Normalization",
    "OutputChoice",
    "Parsed",
    "PereGRMConfig",
    "PereGRMReward",
    "PermConfig",
    "PermReward",
    "RLPAConfig",
    "RLPAReward",
    "ResonationOn",
    "RewardConfig",
    "RewardModel",
    "RewardSettings",
    "RewardSpec",
    "ScoreSummary",
    "Unformatted",
    "VerdictInReply",
    "approx_tokens",
    "arithmetic_mean",
    "bystander_penalty",
    "call_failure",
    "fence_marks",
    "geometric_mean",
    "harmonic_mean",
    "injection_marks",
    "length_penalty",
    "load_reward",
    "load_token_counter",
    "named_criteria",
    "named_in",
    "named_task",
    "normalize",
    "parse_bystander",
    "parse_criteria",
    "parse_rating",
    "peregrm_reward",
    "perm_reward",
    "perm_terms",
    "prepare_criteria",
    "register_reward",
    "reward_config",
    "reward_names",
    "rlpa_reward",
    "round_seed",
    "score_dataset",
    "softmin",
    "strip_fenced",
    "unfinished",
    "verdict_marks",
]
