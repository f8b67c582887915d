"""Cost: judge calls, tokens and time per scored reply, against an optional budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field

from attunement.judge_card.checks._measures import Status
from attunement.records import RewardBreakdown, Usage


class Cost(BaseModel):
    status: Status
    verdict: str
    replies: int = Field(description="replies scored by the judge under test, every check")
    usage: Usage
    calls_per_reply: float | None
    prompt_tokens_per_reply: float | None
    completion_tokens_per_reply: float | None
    judge_seconds_per_reply: float | None = Field(
        description="scoring wall time of each group divided by its replies"
    )
    cached_share: float | None = Field(description="judge samples served by the cache")
    scored_now: int = Field(description="replies scored by this run (not resumed)")
    wall_seconds_now: float = Field(description="wall time of this run's scoring")
    wall_seconds_per_reply_now: float | None
    budget_seconds: float | None


def cost(
    files: Mapping[str, Sequence[RewardBreakdown]],
    *,
    scored_now: int,
    wall_seconds_now: float,
    budget_seconds: float | None = None,
) -> Cost:
    """Judge calls, tokens and time per scored reply, over every file of the card.

    Usage is what each breakdown recorded when it was scored (so a resumed card
    still reports the cost of its first run); samples served by the cache cost
    no call and no token and are reported as a share. The replies of one
    ``score`` call (one example in one file) share its wall time, counted once.
    """
    usage = Usage()
    group_seconds: dict[tuple[str, str], float] = {}
    breakdowns = [b for rows in files.values() for b in rows]
    for name, rows in files.items():
        for b in rows:
            usage = usage + b.usage
            group_seconds[(name, b.example_id)] = max(
                group_seconds.get((name, b.example_id), 0.0), b.seconds
            )
    n = len(breakdowns)
    per = (lambda x: x / n) if n else (lambda x: None)
    samples = usage.calls + usage.cached_calls
    judge_seconds = per(sum(group_seconds.values()))
    if budget_seconds is None or judge_seconds is None:
        status: Status = "info" if n else "n/a"
        verdict = (
            f"{judge_seconds:.2f} s of judge time per reply"
            if judge_seconds is not None
            else "nothing scored"
        )
    elif judge_seconds <= budget_seconds:
        status = "pass"
        verdict = f"{judge_seconds:.2f} s per reply, within the {budget_seconds:g} s budget"
    else:
        status = "fail"
        verdict = f"{judge_seconds:.2f} s per reply, over the {budget_seconds:g} s budget"
    return Cost(
        status=status,
        verdict=verdict,
        replies=n,
        usage=usage,
        calls_per_reply=per(usage.calls),
        prompt_tokens_per_reply=per(usage.prompt_tokens),
        completion_tokens_per_reply=per(usage.completion_tokens),
        judge_seconds_per_reply=judge_seconds,
        cached_share=usage.cached_calls / samples if samples else None,
        scored_now=scored_now,
        wall_seconds_now=round(wall_seconds_now, 3),
        wall_seconds_per_reply_now=(wall_seconds_now / scored_now if scored_now else None),
        budget_seconds=budget_seconds,
    )
