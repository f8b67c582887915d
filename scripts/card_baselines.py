"""How often the judge card passes, warns or fails a judge that cannot judge.

Two measurements, reported in docs/judge-card.md:

1. ``checks``: the discrimination check alone, on synthetic EmoBench-like items
   (four candidates, the right one the longer in about 58% of pairs, as in
   EmoBench EA), for a judge that scores at random, one that scores by length,
   and one that reads (the right reply's score is one noise sd above the others:
   it wins 76% of pairs), over many seeds. The rule the card used before issue 17 (Wilson over
   the 3n pairs, against 50% only) is written out here to compare; the rule it
   uses now is the library's (:func:`attunement.judge_card.checks.discrimination`).
2. ``cards``: whole cards (PERM, EmoBench only, one run) of the scripted random
   judge of ``tests/card_judges.py`` over seeds: the share of each verdict.
   Run it with ``PYTHONPATH`` pointing at another checkout to measure that
   checkout's card.

    python scripts/card_baselines.py checks --items 40 --seeds 2000
    python scripts/card_baselines.py cards --items 40 --seeds 50
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

from attunement.evaluation.stats import wilson_ci
from attunement.judge_card.checks import ChoiceGroup, discrimination
from attunement.records import RewardBreakdown

RIGHT, OTHERS = (40, 155), (25, 150)  # character lengths: right longer in ~58% of pairs


def items(rng: random.Random, n: int) -> list[tuple[ChoiceGroup, list[int]]]:
    out = []
    for i in range(n):
        lengths = [rng.randint(*RIGHT), *(rng.randint(*OTHERS) for _ in range(3))]
        ids = ("c0", "c1", "c2", "c3")
        out.append((ChoiceGroup(f"e{i}", ids, "c0", lengths=tuple(lengths)), lengths))
    return out


def old_rule(groups, scored) -> str:
    """Before issue 17: Wilson over the 3n pairs (ties as half) against 50% only."""
    wins = pairs = 0.0
    for g in groups:
        right = scored[(g.example_id, g.correct)].reward
        for rid in g.reply_ids:
            if rid != g.correct:
                other = scored[(g.example_id, rid)].reward
                wins += 1.0 if right > other else 0.5 if right == other else 0.0
                pairs += 1
    ci = wilson_ci(wins, int(pairs))  # type: ignore[arg-type]
    if ci.low > 0.5:
        return "pass"
    if ci.high < 0.5:
        return "fail"
    return "warn" if ci.estimate > 0.5 else "fail"


def breakdowns(data, score) -> dict:
    """Every candidate's reward, ``score(is_right, length)``."""
    scored = {}
    for g, lengths in data:
        for rid, length in zip(g.reply_ids, lengths):
            value = score(rid == g.correct, length)
            scored[(g.example_id, rid)] = RewardBreakdown(
                example_id=g.example_id, reply_id=rid, reward_model="sim", reward=value
            )
    return scored


def checks(n_items: int, seeds: int) -> None:
    for judge in ("random", "length", "reading"):
        old, new = Counter(), Counter()
        baselines = []
        for seed in range(seeds):
            rng = random.Random(seed)
            data = items(rng, n_items)
            score = {
                "random": lambda right, n, r=rng: r.random(),
                "length": lambda right, n: float(n),
                "reading": lambda right, n, r=rng: r.gauss(1.0 if right else 0.0, 1.0),
            }[judge]
            scored = breakdowns(data, score)
            groups = [g for g, _ in data]
            old[old_rule(groups, scored)] += 1
            d = discrimination(groups, scored, ["reward"])
            new[d.status] += 1
            baselines.append(d.length_baseline)
        share = lambda c: ", ".join(
            f"{s} {100 * c[s] / seeds:.1f}%" for s in ("pass", "warn", "fail")
        )
        mean_base = sum(baselines) / len(baselines)
        print(f"{judge} judge, {n_items} items, {seeds} seeds (length baseline {mean_base:.0%}):")
        print(f"  before: {share(old)}")
        print(f"  now:    {share(new)}")


def cards(n_items: int, seeds: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from card_judges import random_judge, synthetic_ea

    from attunement.judge_card import CardSettings, load_inputs, run_judge_card
    from attunement.judging import RewardSpec

    verdicts: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        ea = synthetic_ea(Path(tmp) / "ea.jsonl", items=n_items)
        for seed in range(seeds):
            settings = CardSettings(
                out=Path(tmp) / f"card{seed}", emobench=ea, runs=1, seed=seed, plots=False
            )
            spec = RewardSpec(reward="perm", judge="random", overrides={"output": "json"})
            card = asyncio.run(
                run_judge_card(settings, load_inputs(settings), spec, random_judge(seed))
            )
            verdicts[card.verdict] += 1
    print(f"random judge, whole cards, {n_items} items, {seeds} seeds:")
    print("  " + ", ".join(f"{v} {100 * n / seeds:.0f}%" for v, n in verdicts.most_common()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["checks", "cards"])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=2000)
    args = parser.parse_args()
    (checks if args.what == "checks" else cards)(args.items, args.seeds)


if __name__ == "__main__":
    main()
