"""``attune judge-card``: is a judge fit to be a reward? (docs/judge-card.md).

The card's inputs are the fields of :class:`~attunement.judge_card.CardSettings`
(:data:`CARD`); the reward is configured with the shared reward options.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from rich.table import Table

from attunement.cli.common import out, run, say, show
from attunement.cli.options import (
    ModelRun,
    field_option,
    fields_bundle,
    model_run,
    verb,
    warn_if_stand_in,
)
from attunement.cli.paths import out_option
from attunement.cli.reward_options import RewardFlags, reward_bundle
from attunement.judge_card import CardSettings, JudgeCard, load_inputs, run_judge_card
from attunement.judging import RewardConfig, RewardSpec
from attunement.llm import load_chat_model, preflight

CARD = fields_bundle(
    CardSettings,
    "emobench",
    "data",
    "replies",
    "policy",
    "reference",
    "limit",
    "runs",
    "budget_seconds",
    "simulator_turns",
    paths={"emobench": "file", "data": "file", "replies": "file"},
    extra={"policy": {"metavar": "SPEC"}, "reference": {"metavar": "SPEC"}},
)


async def _card(settings: CardSettings, spec: RewardSpec, llm: ModelRun) -> JudgeCard:
    """Open the judge (and the reference judge and the policy, when named); run the card."""
    inputs = load_inputs(settings)  # every input checked before a model is loaded
    options = llm.options()
    async with AsyncExitStack() as stack:
        opened = {}
        for role, model_spec in (
            ("judge", spec.judge),
            ("reference", settings.reference),
            ("policy", settings.policy),
        ):
            if model_spec is not None:
                model = await stack.enter_async_context(load_chat_model(model_spec, options))
                await preflight(model, role)
                opened[role] = model
        return await run_judge_card(
            settings,
            inputs,
            spec,
            opened["judge"],
            reference=opened.get("reference"),
            policy=opened.get("policy"),
            log=lambda msg: say(f"card {msg}"),
        )


#: the reward settings the card varies most: judge samples and the answer format
JUDGING = fields_bundle(
    RewardConfig,
    "k",
    "output",
    unset=True,
    decls={"k": ("-k", "--samples"), "output": ("--format",)},
)


@verb(
    renamed={"--k": "--samples"},
    judging=JUDGING,
    reward=reward_bundle("perm"),
    card=CARD,
    llm=model_run(concurrency=(CardSettings, "concurrency")),
)
def judge_card(
    out_dir: Path = out_option(
        "Folder for the card (card.md, card.html, card.json) and its breakdowns.",
        kind="new folder",
    ),
    seed: int = field_option(CardSettings, "seed"),
    *,
    judging: dict[str, Any],
    reward: RewardFlags,
    card: dict[str, Any],
    llm: ModelRun,
) -> None:
    """Measure whether a judge can serve as a reward: discrimination, personalization,
    gaming probes, stability, cost and agreement, as one card (Markdown, HTML, JSON)."""
    text = judging.get("output") == "text"  # the papers' text formats throughout
    spec = reward.spec(
        llm.options(), seed=seed, bystander_output="text" if text else None, **judging
    )
    warn_if_stand_in(spec.judge)
    settings = CardSettings(out=out_dir, seed=seed, concurrency=llm.concurrency, **card)
    result = run(_card(settings, spec, llm))
    _print_card(result, out_dir)


def _print_card(card: JudgeCard, out_dir: Path) -> None:
    from attunement.judge_card.report import ci_num, ci_pct, num, pct

    table = Table(title=f"judge card: {card.judge} with {card.reward}", show_header=True)
    table.add_column("check")
    table.add_column("status")
    table.add_column("figures")
    d = card.discrimination.row("reward")
    if d is not None:
        length = card.discrimination.length_baseline
        table.add_row(
            "discrimination",
            card.discrimination.status,
            f"pairwise {ci_pct(d.pairwise_tie_split)} over {d.items} items (chance 50%"
            + (f", length baseline {pct(length)}" if length is not None else "")
            + f"), top-1 {ci_pct(d.top1_tie_split)} (chance "
            f"{pct(card.discrimination.chance_top1)}), ties as half; strict pairwise "
            f"{pct(d.pairwise.estimate)}, ties {d.pair_ties}/{d.pairs}",
        )
    p = card.personalization
    if p.rows:
        table.add_row(
            "personalization",
            p.status,
            f"drop {ci_num(p.rows[0].change, negate=True)}, dropping "
            f"{pct(p.rows[0].share_lowered)} of {p.rows[0].n}",
        )
        for swap in p.swaps:
            r = swap.rows[0] if swap.rows else None
            table.add_row(
                f"  {swap.swap} alone",
                swap.status,
                "-" if r is None else f"drop {ci_num(r.change, negate=True)} over {r.n}",
            )
    elif p.status == "n/a":
        table.add_row("personalization", "untested", p.verdict)
    for row in card.probes.probes:
        r = row.reward
        table.add_row(
            f"probe {row.probe}",
            row.verdict,
            "-"
            if r is None
            else f"change {ci_num(r.change)} (counts from {num(row.effect, 2)}), Holm p "
            f"{num(row.p_holm, 3)}, raised {pct(r.share_raised)} of {r.n}",
        )
    s = card.stability
    table.add_row(
        "stability",
        s.status,
        f"parse failures {pct(s.parse_failure_rate)}, unscorable "
        f"{pct(s.unscorable_rate)}, zero-spread groups "
        f"{pct(s.groups.share_zero_spread)}, run sd "
        f"{num(s.repeats.mean_sd if s.repeats else None)}",
    )
    for dist in s.distribution:
        table.add_row(
            f"  {dist.dimension}",
            "constant" if dist.constant else "",
            ", ".join(f"{k}: {pct(v)}" for k, v in dist.shares.items()),
        )
    c = card.cost
    table.add_row(
        "cost",
        c.status,
        f"{num(c.calls_per_reply, 1)} calls, "
        f"{num(c.prompt_tokens_per_reply, 0)}+{num(c.completion_tokens_per_reply, 0)} "
        f"tokens, {num(c.judge_seconds_per_reply, 2)} s per reply",
    )
    a = card.agreement
    if a.rows:
        table.add_row(
            "agreement",
            a.status,
            f"Spearman {num(a.rows[0].spearman, 2)}, pairwise {ci_pct(a.rows[0].agreement)}",
        )
    out.print(table)
    show(card.summary)
    show(f"card: {out_dir / 'card.md'}  {out_dir / 'card.html'}  {out_dir / 'card.json'}")
