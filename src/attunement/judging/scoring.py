"""Score a dataset of replies to JSONL: resumable, with a manifest and a summary.

:func:`score_dataset` joins replies to examples by ``example_id``, scores each
group of replies to one example with one ``RewardModel.score`` call, and
appends each :class:`~attunement.records.RewardBreakdown` to the output as
soon as its group is done (flushed per record). Run it again on the same
output and it skips the (example_id, reply_id) pairs already written. The
manifest ``<out>.manifest.json`` records the reward model's configuration,
prompt versions and judge; resuming with a different configuration is
refused rather than mixing two rewards in one file.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from attunement.concurrency import FailedItem, reason_of, run_bounded
from attunement.jsonl import (
    JsonlAppender,
    check_settings,
    drop_records,
    manifest_path,
    read_done_keys,
    read_jsonl,
    write_manifest,
)
from attunement.judging.base import RewardModel, call_failure
from attunement.llm.base import LLMError
from attunement.llm.failures import CallsFailedError, calls_failed, failure_cause
from attunement.records import ALL_DIMENSIONS, Example, Reply, RewardBreakdown, Usage

log = logging.getLogger(__name__)


class ScoreSummary(BaseModel):
    """Totals over every breakdown in the output file (earlier runs included)."""

    reward_model: str
    out: str
    replies: int = Field(description="breakdowns in the output file")
    scored_now: int = Field(description="replies scored by this run")
    resumed: int = Field(description="replies skipped because already in the file")
    scorable: int
    unscorable: int
    reward_mean: float | None
    reward_std: float | None
    dimension_means: dict[str, float | None] = Field(
        description="mean over replies of each dimension's sample mean (judge scale)"
    )
    judgements: int
    failed_judgements: int = Field(description="samples with no valid score (parse or call)")
    resampled_judgements: int = Field(description="samples drawn as re-draws")
    unscorable_reasons: dict[str, int] = Field(default_factory=dict)
    usage: Usage = Field(description="judge usage recorded in the file")
    usage_now: Usage = Field(description="judge usage of this run")
    seconds: float
    failed: list[FailedItem] = Field(
        default_factory=list,
        description="what failed in this run, with the reason: an example whose "
        "scoring raised (by example_id) or a reply whose judge call failed "
        "(example_id:reply_id); not written, so a re-run retries them",
    )
    to_score: int = Field(0, description="replies this run set out to score")
    not_scored: int = Field(0, description="of those, replies not written (failed)")
    retried_old: int = Field(
        0, description="rows of earlier runs whose judge call had failed, taken out to retry"
    )


def unfinished(summary: ScoreSummary) -> CallsFailedError | None:
    """The run's one closing line when judge calls failed (None when none did).

    >>> s = ScoreSummary(reward_model="perm", out="s.jsonl", replies=0, scored_now=0,
    ...     resumed=0, scorable=0, unscorable=0, reward_mean=None, reward_std=None,
    ...     dimension_means={}, judgements=0, failed_judgements=0, resampled_judgements=0,
    ...     usage=Usage(), usage_now=Usage(), seconds=0.0, to_score=4, not_scored=4,
    ...     failed=[FailedItem(key="e1", reason="x", cause="unreachable at U (connection refused)")])
    >>> print(unfinished(s))
    judge unreachable at U (connection refused): 4 of 4 replies not scored; run again to retry
    """
    causes = [f.cause for f in summary.failed if f.cause is not None]
    if not causes:
        return None
    return calls_failed(causes, summary.not_scored, summary.to_score, what="replies not scored")


def join_groups(
    examples: Sequence[Example], replies: Sequence[Reply]
) -> tuple[dict[str, Example], dict[str, list[Reply]]]:
    """Index examples by id and group replies by example id; fail on bad joins."""
    by_id: dict[str, Example] = {}
    for ex in examples:
        if ex.example_id in by_id:
            raise ValueError(f"example id {ex.example_id!r} appears twice")
        by_id[ex.example_id] = ex
    groups: dict[str, list[Reply]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    orphans: list[str] = []
    for r in replies:
        key = (r.example_id, r.reply_id)
        if key in seen:
            raise ValueError(f"reply {r.reply_id!r} of example {r.example_id!r} appears twice")
        seen.add(key)
        if r.example_id not in by_id:
            orphans.append(r.example_id)
            continue
        groups[r.example_id].append(r)
    if orphans:
        unknown = sorted(set(orphans))
        raise ValueError(
            f"{len(orphans)} replies refer to {len(unknown)} unknown example ids "
            f"(e.g. {', '.join(map(repr, unknown[:3]))}); pass the examples file "
            "the replies were generated from"
        )
    return by_id, dict(groups)


def summarize(
    breakdowns: Sequence[RewardBreakdown],
    *,
    reward_model: str,
    out: Path,
    scored_now: int,
    resumed: int,
    usage_now: Usage,
    seconds: float,
) -> ScoreSummary:
    rewards = [b.reward for b in breakdowns if b.reward is not None]
    mean = sum(rewards) / len(rewards) if rewards else None
    std = (
        (sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5 if mean is not None else None
    )
    dims: dict[str, float | None] = {}
    for dim in ALL_DIMENSIONS:
        values = [b.dimensions[dim] for b in breakdowns if b.dimensions.get(dim) is not None]
        if any(dim in b.dimensions for b in breakdowns):
            dims[dim] = sum(values) / len(values) if values else None  # type: ignore[arg-type]
    judgements = [j for b in breakdowns for j in b.judgements]
    reasons = Counter((b.reason or "unknown").split(":")[0] for b in breakdowns if b.unscorable)
    usage = Usage()
    for b in breakdowns:
        usage = usage + b.usage
    return ScoreSummary(
        reward_model=reward_model,
        out=str(out),
        replies=len(breakdowns),
        scored_now=scored_now,
        resumed=resumed,
        scorable=len(rewards),
        unscorable=len(breakdowns) - len(rewards),
        reward_mean=mean,
        reward_std=std,
        dimension_means=dims,
        judgements=len(judgements),
        failed_judgements=sum(1 for j in judgements if j.score is None),
        resampled_judgements=sum(1 for j in judgements if j.attempts > 1),
        unscorable_reasons=dict(reasons),
        usage=usage,
        usage_now=usage_now,
        seconds=round(seconds, 3),
    )


class _Tally:
    """What a scoring run wrote, spent, and left for the next run (and why)."""

    def __init__(self) -> None:
        self.usage = Usage()
        self.scored = 0
        self.not_scored = 0
        self.failed: list[FailedItem] = []

    def keep(self, sink: JsonlAppender, eid: str, breakdowns: list[RewardBreakdown]) -> None:
        """Write the group's results; a reply whose judge call failed is not one."""
        causes = []
        for b in breakdowns:
            self.usage = self.usage + b.usage
            cause = call_failure(b)
            if cause is not None:
                causes.append(cause)
                continue
            sink.write(b)
            self.scored += 1
        if causes:
            reason = f"judge call failed: {causes[0]}"
            self.failed.append(FailedItem(key=eid, reason=reason, cause=causes[0]))
            self.not_scored += len(causes)

    def fail(self, eid: str, exc: BaseException, replies: int) -> None:
        """The whole group raised (after the client's retries)."""
        cause = failure_cause(exc) if isinstance(exc, LLMError) else None
        self.failed.append(FailedItem(key=eid, reason=reason_of(exc), cause=cause))
        log.warning("%s failed: %s", eid, reason_of(exc))
        self.not_scored += replies


