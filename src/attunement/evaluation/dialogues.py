"""Systems compared on simulated dialogues: per-user rows, intervals, trajectories, talks.

A system's dialogues come from ``attune converse`` (or ``attune sage``): one
file of finished talks with their manifest. The unit of the statistics is the
**user**, as for single turns the example is: a user's several talks (the
``samples`` of a run) are averaged first, so a user talked to four times does
not count four times, and the intervals are bootstrap intervals over users
(:func:`attunement.evaluation.stats.bootstrap_ci`). Two systems are compared on
the users both have a scorable talk with (:func:`attunement.evaluation.stats.compare_paired`),
exactly as two reply sets are compared on the examples both scored; the rows
are :class:`~attunement.evaluation.runs.Paired` rows (``view="dialogue"``), so
whatever the evaluation does with paired rows applies to them.

Per user and system (unscorable talks left out of the means, counted apart):

- ``final_emotion``: mean final emotion (SAGE's score, 0-100);
- ``auc``: mean area under the emotion trajectory (0-100, docs/multi-turn.md);
- ``success`` / ``failure``: share of the user's talks ending at S / F (0-1).

The page shows each system's emotion trajectories (every talk thin, the mean
over talks thick, the trajectory held at its last value as the area is) and
one talk per system with the simulator's analysis beside each reply.

Talks are only comparable under one simulator: systems whose talks were
simulated by different models are refused.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from pydantic import BaseModel, Field

from attunement.dialogue import (
    Dialogue,
    DialogueScore,
    max_assessments,
    read_dialogues,
    score_dialogue,
    summarize_dialogues,
    trajectory,
)
from attunement.evaluation import html as H
from attunement.evaluation.reporting import fmt_ci, fmt_p, md_table
from attunement.evaluation.runs import Paired
from attunement.evaluation.stats import Stat, bootstrap_ci, compare_paired
from attunement.evaluation.tables import StatsConfig
from attunement.jsonl import manifest_path

#: the per-user figures of a dialogue system, in report order
DIALOGUE_METRICS: tuple[str, ...] = ("final_emotion", "auc", "success", "failure")
#: how each figure is shown (digits, as a percentage)
_SHOWN = {
    "final_emotion": (1, False),
    "auc": (1, False),
    "success": (0, True),
    "failure": (0, True),
}


@dataclass(frozen=True)
class DialogueSet:
    """The finished talks of one system, with the turn cap they were played under."""

    label: str
    dialogues: list[Dialogue]
    steps: int
    path: str | None = None

    @property
    def simulator(self) -> str:
        names = sorted({d.simulator for d in self.dialogues})
        return ", ".join(names)


def run_steps(path: str | Path) -> int:
    """The most assessed replies a talk of a ``converse`` output can have, read
    from its manifest (the turn cap and whether the last reply is assessed)."""
    import json

    manifest = manifest_path(path)
    if not manifest.exists():
        raise ValueError(
            f"{path}: no manifest ({manifest.name}) beside it; the dialogues' turn cap "
            "is read from it (write dialogues with attune converse or attune sage)"
        )
    settings = json.loads(manifest.read_text(encoding="utf-8")).get("settings", {})
    converse = settings.get("converse") or {}
    if "max_turns" not in converse:
        raise ValueError(f"{manifest}: no converse settings (max_turns) recorded")
    return max_assessments(int(converse["max_turns"]), bool(converse["assess_last_reply"]))


def read_dialogue_set(label: str, path: str | Path) -> DialogueSet:
    """A system's talks from a ``converse`` output (its manifest gives the turn cap)."""
    dialogues = read_dialogues(path)
    if not dialogues:
        raise ValueError(f"dialogues {label!r}: {path} holds no finished talk")
    return DialogueSet(label, dialogues, run_steps(path), str(path))


def check_one_simulator(sets: Sequence[DialogueSet]) -> str:
    """The one simulator model all systems were talked to by (else an error)."""
    names = {d.simulator for s in sets for d in s.dialogues}
    if len(names) != 1:
        raise ValueError(
            "dialogue systems were simulated by different models "
            f"({', '.join(sorted(names))}): their emotions are not comparable"
        )
    return names.pop()


# --------------------------------------------------------------------------- rows


def user_values(scores: Sequence[DialogueScore]) -> dict[str, dict[str, float]]:
    """Per user, the mean of each figure over the user's scorable talks.

    >>> s = [DialogueScore(dialogue_id=f"u:{i}", user_id="u", policy="p", unscorable=False,
    ...                    final_emotion=e, auc=50.0, success=e == 100) for i, e in enumerate((100, 60))]
    >>> user_values(s)["u"]
    {'final_emotion': 80.0, 'auc': 50.0, 'success': 0.5, 'failure': 0.0}
    """
    talks: dict[str, list[DialogueScore]] = {}
    for s in scores:
        if not s.unscorable:
            talks.setdefault(s.user_id, []).append(s)
    out = {}
    for user, mine in talks.items():
        out[user] = {
            "final_emotion": fmean(float(s.final_emotion or 0) for s in mine),
            "auc": fmean(float(s.auc or 0.0) for s in mine),
            "success": fmean(float(s.success) for s in mine),
            "failure": fmean(float(s.failure) for s in mine),
        }
    return out


