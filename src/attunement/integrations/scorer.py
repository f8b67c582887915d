"""Scoring replies that arrive one call at a time, as groups, within a deadline.

:class:`ReplyScorer` is what verl's ``compute_score`` and ``attune serve`` run
for every call. Per call it

1. asks the coordinator which group and criteria round the replies join
   (:mod:`attunement.integrations.coordinator`; the rules are
   :mod:`attunement.integrations.groups`), so every reply of one prompt in one
   step is judged in the same round, whichever worker it reached;
2. tells the shared judge which of the coming requests are the group's
   criteria (:mod:`attunement.integrations.shared_judge`), so they are written
   once for the whole run and read by every other worker;
3. judges the replies within the deadline (``asyncio.wait_for``; a call that
   gives up never cancels the criteria its group mates wait for, because the
   reward shields them);
4. records the rewards with the coordinator and answers each reply with an
   :class:`~attunement.integrations.outcomes.Outcome`: the reward, or the
   fallback for an unscorable reply. ``fallback="group_mean"`` gives the mean
   reward of the group's replies scored so far on any worker (its
   group-normalised advantage is then about zero: GRPO learns nothing from it,
   like TRL's ``None``), or ``fallback_score`` when none is known yet;
   ``fallback="constant"`` always gives ``fallback_score``. Either way the
   reply is flagged (``unscorable=1``) and counted, never disguised.

Every scored call of the training split is also shown to the hacking monitor
(:class:`~attunement.training.monitor.StreamMonitor`, ``ScoringPolicy.monitor``).

The steps are separate methods so that a caller can hook in between (a
monitor reading the breakdowns, another agent loop feeding the replies).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from attunement.integrations.coordinator import Coordinator, GroupTicket, LocalCoordinator
from attunement.integrations.groups import ScoringPolicy
from attunement.integrations.outcomes import Fallback, Outcome, metric_keys
from attunement.integrations.shared_judge import SharedJudge, criteria_prompts
from attunement.judging import RewardModel
from attunement.records import Example, Reply, RewardBreakdown
from attunement.training.monitor import StreamMonitor


@dataclass
class ScorerCounts:
    """Running totals of one scorer (exported as metrics by the server)."""

    replies: int = 0
    unscorable: int = 0
    timed_out: int = 0
    judge_calls: int = 0
    cached_judge_calls: int = 0


class ReplyScorer:
    """Scores replies arriving in per-sample calls, as groups, within a deadline.

    ``coordinator`` is shared by every scorer of the run (default: one of its
    own, in this process); ``shared`` is the judge the reward was built on
    when it shares criteria requests through that coordinator.
    """

    def __init__(
        self,
        reward: RewardModel,
        policy: ScoringPolicy | None = None,
        *,
        coordinator: Coordinator | None = None,
        shared: SharedJudge | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.reward = reward
        self.policy = policy or ScoringPolicy()
        self.clock = clock
        self.coordinator: Coordinator = coordinator or LocalCoordinator.for_policy(
            self.policy, clock=clock
        )
        self.shared = shared
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

    async def join(
        self, example: Example, count: int, *, split: str | None, whole_group: bool
    ) -> GroupTicket:
        """Step 1: the group and round these replies join (the coordinator decides)."""
        key, fixed = self._group_key(example, split)
        return await self.coordinator.join(key, count, fixed, whole_group)

    async def judge(
        self, example: Example, replies: Sequence[Reply], criteria_round: int, budget: float
    ) -> dict[str, RewardBreakdown] | None:
        """Steps 2-3: breakdowns by reply id, or None when the deadline passed first."""
        if self.shared is not None:
            self.shared.share(criteria_prompts(self.reward, example))
        if budget <= 0:
            return None
        try:
            scored = await asyncio.wait_for(
                self.reward.score(example, replies, criteria_round=criteria_round), timeout=budget
            )
        except TimeoutError:
            return None
        return {b.reply_id: b for b in scored}

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
        ticket = await self.join(example, len(replies), split=split, whole_group=whole_group)
        round_ = ticket.criteria_round if criteria_round is None else criteria_round
        budget = (self.policy.deadline if deadline is None else deadline) - (self.clock() - started)
        breakdowns = {
            rid: _failed(example, rid, self.reward.name, why) for rid, why in failed.items()
        }
        judged = [r for r in replies if r.reply_id not in failed]
        timed_out = False
        if judged:
            found = await self.judge(example, judged, round_, budget)
            timed_out = found is None
            breakdowns.update(found or {})
        rewards = [
            b.reward for b in breakdowns.values() if not b.unscorable and b.reward is not None
        ]
        mean = await self.coordinator.record(ticket.key, ticket.generation, rewards)
        outcomes = [
            self._outcome(reply, breakdowns.get(reply.reply_id), mean, round_, timed_out)
            for reply in replies
        ]
        self._count(outcomes)
        if self.monitor is not None and self._group_key(example, split)[1] is None:
            # the training split only
            rewards = [None if o.unscorable else o.score for o in outcomes]
            self.monitor.observe(example, replies, rewards, self.reward)
        return outcomes

    def _outcome(
        self,
        reply: Reply,
        breakdown: RewardBreakdown | None,
        group_mean: float | None,
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
        if self.policy.fallback == "group_mean" and group_mean is not None:
            fallback, value = "group_mean", group_mean
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


def _failed(example: Example, reply_id: str, reward_model: str, reason: str) -> RewardBreakdown:
    """The breakdown of a reply known to be unscorable before judging."""
    return RewardBreakdown(
        example_id=example.example_id,
        reply_id=reply_id,
        reward_model=reward_model,
        reward=None,
        unscorable=True,
        reason=reason,
    )
