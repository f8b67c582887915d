"""PNG plots for every report (matplotlib, no display, no global pyplot state).

Each function takes already computed rows and returns PNG bytes, which the
report both writes to ``plots/*.png`` and embeds in ``report.html``. Figures
are drawn on a private :class:`matplotlib.figure.Figure` with the Agg canvas,
so plotting is safe in threads and never opens a window.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from attunement.evaluation.runs import Row, ScalingPoint
from attunement.evaluation.tables import SHORT

WIDTH = 7.0


def _figure(ncols: int = 1, height: float = 3.4, width: float = WIDTH, *, bottom: float = 0.14):
    """A figure with fixed margins (a layout engine costs more than the drawing)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(left=0.55 / width * 1.4, right=0.98, bottom=bottom, top=0.84, wspace=0.3)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _err(stats, means):
    """Asymmetric error bars from Stat intervals (zero where unknown, never negative:
    at 0% and 100% rounding may put a bound a hair past the estimate)."""
    low = [
        max(0.0, m - s.low) if (m is not None and s.low is not None) else 0
        for s, m in zip(stats, means)
    ]
    high = [
        max(0.0, s.high - m) if (m is not None and s.high is not None) else 0
        for s, m in zip(stats, means)
    ]
    return [low, high]


def grouped_bars(
    ax,
    groups: Sequence[str],
    series: Sequence[tuple[str, list]],
    *,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
) -> None:
    """Bars of several series over several groups; each value is a Stat or None."""
    n = max(1, len(series))
    width = 0.8 / n
    for i, (label, stats) in enumerate(series):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        means = [s.mean if s is not None and s.mean is not None else None for s in stats]
        heights = [m if m is not None else 0 for m in means]
        ax.bar(
            xs,
            heights,
            width,
            label=label,
            yerr=_err([s if s is not None else _NONE for s in stats], means),
            capsize=2,
        )
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)


class _None:
    mean = low = high = None


_NONE = _None()


def table_plot(rows_by_split: dict[str, list[Row]], dims: Sequence[str], title: str) -> bytes:
    """Res / Exp / Rec / Avg per system (bars with intervals), one panel per split."""
    fig, axes = _figure(len(rows_by_split), width=max(WIDTH, 4.2 * len(rows_by_split)))
    groups = [SHORT.get(d, d) for d in dims if d != "bystander"] + ["Avg"]
    for ax, (split, rows) in zip(axes, rows_by_split.items()):
        series = [
            (r.system, [r.columns.get(d) for d in dims if d != "bystander"] + [r.avg]) for r in rows
        ]
        grouped_bars(ax, groups, series, ylabel="score (1-5)", ylim=(0, 5.2))
        ax.set_title(f"split: {split}", fontsize=10)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    return _png(fig)


def group_plot(rows: list[Row], key: str, order: Sequence[str], title: str) -> bytes:
    """Avg per system over the values of one grouping (e.g. category)."""
    fig, (ax,) = _figure()
    systems = list(dict.fromkeys(r.system for r in rows))
    present = [g for g in order if any(r.group.get(key) == g for r in rows)]
    series = []
    for system in systems:
        by_group = {r.group.get(key): r.avg for r in rows if r.system == system}
        series.append((system, [by_group.get(g) for g in present]))
    grouped_bars(ax, present, series, ylabel="Avg (1-5)", ylim=(0, 5.2))
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=11)
    return _png(fig)


def big_five_plot(
    rows: list[Row], traits: Sequence[str], levels: Sequence[str], title: str
) -> bytes:
    """Avg by level of each trait (figure 5 of the PersonaEmp paper), a panel per trait."""
    shown = [t for t in traits if any(r.group.get("trait") == t for r in rows)]
    fig, axes = _figure(len(shown) or 1, height=3.2, width=max(WIDTH, 2.4 * len(shown)))
    systems = list(dict.fromkeys(r.system for r in rows))
    for ax, trait in zip(axes, shown):
        for system in systems:
            pts = {
                r.group["level"]: r.avg
                for r in rows
                if r.system == system and r.group.get("trait") == trait
            }
            xs = [i for i, lv in enumerate(levels) if lv in pts and pts[lv].mean is not None]
            means = [pts[levels[i]].mean for i in xs]
            ax.errorbar(
                xs,
                means,
                yerr=_err([pts[levels[i]] for i in xs], means),
                marker="o",
                capsize=2,
                label=system,
            )
        ax.set_xticks(range(len(levels)), levels)
        ax.set_xlim(-0.5, len(levels) - 0.5)
        ax.set_ylim(1, 5)
        ax.set_title(trait, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Avg (1-5)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=11)
    return _png(fig)


