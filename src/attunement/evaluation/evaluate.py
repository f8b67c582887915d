"""``attune evaluate``: several reply sets, several judges, several splits, one report.

The protocol is PersonaEmp's (table 1): criteria are written once per
(example, dimension) by one judge and stored (:func:`attunement.judging.prepare_criteria`),
then every judge scores every reply set against those same criteria
(``PereGRMConfig(criteria_mode="fixed")``, temperature 0). Per judge, reply set
and split the report gives Res, Exp, Rec and Avg on 1-5 with bootstrap
intervals, paired comparisons with a baseline, breakdowns by category and Big
Five level, the memory ablation when reply sets differ by memory mode, and
(on request) PereGRM's k scaling with its judge cost.

Everything a run computes is kept in ``OUT``::

    OUT/criteria.jsonl                       examples with their fixed criteria (appended)
    OUT/scores/<judge>/<replies>.jsonl       one RewardBreakdown per reply (score_dataset)
    OUT/scaling/<judge>/<replies>.jsonl      the PereGRM@K run of --k-scaling
    OUT/cache.sqlite                         every judge completion (CLI default)
    OUT/results.json, results.md, plots/*.png, report.html

Each step appends and resumes, and completions are cached, so running the
same command again costs no judge call and only rewrites the report. Here:
the settings, the inputs and the run's steps; the criteria are kept by
:mod:`~attunement.evaluation.criteria`, the numbers computed by
:mod:`~attunement.evaluation.tables` and written by
:mod:`~attunement.evaluation.report`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from attunement.evaluation.cost import cost_of, criteria_samples, shared_cost
from attunement.evaluation.criteria import ensure_criteria
from attunement.evaluation.dialogues import DialogueSet, compare_dialogues, read_dialogue_set
from attunement.evaluation.report import write_evaluation_report
from attunement.evaluation.runs import Cost, EvalRun, Results, System, safe_name
from attunement.evaluation.tables import (
    ScoreSet,
    StatsConfig,
    compute_tables,
    systems_of,
)
from attunement.jsonl import read_jsonl
from attunement.judging import (
    CriteriaConfig,
    ScoreSummary,
    load_reward,
    reward_config,
    score_dataset,
)
from attunement.judging.registry import parse_reward_name
from attunement.llm import ChatModel, call_failure_in, calls_failed
from attunement.records import EMPATHY_DIMENSIONS, Example, Reply, RewardBreakdown

#: settings the evaluation protocol changes from a reward's training defaults
EVAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "peregrm": {"criteria_mode": "fixed", "use_bystander": False},
    "perm": {"use_bystander": False},
}


class EvalSettings(BaseModel):
    """How an evaluation scores and summarises (built at the edge, recorded in results)."""

    model_config = ConfigDict(extra="forbid")

    reward: str = Field("peregrm", description="perm | peregrm (fixed criteria by default)")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="reward config fields, over EVAL_DEFAULTS"
    )
    criteria: CriteriaConfig = Field(default_factory=CriteriaConfig)
    concurrency: int = Field(4, ge=1, description="examples scored at once")
    baseline: str | None = Field(
        None, description="system the others are compared with (default: the first)"
    )
    k_scaling: int | None = Field(
        None,
        ge=1,
        le=64,
        description="run PereGRM@K with criteria per sample and report k = 1, 2, 4, ..., K",
    )
    resamples: int = Field(2000, ge=100, description="bootstrap resamples")
    level: float = Field(0.95, gt=0.5, lt=1.0, description="interval level")
    seed: int = Field(0, description="bootstrap seed")
    examples_shown: int = Field(12, ge=0, description="examples browsable in report.html")
    plots: bool = Field(True, description="draw the PNG plots (the slowest part of a re-run)")

    @property
    def kind(self) -> str:
        return parse_reward_name(self.reward)[0]

    def reward_overrides(self) -> dict[str, Any]:
        return {**EVAL_DEFAULTS.get(self.kind, {}), **self.overrides}

    def reward_config(self):
        return reward_config(self.reward, **self.reward_overrides())

    @property
    def uses_fixed_criteria(self) -> bool:
        return getattr(self.reward_config(), "criteria_mode", None) == "fixed"

    def stats(self) -> StatsConfig:
        return StatsConfig(resamples=self.resamples, level=self.level, seed=self.seed)


# --------------------------------------------------------------------------- inputs

_LABEL = re.compile(r"^([A-Za-z0-9_.@+\-\[\]]+)=(.+)$")


def split_label(text: str) -> tuple[str | None, str]:
    """``"base=runs/a.jsonl"`` -> ``("base", "runs/a.jsonl")``; no label -> ``(None, text)``.

    A model spec's own ``:`` keeps ``openai:http://h/v1#m`` unlabelled.

    >>> split_label("base=a.jsonl"), split_label("a.jsonl"), split_label("openai:http://h/v1?x=1")
    (('base', 'a.jsonl'), (None, 'a.jsonl'), (None, 'openai:http://h/v1?x=1'))
    """
    match = _LABEL.match(text.strip())
    if match and ":" not in match.group(1):
        return match.group(1), match.group(2)
    return None, text.strip()


def spec_label(spec: str) -> str:
    """A short name for a model spec: the served model, the file or folder name.

    >>> spec_label("openai:http://localhost:8000/v1#Qwen/Qwen3-8B"), spec_label("local")
    ('Qwen3-8B', 'local')
    >>> spec_label("local:/models/judge.gguf"), spec_label("hf:/ckpt/step-300/")
    ('judge', 'step-300')
    """
    kind, _, rest = spec.partition(":")
    if kind == "openai":
        model = rest.partition("#")[2]
        return model.rstrip("/").rsplit("/", 1)[-1] if model else "openai"
    if not rest:
        return kind
    name = Path(rest.rstrip("/")).name
    return Path(name).stem if name.endswith((".gguf", ".bin")) else name


def unique_labels(pairs: Sequence[tuple[str | None, str]], default) -> list[tuple[str, str]]:
    """Fill missing labels with ``default(value)`` and refuse duplicates."""
    out, seen = [], set()
    for label, value in pairs:
        label = label or default(value)
        if label in seen:
            raise ValueError(
                f"two inputs are both labelled {label!r}; name them LABEL=PATH (or LABEL=SPEC)"
            )
        seen.add(label)
        out.append((label, value))
    return out


@dataclass
class EvalInputs:
    """Examples per split and replies per file, already validated."""

    splits: dict[str, list[Example]]
    replies: dict[str, list[Reply]]
    paths: dict[str, str] = field(default_factory=dict)  # label -> file, for the record
    #: systems compared on simulated talks (``attune converse`` outputs)
    dialogues: list[DialogueSet] = field(default_factory=list)

    @classmethod
    def read(
        cls,
        data: Sequence[str],
        replies: Sequence[str],
        *,
        skip_invalid: bool = False,
        dialogues: Sequence[str] = (),
    ) -> EvalInputs:
        """Read ``[LABEL=]PATH`` arguments (labels default to the file stem)."""
        stem = lambda p: Path(p).stem
        split_args = unique_labels([split_label(d) for d in data], stem)
        reply_args = unique_labels([split_label(r) for r in replies], stem)
        talk_args = unique_labels([split_label(d) for d in dialogues], stem)
        talks = [read_dialogue_set(label, path) for label, path in talk_args]
        if talks and not reply_args and not split_args:
            return cls(splits={}, replies={}, dialogues=talks)
        if not split_args:
            raise ValueError("give at least one --data file")
        if not reply_args:
            raise ValueError("give at least one --replies file")
        return cls(
            dialogues=talks,
            splits={
                lab: read_jsonl(p, Example, skip_invalid=skip_invalid) for lab, p in split_args
            },
            replies={lab: read_jsonl(p, Reply, skip_invalid=skip_invalid) for lab, p in reply_args},
            paths={
                **{f"data:{lab}": p for lab, p in split_args},
                **{f"replies:{lab}": p for lab, p in reply_args},
            },
        )


def union_examples(splits: Mapping[str, Sequence[Example]]) -> dict[str, Example]:
    """Every example of every split once; an id with two different contents is an error."""
    out: dict[str, Example] = {}
    for label, examples in splits.items():
        seen: set[str] = set()
        for ex in examples:
            if ex.example_id in seen:
                raise ValueError(f"split {label!r}: example id {ex.example_id!r} appears twice")
            seen.add(ex.example_id)
            old = out.get(ex.example_id)
            if old is not None and _content(old) != _content(ex):
                raise ValueError(f"example {ex.example_id!r} differs between splits")
            out.setdefault(ex.example_id, ex)
    return out


def _content(ex: Example) -> dict[str, Any]:
    return ex.model_dump(exclude={"criteria", "meta"})


# --------------------------------------------------------------------------- the run


@dataclass
class _Plan:
    """What a run scores, checked before any judge call."""

    examples: dict[str, Example]
    replies: dict[str, list[Reply]]  # replies file label -> its replies to known examples
    systems: list[System]
    notes: list[str] = field(default_factory=list)

    def drop(self, example_ids: set[str]) -> None:
        """Leave examples out (with their replies)."""
        self.examples = {e: ex for e, ex in self.examples.items() if e not in example_ids}
        self.replies = {
            lab: [r for r in rows if r.example_id in self.examples]
            for lab, rows in self.replies.items()
        }


def plan_run(inputs: EvalInputs, settings: EvalSettings) -> _Plan:
    """Join the replies to the examples by id and name the systems; settings that would
    fail after the judge calls fail here."""
    examples = union_examples(inputs.splits)
    notes: list[str] = []
    replies: dict[str, list[Reply]] = {}
    for label, rows in inputs.replies.items():
        kept = [r for r in rows if r.example_id in examples]
        if len(kept) < len(rows):
            n = len(rows) - len(kept)
            notes.append(
                f"replies {label!r}: {n} {'reply refers' if n == 1 else 'replies refer'} to "
                "examples in none of the --data files and were left out"
            )
        if not kept:
            raise ValueError(f"replies {label!r} answer none of the examples in --data")
        replies[label] = kept
    systems = [s for label, rows in replies.items() for s in systems_of(label, rows)]
    labels = [s.label for s in systems]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two reply sets end up with the same name: {labels}")
    if settings.baseline is not None and settings.baseline not in labels:
        raise ValueError(
            f"--baseline {settings.baseline!r} is not one of the systems ({', '.join(labels)})"
        )
    if settings.k_scaling and settings.kind != "peregrm":
        raise ValueError("--k-scaling needs --reward peregrm")
    return _Plan(examples, replies, systems, notes)


@dataclass
class _Scores:
    """Every score file of a run, read back, with the judges' records and costs."""

    scores: list[ScoreSet] = field(default_factory=list)
    scaling: list[ScoreSet] = field(default_factory=list)
    judges: list[dict[str, Any]] = field(default_factory=list)
    costs: list[Cost] = field(default_factory=list)
    #: every scoring run's summary: replies left unscored by failed judge calls end
    #: the evaluation (:meth:`check_finished`) before any table is computed
    summaries: list[ScoreSummary] = field(default_factory=list)

    def check_finished(self) -> None:
        """Raise the one-line :class:`~attunement.llm.CallsFailedError` when judge
        calls failed: a table over the replies that happened to get through
        would look like a result and is not one."""
        causes = [f.cause for s in self.summaries for f in s.failed if f.cause is not None]
        if causes:
            raise calls_failed(
                causes,
                sum(s.not_scored for s in self.summaries),
                sum(s.to_score for s in self.summaries),
                what="replies not scored (no report written)",
            )

    def by_judge(self) -> dict[str, dict[tuple[str, str], RewardBreakdown]]:
        out: dict[str, dict[tuple[str, str], RewardBreakdown]] = {}
        for s in self.scores:
            out.setdefault(s.judge, {}).update(
                {(b.example_id, b.reply_id): b for b in s.breakdowns}
            )
        return out


