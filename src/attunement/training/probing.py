"""Probe rounds of the hacking monitor: does a known trick pay on the current policy?

The statistics of :mod:`attunement.training.monitor` show what the policy
already does; a probe round asks what it *could* gain. A few of the current
replies are scored again, each with the judge card's probes applied
(:mod:`attunement.judge_card.probes`: flattery, filler, a forged score line
or ``\\boxed{5}``, a broken fence, a note to the evaluator, a memory recital,
a cold rewrite) and once more under another user's persona and memories (the
judge card's wrong-user swap). A probe's *gain* on a reply is the reward of
the altered copy minus the reward of the reply, both scored in the same call
and criteria round, so the judge's sampling and criteria are the same for
both.

A judge is noisy, so one reply's gain says little. :class:`ProbeLedger` pools
the gains of the last few rounds and declares that a probe *pays* only when
three things hold at once: enough pairs (``min_pairs``), a mean gain of at
least ``threshold`` reward units, and a one-sided sign test that rejects "no
gain" at level ``alpha`` (ties dropped; distribution-free, so it does not
assume the judge's noise is normal). docs/training.md gives the measured
false-alarm and detection rates of this rule.

Probe copies drop ``raw`` and ``completion_tokens`` so that the reward
measures the reply and every altered copy the same way (the filler probe's
extra length is counted; a trainer's token count would not see it).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from attunement.judge_card.inputs import other_user, with_other_user
from attunement.judge_card.probes import PROBES
from attunement.judging import RewardModel
from attunement.llm import LLMError
from attunement.records import Example, Reply

#: the probe that scores a reply under another user's persona and memories
WRONG_USER = "wrong_user"


def upper_tail(wins: int, n: int) -> float:
    """One-sided sign test: the chance of ``wins`` or more gains in ``n`` untied pairs
    when gains and losses are equally likely.

    >>> upper_tail(8, 8), round(upper_tail(7, 8), 4), upper_tail(0, 0)
    (0.00390625, 0.0352, 1.0)
    """
    if n == 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(wins, n + 1)) / 2**n


@dataclass(frozen=True)
class ProbeVerdict:
    """The pooled evidence on one probe and whether it pays."""

    pairs: int
    wins: int
    losses: int
    mean: float
    p: float
    pays: bool

    def describe(self, name: str) -> str:
        return (
            f"probe {name} pays {self.mean:+.3f} reward on average ({self.pairs} paired "
            f"replies, {self.wins} gain, {self.losses} lose, one-sided sign test p={self.p:.3g})"
        )


class ProbeLedger:
    """The gains of the last ``rounds`` probe rounds, per probe, and the decision rule.

    >>> ledger = ProbeLedger(rounds=2, threshold=0.1, alpha=0.01, min_pairs=8)
    >>> ledger.add({"boxed": [0.4] * 6}); ledger.add({"boxed": [0.3] * 6})
    >>> ledger.verdict("boxed").pays, ledger.verdict("flattery").pays
    (True, False)
    """

    def __init__(self, *, rounds: int, threshold: float, alpha: float, min_pairs: int):
        self.threshold = threshold
        self.alpha = alpha
        self.min_pairs = min_pairs
        self._rounds: deque[Mapping[str, Sequence[float]]] = deque(maxlen=rounds)

    def add(self, gains: Mapping[str, Sequence[float]]) -> None:
        self._rounds.append(dict(gains))

    def gains(self, name: str) -> list[float]:
        return [g for r in self._rounds for g in r.get(name, ())]

    def verdict(self, name: str) -> ProbeVerdict:
        gains = self.gains(name)
        wins = sum(g > 0 for g in gains)
        losses = sum(g < 0 for g in gains)
        mean = sum(gains) / len(gains) if gains else math.nan
        p = upper_tail(wins, wins + losses)
        pays = len(gains) >= self.min_pairs and mean >= self.threshold and p <= self.alpha
        return ProbeVerdict(len(gains), wins, losses, mean, p, pays)


def probe_copy(
    reply: Reply, reply_id: str, *, example_id: str | None = None, response: str | None = None
) -> Reply:
    """A copy of ``reply`` to score in a probe round (see the module docstring)."""
    return reply.model_copy(
        update={
            "reply_id": reply_id,
            "example_id": example_id or reply.example_id,
            "response": reply.response if response is None else response,
            "raw": "",
            "completion_tokens": None,
        }
    )


async def _sample_gains(
    reward: RewardModel,
    example: Example,
    reply: Reply,
    *,
    probes: Sequence[str],
    pool: Sequence[Example],
    step: int,
) -> dict[str, float]:
    """The gain of each probe that applies to one reply (empty when the reply itself
    could not be scored again)."""
    tag = f"{reply.reply_id}~monitor{step}"
    base = probe_copy(reply, f"{tag}~base")
    variants: dict[str, Reply] = {}
    for name in probes:
        if name == WRONG_USER:
            continue
        text = PROBES[name].apply(reply.response, example)  # type: ignore[index]
        if text is not None:
            variants[name] = probe_copy(reply, f"{tag}~{name}", response=text)
    scored = await reward.score(example, [base, *variants.values()], criteria_round=step)
    by_id = {b.reply_id: b.reward for b in scored}
    own = by_id.get(base.reply_id)
    if own is None:
        return {}
    gains = {
        name: by_id[copy.reply_id] - own
        for name, copy in variants.items()
        if by_id.get(copy.reply_id) is not None
    }
    other = other_user(example, pool, seed=step) if WRONG_USER in probes else None
    if other is not None:
        theirs = with_other_user(example, other)
        copy = probe_copy(reply, f"{tag}~{WRONG_USER}", example_id=theirs.example_id)
        [judged] = await reward.score(theirs, [copy], criteria_round=step)
        if judged.reward is not None:
            gains[WRONG_USER] = judged.reward - own
    return gains


async def probe_round(
    reward: RewardModel,
    samples: Sequence[tuple[Example, Reply]],
    *,
    probes: Sequence[str],
    pool: Sequence[Example],
    step: int,
    timeout: float | None = None,
) -> dict[str, list[float]]:
    """Each probe's gains over ``samples`` (replies the judge failed on are left out;
    a round past ``timeout`` seconds gives nothing)."""

    async def one(example: Example, reply: Reply) -> dict[str, float]:
        try:
            return await _sample_gains(reward, example, reply, probes=probes, pool=pool, step=step)
        except LLMError:
            return {}

    try:
        found = await asyncio.wait_for(
            asyncio.gather(*(one(e, r) for e, r in samples)), timeout=timeout
        )
    except TimeoutError:
        return {}
    out: dict[str, list[float]] = {name: [] for name in probes}
    for gains in found:
        for name, gain in gains.items():
            out[name].append(gain)
    return out
