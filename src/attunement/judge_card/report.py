"""The judge card as files: ``card.json`` (every figure), ``card.md`` and ``card.html``.

Markdown and HTML are built from the same rows (:func:`sections`), so the two
never disagree; the HTML uses the shared page style of
:mod:`attunement.evaluation.html` (the evaluation report's), with the two plots
(score distribution, probe changes) when matplotlib is installed. Numbers are
printed by :mod:`attunement.judge_card.card`'s helpers (``pct``, ``num``,
``ci_pct``, ``ci_num``), the same the command line prints with.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attunement.evaluation import html as H
from attunement.evaluation import plots
from attunement.evaluation.reporting import md_table, write_page
from attunement.judge_card.card import JudgeCard, ci_num, ci_pct, num, pct
from attunement.judge_card.checks import PairedRow, Stability

#: ci_num, ci_pct, num and pct stay importable from here (the command line prints with them)
__all__ = ["ci_num", "ci_pct", "num", "pct", "render_html", "render_markdown", "write_card"]

STATUS_CLASS = {
    "pass": "good",
    "warn": "warn",
    "fail": "bad",
    "info": "",
    "n/a": "",
    "held": "good",
    "may gain": "warn",
    "gains": "bad",
}
VERDICT_COLOURS = {"gains": "#a33a2b", "may gain": "#8a6100", "held": "#1f7a3f"}
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
    lead = (
        f"EmoBench EA 'Response' items: each candidate reply scored as a reply to the "
        f"scenario. Chance: top-1 {pct(d.chance_top1)}, pairwise 50%. Verdict "
        f"(reward, pairwise with ties as half): {d.verdict}."
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
                "sits exactly at chance, and the verdict reads them. Intervals: Wilson 95%; the "
                "three pairs of an item share its scenario, so pairwise intervals are somewhat "
                "too narrow." + (f" Note: {d.note}." if d.note else "")
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
        "sign test p",
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
            num(r.sign_p, 3),
        ]
        for r in rows
    ]
    return T(header, body)


def _personalization(card: JudgeCard) -> Section:
    p = card.personalization
    if p.status == "n/a":
        return Section("personalization", "Personalization sensitivity", p.verdict, [])
    lead = (
        f"Each good reply judged with its own user's persona and memories and with "
        f"another user's (query and situation kept). Verdict: {p.verdict}."
    )
    return Section(
        "personalization",
        "Personalization sensitivity",
        lead,
        [
            _drop_table(p.rows),
            P(
                f"{p.pairs} replies; {p.unscorable_pairs} pairs left out (unscorable); "
                f"{p.skipped} replies skipped (no persona or memories, or no other user). "
                "Drop = own - other, so a personalized judge shows a positive drop; "
                "interval: bootstrap 95% over replies."
            ),
        ],
    )


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
                    "share raised",
                    "verdict",
                    *[f"{DIM_SHORT.get(m, m)} change" for m in dims],
                ],
                rows,
            ),
            P(
                "Change = altered - base reward, interval: bootstrap 95% over replies. 'gains': "
                "the interval lies above 0; 'may gain': the mean is above 0 but the interval "
                "reaches it; 'held': the mean change is 0 or below. Dimension changes are on the "
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


def sections(card: JudgeCard) -> list[Section]:
    return [
        _overview(card),
        _discrimination(card),
        _personalization(card),
        _probes(card),
        _stability(card),
        _cost(card),
        _agreement(card),
        _files(card),
    ]


# --------------------------------------------------------------------------- Markdown


def render_markdown(card: JudgeCard) -> str:
    lines = [f"# Judge card: {card.judge} with {card.reward}", "", f"**{card.summary}**", ""]
    for s in sections(card):
        if s.id != "overview":
            lines += [f"## {s.title}", ""]
        lines += [s.lead, ""]
        for b in s.blocks:
            lines.append(md_table(b.header, b.rows) if b.is_table else b.text or "")
            lines.append("")
    lines.append(f"Created {card.created} in {card.seconds:.1f} s.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTML


def _status_cell(value: Any) -> Any:
    if isinstance(value, str) and STATUS_CLASS.get(value):
        return H.Raw(f'<span class="{STATUS_CLASS[value]}">{H.esc(value)}</span>')
    return value


def _plots(card: JudgeCard) -> dict[str, H.Raw]:
    """Score distribution and probe changes as PNGs, by section id (none without
    matplotlib, which the card does not need)."""
    if importlib.util.find_spec("matplotlib") is None:
        return {}
    out: dict[str, H.Raw] = {}
    dists = [d for d in card.stability.distribution if d.dimension != "bystander" and d.replies]
    if dists:
        levels = list(range(1, 6))
        series = [(d.dimension, [d.shares.get(str(v), 0.0) for v in levels]) for d in dists]
        png = plots.share_bars(series, levels)
        out["stability"] = H.figure(png, "Share of replies at each score, per dimension")
    rows = [(p, p.reward) for p in card.probes.probes if p.reward is not None and p.reward.n]
    if rows:
        png = plots.change_bars(
            [p.title for p, _ in rows],
            [(r.change.estimate, r.change.low, r.change.high) for _, r in rows],
            [VERDICT_COLOURS.get(p.verdict, "#1f7a3f") for p, _ in rows],
            xlabel="reward change (altered - base)",
        )
        out["probes"] = H.figure(png, "Gaming probes: mean reward change, 95% CI")
    return out


def render_html(card: JudgeCard, *, plots: bool = True) -> str:
    parts = []
    figures = _plots(card) if plots else {}
    for s in sections(card):
        body = []
        for b in s.blocks:
            if b.is_table:
                rows = [[_status_cell(v) for v in row] for row in b.rows]
                body.append(H.table(b.header, rows, text_columns=b.text_columns))
            else:
                cls = ' class="bad"' if (b.text or "").startswith("DEGENERATE") else ""
                body.append(f"<p{cls}>{H.esc(b.text)}</p>")
        if s.id in figures:
            body.append(figures[s.id])
        parts.append(H.section(s.title, "".join(body), id=s.id, lead=s.lead))
    nav = [(s.id, s.title.split(" (")[0]) for s in sections(card)]
    return H.page(
        f"Judge card: {card.judge} with {card.reward}",
        parts,
        subtitle=f"Created {card.created} in {card.seconds:.1f} s.",
        summary=card.summary,
        nav=nav,
    )


def write_card(card: JudgeCard, out: Path, *, plots: bool = True) -> dict[str, Path]:
    """Write card.json, card.md and card.html into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "card.json", "md": out / "card.md", "html": out / "card.html"}
    paths["json"].write_text(card.model_dump_json(indent=2) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(card), encoding="utf-8")
    write_page(paths["html"], render_html(card, plots=plots))
    return paths
