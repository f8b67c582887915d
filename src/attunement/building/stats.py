"""Statistics of a build: the distributions of the PersonaEmp paper's figure 6
(Big Five levels per trait over users, queries per category), plus the
acceptance rate of each stage and the rejection reasons.

Big Five counts are over distinct users of the exported examples; category
and language counts over examples (the language each query is written in, and
its user's language). ``all_medium_share`` is the share of those users rated
"medium" on all five traits: such users carry no signal for the OOD split
(k-modes clusters them together), and a high share means the Big Five stage
saw too little evidence or hedged.

**The current build only.** Stage files keep every record a folder has seen,
also of keys the current build no longer makes (a redo appends, a changed
setting or source leaves old keys behind). So stage figures and rejection
reasons come from the build's own report in ``manifest.json`` (the keys of its
last run, the numbers it printed); only a folder without a manifest falls back
to counting the stage files, and says so (``stages_from``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from attunement.building.config import STAGES
from attunement.building.manifest import read_manifest
from attunement.building.report import BuildReport
from attunement.building.store import load_stage_records
from attunement.jsonl import read_jsonl
from attunement.records import BIG_FIVE_TRAITS, Category, Example

LEVELS = ("low", "medium", "high")


class StageStat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    done: int = 0
    ok: int = 0
    rejected: int = 0

    @property
    def acceptance(self) -> float | None:
        return self.ok / self.done if self.done else None


class BuildStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    users: int = 0  # distinct users of the examples
    examples: int = 0
    big_five: dict[str, dict[str, int]] = Field(default_factory=dict)
    all_medium_users: int = 0
    all_medium_share: float | None = None
    languages: dict[str, int] = Field(default_factory=dict)  # examples per query language
    user_languages: dict[str, int] = Field(default_factory=dict)  # examples per user language
    categories: dict[str, int] = Field(default_factory=dict)
    stages: dict[str, StageStat] = Field(default_factory=dict)
    rejection_reasons: dict[str, int] = Field(default_factory=dict)
    draws: dict[str, float | int | None] = Field(default_factory=dict)
    stages_from: str | None = None  # "manifest" (the current build) or "stage files"


def compute_stats(path: str | Path) -> BuildStats:
    """Statistics of a build folder, or of a bare examples JSONL file."""
    p = Path(path)
    if p.is_dir():
        examples_path = p / "examples.jsonl"
        stage_dir = p / "stages"
    else:
        examples_path = p
        stage_dir = None
    examples = read_jsonl(examples_path, Example) if examples_path.exists() else []
    if not examples_path.exists() and (stage_dir is None or not stage_dir.is_dir()):
        raise FileNotFoundError(f"{p}: neither an examples.jsonl nor a build folder")
    s = BuildStats(source=str(p), examples=len(examples))

    levels: dict[str, tuple[str, ...]] = {}
    for e in examples:
        if e.persona is not None and e.persona.big_five is not None:
            levels[e.user_id or e.example_id] = e.persona.big_five.levels()
    s.users = len({e.user_id or e.example_id for e in examples})
    s.big_five = {t: {lvl: 0 for lvl in LEVELS} for t in BIG_FIVE_TRAITS}
    for row in levels.values():
        for trait, lvl in zip(BIG_FIVE_TRAITS, row, strict=True):
            s.big_five[trait][lvl] += 1
    s.all_medium_users = sum(1 for row in levels.values() if set(row) == {"medium"})
    s.all_medium_share = round(s.all_medium_users / len(levels), 4) if levels else None
    s.languages = dict(Counter(e.language for e in examples).most_common())
    s.user_languages = dict(Counter(e.user_language or e.language for e in examples).most_common())
    cats = Counter(e.category.value for e in examples if e.category is not None)
    s.categories = {c.value: cats.get(c.value, 0) for c in Category}

    doc = read_manifest(p) if p.is_dir() else None
    if doc is not None and isinstance(doc.get("report"), dict):
        _from_report(s, BuildReport.model_validate(doc["report"]))
    elif stage_dir is not None and stage_dir.is_dir():
        _from_stage_files(s, p, stage_dir)
    return s


def _from_report(s: BuildStats, report: BuildReport) -> None:
    """Stage figures of the build's last run, as it reported them."""
    s.stages = {
        stage: StageStat(done=c.ok + c.rejected, ok=c.ok, rejected=c.rejected)
        for stage, c in report.stages.items()
        if stage != "export"
    }
    s.rejection_reasons = dict(report.rejection_reasons)
    s.draws = dict(report.draws)
    s.stages_from = "manifest"


