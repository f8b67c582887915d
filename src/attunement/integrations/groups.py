"""Scoring replies one call at a time, for trainers that call a reward per sample.

verl's reward managers call ``compute_score`` once per sample and OpenRLHF
posts one sample per request, while PereGRM's criteria are meant to be written
once per GRPO group and shared by its replies. :class:`ReplyScorer` restores the
group from the calls themselves:

- the replies of one prompt arrive close together, so a call joins the open
  *group* of its example (:class:`GroupTracker`), and every reply of that group
  is scored in the same ``criteria_round``. The reward model's own memo then
  hands the concurrent calls one in-flight criteria request
  (:mod:`attunement.judging.peregrm`), so criteria are written once per group;
- a group closes after ``group_size`` replies (the trainer's samples per
  prompt), when no reply joined it for ``group_idle`` seconds (60), or
  ``group_window`` seconds (600) after it opened; the next call for that
  example opens a new generation with the next round, so a new training step
  draws fresh criteria. Rows of a validation split always use round 0 (the
  evaluation criteria), so validations stay comparable;
- memory is bounded: at most ``max_groups`` groups are remembered (least
  recently used first out). An example evicted and seen again restarts at
  round 1;
- every call has a deadline. A reply the judge could not score in time, or at
  all, still gets a number, because neither trainer accepts a missing reward:
  ``fallback="group_mean"`` gives the mean reward of the replies of its group
  scored so far (so its group-normalised advantage is about zero: GRPO learns
  nothing from it, like TRL's ``None``), or ``fallback_score`` when none is
  known yet; ``fallback="constant"`` always gives ``fallback_score``. Either
  way the reply is flagged (``unscorable=1``) and counted, never disguised.

What a caller gets for each reply, and under which keys, is
:mod:`attunement.integrations.outcomes`. Every scored call of the training
split is also shown to the hacking monitor
(:class:`~attunement.training.monitor.StreamMonitor`, ``ScoringPolicy.monitor``).

One :class:`ReplyScorer` per event loop; it is not thread-safe.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from attunement.integrations.outcomes import Fallback, Outcome, metric_keys
from attunement.judging import RewardModel
from attunement.records import Example, Reply, RewardBreakdown
from attunement.training import MonitorSettings, StreamMonitor

#: rewards of one group remembered for the group-mean fallback
_MAX_GROUP_REWARDS = 1024


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
    max_groups: int = Field(65536, ge=1, description="groups remembered (LRU)")
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
    ):
        self.size = size
        self.window = window
        self.idle = window if idle is None else idle
        self.max_groups = max_groups
        self.clock = clock
        self._groups: OrderedDict[str, Group] = OrderedDict()
        #: groups opened so far (for metrics and tests)
        self.opened = 0

    def __len__(self) -> int:
        return len(self._groups)

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
                self._groups.popitem(last=False)
        self._groups.move_to_end(key)
        group.members += count
        group.last_join = now
        return group


# --------------------------------------------------------------------------- the scorer


@dataclass
class ScorerCounts:
    """Running totals of one scorer (exported as metrics by the server)."""

    replies: int = 0
    unscorable: int = 0
    timed_out: int = 0
    judge_calls: int = 0
    cached_judge_calls: int = 0


class ReplyScorer:
    """Scores replies arriving in per-sample calls, as groups, within a deadline."""

    def __init__(
        self,
        reward: RewardModel,
        policy: ScoringPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.reward = reward
        self.policy = policy or ScoringPolicy()
        self.clock = clock
        self.tracker = GroupTracker(
            size=self.policy.group_size,
            window=self.policy.group_window,
            idle=self.policy.group_idle,
            max_groups=self.policy.max_groups,
            clock=clock,
        )
        self.keys = metric_keys(reward)
        self.counts = ScorerCounts()
        watch = self.policy.monitor
        self.monitor = (
            StreamMonitor(
                watch,
                log=str(self.policy.monitor_log) if self.policy.monitor_log else None,
                timeout=self.policy.deadline,
            )
            if watch.every
            else None
        )

    def check(self, example: Example) -> None:
        """Raise ``ValueError`` if the reward cannot score this example at all."""
        self.reward.check_examples([example])

    def _group_key(self, example: Example, split: str | None) -> tuple[str, int | None]:
        if split is None or split == self.policy.train_split:
            return example.example_id, None
        return f"{split}\x00{example.example_id}", 0

    async def score(
        self,
        example: Example,
        replies: Sequence[Reply],
        *,
        split: str | None = None,
        criteria_round: int | None = None,
        deadline: float | None = None,
        whole_group: bool = False,
        failed: Mapping[str, str] | None = None,
    ) -> list[Outcome]:
        """One :class:`Outcome` per reply, in order, within ``deadline`` seconds.

        ``criteria_round`` overrides the group's round (a trainer that knows its
        step passes it). ``whole_group`` says the replies are a complete group
        (a new generation opens for them). ``failed`` maps the ids of replies
        known to be unscorable before judging (e.g. no response found) to the
        reason; they get the fallback without a judge call. Raises
        ``ValueError`` for an example the reward cannot score (e.g. missing
        fixed criteria), before any judge call.
        """
        if not replies:
            return []
        self.check(example)
        started = self.clock()
        failed = failed or {}
        key, fixed = self._group_key(example, split)
        group = self.tracker.join(key, len(replies), fixed_round=fixed, new=whole_group)
        round_ = group.criteria_round if criteria_round is None else criteria_round
        budget = (self.policy.deadline if deadline is None else deadline) - (self.clock() - started)
        breakdowns = {
            rid: RewardBreakdown(
                example_id=example.example_id,
                reply_id=rid,
                reward_model=self.reward.name,
                reward=None,
                unscorable=True,
                reason=reason,
            )
            for rid, reason in failed.items()
        }
        judged = [r for r in replies if r.reply_id not in failed]
        timed_out = False
        try:
            if judged:
                if budget <= 0:
                    raise TimeoutError
                scored = await asyncio.wait_for(
                    self.reward.score(example, judged, criteria_round=round_), timeout=budget
                )
                breakdowns.update((b.reply_id, b) for b in scored)
        except TimeoutError:
            timed_out = True
        for b in breakdowns.values():
            if not b.unscorable and b.reward is not None:
                group.rewards.append(b.reward)
                del group.rewards[:-_MAX_GROUP_REWARDS]
        outcomes = [
            self._outcome(reply, breakdowns.get(reply.reply_id), group, round_, timed_out)
            for reply in replies
        ]
        self._count(outcomes)
        if self.monitor is not None and fixed is None:  # the training split only
            rewards = [None if o.unscorable else o.score for o in outcomes]
            self.monitor.observe(example, replies, rewards, self.reward)
        return outcomes

    def _outcome(
        self,
        reply: Reply,
        breakdown: RewardBreakdown | None,
        group: Group,
        round_: int,
        timed_out: bool,
    ) -> Outcome:
        if breakdown is not None and not breakdown.unscorable and breakdown.reward is not None:
            return Outcome(
                reply_id=reply.reply_id,
                score=breakdown.reward,
                breakdown=breakdown,
                criteria_round=round_,
                format_ok=reply.format_ok,
            )
        fallback: Fallback = "constant"
        value = self.policy.fallback_score
        if self.policy.fallback == "group_mean":
            mean = group.mean_reward()
            if mean is not None:
                fallback, value = "group_mean", mean
        return Outcome(
            reply_id=reply.reply_id,
            score=value,
            breakdown=breakdown,
            criteria_round=round_,
            format_ok=reply.format_ok,
            timed_out=timed_out and breakdown is None,
            fallback=fallback,
        )

    def _count(self, outcomes: Sequence[Outcome]) -> None:
        c = self.counts
        for o in outcomes:
            c.replies += 1
            c.unscorable += int(o.unscorable)
            c.timed_out += int(o.timed_out)
            if o.breakdown is not None:
                c.judge_calls += o.breakdown.usage.calls
                c.cached_judge_calls += o.breakdown.usage.cached_calls
