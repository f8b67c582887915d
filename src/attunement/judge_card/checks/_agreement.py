"""Agreement: does the judge rank replies as a reference judge does?

Spearman over every reply both judges scored, and pairwise agreement over the
pairs of replies to the same example (the comparisons a GRPO group makes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import combinations

from pydantic import BaseModel, Field

from attunement.evaluation.stats import wilson_ci
from attunement.judge_card.checks._measures import (
    TIE_EPS,
    Estimate,
    Key,
    Status,
    spearman,
    value,
)
from attunement.records import RewardBreakdown


class AgreementRow(BaseModel):
    measure: str
    replies: int
    spearman: float | None = Field(description="None when < 3 replies or a side is constant")
    spearman_p: float | None
    pairs: int = Field(description="pairs of replies to the same example")
    agree: int
    disagree: int
    ties: int = Field(description="pairs tied by either judge (left out of the agreement)")
    agreement: Estimate = Field(description="agree / (agree + disagree); Wilson interval")


class Agreement(BaseModel):
    status: Status
    verdict: str
    reference: str | None
    rows: list[AgreementRow]


def _spearman_p(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None]:
    rho = spearman(a, b)
    if rho is None:
        return None, None
    from scipy.stats import spearmanr

    return rho, float(spearmanr(a, b).pvalue)


def agreement_row(
    main: Mapping[Key, RewardBreakdown],
    reference: Mapping[Key, RewardBreakdown],
    keys: Sequence[Key],
    groups: Sequence[Sequence[Key]],
    measure: str,
) -> AgreementRow:
    """One measure's rank correlation over ``keys`` and pairwise agreement within ``groups``."""
    both = [(value(main[k], measure), value(reference[k], measure)) for k in keys]
    pairs_ok = [(a, b) for a, b in both if a is not None and b is not None]
    rho, p = _spearman_p([a for a, _ in pairs_ok], [b for _, b in pairs_ok])
    agree = disagree = ties = 0
    for group in groups:
        for x, y in combinations(group, 2):
            ax, ay = value(main[x], measure), value(main[y], measure)
            bx, by = value(reference[x], measure), value(reference[y], measure)
            if None in (ax, ay, bx, by):
                continue
            da, db = ax - ay, bx - by  # type: ignore[operator]
            if abs(da) <= TIE_EPS or abs(db) <= TIE_EPS:
                ties += 1
            elif (da > 0) == (db > 0):
                agree += 1
            else:
                disagree += 1
    return AgreementRow(
        measure=measure,
        replies=len(pairs_ok),
        spearman=rho,
        spearman_p=p,
        pairs=agree + disagree + ties,
        agree=agree,
        disagree=disagree,
        ties=ties,
        agreement=Estimate.of(wilson_ci(agree, agree + disagree)),
    )


def agreement(
    main: Mapping[Key, RewardBreakdown],
    reference: Mapping[Key, RewardBreakdown],
    measures: Sequence[str],
    *,
    reference_name: str | None,
) -> Agreement:
    """How the judge under test ranks replies compared with a reference judge.

    Spearman over every reply both judges scored; pairwise agreement over the
    pairs of replies to the same example (the comparisons GRPO makes), with
    pairs either judge ties counted apart.
    """
    if reference_name is None:
        return Agreement(status="n/a", verdict="no reference judge given", reference=None, rows=[])
    keys = sorted(set(main) & set(reference))
    by_example: dict[str, list[Key]] = defaultdict(list)
    for k in keys:
        by_example[k[0]].append(k)
    rows = [agreement_row(main, reference, keys, list(by_example.values()), m) for m in measures]
    status, verdict = agreement_verdict(rows[0] if rows else None)
    return Agreement(status=status, verdict=verdict, reference=reference_name, rows=rows)


def agreement_verdict(reward: AgreementRow | None) -> tuple[Status, str]:
    """The reward's pairwise agreement against 50%, with its Spearman named."""
    if reward is None or reward.agree + reward.disagree == 0:
        return "fail", "no pair both judges ordered"
    where = reward.agreement.against(0.5)
    point = reward.agreement.estimate or 0.0
    rho = "n/a" if reward.spearman is None else f"{reward.spearman:.2f}"
    if where == "above chance":
        return "pass", f"ranks like the reference (Spearman {rho})"
    if where == "below chance":
        return "fail", f"ranks against the reference (Spearman {rho})"
    if point > 0.5:
        return "warn", f"agrees weakly with the reference (Spearman {rho})"
    return "fail", f"does not rank like the reference (Spearman {rho})"
