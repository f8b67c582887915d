"""Which group, and so which criteria round, a per-sample reward call belongs to.

verl's reward managers call ``compute_score`` once per sample and OpenRLHF
posts one sample per request, while PereGRM's criteria are meant to be written
once per GRPO group and shared by its replies. The group is restored from the
calls themselves:

- the replies of one prompt arrive close together, so a call joins the open
  *group* of its example (:class:`GroupTracker`), and every reply of that group
  is scored in the same ``criteria_round``;
- a group closes after ``group_size`` replies (the trainer's samples per
  prompt), when no reply joined it for ``group_idle`` seconds (60), or
  ``group_window`` seconds (600) after it opened; the next call for that
  example opens a new generation with the next round, so a new training step
  draws fresh criteria. Rows of a validation split always use round 0 (the
  evaluation criteria), so validations stay comparable;
- memory is bounded and sized from the batch: ``prompts_per_step`` x
  ``cache_steps`` groups are remembered (least recently used first out; an
  evicted group that was still open is counted and logged, because an example
  evicted and seen again restarts at round 1);
- every call has a deadline, and a reply the judge could not score in time or
  at all still gets a number (``fallback``), flagged ``unscorable=1``.

The tracker is one per run, not one per process: the coordinator
(:mod:`attunement.integrations.coordinator`) holds it where every reward worker
can ask it, and the scorer (:mod:`attunement.integrations.scorer`) asks it for
each call. What a caller gets for each reply, and under which keys, is
:mod:`attunement.integrations.outcomes`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from attunement.integrations.outcomes import Fallback
from attunement.training.monitor import MonitorSettings

#: rewards of one group remembered for the group-mean fallback
_MAX_GROUP_REWARDS = 1024
#: groups remembered when the batch size is not known (a group is a few numbers)
DEFAULT_MAX_GROUPS = 65536
#: prompts per step assumed for the criteria cache when the batch size is not known
DEFAULT_PROMPTS_PER_STEP = 2048


class ScoringPolicy(BaseModel):
    """How per-sample calls are grouped, bounded in time, and answered on failure."""

    model_config = ConfigDict(extra="forbid")

    deadline: float = Field(
        240.0,
        gt=0,
        description="seconds a call may take, judge "
        "retries included; past it the reply gets the fallback",
    )
    group_size: int | None = Field(
        None,
        ge=1,
        description="replies per prompt (verl "
        "rollout.n, OpenRLHF n_samples_per_prompt): a group "
        "closes when it has them all",
    )
    group_idle: float = Field(
        60.0,
        gt=0,
        description="seconds without a new reply after which an open group closes "
        "(shorter than the time between two training steps)",
    )
    group_window: float = Field(
        600.0,
        gt=0,
        description="seconds after which an open "
        "group closes anyway (the next call opens a new round)",
    )
    prompts_per_step: int | None = Field(
        None,
        ge=1,
        description="prompts per training step (verl data.train_batch_size, OpenRLHF "
        "rollout.batch_size): sizes the group and criteria caches",
    )
    cache_steps: float = Field(
        4.0, ge=1, description="training steps' worth of prompts the caches hold"
    )
    max_groups: int | None = Field(
        None,
        ge=1,
        description="groups remembered (LRU); default prompts_per_step x cache_steps, "
        "or 65,536 when prompts_per_step is not set",
    )
    fallback: Fallback = Field(
        "group_mean",
        description="the number an unscorable reply "
        "gets: its group's mean reward so far, or fallback_score",
    )
    fallback_score: float = Field(
        0.0,
        description="the constant fallback (and the "
        "group-mean fallback when no mate was scored yet)",
    )
    train_split: str = Field(
        "train", description="rows of any other split are judged in criteria round 0"
    )
    monitor: MonitorSettings = Field(
        default_factory=lambda: MonitorSettings(every=640),
        description="the hacking monitor on the training split, every N replies (640: ten "
        "steps of 8 prompts x 8); docs/training.md",
    )
    monitor_log: Path | None = Field(
        None, description="JSONL file the hacking monitor appends each report to"
    )

    def prompts_held(self) -> int:
        """Prompts whose criteria the caches hold: a few steps' worth.

        >>> ScoringPolicy(prompts_per_step=1024).prompts_held()
        4096
        """
        prompts = self.prompts_per_step or DEFAULT_PROMPTS_PER_STEP
        return max(1, round(prompts * self.cache_steps))

    def group_capacity(self) -> int:
        """Groups remembered: ``max_groups``, else sized from the batch.

        >>> ScoringPolicy().group_capacity(), ScoringPolicy(prompts_per_step=1024).group_capacity()
        (65536, 4096)
        """
        if self.max_groups is not None:
            return self.max_groups
        return self.prompts_held() if self.prompts_per_step else DEFAULT_MAX_GROUPS

    def scoring_policy(self) -> ScoringPolicy:
        """Just these fields (a subclass's settings carry more)."""
        return ScoringPolicy.model_validate(
            self.model_dump(include=set(ScoringPolicy.model_fields))
        )


# --------------------------------------------------------------------------- groups


@dataclass
class Group:
    """One generation of replies to one example."""

    key: str
    generation: int
    criteria_round: int
    opened: float
    last_join: float
    members: int = 0
    rewards: list[float] = field(default_factory=list)

    def mean_reward(self) -> float | None:
        return sum(self.rewards) / len(self.rewards) if self.rewards else None

    def add_rewards(self, rewards: Sequence[float]) -> None:
        self.rewards.extend(rewards)
        del self.rewards[:-_MAX_GROUP_REWARDS]


class GroupTracker:
    """Which group (and so which criteria round) a call for an example joins.

    >>> clock = iter([0.0, 1.0, 2.0, 3.0]).__next__
    >>> t = GroupTracker(size=2, idle=30.0, window=60.0, max_groups=8, clock=clock)
    >>> [t.join("ex").criteria_round for _ in range(4)]
    [1, 1, 2, 2]
    """

    def __init__(
        self,
        *,
        size: int | None,
        window: float,
        max_groups: int,
        idle: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_evict: Callable[[Group, bool], None] | None = None,
    ):
        self.size = size
        self.window = window
        self.idle = window if idle is None else idle
        self.max_groups = max_groups
        self.clock = clock
        self.on_evict = on_evict
        self._groups: OrderedDict[str, Group] = OrderedDict()
        #: groups opened so far (for metrics and tests)
        self.opened = 0

    def __len__(self) -> int:
        return len(self._groups)

    def get(self, key: str) -> Group | None:
        return self._groups.get(key)

    def _accepts(self, group: Group, now: float) -> bool:
        if self.size is not None and group.members >= self.size:
            return False
        return now - group.last_join <= self.idle and now - group.opened <= self.window

    def join(
        self, key: str, count: int = 1, *, fixed_round: int | None = None, new: bool = False
    ) -> Group:
        """The group ``count`` replies of example ``key`` belong to, opened if needed
        (``new`` opens the next generation whatever the state of the current one)."""
        now = self.clock()
        group = self._groups.get(key)
        if group is None or new or not self._accepts(group, now):
            generation = group.generation + 1 if group is not None else 1
            group = Group(
                key=key,
                generation=generation,
                opened=now,
                last_join=now,
                criteria_round=generation if fixed_round is None else fixed_round,
            )
            self._groups[key] = group
            self.opened += 1
            while len(self._groups) > self.max_groups:
                _, evicted = self._groups.popitem(last=False)
                if self.on_evict is not None:
                    self.on_evict(evicted, self._accepts(evicted, now))
        self._groups.move_to_end(key)
        group.members += count
        group.last_join = now
        return group
