"""The judge cost of an evaluation, so that no number depends on the order of the systems.

A score file records, per reply, what its scoring cost when it was first
scored (``RewardBreakdown.usage``): live calls and tokens, and the samples
the completion cache served. Two things make a per-system sum misleading:

- **shared work.** PereGRM's shared-criteria mode (the k-scaling run) writes
  the criteria of an example once and every system's replies to it reuse
  them; the reward books them on the first reply scored, so whichever system
  came first was charged for all (450 calls against 360 for the same work).
  The k-scaling run is therefore reported as one line per judge for all
  systems together (:func:`shared_cost`), and its tokens per sample are
  pooled over them (:func:`tokens_per_sample`).
- **cached work.** A system whose replies the cache served made no call and
  spent no token in this run, though the work was done. Every line therefore
  also counts the judge samples behind it from the breakdowns themselves
  (``samples``: one per judgement, whoever paid for it), next to the calls and
  tokens actually spent and the samples the cache served.
"""

from __future__ import annotations

from collections.abc import Sequence

from attunement.evaluation.runs import Cost
from attunement.records import RewardBreakdown

#: the label of a cost line that is every system's together
ALL_SYSTEMS = "(all systems)"


def cost_of(
    judge: str, system: str, breakdowns: Sequence[RewardBreakdown], *, what: str = "scoring"
) -> Cost:
    """Usage summed over a score file (re-runs record the original calls).

    ``seconds`` adds up the wall time of each example's group once (every reply of
    a group records the group's time); ``samples`` counts the judgements.
    """
    group_seconds: dict[str, float] = {}
    for b in breakdowns:
        group_seconds[b.example_id] = max(group_seconds.get(b.example_id, 0.0), b.seconds)
    return Cost(
        judge=judge,
        system=system,
        what=what,
        replies=len(breakdowns),
        samples=sum(len(b.judgements) for b in breakdowns),
        calls=sum(b.usage.calls for b in breakdowns),
        cached_calls=sum(b.usage.cached_calls for b in breakdowns),
        prompt_tokens=sum(b.usage.prompt_tokens for b in breakdowns),
        completion_tokens=sum(b.usage.completion_tokens for b in breakdowns),
        seconds=round(sum(group_seconds.values()), 3),
    )


def shared_cost(
    judge: str,
    files: Sequence[Sequence[RewardBreakdown]],
    *,
    what: str,
    shared_samples: int = 0,
) -> Cost:
    """One line for several score files whose work was shared (criteria written once
    for all of them): the sum of their usage, whatever order they were scored in, with
    the shared samples (``shared_samples``) counted once."""
    line = cost_of(judge, ALL_SYSTEMS, [b for rows in files for b in rows], what=what)
    seconds = sum(cost_of(judge, "", rows).seconds for rows in files)
    return line.model_copy(
        update={"samples": line.samples + shared_samples, "seconds": round(seconds, 3)}
    )


def criteria_samples(
    breakdowns: Sequence[RewardBreakdown], dimensions: Sequence[str], k: int
) -> int:
    """Criteria samples behind a shared-criteria run: ``k`` per (example, dimension),
    once, however many systems' replies to the example reused them."""
    return len(dimensions) * k * len({b.example_id for b in breakdowns})


def tokens_per_sample(
    breakdowns: Sequence[RewardBreakdown], dimensions: Sequence[str], k: int
) -> float | None:
    """Tokens actually spent per judge sample over a shared-criteria run of every
    system (scoring samples plus the criteria samples, counted once); ``None`` when
    no token was spent (every sample came from the cache).

    >>> from attunement.records import Judgement, Usage
    >>> b = RewardBreakdown(example_id="e", reply_id="r", reward_model="m", reward=1.0,
    ...     judgements=[Judgement(dimension="expression", score=4)],
    ...     usage=Usage(calls=2, prompt_tokens=30, completion_tokens=10))
    >>> tokens_per_sample([b], ["expression"], 1)
    20.0
    """
    scoring = sum(1 for b in breakdowns for j in b.judgements if j.dimension in dimensions)
    samples = scoring + criteria_samples(breakdowns, dimensions, k)
    tokens = sum(b.usage.prompt_tokens + b.usage.completion_tokens for b in breakdowns)
    return tokens / samples if samples and tokens else None
