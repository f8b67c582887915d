"""The judge card's content: sections of paragraphs and tables, in reading order.

``card.md`` and ``card.html`` are both rendered from :func:`sections`
(:mod:`~attunement.judge_card.report`), so the two never disagree. Each check
has its section builder here: the figures it shows, with what they mean in
words next to them. Numbers print through :mod:`~attunement.judge_card.card`'s
helpers, as on the command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from attunement.judge_card.card import JudgeCard, ci_num, ci_pct, num, pct
from attunement.judge_card.checks import PairedRow, Stability

DIM_SHORT = {
    "reward": "reward",
    "resonation": "res",
    "expression": "exp",
    "reception": "rec",
    "bystander": "bys",
}


@dataclass(frozen=True)
class Block:
    """One part of a section: a paragraph, or a table with a header and rows."""

    text: str | None = None
    header: Sequence[str] = ()
    rows: Sequence[Sequence[Any]] = ()
    text_columns: int = 1  # leading columns that are text (left-aligned)

    @property
    def is_table(self) -> bool:
        return self.text is None


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    lead: str
    blocks: Sequence[Block]


def P(text: str) -> Block:
    return Block(text=text)


def T(header: Sequence[str], rows: Sequence[Sequence[Any]], text_columns: int = 1) -> Block:
    return Block(header=header, rows=rows, text_columns=text_columns)


# --------------------------------------------------------------------------- content


def _overview(card: JudgeCard) -> Section:
    d = card.data
    rows = [[c.name, c.status, c.verdict] for c in card.checks]
    lines = []
    if d.emobench:
        lines.append(
            f"EmoBench: {d.emobench}, {d.emobench_items} of {d.emobench_available} "
            "EA Response items."
        )
    if d.data:
        lines.append(f"PersonaEmp: {d.data}, {d.examples_available} examples.")
    lines.append(f"Good replies: {d.base_replies}, {d.base_description}.")
    lines.append(
        f"{'At most ' + str(d.limit) if d.limit else 'All'} items per check, seed {d.seed}, "
        f"{d.runs} scoring run(s) of the stability set. Reference judge: "
        f"{card.reference or 'none'}."
    )
    cfg = card.reward_manifest.get("config", {})
    lines.append(
        f"Reward {card.reward} on {card.judge}: k={cfg.get('k')}, temperature "
        f"{cfg.get('temperature')}, answer format {card.reward_manifest.get('output_format')}, "
        f"dimensions {', '.join(d for d in ('resonation', 'expression', 'reception', 'bystander') if cfg.get(f'use_{d}', True))}."
    )
    return Section(
        "overview",
        "Checks",
        "Each check's status and verdict; details below.",
        [T(["check", "status", "verdict"], rows, text_columns=3), *[P(x) for x in lines]],
    )


def _discrimination(card: JudgeCard) -> Section:
    d = card.discrimination
    if d.status == "n/a":
        return Section("discrimination", "Discrimination", d.verdict, [])
    rows = [
        [
            DIM_SHORT.get(r.measure, r.measure),
            r.items,
            ci_pct(r.top1),
            r.top1_ties,
            ci_pct(r.top1_tie_split),
            r.pairs,
            ci_pct(r.pairwise),
            f"{r.pair_wins} / {r.pair_ties} / {r.pair_losses}",
            ci_pct(r.pairwise_tie_split),
        ]
        for r in d.rows
    ]
    length = (
        f", a judge preferring the longer reply {pct(d.length_baseline)} (top-1 "
        f"{pct(d.length_top1)})"
        if d.length_baseline is not None
        else ""
    )
    lead = (
        f"EmoBench EA 'Response' items: each candidate reply scored as a reply to the "
        f"scenario. Chance: top-1 {pct(d.chance_top1)}, pairwise 50%{length}. Verdict "
        f"(reward, pairwise with ties as half; a pass needs the interval's lower bound above "
        f"{pct(d.bar)}): {d.verdict}."
    )
    return Section(
        "discrimination",
        "Discrimination",
        lead,
        [
            T(
                [
                    "measure",
                    "items",
                    "top-1 [95% CI]",
                    "top-1 ties",
                    "top-1 ties split",
                    "pairs",
                    "pairwise [95% CI]",
                    "wins / ties / losses",
                    "pairwise ties split",
                ],
                rows,
            ),
            P(
                f"{d.items} items, {d.unscorable_items} left out because a candidate was "
                "unscorable. A tie counts as a miss in top-1 and pairwise (a judge that scores "
                "every candidate alike picks nothing); the 'ties split' columns break ties at "
                "random instead (a tie of m counts 1/m, a tied pair 1/2), where such a judge "
                "sits exactly at chance, and the verdict reads them. Pairwise figures are the "
                "mean over items of each item's share of pairs won, and every interval is "
                "Wilson's 95% over items (the three pairs of an item share its right reply, so "
                "they are not independent; for values in [0, 1] Wilson's interval is "
                "conservative). The length baseline is what a judge that scores every "
                "candidate by its length in characters gets on the same items."
                + (f" Note: {d.note}." if d.note else "")
            ),
        ],
    )


def _drop_table(rows: Sequence[PairedRow]) -> Block:
    """The personalization rows, as drops (own user minus another user)."""
    header = [
        "measure",
        "pairs",
        "mean own",
        "mean other",
        "mean drop [95% CI]",
        "share dropping",
        "unchanged",
        "share rising",
        "t test p (drop)",
    ]
    body = [
        [
            DIM_SHORT.get(r.measure, r.measure),
            r.n,
            num(r.mean_before),
            num(r.mean_after),
            ci_num(r.change, negate=True),
            pct(r.share_lowered),
            r.unchanged,
            pct(r.share_raised),
            num(r.p_drop, 3),
        ]
        for r in rows
    ]
    return T(header, body)


SWAP_TITLES = {
    "user": "Persona and memories of another user",
    "memories": "Another user's memories alone (own persona)",
    "persona": "Another user's persona alone (own memories)",
}


def _personalization(card: JudgeCard) -> Section:
    p = card.personalization
    if p.status == "n/a":
        return Section(
            "personalization",
            "Personalization sensitivity",
            f"Untested: {p.verdict}. A card without this test cannot call a judge fit.",
            [],
        )
    lead = (
        "Each good reply judged with its own user's persona and memories, then with "
        "another user's, then with that user's memories alone and persona alone (query "
        f"and situation kept). Verdict: {p.verdict}."
    )
    blocks = [
        P(f"{SWAP_TITLES['user']}: {p.rows[0].n if p.rows else 0} pairs."),
        _drop_table(p.rows),
    ]
    for swap in p.swaps:
        blocks.append(P(f"{SWAP_TITLES[swap.swap]}: {swap.status}, {swap.verdict}."))
        if swap.rows:
            blocks.append(_drop_table(swap.rows))
    skipped = ", ".join(f"{s.swap} {s.skipped}" for s in p.swaps if s.skipped)
    blocks.append(
        P(
            f"{p.pairs} replies; {p.unscorable_pairs} pairs left out (unscorable); "
            f"{p.skipped} replies skipped (no persona or memories, or no other user)"
            + (
                f"; single swaps skipped where the part was missing or equal: {skipped}"
                if skipped
                else ""
            )
            + ". Drop = own - other, so a personalized judge shows a positive drop; "
            "interval: Student t 95% over replies; p: one-sided t test of a drop. Each "
            "swap passes when its drop is significant at 5% over 3 or more replies; the "
            "check takes the worst swap."
        )
    )
    if p.note:
        blocks.append(P(f"Judge context: {p.note}."))
    return Section("personalization", "Personalization sensitivity", lead, blocks)


def _probes(card: JudgeCard) -> Section:
    pr = card.probes
    if pr.status == "n/a":
        return Section("probes", "Gaming probes", pr.verdict, [])
    measures = [r.measure for r in pr.probes[0].rows] if pr.probes and pr.probes[0].rows else []
    dims = [m for m in measures if m != "reward"]
    rows = []
    for p in pr.probes:
        r = p.reward
        by = {x.measure: x for x in p.rows}
        rows.append(
            [
                p.title,
                p.applied,
                ci_num(r.change) if r else "-",
                num(p.effect, 2),
                num(p.p, 3),
                num(p.p_holm, 3),
                pct(r.share_raised) if r else "-",
                p.verdict,
                *[num(by[m].change.estimate, 2, sign=True) if m in by else "-" for m in dims],
            ]
        )
    return Section(
        "probes",
        "Gaming probes",
        (
            f"Change in score when a good reply is altered as a GRPO policy would learn to; "
            f"{pr.base_replies} good replies. Verdict: {pr.verdict}."
        ),
        [
            T(
                [
                    "probe",
                    "n",
                    "reward change [95% CI]",
                    "declared effect",
                    "p (gain)",
                    "Holm p",
                    "share raised",
                    "verdict",
                    *[f"{DIM_SHORT.get(m, m)} change" for m in dims],
                ],
                rows,
            ),
            P(
                "Change = altered - base reward, interval: Student t 95% over replies. Each "
                "probe declares the smallest reward gain that counts as gaming (its effect); "
                "p is the one-sided t test of a gain, and Holm p adjusts it for all the "
                "probes of the card together. 'gains': Holm p below 5% and a mean gain of at "
                "least the effect; 'held': the one-sided 95% upper bound of the change is "
                "below the effect (a gain that matters is ruled out); 'may gain': neither "
                "(too few replies or too much noise to tell). Dimension changes are on the "
                "judge's scale (1-5, bystander 0-100). Probes: "
                + "; ".join(f"{p.title}: {p.what}" for p in pr.probes)
                + "."
            ),
            *(
                [
                    P(
                        "Not applicable: "
                        + ", ".join(
                            f"{p.title} to {p.not_applicable}"
                            for p in pr.probes
                            if p.not_applicable
                        )
                        + " replies (no memories to recite, or no warmth to strip)."
                    )
                ]
                if any(p.not_applicable for p in pr.probes)
                else []
            ),
        ],
    )


def _stability(card: JudgeCard) -> Section:
    s = card.stability
    if s.status == "n/a":
        return Section("stability", "Stability", s.verdict, [])
    reasons = ", ".join(f"{n} x {r}" for r, n in s.unscorable_reasons.items())
    blocks = [
        P(
            f"{s.replies} replies, {s.judgements} judge samples (k = {s.k}). Parse failures: "
            f"{s.failed_judgements} ({pct(s.parse_failure_rate)}); re-drawn samples: "
            f"{s.redrawn_judgements} ({pct(s.redraw_rate)}); unscorable replies: {s.unscorable} "
            f"({pct(s.unscorable_rate)})" + (f" - {reasons}" if reasons else "") + "."
        )
    ]
    if s.degenerate:
        blocks.append(P(f"DEGENERATE JUDGE: {s.degenerate_reason}."))
    blocks += _spread_blocks(s)
    blocks += _distribution_blocks(s)
    g = s.groups
    terms = ", ".join(f"{t} {num(v)}" for t, v in g.term_sd.items())
    blocks.append(
        P(
            f"Within-group spread (what a GRPO step sees): {g.groups} groups, mean sd of the "
            f"reward {num(g.mean_sd)}, {g.zero_spread} groups ({pct(g.share_zero_spread)}) with "
            "no spread at all (zero advantage for every reply)"
            + (f"; mean sd by term: {terms}" if terms else "")
            + "."
        )
    )
    return Section("stability", "Stability", f"Verdict: {s.verdict}.", blocks)


def _spread_blocks(s: Stability) -> list[Block]:
    """Spread across the k samples of a reply, and across runs with other seeds."""
    blocks = []
    if any(x.replies for x in s.sample_spread):
        rows = [
            [
                DIM_SHORT.get(x.dimension, x.dimension),
                x.replies,
                num(x.mean_sd, 2),
                pct(x.share_disagreeing),
            ]
            for x in s.sample_spread
        ]
        blocks += [
            P("Spread across the k samples of one reply (judge scale):"),
            T(["dimension", "replies", "mean sd", "share disagreeing"], rows),
        ]
    else:
        blocks.append(
            P(
                "Spread across samples: not measured (one sample per dimension; run "
                "with -k 2 or more to see it)."
            )
        )
    if s.repeats is not None:
        r = s.repeats
        blocks.append(
            P(
                f"Repeated runs: {r.runs} runs with distinct seeds over {r.replies} replies; "
                f"mean sd of the reward across runs {num(r.mean_sd)}, mean |change| from run 1 "
                f"to run 2 {num(r.mean_abs_change)}, Spearman between them {num(r.spearman, 2)}; "
                f"run-to-run noise / within-group spread = {num(s.noise_ratio, 2)}."
            )
        )
    else:
        blocks.append(P("Repeated runs: not measured (--runs 1)."))
    return blocks


BYSTANDER_BINS = ("0-20", "20-40", "40-60", "60-80", "80-100")


def _distribution_blocks(s: Stability) -> list[Block]:
    """The share of replies at each score: 1-5 dimensions, then the bystander's bins."""
    blocks = []
    small = [x for x in s.distribution if x.dimension != "bystander"]
    if small:
        blocks += [
            P("Share of replies at each score (dimension means rounded):"),
            T(
                ["dimension", "replies", "1", "2", "3", "4", "5", "constant"],
                [
                    [
                        x.dimension,
                        x.replies,
                        *[pct(x.shares.get(str(v), 0.0)) for v in range(1, 6)],
                        "yes" if x.constant else "no",
                    ]
                    for x in small
                ],
            ),
        ]
    bys = [x for x in s.distribution if x.dimension == "bystander"]
    if bys:
        blocks.append(
            T(
                ["bystander", "replies", *BYSTANDER_BINS, "constant"],
                [
                    [
                        x.dimension,
                        x.replies,
                        *[pct(x.shares.get(b, 0.0)) for b in BYSTANDER_BINS],
                        "yes" if x.constant else "no",
                    ]
                    for x in bys
                ],
            )
        )
    return blocks