def memory_plot(rows: list[Row], titles: dict[str, str], title: str) -> bytes:
    """Table 2 as bars: Avg per memory mode with intervals."""
    fig, (ax,) = _figure(bottom=0.2)
    labels = [
        titles.get(r.memory_mode or "", r.memory_mode or "?")
        + ("" if r.system == (r.memory_mode or "") else f"\n{r.system}")
        for r in rows
    ]
    means = [r.avg.mean or 0 for r in rows]
    ax.bar(
        range(len(rows)),
        means,
        0.6,
        yerr=_err([r.avg for r in rows], [r.avg.mean for r in rows]),
        capsize=3,
        color=["#2f5d8a" if r.memory_mode == "full" else "#8aa9c8" for r in rows],
    )
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylim(0, 5.2)
    ax.set_ylabel("Avg (1-5)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=11)
    return _png(fig)


def scaling_plot(points: list[ScalingPoint], title: str) -> bytes:
    """Avg against k (figure 4b) and against judge samples per reply (figure 8)."""
    fig, (left, right) = _figure(2, width=9.0)
    systems = list(dict.fromkeys(p.system for p in points))
    for system in systems:
        mine = sorted((p for p in points if p.system == system), key=lambda p: p.k)
        ks = [p.k for p in mine]
        means = [p.avg.mean for p in mine]
        lows = [p.avg.low if p.avg.low is not None else p.avg.mean for p in mine]
        highs = [p.avg.high if p.avg.high is not None else p.avg.mean for p in mine]
        line = left.plot(ks, means, marker="o", label=system)[0]
        left.fill_between(ks, lows, highs, alpha=0.15, color=line.get_color())
        right.plot(
            [p.samples_per_reply for p in mine],
            means,
            marker="o",
            color=line.get_color(),
            label=system,
        )
        for p in mine:
            right.annotate(
                f"k={p.k}",
                (p.samples_per_reply, p.avg.mean or 0),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    left.set_xscale("log", base=2)
    ks = sorted({p.k for p in points})
    left.set_xticks(ks, [str(k) for k in ks])
    left.minorticks_off()
    left.set_xlabel("k (judge samples per dimension)")
    left.set_ylabel("Avg (1-5)")
    left.grid(alpha=0.3)
    right.set_xlabel("judge samples per reply (cost)")
    right.grid(alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return _png(fig)


def bars(
    labels: Sequence[str],
    stats: Sequence,
    *,
    ylabel: str,
    title: str,
    ylim: tuple[float, float] | None = None,
    chance: Sequence[float | None] | None = None,
) -> bytes:
    """One bar per label with intervals (EmoBench accuracies, EQ-Bench 3 criteria), and
    each bar's ``chance`` level as a dashed line across it when given."""
    fig, (ax,) = _figure(
        width=max(WIDTH, 0.45 * len(labels)), bottom=0.3 if len(labels) > 6 else 0.14
    )
    means = [s.mean if s.mean is not None else 0 for s in stats]
    ax.bar(
        range(len(labels)),
        means,
        0.6,
        yerr=_err(stats, [s.mean for s in stats]),
        capsize=3,
        color="#2f5d8a",
    )
    marked = [(x, c) for x, c in enumerate(chance or []) if c is not None]
    for i, (x, c) in enumerate(marked):
        ax.hlines(
            c,
            x - 0.4,
            x + 0.4,
            colors="#a33a2b",
            linestyles="dashed",
            label="chance" if not i else None,
        )
    if marked:
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xticks(
        range(len(labels)),
        labels,
        rotation=40 if len(labels) > 6 else 0,
        ha="right" if len(labels) > 6 else "center",
        fontsize=8,
    )
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=11)
    return _png(fig)


# --------------------------------------------------------------------------- judge card


def _card_figure(width: float, height: float):
    """The judge card's figure: laid out by matplotlib (long probe names need room)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _card_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def share_bars(series: Sequence[tuple[str, Sequence[float]]], levels: Sequence[int]) -> bytes:
    """The share of replies at each score, one bar group per score and one bar per
    series (a dimension); the judge card's score distribution."""
    fig, ax = _card_figure(6, 3)
    width = 0.8 / len(series)
    for i, (label, shares) in enumerate(series):
        xs = [v + (i - (len(series) - 1) / 2) * width for v in levels]
        ax.bar(xs, list(shares), width, label=label)
    ax.set_xlabel(f"score ({levels[0]}-{levels[-1]})")
    ax.set_ylabel("share of replies")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return _card_png(fig)


def change_bars(
    labels: Sequence[str],
    changes: Sequence[tuple[float | None, float | None, float | None]],
    colors: Sequence[str],
    *,
    xlabel: str,
) -> bytes:
    """Horizontal bars of changes ``(estimate, low, high)`` around zero, with their
    intervals (the judge card's gaming probes); a missing estimate draws as 0."""
    fig, ax = _card_figure(6, 3.2)
    ys = list(range(len(labels)))
    est = [e or 0.0 for e, _, _ in changes]
    low = [e - (lo if lo is not None else e) for e, (_, lo, _) in zip(est, changes)]
    high = [(hi if hi is not None else e) - e for e, (_, _, hi) in zip(est, changes)]
    ax.barh(ys, est, xerr=[low, high], color=list(colors), capsize=3)
    ax.axvline(0, color="#1d2330", linewidth=0.8)
    ax.set_yticks(ys, list(labels), fontsize=8)
    ax.set_xlabel(xlabel)
    return _card_png(fig)