async def run_evaluation(
    inputs: EvalInputs,
    judges: Mapping[str, ChatModel],
    out: Path,
    settings: EvalSettings | None = None,
    *,
    criteria_judge: ChatModel | None = None,
    judge_specs: Mapping[str, str] | None = None,
    show_progress: bool | None = None,
    write: bool = True,
) -> EvalRun:
    """Prepare criteria, score every reply set with every judge, compute and write.

    ``judges`` maps a label to an open chat model; ``criteria_judge`` writes the
    fixed criteria (default: the first judge).
    """
    settings = settings or EvalSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not inputs.replies and inputs.dialogues:
        return _dialogues_only(inputs, out, settings, write=write)
    if not judges:
        raise ValueError("give at least one judge")
    config = settings.reward_config()  # bad reward settings fail before any call
    dims = list(config.dimensions)
    empathy = [d for d in EMPATHY_DIMENSIONS if d in dims]
    plan = plan_run(inputs, settings)
    criteria_info: dict[str, Any] = {}
    if settings.uses_fixed_criteria:
        writer = criteria_judge or next(iter(judges.values()))
        criteria_info = await _fixed_criteria(plan, writer, out, settings, empathy, show_progress)
    splits = {
        lab: [plan.examples[e.example_id] for e in exs if e.example_id in plan.examples]
        for lab, exs in inputs.splits.items()
    }
    scored = _Scores()
    for jlabel, judge in judges.items():
        spec = (judge_specs or {}).get(jlabel)
        await _score_with(scored, jlabel, judge, spec, plan, out, settings, show_progress)
    scored.check_finished()
    results = compute_tables(
        splits=splits,
        systems=plan.systems,
        scores=scored.scores,
        judges=list(judges),
        dims=dims,
        empathy=empathy,
        baseline=settings.baseline,
        scaling=scored.scaling,
        scaling_k=settings.k_scaling,
        cfg=settings.stats(),
    )
    _record(results, settings, inputs, plan, splits, scored, criteria_info)
    if inputs.dialogues:
        results.dialogues = _compare_dialogues(inputs, settings)
    run = EvalRun(
        out=out,
        results=results,
        examples=plan.examples,
        systems=plan.systems,
        breakdowns=scored.by_judge(),
        reply_index={(r.example_id, r.reply_id): r for rows in plan.replies.values() for r in rows},
        dialogue_sets=list(inputs.dialogues),
    )
    if write:
        run.report = write_evaluation_report(run)
    return run


