"""The numbers of an evaluation, computed from score files: pure functions, no model.

Everything here works on :class:`~attunement.records.RewardBreakdown` records
(the output of :func:`attunement.judging.score_dataset`) joined to their
examples and replies **by id**, and returns the pydantic rows of
:mod:`~attunement.evaluation.runs` that ``results.json``, ``results.md``, the
plots and ``report.html`` all read.

Units and rules (docs/evaluation.md writes them out):

- A *system* is one set of replies: a replies file, split by
  ``Reply.memory_mode`` when one file holds several modes.
- A system's value on an example, per dimension, is the mean over its replies
  to that example of ``breakdown.dimensions[d]`` (itself the mean of the
  judge's valid samples, 1-5). Dimensions a judge could not score are left out
  of that dimension only (the authors drop unparseable scores per dimension).
- A table cell (Res, Exp, Rec) is the mean of that per-example value over the
  examples that have one; ``Avg`` is the mean of the three cells, as in table 1
  of the PersonaEmp paper. Intervals are studentized bootstraps over *users*
  (an example's ``user_id``, else the example itself), since several queries of
  one user are not independent; below 10 users a cell has no interval ("n too
  small") (:func:`attunement.evaluation.clustered.cluster_column_means`).
- A paired comparison uses the examples both systems scored (for ``Avg``: all
  dimensions present on both sides): the mean difference with its interval over
  users and the matching p-value (:func:`~attunement.evaluation.clustered.cluster_paired`),
  then, once every comparison of the report is made, Holm's adjustment of all
  of them together (:func:`adjust_p_values`). The Wilcoxon signed-rank and sign
  tests are kept in ``results.json`` for reference (they treat queries as
  independent).
- k scaling reads one PereGRM@K run with criteria written per sample
  (``criteria_mode="shared"``) and takes the first k of its K samples of each
  dimension for every k; samples are numbered and seeded by number, so these
  are the samples PereGRM@k itself draws when none of them fails.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from attunement.evaluation.clustered import cluster_column_means, cluster_paired, holm
from attunement.evaluation.cost import tokens_per_sample
from attunement.evaluation.runs import Paired, Results, Row, ScalingPoint, System
from attunement.evaluation.stats import MIN_CLUSTERS, Stat
from attunement.policy import MEMORY_MODES
from attunement.records import (
    BIG_FIVE_TRAITS,
    EMPATHY_DIMENSIONS,
    Category,
    Example,
    Reply,
    RewardBreakdown,
)

SHORT = {"resonation": "Res", "expression": "Exp", "reception": "Rec", "bystander": "Bys"}
LEVELS = ("low", "medium", "high")
MEMORY_TITLES = {
    "full": "Full Memory",
    "none": "w/o Memory",
    "mismatch": "Mismatch Memory",
    "summary": "Memory (summary)",
    "rag": "RAG (top-k memories)",
}


# --------------------------------------------------------------------------- systems


def systems_of(label: str, replies: Sequence[Reply]) -> list[System]:
    """One system per replies file, or one per memory mode when the file mixes modes.

    >>> rs = [Reply(example_id="e", reply_id=f"e:{m}:0", response="r", memory_mode=m)
    ...       for m in ("full", "none")]
    >>> [s.label for s in systems_of("base", rs)], systems_of("x", rs[:1])[0].memory_mode
    (['base[full]', 'base[none]'], 'full')
    """
    modes: dict[str | None, list[Reply]] = defaultdict(list)
    for r in replies:
        modes[r.memory_mode].append(r)
    order = sorted(
        modes,
        key=lambda m: (MEMORY_MODES.index(m) if m in MEMORY_MODES else len(MEMORY_MODES), str(m)),
    )

    def policy(rs: list[Reply]) -> str | None:
        names = {r.policy for r in rs if r.policy}
        return names.pop() if len(names) == 1 else None

    if len(order) <= 1:
        mode = order[0] if order else None
        return [
            System(
                label,
                label,
                mode,
                frozenset((r.example_id, r.reply_id) for r in replies),
                policy(list(replies)),
            )
        ]
    return [
        System(
            f"{label}[{m}]",
            label,
            m,
            frozenset((r.example_id, r.reply_id) for r in modes[m]),
            policy(modes[m]),
        )
        for m in order
    ]


# --------------------------------------------------------------------------- per example


@dataclass
class ExampleScore:
    """One system on one example: per-dimension means over its replies.

    ``user`` is the example's independent unit for intervals (its user, else
    the example itself)."""

    example_id: str
    values: dict[str, float | None]
    replies: int = 0
    unscorable: int = 0
    per_reply: list[dict[str, float | None]] = field(default_factory=list)
    user: str | None = None

    @property
    def cluster(self) -> str:
        return self.user or f"example:{self.example_id}"

    def avg(self, dims: Sequence[str]) -> float | None:
        vals = [self.values.get(d) for d in dims]
        if any(v is None for v in vals):
            return None
        return sum(vals) / len(vals)  # type: ignore[arg-type]


def example_scores(
    breakdowns: Iterable[RewardBreakdown],
    keys: frozenset[tuple[str, str]],
    dims: Sequence[str],
    users: Mapping[str, str | None] | None = None,
) -> dict[str, ExampleScore]:
    """Per-example values of one system from its breakdowns (joined by id);
    ``users`` maps an example id to its user id."""
    out: dict[str, ExampleScore] = {}
    users = users or {}
    for b in breakdowns:
        if (b.example_id, b.reply_id) not in keys:
            continue
        score = out.setdefault(
            b.example_id, ExampleScore(b.example_id, {}, user=users.get(b.example_id))
        )
        score.replies += 1
        score.unscorable += int(b.unscorable)
        score.per_reply.append({d: b.dimensions.get(d) for d in dims})
    for score in out.values():
        for d in dims:
            vals = [r[d] for r in score.per_reply if r[d] is not None]
            score.values[d] = sum(vals) / len(vals) if vals else None
    return out


@dataclass(frozen=True)
class StatsConfig:
    resamples: int = 2000
    level: float = 0.95
    seed: int = 0
    min_users: int = MIN_CLUSTERS


def summarize(
    scores: Sequence[ExampleScore], dims: Sequence[str], empathy: Sequence[str], cfg: StatsConfig
) -> tuple[dict[str, Stat], Stat, int, int]:
    """Column stats, Avg stat, replies and unscorable replies of some examples."""
    if not scores:
        return {d: Stat(mean=None) for d in dims}, Stat(mean=None), 0, 0
    rows = [[s.values.get(d) for d in dims] for s in scores]
    avg_idx = [dims.index(d) for d in empathy if d in dims]
    means = cluster_column_means(
        rows,
        [s.cluster for s in scores],
        average_of=avg_idx,
        resamples=cfg.resamples,
        level=cfg.level,
        seed=cfg.seed,
        min_clusters=cfg.min_users,
    )
    columns = {d: Stat.of(iv) for d, iv in zip(dims, means.columns)}
    return (
        columns,
        Stat.of(means.average),
        sum(s.replies for s in scores),
        sum(s.unscorable for s in scores),
    )


def make_row(
    judge: str,
    split: str,
    system: System,
    scores: Sequence[ExampleScore],
    dims: Sequence[str],
    empathy: Sequence[str],
    cfg: StatsConfig,
    group: Mapping[str, str] | None = None,
) -> Row:
    columns, avg, replies, unscorable = summarize(scores, dims, empathy, cfg)
    return Row(
        judge=judge,
        split=split,
        system=system.label,
        memory_mode=system.memory_mode,
        group=dict(group or {}),
        examples=len(scores),
        replies=replies,
        unscorable=unscorable,
        columns=columns,
        avg=avg,
    )


# --------------------------------------------------------------------------- groups


def category_of(example: Example) -> str | None:
    cat = example.category or (example.situation.category if example.situation else None)
    return cat.value if isinstance(cat, Category) else cat


def big_five_level(example: Example, trait: str) -> str | None:
    bf = example.persona.big_five if example.persona else None
    return getattr(bf, trait) if bf is not None else None


#: a breakdown's groups: the label a row carries, and which examples belong to it
Group = tuple[dict[str, str], Callable[[Example], bool]]
CATEGORY_GROUPS: tuple[Group, ...] = tuple(
    ({"category": c.value}, lambda e, c=c: category_of(e) == c.value) for c in Category
)
BIG_FIVE_GROUPS: tuple[Group, ...] = tuple(
    ({"trait": t, "level": lv}, lambda e, t=t, lv=lv: big_five_level(e, t) == lv)
    for t in BIG_FIVE_TRAITS
    for lv in LEVELS
)


def paired(
    judge: str,
    split: str,
    system: System,
    baseline: System,
    a: Mapping[str, ExampleScore],
    b: Mapping[str, ExampleScore],
    metrics: Sequence[str],
    empathy: Sequence[str],
    cfg: StatsConfig,
    view: Literal["baseline", "memory"] = "baseline",
) -> list[Paired]:
    """``system`` minus ``baseline`` per metric on the examples both have a value for."""
    out = []
    common = sorted(set(a) & set(b))
    for metric in metrics:
        xs, ys, users = [], [], []
        for eid in common:
            if metric == "avg":
                x, y = a[eid].avg(empathy), b[eid].avg(empathy)
            else:
                x, y = a[eid].values.get(metric), b[eid].values.get(metric)
            if x is not None and y is not None:
                xs.append(x)
                ys.append(y)
                users.append(a[eid].cluster)
        cmp = cluster_paired(
            xs,
            ys,
            users,
            resamples=cfg.resamples,
            level=cfg.level,
            seed=cfg.seed,
            min_clusters=cfg.min_users,
        )
        out.append(
            Paired.of(
                cmp,
                view=view,
                judge=judge,
                split=split,
                system=system.label,
                baseline=baseline.label,
                metric=metric,
            )
        )
    return out


def adjust_p_values(paired: Sequence[Paired]) -> None:
    """Holm's adjustment of every comparison of a report at once (``p_holm``).

    The family is every paired comparison the report shows (each judge, split,
    system, metric, both views): with m tests at 5% each, some test is
    "significant" by chance far more often than 5% (four null metrics: 19% of
    reports), and Holm brings that back to 5%.
    """
    for row, adjusted in zip(paired, holm([p.p for p in paired])):
        row.p_holm = adjusted


# --------------------------------------------------------------------------- the whole


@dataclass
class ScoreSet:
    """The breakdowns of one replies file under one judge (main run or k-scaling run)."""

    judge: str
    source: str
    breakdowns: list[RewardBreakdown]


def compute_tables(
    *,
    splits: Mapping[str, Sequence[Example]],
    systems: Sequence[System],
    scores: Sequence[ScoreSet],
    judges: Sequence[str],
    dims: Sequence[str],
    empathy: Sequence[str] = EMPATHY_DIMENSIONS,
    baseline: str | None = None,
    scaling: Sequence[ScoreSet] = (),
    scaling_k: int | None = None,
    cfg: StatsConfig = StatsConfig(),
) -> Results:
    """Table 1, paired comparisons, breakdowns, memory view and k scaling."""
    empathy = [d for d in empathy if d in dims]
    results = Results(dimensions=list(dims))
    by_file = {(s.judge, s.source): s.breakdowns for s in scores}
    base_sys = next((s for s in systems if s.label == baseline), systems[0] if systems else None)
    if baseline is not None and (base_sys is None or base_sys.label != baseline):
        raise ValueError(
            f"--baseline {baseline!r} is not one of the systems "
            f"({', '.join(s.label for s in systems)})"
        )
    users = {e.example_id: e.user_id for exs in splits.values() for e in exs}
    for judge in judges:
        per_system = {
            s.label: example_scores(by_file.get((judge, s.source), []), s.reply_keys, dims, users)
            for s in systems
        }
        for split, examples in splits.items():
            ids = [e.example_id for e in examples]
            by_id = {e.example_id: e for e in examples}
            in_split = {
                label: {eid: sc[eid] for eid in ids if eid in sc}
                for label, sc in per_system.items()
            }
            for system in systems:
                mine = in_split[system.label]
                results.table.append(
                    make_row(judge, split, system, list(mine.values()), dims, empathy, cfg)
                )
                if base_sys is not None and system.label != base_sys.label and mine:
                    results.paired += paired(
                        judge,
                        split,
                        system,
                        base_sys,
                        mine,
                        in_split[base_sys.label],
                        ["avg", *empathy],
                        empathy,
                        cfg,
                    )
                for into, groups in (
                    (results.by_category, CATEGORY_GROUPS),
                    (results.by_big_five, BIG_FIVE_GROUPS),
                ):
                    into.extend(
                        _grouped(judge, split, system, mine, by_id, dims, empathy, cfg, groups)
                    )
            results.memory += _memory_view(
                judge, split, systems, in_split, dims, empathy, cfg, results
            )
    if scaling and scaling_k:
        results.k_scaling = _k_scaling(splits, systems, scaling, judges, scaling_k, empathy, cfg)
    adjust_p_values(results.paired)
    return results


def _grouped(judge, split, system, mine, by_id, dims, empathy, cfg, groups) -> list[Row]:
    rows = []
    for group, member in groups:
        scores = [s for eid, s in mine.items() if member(by_id[eid])]
        if scores:
            rows.append(make_row(judge, split, system, scores, dims, empathy, cfg, group))
    return rows


def _memory_view(
    judge, split, systems, in_split, dims, empathy, cfg, results: Results
) -> list[Row]:
    """Table 2: systems by memory mode, each against the full-memory system.

    Shown when the systems span at least two memory modes. A system is compared
    with the full-memory system from the same replies file when there is one,
    else with the first full-memory system.
    """
    moded = [s for s in systems if s.memory_mode is not None and in_split[s.label]]
    if len({s.memory_mode for s in moded}) < 2:
        return []
    moded.sort(
        key=lambda s: (
            MEMORY_MODES.index(s.memory_mode)
            if s.memory_mode in MEMORY_MODES
            else len(MEMORY_MODES)
        )
    )
    fulls = [s for s in moded if s.memory_mode == "full"]
    made = {
        s.label: make_row(judge, split, s, list(in_split[s.label].values()), dims, empathy, cfg)
        for s in moded
    }
    rows = []
    for system in moded:
        row = made[system.label]
        ref = next((f for f in fulls if f.source == system.source), fulls[0] if fulls else None)
        if ref is not None and ref is not system:
            ref_avg = made[ref.label].avg.mean
            if ref_avg is not None and row.avg.mean is not None:
                row.delta = row.avg.mean - ref_avg
                row.relative = row.delta / ref_avg if ref_avg else None
            results.paired += paired(
                judge,
                split,
                system,
                ref,
                in_split[system.label],
                in_split[ref.label],
                ["avg"],
                empathy,
                cfg,
                view="memory",
            )
        rows.append(row)
    return rows


def scaling_ks(k_max: int) -> list[int]:
    """1, 2, 4, ... up to ``k_max``, and ``k_max`` itself.

    >>> scaling_ks(8), scaling_ks(6), scaling_ks(1)
    ([1, 2, 4, 8], [1, 2, 4, 6], [1])
    """
    ks, k = [], 1
    while k < k_max:
        ks.append(k)
        k *= 2
    return [*ks, k_max]


def truncate_to_k(b: RewardBreakdown, k: int, dims: Sequence[str]) -> dict[str, float | None]:
    """A breakdown's dimension means over its first ``k`` sample slots only."""
    out: dict[str, float | None] = {}
    for d in dims:
        vals = [
            j.score
            for j in b.judgements
            if j.dimension == d and j.sample_index < k and j.score is not None
        ]
        out[d] = sum(vals) / len(vals) if vals else None
    return out


