"""What a per-sample caller gets for one reply, and under which keys.

verl's ``compute_score`` returns a dict per sample, OpenRLHF's server answer
carries ``extra_logs`` per sample, and both must be numbers under the same keys
for every sample. This module is the one place that names those keys
(:func:`metric_keys`) and fills them (:meth:`Outcome.metrics`).

The keys are fixed by the reward's configuration, identical for scorable and
unscorable replies, because verl takes the keys of the first sample of a batch
and indexes every other sample with them. A value that does not exist (a
dimension the judge could not score, the reward of an unscorable reply) is
written as 0.0 in a row flagged ``unscorable=1``: JSON has no NaN, OpenRLHF
turns every logged value into a tensor (a null would crash it) and both
trainers average these columns per step, where a NaN would hide the whole
step's value while a 0 keeps it recoverable (mean over scorable rows = column
mean / (1 - unscorable rate)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from attunement.judging import RewardConfig, RewardModel
from attunement.records import RewardBreakdown

#: the rule that gave an unscorable reply its number (see ScoringPolicy.fallback)
Fallback = Literal["group_mean", "constant"]

#: keys every scored reply carries, whatever the reward's configuration
BASE_KEYS = (
    "score",
    "reward",
    "unscorable",
    "timed_out",
    "format_ok",
    "criteria_round",
    "judge_calls",
)


def metric_keys(reward: RewardModel) -> tuple[str, ...]:
    """The keys of every scored reply for this reward (fixed by its config).

    >>> from attunement.judging import load_reward
    >>> from attunement.llm import ScriptedChatModel
    >>> metric_keys(load_reward("perm", ScriptedChatModel(outputs=[])))[-5:]
    ('reception', 'bystander', 'r_emp', 'bystander_penalty', 'length_penalty')
    """
    config = getattr(reward, "config", None)
    if not isinstance(config, RewardConfig):
        return BASE_KEYS
    terms = ("r_emp",)
    if config.use_bystander:
        terms += ("bystander_penalty",)
    if config.length_penalty:
        terms += ("length_penalty",)
    return BASE_KEYS + tuple(config.dimensions) + terms


@dataclass(frozen=True)
class Outcome:
    """What a per-sample caller gets for one reply.

    ``score`` is always a number: the reward, or the fallback when the reply is
    unscorable (``breakdown`` then says why, or is ``None`` when the deadline
    passed first). ``fallback`` names the rule that made the number.
    """

    reply_id: str
    score: float
    breakdown: RewardBreakdown | None
    criteria_round: int
    format_ok: bool = True
    timed_out: bool = False
    fallback: Fallback | None = None

    @property
    def unscorable(self) -> bool:
        return self.breakdown is None or self.breakdown.unscorable

    @property
    def reason(self) -> str | None:
        if self.timed_out:
            return "deadline passed before the judge finished"
        return self.breakdown.reason if self.breakdown is not None else None

    def metrics(self, keys: Sequence[str]) -> dict[str, float]:
        """One float per key (0.0 where a value does not exist; see the module docstring)."""
        b = self.breakdown
        known: dict[str, float] = {
            "score": float(self.score),
            "reward": _num(b.reward if b is not None else None),
            "unscorable": float(self.unscorable),
            "timed_out": float(self.timed_out),
            "format_ok": float(self.format_ok),
            "criteria_round": float(self.criteria_round),
            "judge_calls": float(b.usage.calls if b is not None else 0),
        }
        out = {}
        for key in keys:
            if key in known:
                out[key] = known[key]
            elif b is not None and key in b.terms:
                out[key] = float(b.terms[key])
            else:
                out[key] = _num(b.dimensions.get(key) if b is not None else None)
        return out


def _num(value: float | None) -> float:
    return 0.0 if value is None else float(value)
