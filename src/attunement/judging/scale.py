"""The judges' scales, defined once.

Every number a judge gives is read against one of two scales, and the
parsers, the JSON schemas sent to judges, the normalisation and the docs all
take them from here:

- an empathy **rating**: one whole number from :data:`RATING_MIN` to
  :data:`RATING_MAX` (1-5, both papers), normalised to [0, 1] by
  :func:`normalize` in one of two ways (:data:`Normalization`);
- the **bystander**: five sub-scores (:data:`BYSTANDER_PARTS`), each a whole
  number from 0 to :data:`BYSTANDER_PART_MAX`, whose sum (0 to
  :data:`BYSTANDER_MAX`) is divided by :data:`BYSTANDER_MAX`.

The prompts state the same scales in words; tests/test_judging_scale.py checks
that the prompt files and docs/rewards.md agree with these numbers.
"""

from __future__ import annotations

from typing import Literal, get_args

#: the lowest and highest empathy rating (PERM's and PereGRM's judges)
RATING_MIN = 1
RATING_MAX = 5
#: one whole-number rating, as JSON answers are validated and their schemas generated
Rating = Literal[tuple(range(RATING_MIN, RATING_MAX + 1))]  # type: ignore[valid-type]

#: the bystander's five sub-scores (key, label, pattern that finds the label in text)
BYSTANDER_PARTS: tuple[tuple[str, str, str], ...] = (
    ("content_effectiveness", "Content effectiveness", r"content\s+effectiveness"),
    ("logical_clarity", "Logical structure and clarity", r"logical\s+structure"),
    ("communication_efficiency", "Communication efficiency", r"communication\s+efficiency"),
    ("objectivity", "Objectivity and neutrality", r"objectivity"),
    ("accuracy", "Information accuracy and verifiability", r"(?:information\s+)?accuracy"),
)
BYSTANDER_KEYS = tuple(key for key, _, _ in BYSTANDER_PARTS)
#: the highest bystander sub-score, and the highest total
BYSTANDER_PART_MAX = 20
BYSTANDER_MAX = BYSTANDER_PART_MAX * len(BYSTANDER_PARTS)
#: one whole-number bystander sub-score
Part = Literal[tuple(range(BYSTANDER_PART_MAX + 1))]  # type: ignore[valid-type]

#: how a rating becomes a number in [0, 1]
Normalization = Literal["max", "minmax"]
NORMALIZATIONS: tuple[Normalization, ...] = get_args(Normalization)


def normalize(
    score: float,
    *,
    low: float = RATING_MIN,
    high: float = RATING_MAX,
    method: Normalization = "max",
) -> float:
    """Map a judge score to [0, 1]: ``"max"`` divides by the top of the scale (the
    authors' code, so the lowest rating is not 0), ``"minmax"`` maps the scale
    onto [0, 1] (the paper's words).

    >>> normalize(4), normalize(4, method="minmax"), normalize(1), normalize(1, method="minmax")
    (0.8, 0.75, 0.2, 0.0)
    """
    if not low <= score <= high:
        raise ValueError(f"score {score} is outside {low}-{high}")
    if method == "max":
        return score / high
    if method == "minmax":
        return (score - low) / (high - low)
    raise ValueError(f"unknown normalization {method!r}; expected one of {NORMALIZATIONS}")


def normalize_bystander(total: float) -> float:
    """The bystander's total as a share of the best possible one.

    >>> normalize_bystander(72)
    0.72
    """
    return normalize(total, low=0, high=BYSTANDER_MAX)