def _compare_dialogues(inputs: EvalInputs, settings: EvalSettings) -> dict[str, Any]:
    """The dialogue systems' rows and paired comparisons (docs/multi-turn.md)."""
    table = compare_dialogues(inputs.dialogues, settings.stats(), baseline=settings.baseline)
    return table.model_dump(mode="json")


def _dialogues_only(
    inputs: EvalInputs, out: Path, settings: EvalSettings, *, write: bool
) -> EvalRun:
    """An evaluation of simulated talks only: no judge is needed (the simulator's
    emotion is the figure)."""
    results = Results(settings=settings.model_dump(mode="json"))
    results.dialogues = _compare_dialogues(inputs, settings)
    results.systems = [
        {"label": d.label, "path": d.path, "dialogues": len(d.dialogues)} for d in inputs.dialogues
    ]
    run = EvalRun(
        out=out,
        results=results,
        examples={},
        systems=[],
        breakdowns={},
        dialogue_sets=list(inputs.dialogues),
    )
    if write:
        run.report = write_evaluation_report(run)
    return run


async def _fixed_criteria(
    plan: _Plan,
    writer: ChatModel,
    out: Path,
    settings: EvalSettings,
    empathy: Sequence[str],
    show_progress: bool | None,
) -> dict[str, Any]:
    """Criteria for every example (resuming); examples left without are dropped."""
    config = settings.criteria.model_copy(update={"dimensions": tuple(empathy)})
    info = await ensure_criteria(
        plan.examples,
        writer,
        out,
        config,
        concurrency=settings.concurrency,
        show_progress=show_progress,
    )
    causes = [
        cause
        for errors in info["failed"].values()
        for cause in [next(filter(None, map(call_failure_in, errors.values())), None)]
        if cause is not None
    ]
    if causes:  # the writer's calls failed: nothing to leave out, everything to retry
        raise calls_failed(
            causes, len(causes), len(plan.examples), what="examples without criteria (no scores)"
        )
    failed = set(info["failed"])
    if failed:
        plan.notes.append(
            f"{len(failed)} example(s) have no criteria (the judge's answers could "
            "not be read) and were left out; run again to retry them"
        )
        plan.drop(failed)
    return info