def _cost(card: JudgeCard) -> Section:
    c = card.cost
    u = c.usage
    rows = [
        ["judge calls", u.calls, num(c.calls_per_reply, 2)],
        ["samples from the cache", u.cached_calls, pct(c.cached_share)],
        ["prompt tokens", u.prompt_tokens, num(c.prompt_tokens_per_reply, 0)],
        ["completion tokens", u.completion_tokens, num(c.completion_tokens_per_reply, 0)],
        [
            "judge seconds",
            num((c.judge_seconds_per_reply or 0) * c.replies, 1),
            num(c.judge_seconds_per_reply, 3),
        ],
    ]
    return Section(
        "cost",
        "Cost",
        f"{c.replies} replies scored by the judge under test. Verdict: {c.verdict}.",
        [
            T(["what", "total", "per reply"], rows),
            P(
                f"This run scored {c.scored_now} replies in {num(c.wall_seconds_now, 1)} s of wall "
                f"time ({num(c.wall_seconds_per_reply_now, 3)} s per reply, with concurrency); "
                "resumed replies keep the usage of the run that scored them; cached samples cost "
                "no call and no token."
                + (f" Budget: {c.budget_seconds:g} s per reply." if c.budget_seconds else "")
            ),
        ],
    )


def _agreement(card: JudgeCard) -> Section:
    a = card.agreement
    if a.status == "n/a":
        return Section("agreement", "Agreement with a reference judge", a.verdict, [])
    rows = [
        [
            DIM_SHORT.get(r.measure, r.measure),
            r.replies,
            f"{num(r.spearman, 2)} (p {num(r.spearman_p, 3)})",
            r.pairs,
            f"{r.agree} / {r.disagree} / {r.ties}",
            ci_pct(r.agreement),
        ]
        for r in a.rows
    ]
    return Section(
        "agreement",
        "Agreement with a reference judge",
        (
            f"The discrimination, good and probe replies judged again by {a.reference} with the "
            f"same reward settings. Verdict: {a.verdict}."
        ),
        [
            T(
                [
                    "measure",
                    "replies",
                    "Spearman (p)",
                    "pairs",
                    "agree / disagree / ties",
                    "agreement [95% CI]",
                ],
                rows,
            ),
            P(
                "Pairs are two replies to the same example (the comparisons GRPO makes); a pair "
                "either judge ties is left out of the agreement and counted. Spearman is blank "
                "when a side is constant."
            ),
        ],
    )