async def score_dataset(
    reward: RewardModel,
    examples: list[Example],
    replies: list[Reply],
    out: Path,
    *,
    concurrency: int,
    show_progress: bool | None = None,
) -> ScoreSummary:
    """Score every reply not yet in ``out``; append breakdowns; return a summary.

    ``concurrency`` is the number of groups (examples) scored at once; each
    group launches all of its judge calls together, bounded by the reward
    model's own limit on judge calls in flight.
    """
    out = Path(out)
    by_id, groups = join_groups(examples, replies)
    reward.check_examples([by_id[eid] for eid in groups])
    manifest = reward.manifest()
    check_settings(
        manifest_path(out),
        {"reward": manifest},
        outputs=[out],
        fix="write to a new --out file or delete the old one",
    )
    retried_old = drop_records(out, lambda rec: call_failure(rec) is not None)
    done = read_done_keys(out, lambda rec: (rec["example_id"], rec["reply_id"]))
    todo = {
        eid: [r for r in group if (eid, r.reply_id) not in done] for eid, group in groups.items()
    }
    todo = {eid: group for eid, group in todo.items() if group}
    resumed = sum(len(g) for g in groups.values()) - sum(len(g) for g in todo.values())
    write_manifest(
        manifest_path(out),
        command="score",
        reward=manifest,
        examples=len(by_id),
        replies=len(replies),
        concurrency=concurrency,
    )

    started = time.perf_counter()
    tally = _Tally()
    with JsonlAppender(out) as sink:

        async def score_group(eid: str) -> list[RewardBreakdown]:
            return await reward.score(by_id[eid], todo[eid])

        await run_bounded(
            list(todo),
            score_group,
            limit=concurrency,
            on_result=lambda eid, breakdowns: tally.keep(sink, eid, breakdowns),
            on_failure=lambda eid, exc: tally.fail(eid, exc, len(todo[eid])),
            description=f"scoring ({reward.name})",
            show_progress=show_progress,
        )
    seconds = time.perf_counter() - started
    wanted = {(r.example_id, r.reply_id) for g in groups.values() for r in g}
    breakdowns = [
        b for b in read_jsonl(out, RewardBreakdown) if (b.example_id, b.reply_id) in wanted
    ]
    summary = summarize(
        breakdowns,
        reward_model=reward.name,
        out=out,
        scored_now=tally.scored,
        resumed=resumed,
        usage_now=tally.usage,
        seconds=seconds,
    )
    summary.failed = tally.failed
    summary.to_score = sum(len(g) for g in todo.values())
    summary.not_scored = tally.not_scored
    summary.retried_old = retried_old
    return summary