class DialogueRow(BaseModel):
    """One system's figures over its users (intervals over users)."""

    system: str
    simulator: str
    users: int = Field(description="users with at least one scorable talk")
    dialogues: int
    unscorable: int
    metrics: dict[str, Stat]
    mean_turns_to_success: float | None = None
    levels: dict[str, int] = Field(default_factory=dict)
    leaks: int = 0
    unscorable_reasons: dict[str, int] = Field(default_factory=dict)


class DialogueResults(BaseModel):
    """The dialogue part of a report."""

    simulator: str
    rows: list[DialogueRow] = Field(default_factory=list)
    paired: list[Paired] = Field(default_factory=list)


def scores_of(dset: DialogueSet) -> list[DialogueScore]:
    return [score_dialogue(d, steps=dset.steps) for d in dset.dialogues]


def dialogue_row(dset: DialogueSet, cfg: StatsConfig) -> DialogueRow:
    scores = scores_of(dset)
    summary = summarize_dialogues(scores)
    per_user = user_values(scores)
    metrics = {
        m: Stat.of(
            bootstrap_ci(
                [v[m] for v in per_user.values()],
                resamples=cfg.resamples,
                level=cfg.level,
                seed=cfg.seed,
            )
        )
        for m in DIALOGUE_METRICS
    }
    return DialogueRow(
        system=dset.label,
        simulator=dset.simulator,
        users=len(per_user),
        dialogues=summary.dialogues,
        unscorable=summary.unscorable,
        metrics=metrics,
        mean_turns_to_success=summary.mean_turns_to_success,
        levels=summary.levels,
        leaks=summary.leaks,
        unscorable_reasons=summary.unscorable_reasons,
    )


def dialogue_paired(
    dset: DialogueSet, baseline: DialogueSet, cfg: StatsConfig, simulator: str
) -> list[Paired]:
    """``dset`` minus ``baseline`` per figure, on the users both have a value for."""
    a, b = user_values(scores_of(dset)), user_values(scores_of(baseline))
    common = sorted(set(a) & set(b))
    out = []
    for metric in DIALOGUE_METRICS:
        cmp = compare_paired(
            [a[u][metric] for u in common],
            [b[u][metric] for u in common],
            resamples=cfg.resamples,
            level=cfg.level,
            seed=cfg.seed,
        )
        out.append(
            Paired.of(
                cmp,
                view="dialogue",
                judge=f"simulator {simulator}",
                split="dialogues",
                system=dset.label,
                baseline=baseline.label,
                metric=metric,
            )
        )
    return out


def compare_dialogues(
    sets: Sequence[DialogueSet], cfg: StatsConfig, *, baseline: str | None = None
) -> DialogueResults:
    """Rows for every system and each one against the baseline (default: the first)."""
    if not sets:
        raise ValueError("no dialogue systems to compare")
    labels = [s.label for s in sets]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two dialogue systems have the same name: {labels}")
    simulator = check_one_simulator(sets)
    base = next((s for s in sets if s.label == baseline), None) if baseline else sets[0]
    if base is None:
        raise ValueError(f"baseline {baseline!r} is not one of the dialogue systems {labels}")
    rows = [dialogue_row(s, cfg) for s in sets]
    paired = [p for s in sets if s is not base for p in dialogue_paired(s, base, cfg, simulator)]
    return DialogueResults(simulator=simulator, rows=rows, paired=paired)


# --------------------------------------------------------------------------- shown


def _cell(stat: Stat, metric: str) -> str:
    digits, percent = _SHOWN[metric]
    if percent:
        return fmt_ci(Stat(**{k: (None if v is None else 100 * v) for k, v in _stat(stat)}), 0)
    return fmt_ci(stat, digits)


def _stat(stat: Stat) -> list[tuple[str, Any]]:
    return [("mean", stat.mean), ("low", stat.low), ("high", stat.high), ("n", stat.n)]


def row_table(results: DialogueResults) -> tuple[list[str], list[list[str]]]:
    header = [
        "system",
        "final emotion 0-100",
        "area 0-100",
        "success %",
        "failure %",
        "turns to S",
        "users",
        "unscorable",
        "leaks",
    ]
    rows = [
        [
            r.system,
            *(_cell(r.metrics[m], m) for m in DIALOGUE_METRICS),
            "-" if r.mean_turns_to_success is None else f"{r.mean_turns_to_success:.1f}",
            str(r.users),
            f"{r.unscorable}/{r.dialogues}",
            str(r.leaks),
        ]
        for r in results.rows
    ]
    return header, rows