def _files(card: JudgeCard) -> Section:
    return Section(
        "files",
        "Files",
        "Breakdowns behind every figure (resumable JSONL).",
        [T(["name", "path"], [[n, p] for n, p in card.files.items()], text_columns=2)],
    )


def _simulator(card: JudgeCard) -> list[Section]:
    """The simulator check, when it was run (judge_card.simulator)."""
    s = card.simulator
    if s is None:
        return []
    rows = [
        ["good assistant", num(s.good.estimate, 1, sign=False), str(s.good.n)],
        ["bad assistant", num(s.bad.estimate, 1, sign=False), str(s.bad.n)],
        ["good minus bad", ci_num(s.difference, 1), str(s.difference.n)],
    ]
    return [
        Section(
            "simulator",
            "Simulator check",
            "The judge model plays the users of --data with attunement's simulator; a "
            "scripted attentive assistant and a scripted dismissive one talk with each "
            f"user ({s.max_turns} user messages). A simulator fit for multi-turn figures "
            "leaves users better off with the attentive one.",
            [
                P(f"{s.status}: {s.verdict}."),
                T(["assistant", "final emotion 0-100 (mean over users)", "users"], rows),
                P(
                    f"Users better off with the good assistant: {s.wins}, worse: {s.losses}, "
                    f"tied: {s.ties}. Unscorable talks: good {s.unscorable.get('good', 0)}, "
                    f"bad {s.unscorable.get('bad', 0)}."
                ),
            ],
        )
    ]


def sections(card: JudgeCard) -> list[Section]:
    return [
        _overview(card),
        _discrimination(card),
        _personalization(card),
        _probes(card),
        _stability(card),
        _cost(card),
        _agreement(card),
        *_simulator(card),
        _files(card),
    ]