def _k_scaling(
    splits, systems, scaling: Sequence[ScoreSet], judges, k_max, empathy, cfg
) -> list[ScalingPoint]:
    by_file = {(s.judge, s.source): s.breakdowns for s in scaling}
    points = []
    for judge in judges:
        # one figure per judge, over every system: the criteria are shared by the systems
        # (written once, booked on whichever was scored first), so a per-system figure
        # would depend on their order
        per_sample = tokens_per_sample(
            [b for s in scaling if s.judge == judge for b in s.breakdowns], empathy, k_max
        )
        for system in systems:
            breakdowns = [
                b
                for b in by_file.get((judge, system.source), [])
                if (b.example_id, b.reply_id) in system.reply_keys
            ]
            if not breakdowns:
                continue
            per_example: dict[str, list[RewardBreakdown]] = defaultdict(list)
            for b in breakdowns:
                per_example[b.example_id].append(b)
            for split, examples in splits.items():
                ids = {e.example_id for e in examples}
                users = {e.example_id: e.user_id for e in examples}
                for k in scaling_ks(k_max):
                    scores, samples, replies = [], 0, 0
                    for eid, group in per_example.items():
                        if eid not in ids:
                            continue
                        trunc = [truncate_to_k(b, k, empathy) for b in group]
                        values = {}
                        for d in empathy:
                            vals = [t[d] for t in trunc if t[d] is not None]
                            values[d] = sum(vals) / len(vals) if vals else None
                        scores.append(
                            ExampleScore(eid, values, replies=len(group), user=users.get(eid))
                        )
                        replies += len(group)
                        samples += sum(
                            1
                            for b in group
                            for j in b.judgements
                            if j.dimension in empathy and j.sample_index < k
                        )
                        samples += len(empathy) * k  # criteria, shared by the group
                    if not scores:
                        continue
                    columns, avg, _, _ = summarize(scores, empathy, empathy, cfg)
                    per_reply = samples / replies
                    points.append(
                        ScalingPoint(
                            judge=judge,
                            split=split,
                            system=system.label,
                            k=k,
                            columns=columns,
                            avg=avg,
                            samples_per_reply=per_reply,
                            tokens_per_reply=per_reply * per_sample if per_sample else None,
                        )
                    )
    return points
