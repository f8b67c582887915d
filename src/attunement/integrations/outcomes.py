"""What a per-sample caller gets for one reply, and under which keys.

verl's ``compute_score`` returns a dict per sample, OpenRLHF's server answer
carries ``extra_logs`` per sample, and both must be numbers under the same keys
for every sample. This module is the one place that names those keys
(:func:`metric_keys`) and fills them (:meth:`Outcome.metrics`).

The keys are fixed by the reward's configuration, identical for scorable and
unscorable replies, because verl takes the keys of the first sample of a batch
and indexes every other sample with them.

Only ``score`` keeps a plain name (it is what verl and OpenRLHF train on);
every other key carries the prefix :data:`KEY_PREFIX` (``attune/reward``,
``attune/unscorable``, ...), because both trainers put these keys beside
columns of their own: verl's validation keeps its own ``reward`` list and
picks ``acc`` as the headline when present, its agent loop writes the keys
into the batch next to ``uid`` and ``index``, and OpenRLHF writes
``extra_logs`` into the same dict as its ``reward`` and ``score``. A plain
``reward`` key broke verl's validation (a length check on the old trainer, a
doubled headline column on the new one) and overwrote OpenRLHF's logged
reward with ours. A value that does not exist (a
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

#: the key the trainers train on (the reward, or the fallback)
SCORE_KEY = "score"
#: the prefix of every other key, so that none can collide with a trainer's own
KEY_PREFIX = "attune/"
#: fields every scored reply carries, whatever the reward's configuration
BASE_FIELDS = (
    "reward",
    "unscorable",
    "timed_out",
    "format_ok",
    "criteria_round",
    "judge_calls",
    "verdict_in_reply",
)


def key(name: str) -> str:
    """The per-sample key of field ``name``.

    >>> key("unscorable"), key("score")
    ('attune/unscorable', 'score')
    """
    return name if name == SCORE_KEY else KEY_PREFIX + name


def metric_keys(reward: RewardModel) -> tuple[str, ...]:
    """The keys of every scored reply for this reward (fixed by its config).

    >>> from attunement.judging import load_reward
    >>> from attunement.llm import ScriptedChatModel
    >>> metric_keys(load_reward("perm", ScriptedChatModel(outputs=[])))[-3:]
    ('attune/r_emp', 'attune/bystander_penalty', 'attune/length_penalty')
    """
    config = getattr(reward, "config", None)
    fields = BASE_FIELDS
    if isinstance(config, RewardConfig):
        fields += tuple(config.dimensions) + ("r_emp",)
        if config.use_bystander:
            fields += ("bystander_penalty",)
        if config.length_penalty:
            fields += ("length_penalty",)
    return (SCORE_KEY, *(key(f) for f in fields))


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
            SCORE_KEY: float(self.score),
            key("reward"): _num(b.reward if b is not None else None),
            key("unscorable"): float(self.unscorable),
            key("timed_out"): float(self.timed_out),
            key("format_ok"): float(self.format_ok),
            key("criteria_round"): float(self.criteria_round),
            key("judge_calls"): float(b.usage.calls if b is not None else 0),
            key("verdict_in_reply"): float(bool(b is not None and b.verdict_in_reply)),
        }
        out = {}
        for name in keys:
            field = name.removeprefix(KEY_PREFIX)
            if name in known:
                out[name] = known[name]
            elif b is not None and field in b.terms:
                out[name] = float(b.terms[field])
            else:
                out[name] = _num(b.dimensions.get(field) if b is not None else None)
        return out


def _num(value: float | None) -> float:
    return 0.0 if value is None else float(value)