async def _score_with(
    scored: _Scores,
    label: str,
    judge: ChatModel,
    spec: str | None,
    plan: _Plan,
    out: Path,
    settings: EvalSettings,
    show_progress: bool | None,
) -> None:
    """One judge scores every replies file (and, asked for, the PereGRM@K run)."""
    reward = load_reward(settings.reward, judge, **settings.reward_overrides())
    record = {"label": label, "spec": spec, "model": judge.name, "reward": reward.manifest()}
    scored.judges.append(record)
    folder = safe_name(label)
    for sset in await _score_files(
        reward, label, plan, out / "scores" / folder, settings, show_progress, scored.summaries
    ):
        scored.scores.append(sset)
        scored.costs.append(cost_of(label, sset.source, sset.breakdowns))
    if not settings.k_scaling:
        return
    overrides = {
        **settings.reward_overrides(),
        "criteria_mode": "shared",
        "k": settings.k_scaling,
        "use_bystander": False,
    }
    scaled = load_reward("peregrm", judge, **overrides)
    record["k_scaling_reward"] = scaled.manifest()
    files = await _score_files(
        scaled, label, plan, out / "scaling" / folder, settings, show_progress, scored.summaries
    )
    scored.scaling += files
    # the criteria are written once per example for every system: one line for all
    empathy = scaled.config.empathy_dimensions
    every = [b for sset in files for b in sset.breakdowns]
    scored.costs.append(
        shared_cost(
            label,
            [sset.breakdowns for sset in files],
            what=f"k scaling (peregrm@{settings.k_scaling}), criteria shared by the systems",
            shared_samples=criteria_samples(every, empathy, settings.k_scaling),
        )
    )