def _from_stage_files(s: BuildStats, folder: Path, stage_dir: Path) -> None:
    """Stage figures counted from the stage files (every key they hold)."""
    reasons: Counter[str] = Counter()
    for stage in STAGES:
        if not (stage_dir / f"{stage}.jsonl").exists():
            continue
        records = load_stage_records(folder, stage)
        st = StageStat(done=len(records))
        for rec in records:
            if rec.status == "ok":
                st.ok += 1
            else:
                st.rejected += 1
                reasons[rec.reason_code or "unknown"] += 1
        s.stages[stage] = st
    s.rejection_reasons = dict(reasons.most_common())
    s.stages_from = "stage files"


def plot_stats(stats: BuildStats, out: str | Path) -> Path:
    """A 2x2 PNG: Big Five levels, categories, stage acceptance, rejection reasons."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ValueError("plots need matplotlib: pip install 'attunement[plots]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    fig.suptitle(
        f"{stats.examples} queries from {stats.users} users  ({stats.source})", fontsize=11
    )
    _big_five_panel(axes[0][0], stats)
    _categories_panel(axes[0][1], stats)
    _stages_panel(axes[1][0], stats)
    _reasons_panel(axes[1][1], stats)
    fig.tight_layout()
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def _integer_ticks(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _big_five_panel(ax: Any, stats: BuildStats) -> None:
    """Stacked bars: users per level of each trait."""
    colors = {"low": "#9ecae1", "medium": "#4292c6", "high": "#08306b"}
    traits = list(BIG_FIVE_TRAITS)
    left = [0] * len(traits)
    for lvl in LEVELS:
        vals = [stats.big_five.get(t, {}).get(lvl, 0) for t in traits]
        ax.barh([t.capitalize() for t in traits], vals, left=left, color=colors[lvl], label=lvl)
        for i, v in enumerate(vals):
            if v:
                ax.text(
                    left[i] + v / 2,
                    i,
                    str(v),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if lvl != "low" else "black",
                )
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.invert_yaxis()
    ax.set_title("Big Five levels (users)")
    ax.set_xlabel("users")
    _integer_ticks(ax.xaxis)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, ncols=3, frameon=False)


def _categories_panel(ax: Any, stats: BuildStats) -> None:
    """Bars: queries per category."""
    names = [f"{Category(c).title}\n({c})" for c in stats.categories]
    vals = list(stats.categories.values())
    bars = ax.bar(names, vals, color=["#e6550d", "#31a354", "#756bb1"][: len(vals)])
    ax.bar_label(bars, fontsize=9)
    ax.set_title("Queries per category")
    ax.set_ylabel("queries")
    _integer_ticks(ax.yaxis)
    ax.set_ylim(0, max([*vals, 1]) * 1.15)


def _stages_panel(ax: Any, stats: BuildStats) -> None:
    """Stacked bars: ok and rejected keys per stage, with the acceptance rate."""
    if stats.stages:
        names = list(stats.stages)
        ok = [stats.stages[n].ok for n in names]
        rej = [stats.stages[n].rejected for n in names]
        ax.bar(names, ok, color="#41ab5d", label="ok")
        ax.bar(names, rej, bottom=ok, color="#de2d26", label="rejected")
        for i, n in enumerate(names):
            rate = stats.stages[n].acceptance
            if rate is not None:
                ax.text(i, ok[i] + rej[i], f"{rate:.0%}", ha="center", va="bottom", fontsize=8)
        ax.legend(fontsize=8)
        ax.tick_params(axis="x", labelrotation=30)
        _integer_ticks(ax.yaxis)
        ax.set_ylim(0, max(a + b for a, b in zip(ok, rej, strict=True)) * 1.15 or 1)
    else:
        ax.text(0.5, 0.5, "no stage files", ha="center", va="center")
    ax.set_title("Acceptance per stage")
    ax.set_ylabel("keys")


def _reasons_panel(ax: Any, stats: BuildStats) -> None:
    """Horizontal bars: the ten most frequent rejection reasons."""
    if stats.rejection_reasons:
        top = list(stats.rejection_reasons.items())[:10]
        ax.barh([k for k, _ in top], [v for _, v in top], color="#fc9272")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    else:
        ax.text(0.5, 0.5, "no rejections", ha="center", va="center")
    ax.set_title("Rejection reasons")
    ax.set_xlabel("count")
    _integer_ticks(ax.xaxis)
