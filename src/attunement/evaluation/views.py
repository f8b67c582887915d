"""Each table of an evaluation as a header and rows of text, for Markdown and HTML alike.

``results.md`` and ``report.html`` lay out the same tables (PersonaEmp's table
1 and table 2, the paired tests, the breakdowns, k scaling, the judge cost);
building each table's rows once here keeps the two files from disagreeing.
Every function reads :class:`~attunement.evaluation.runs.Results` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from attunement.evaluation.reporting import fmt, fmt_ci, fmt_p
from attunement.evaluation.runs import Paired, Results, Row
from attunement.evaluation.tables import LEVELS, MEMORY_TITLES, SHORT
from attunement.records import BIG_FIVE_TRAITS, Category


def judge_labels(results: Results) -> list[str]:
    return list(dict.fromkeys(r.judge for r in results.table))


def split_labels(results: Results) -> list[str]:
    return list(dict.fromkeys(r.split for r in results.table))


def system_labels(results: Results) -> list[str]:
    return list(dict.fromkeys(r.system for r in results.table))


def score_dims(results: Results) -> list[str]:
    return [d for d in results.dimensions if d != "bystander"]


def table1_rows(results: Results, judge: str) -> tuple[list[str], list[list[str]]]:
    """Table 1's layout for one judge: a row per system, Res/Exp/Rec/Avg per split."""
    dims = score_dims(results)
    splits = split_labels(results)
    extra = ["bystander"] if "bystander" in results.dimensions else []
    header = ["Method"] + [
        f"{SHORT.get(d, d)} ({s})" for s in splits for d in [*dims, "avg", *extra]
    ]
    header = [h.replace("avg", "Avg") for h in header]
    rows = []
    for system in system_labels(results):
        row = [system]
        for split in splits:
            r = _find(results.table, judge, split, system)
            for d in [*dims, "avg", *extra]:
                if r is None:
                    row.append("-")
                elif d == "avg":
                    row.append(fmt(r.avg.mean))
                else:
                    row.append(fmt(r.columns[d].mean, 1 if d == "bystander" else 2))
        rows.append(row)
    return header, rows


def _find(rows: Iterable[Row], judge: str, split: str, system: str) -> Row | None:
    return next((r for r in rows if (r.judge, r.split, r.system) == (judge, split, system)), None)


def detail_rows(results: Results, judge: str) -> tuple[list[str], list[list[str]]]:
    dims = list(results.dimensions)
    header = [
        "Method",
        "Split",
        *(SHORT.get(d, d) for d in dims),
        "Avg",
        "examples",
        "replies",
        "unscorable",
    ]
    rows = [
        [
            r.system,
            r.split,
            *(fmt_ci(r.columns[d]) for d in dims),
            fmt_ci(r.avg),
            r.examples,
            r.replies,
            r.unscorable,
        ]
        for r in results.table
        if r.judge == judge
    ]
    return header, rows


def paired_rows(paired: Sequence[Paired]) -> tuple[list[str], list[list[str]]]:
    """Each comparison with its interval over users, its p-value and Holm's."""
    header = [
        "Judge",
        "Split",
        "System",
        "vs",
        "Metric",
        "Difference [CI]",
        "n (users)",
        "wins / losses / ties",
        "p",
        "Holm p",
    ]
    rows = [
        [
            p.judge,
            p.split,
            p.system,
            p.baseline,
            "Avg" if p.metric == "avg" else SHORT.get(p.metric, p.metric),
            fmt_ci(p.diff, sign=True),
            f"{p.n} ({p.diff.clusters if p.diff.clusters is not None else '-'})",
            f"{p.wins} / {p.losses} / {p.ties}",
            fmt_p(p.p),
            fmt_p(p.p_holm),
        ]
        for p in paired
    ]
    return header, rows


def _cell(row: Row | None) -> str:
    return "-" if row is None or row.avg.mean is None else f"{fmt(row.avg.mean)} (n={row.examples})"


def judge_split_pairs(results: Results):
    for judge in judge_labels(results):
        for split in split_labels(results):
            yield judge, split


def category_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """A row per (judge, split, category), a column per system: ``Avg (n=...)``."""
    systems = system_labels(results)
    header = ["Judge", "Split", "Category", *systems]
    rows = []
    for judge, split in judge_split_pairs(results):
        for cat in Category:
            cells = {
                r.system: r
                for r in results.by_category
                if (r.judge, r.split) == (judge, split) and r.group["category"] == cat.value
            }
            if cells:
                rows.append(
                    [
                        judge,
                        split,
                        f"{cat.value} ({cat.title})",
                        *(_cell(cells.get(s)) for s in systems),
                    ]
                )
    return header, rows


def big_five_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """A row per (judge, split, trait, level), a column per system: ``Avg (n=...)``."""
    systems = system_labels(results)
    header = ["Judge", "Split", "Trait", "Level", *systems]
    rows = []
    for judge, split in judge_split_pairs(results):
        for trait in BIG_FIVE_TRAITS:
            for level in LEVELS:
                cells = {
                    r.system: r
                    for r in results.by_big_five
                    if (r.judge, r.split) == (judge, split)
                    and r.group == {"trait": trait, "level": level}
                }
                if cells:
                    rows.append(
                        [judge, split, trait, level, *(_cell(cells.get(s)) for s in systems)]
                    )
    return header, rows


