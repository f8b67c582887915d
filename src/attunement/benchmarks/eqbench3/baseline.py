"""What an EQ-Bench 3 rubric score means: which judge it is comparable under, and what a
judge that scores at random would have given.

A rubric score is the judge's opinion, averaged. Two things are needed to read
one, and the report prints both next to it:

- **the judge.** The leaderboard (eqbench.com) scores with one judge model,
  upstream's default (:data:`LEADERBOARD_JUDGE`); another judge has another
  scale, so a score is comparable with the leaderboard's only under that
  judge (:func:`comparability`).
- **a random judge.** A judge that gives every criterion a uniform 0-20 score
  averages about 50 on 0-100, with a spread that shrinks with the number of
  tasks; a score inside that band cannot be told from noise by the score alone
  (a random judge "scored" 51.8 [48.8, 54.9] over 45 tasks, unflagged).
  :func:`random_judge_baseline` simulates that judge on the run's own tasks
  (the same criteria counted, ``overall_eq`` weighted the same), so the band
  is exact for this run, not a rule of thumb.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from attunement.benchmarks.eqbench3.rubric import OVERALL_EQ, OVERALL_EQ_WEIGHT, SCORE_MAX
from attunement.evaluation.stats import Stat

#: the judge of the EQ-Bench 3 leaderboard (upstream's default judge)
LEADERBOARD_JUDGE = "Claude 3.7 Sonnet"
_SEP = r"[^a-z0-9]*"
_LEADERBOARD_NAME = re.compile(f"claude{_SEP}3{_SEP}7{_SEP}sonnet|claude{_SEP}sonnet{_SEP}3{_SEP}7")


def is_leaderboard_judge(name: str) -> bool:
    """Whether a judge's model name is the leaderboard's judge (any provider's spelling).

    >>> is_leaderboard_judge("anthropic/claude-3.7-sonnet"), is_leaderboard_judge("gpt-4.1")
    (True, False)
    >>> is_leaderboard_judge("openai:http://h/v1#claude-3-7-sonnet-20250219")
    True
    """
    return bool(_LEADERBOARD_NAME.search(name.lower()))


def comparability(judge: str) -> str:
    """One sentence: whether this run's score sits next to the leaderboard's."""
    if is_leaderboard_judge(judge):
        return (
            f"judged by {judge}, the leaderboard's judge ({LEADERBOARD_JUDGE}): comparable with "
            "the EQ-Bench 3 leaderboard's rubric scores (same prompts and criteria)"
        )
    return (
        f"judged by {judge}: comparable with the EQ-Bench 3 leaderboard only under the "
        f"leaderboard's judge, {LEADERBOARD_JUDGE}; compare it with other runs judged by "
        f"{judge} alone"
    )


def random_judge_baseline(
    tasks: Sequence[Collection[str]],
    *,
    draws: int = 20000,
    level: float = 0.95,
    seed: int = 0,
) -> Stat:
    """The rubric score (0-100) of a judge that scores every counted criterion of every
    task uniformly at random in 0-20: its mean and the central ``level`` band over
    ``draws`` simulated runs. ``tasks`` lists each scored task's counted criteria.

    >>> b = random_judge_baseline([list("abcdef")] * 45)  # six criteria counted, 45 tasks
    >>> b.mean, 45 < b.low < 50 < b.high < 55, b.n
    (50.0, True, 45)
    """
    import numpy as np

    if not tasks:
        return Stat(mean=None)
    rng = np.random.default_rng(seed)
    total = np.zeros(draws)
    for criteria in tasks:
        weights = np.array(
            [OVERALL_EQ_WEIGHT if c == OVERALL_EQ else 1 for c in criteria], dtype=float
        )
        scores = rng.integers(0, SCORE_MAX + 1, size=(draws, len(weights)))
        total += (scores @ weights) / weights.sum()
    run = total / len(tasks) * 100 / SCORE_MAX
    alpha = (1 - level) / 2
    low, high = np.quantile(run, [alpha, 1 - alpha])
    return Stat(mean=50.0, low=float(low), high=float(high), n=len(tasks))


def within_random_band(score: Stat, baseline: Stat) -> bool:
    """Whether a score's estimate lies inside the random judge's band."""
    if score.mean is None or baseline.low is None or baseline.high is None:
        return False
    return baseline.low <= score.mean <= baseline.high