async def _score_files(
    reward,
    judge: str,
    plan: _Plan,
    folder: Path,
    settings: EvalSettings,
    show_progress: bool | None,
    summaries: list[ScoreSummary],
) -> list[ScoreSet]:
    """Every replies file scored with ``reward`` into ``folder/<replies>.jsonl``
    (each run's summary appended to ``summaries``)."""
    out = []
    for flabel, rows in plan.replies.items():
        if rows:
            path = folder / f"{safe_name(flabel)}.jsonl"
            breakdowns, summary = await _score(
                reward, plan.examples, rows, path, settings, show_progress
            )
            summaries.append(summary)
            out.append(ScoreSet(judge, flabel, breakdowns))
    return out


def _record(
    results: Results,
    settings: EvalSettings,
    inputs: EvalInputs,
    plan: _Plan,
    splits: Mapping[str, Sequence[Example]],
    scored: _Scores,
    criteria: dict[str, Any],
) -> None:
    """What produced the numbers, into the results (results.json keeps it)."""
    results.settings = settings.model_dump(mode="json")
    results.judges = scored.judges
    results.systems = [
        {
            "label": s.label,
            "file": s.source,
            "path": inputs.paths.get(f"replies:{s.source}"),
            "memory_mode": s.memory_mode,
            "policy": s.policy,
            "replies": len(s.reply_keys),
            "examples": len({eid for eid, _ in s.reply_keys}),
        }
        for s in plan.systems
    ]
    results.splits = [
        {"label": lab, "path": inputs.paths.get(f"data:{lab}"), "examples": len(exs)}
        for lab, exs in splits.items()
    ]
    results.criteria = criteria
    results.cost = scored.costs
    results.notes = plan.notes


async def _score(
    reward,
    examples: dict[str, Example],
    rows: list[Reply],
    path: Path,
    settings: EvalSettings,
    show_progress: bool | None,
) -> tuple[list[RewardBreakdown], ScoreSummary]:
    ids = {r.example_id for r in rows}
    summary = await score_dataset(
        reward,
        [examples[eid] for eid in sorted(ids)],
        rows,
        path,
        concurrency=settings.concurrency,
        show_progress=show_progress,
    )
    wanted = {(r.example_id, r.reply_id) for r in rows}
    rows_read = read_jsonl(path, RewardBreakdown)
    return [b for b in rows_read if (b.example_id, b.reply_id) in wanted], summary