def memory_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """Table 2's layout: a row per memory mode, with its difference from full memory."""
    dims = score_dims(results)
    header = [
        "Judge",
        "Split",
        "Memory",
        "System",
        *(SHORT[d] for d in dims),
        "Avg",
        "vs full [CI]",
        "relative",
        "Holm p",
    ]
    tests = {(p.judge, p.split, p.system): p for p in results.paired if p.view == "memory"}
    rows = []
    for r in results.memory:
        test = tests.get((r.judge, r.split, r.system))
        rows.append(
            [
                r.judge,
                r.split,
                MEMORY_TITLES.get(r.memory_mode or "", r.memory_mode),
                r.system,
                *(fmt(r.columns[d].mean) for d in dims),
                fmt_ci(r.avg),
                fmt_ci(test.diff, sign=True) if test else "-",
                "-" if r.relative is None else f"{100 * r.relative:+.1f}%",
                fmt_p(test.p_holm) if test else "-",
            ]
        )
    return header, rows


def scaling_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    dims = score_dims(results)
    header = [
        "Judge",
        "Split",
        "System",
        "k",
        *(SHORT[d] for d in dims),
        "Avg",
        "judge samples / reply",
        "judge tokens / reply (est.)",
    ]
    rows = [
        [
            p.judge,
            p.split,
            p.system,
            p.k,
            *(fmt(p.columns[d].mean) for d in dims),
            fmt_ci(p.avg),
            fmt(p.samples_per_reply, 1),
            "-" if p.tokens_per_reply is None else f"{p.tokens_per_reply:.0f}",
        ]
        for p in results.k_scaling
    ]
    return header, rows


def cost_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    header = [
        "Judge",
        "Replies file",
        "What",
        "replies",
        "judge samples",
        "calls",
        "cached samples",
        "prompt tokens",
        "completion tokens",
        "seconds",
    ]
    rows = [
        [
            c.judge,
            c.system,
            c.what,
            c.replies,
            c.samples,
            c.calls,
            c.cached_calls,
            c.prompt_tokens if c.calls or not c.cached_calls else "- (cache)",
            c.completion_tokens if c.calls or not c.cached_calls else "- (cache)",
            f"{c.seconds:.1f}",
        ]
        for c in results.cost
    ]
    return header, rows


#: the adjusted p below which the headline names a system better (or worse)
HEADLINE_ALPHA = 0.05


def headline(results: Results) -> str:
    """One sentence for the first judge and split: which systems differ from the
    baseline on Avg with a Holm-adjusted p below 5%, or that none does.

    A system is named better only on that evidence; a higher Avg alone names
    nobody (with a handful of users it is as likely noise as a difference).
    """
    judges, splits = judge_labels(results), split_labels(results)
    if not judges or not splits:
        return "nothing was scored"
    judge, split = judges[0], splits[0]
    rows = [
        r for r in results.table if r.judge == judge and r.split == split and r.avg.mean is not None
    ]
    if not rows:
        return f"no system could be scored by {judge} on {split}"
    head = f"Judge {judge}, split {split}"
    tests = [
        p
        for p in results.paired
        if (p.view, p.metric, p.judge, p.split) == ("baseline", "avg", judge, split)
    ]
    if not tests:
        only = rows[0]
        return f"{head}: {only.system} Avg {fmt_ci(only.avg)} over {only.examples} examples."
    found = [
        f"{p.system} is {'better' if (p.diff.mean or 0) > 0 else 'worse'} than {p.baseline} "
        f"({fmt_ci(p.diff, sign=True)} Avg, Holm-adjusted p {fmt_p(p.p_holm)})"
        for p in tests
        if p.p_holm is not None and p.p_holm < HEADLINE_ALPHA
    ]
    if found:
        return f"{head}: " + "; ".join(found) + "."
    avgs = ", ".join(f"{r.system} {fmt(r.avg.mean)}" for r in rows)
    users = max((p.diff.clusters or 0) for p in tests)
    why = (
        f"fewer than 10 users ({users}), so no test was made"
        if all(p.p is None for p in tests)
        else "no Holm-adjusted p below 0.05"
    )
    return f"{head}: no system is shown to differ from {tests[0].baseline} ({why}); Avg {avgs}."


# --------------------------------------------------------------------------- optional tables

TableRows = tuple[list[str], list[list[str]]]


@dataclass(frozen=True)
class Breakdown:
    """An optional table, shown when its rows exist: where, under which titles, with
    which explanation (``results.md`` and ``report.html`` read the same entry)."""

    field: str  # the list of Results it shows
    anchor: str
    nav: str
    title: str
    md_title: str
    rows: Callable[[Results], TableRows]
    text_columns: int
    lead: str

    def present(self, results: Results) -> bool:
        return bool(getattr(results, self.field))


BREAKDOWNS = (
    Breakdown(
        "by_category",
        "category",
        "Category",
        "By category",
        "By category (Avg)",
        category_rows,
        3,
        "Avg per query category (ES, HEQ, SS).",
    ),
    Breakdown(
        "by_big_five",
        "bigfive",
        "Big Five",
        "By Big Five level",
        "By Big Five level (Avg)",
        big_five_rows,
        4,
        "Avg by the user's level of each trait (PersonaEmp figure 5).",
    ),
    Breakdown(
        "memory",
        "memory",
        "Memory",
        "Memory ablation",
        "Memory ablation (table 2)",
        memory_rows,
        4,
        "Systems by memory mode against full memory (PersonaEmp table 2).",
    ),
    Breakdown(
        "k_scaling",
        "scaling",
        "k scaling",
        "k scaling",
        "k scaling (figures 4b and 8)",
        scaling_rows,
        3,
        "PereGRM@k from the first k judge samples of a PereGRM@K run with criteria per "
        "sample (figures 4b and 8).",
    ),
)