def paired_table(results: DialogueResults) -> tuple[list[str], list[list[str]]]:
    header = ["system", "baseline", "figure", "difference [CI]", "users", "W/L/T", "Wilcoxon p"]
    rows = [
        [
            p.system,
            p.baseline,
            p.metric,
            fmt_ci(p.diff, 2, sign=True),
            str(p.n),
            f"{p.wins}/{p.losses}/{p.ties}",
            fmt_p(p.wilcoxon_p),
        ]
        for p in results.paired
    ]
    return header, rows


def dialogue_markdown(results: DialogueResults) -> str:
    parts = [
        "## Dialogues",
        "",
        f"Simulator: {results.simulator}. Intervals are over users (95% bootstrap).",
        "",
        md_table(*row_table(results)),
    ]
    if results.paired:
        parts += ["", md_table(*paired_table(results))]
    return "\n".join(parts)


def held(dialogue: Dialogue, steps: int) -> list[int]:
    """A talk's emotions at 0..``steps`` assessed replies, held at the last value.

    An unscorable talk has none (an empty list)."""
    if dialogue.final_emotion is None:
        return []
    emotions = trajectory(dialogue)
    return [*emotions, *[emotions[-1]] * (steps + 1 - len(emotions))][: steps + 1]


def trajectory_plot(sets: Sequence[DialogueSet]) -> bytes:
    """Each system's talks (thin) and their mean (thick), emotion 0-100 per reply."""
    from matplotlib.figure import Figure

    width = 3.2 * len(sets) + 0.6
    fig = Figure(figsize=(width, 3.2), dpi=100)
    fig.subplots_adjust(left=0.6 / width, right=0.98, bottom=0.16, top=0.84, wspace=0.25)
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    for ax, dset in zip(axes, sets, strict=True):
        lines = [line for d in dset.dialogues if (line := held(d, dset.steps))]
        xs = list(range(dset.steps + 1))
        for line in lines:
            ax.plot(xs, line, color="#4c72b0", alpha=0.18, linewidth=0.8)
        if lines:
            ax.plot(xs, [fmean(col) for col in zip(*lines)], color="#c44e52", linewidth=2.2)
        for floor in (10, 40, 70, 100):
            ax.axhline(floor, color="#999", linewidth=0.5, linestyle=":")
        ax.set_ylim(0, 102)
        ax.set_xlabel("assessed replies")
        ax.set_title(f"{dset.label} ({len(lines)} talks)", fontsize=9)
    axes[0].set_ylabel("emotion")
    fig.suptitle("emotion trajectories (thin: talks, thick: mean)", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def dialogue_panel(dialogue: Dialogue) -> str:
    """One talk as a two-column table: each turn, and beside each reply the
    simulator's analysis and the emotion it led to (model text escaped)."""
    rows = []
    for turn in dialogue.turns:
        side = ""
        if turn.assessment is not None:
            a = turn.assessment
            moved = (
                f"change {a.change:+d} -> emotion {a.emotion} ({a.level})"
                if a.ok
                else f"unreadable: {a.reason}"
            )
            side = f"<b>{H.esc(moved)}</b>{H.pre(a.analysis)}"
        elif turn.role == "user" and turn.emotion is not None:
            side = H.esc(f"written at emotion {turn.emotion} ({turn.level})")
        rows.append(f"<tr><td><b>{H.esc(turn.role)}</b>{H.pre(turn.text)}</td><td>{side}</td></tr>")
    head = "<tr><th>turn</th><th>the simulator, beside it</th></tr>"
    end = f"ended: {dialogue.end}; final emotion {dialogue.final_emotion}"
    if dialogue.reason:
        end += f" ({dialogue.reason})"
    return f"<p>{H.esc(end)}</p><table>{head}{''.join(rows)}</table>"


def shown_dialogue(dset: DialogueSet) -> Dialogue:
    """The talk a page shows for a system: its longest scorable one (the first
    talk when none is scorable)."""
    scorable = [d for d in dset.dialogues if d.final_emotion is not None]
    return max(scorable, key=lambda d: len(d.turns)) if scorable else dset.dialogues[0]


def dialogue_html(results: DialogueResults, sets: Sequence[DialogueSet], plot: str) -> str:
    """The dialogue section of a page: the tables, the trajectories, one talk each."""
    body = [H.table(*row_table(results))]
    if results.paired:
        body.append(H.table(*paired_table(results)))
    body.append(plot)
    for dset in sets:
        talk = shown_dialogue(dset)
        body.append(
            H.details(f"{dset.label}: talk {talk.dialogue_id} ({talk.end})", dialogue_panel(talk))
        )
    lead = (
        f"Each system talked with simulated users (simulator {results.simulator}). "
        "Figures are means over users with 95% bootstrap intervals; comparisons are "
        "paired by user."
    )
    return H.section("Dialogues", "".join(body), id="dialogues", lead=lead)


def dialogue_summary_line(row: DialogueRow) -> str:
    return (
        f"{row.system}: final emotion {_cell(row.metrics['final_emotion'], 'final_emotion')}, "
        f"success {_cell(row.metrics['success'], 'success')}%, "
        f"{row.unscorable}/{row.dialogues} unscorable"
    )
