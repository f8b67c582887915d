"""The judge card's figures, computed from breakdowns alone.

Every function here is pure: it takes :class:`~attunement.records.RewardBreakdown`
records (already scored, read back from the card's JSONL files) and the way
they pair up, and returns a pydantic result with its figures and a status.
Nothing here calls a model, so each rule can be checked by hand on a few
numbers, and a card can be recomputed from its files without a judge.

One module per check, each with the statistic and its verdict as separate
functions, so a threshold or a method changes in one visible place:

- :mod:`~attunement.judge_card.checks._measures`: keys, measures, estimates,
  statuses and the paired changes two checks share;
- :mod:`~attunement.judge_card.checks._discrimination`,
  :mod:`~attunement.judge_card.checks._personalization`,
  :mod:`~attunement.judge_card.checks._probes`,
  :mod:`~attunement.judge_card.checks._stability`,
  :mod:`~attunement.judge_card.checks._cost`,
  :mod:`~attunement.judge_card.checks._agreement`.

The thresholds are rules of thumb, each written next to its figure in
docs/judge-card.md.
"""

from attunement.judge_card.checks._agreement import Agreement, AgreementRow, agreement
from attunement.judge_card.checks._cost import Cost, cost
from attunement.judge_card.checks._discrimination import (
    ChoiceGroup,
    Discrimination,
    DiscriminationRow,
    discrimination,
    fractional_wilson,
    length_baseline,
)
from attunement.judge_card.checks._measures import (
    Estimate,
    Key,
    PairedRow,
    Status,
    key_of,
    measures_of,
    paired_rows,
    t_test,
    value,
)
from attunement.judge_card.checks._personalization import (
    SWAPS,
    Personalization,
    Swap,
    SwapName,
    personalization,
)
from attunement.judge_card.checks._probes import ProbeRow, Probes, ProbeSet, probe_verdict, probes
from attunement.judge_card.checks._stability import (
    Distribution,
    GroupSpread,
    Repeats,
    SampleSpread,
    Stability,
    distribution,
    group_spread,
    repeats,
    sample_spread,
    stability,
)

__all__ = [
    "SWAPS",
    "Agreement",
    "AgreementRow",
    "ChoiceGroup",
    "Cost",
    "Discrimination",
    "DiscriminationRow",
    "Distribution",
    "Estimate",
    "GroupSpread",
    "Key",
    "PairedRow",
    "Personalization",
    "ProbeRow",
    "ProbeSet",
    "Probes",
    "Repeats",
    "SampleSpread",
    "Stability",
    "Status",
    "Swap",
    "SwapName",
    "agreement",
    "cost",
    "discrimination",
    "distribution",
    "fractional_wilson",
    "group_spread",
    "key_of",
    "length_baseline",
    "measures_of",
    "paired_rows",
    "personalization",
    "probe_verdict",
    "probes",
    "repeats",
    "sample_spread",
    "stability",
    "t_test",
    "value",
]
