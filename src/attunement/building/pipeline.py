"""The resumable build: source -> users -> stages -> examples.

Each LLM stage appends one :class:`StageRecord` per key to
``DIR/stages/<stage>.jsonl`` (flushed per record) as soon as it is done, and
skips the keys already there when run again; rejections are records too, so
they are not redone. Killing a build loses at most the calls in flight, and a
rerun with the same settings produces the same final files.

Keys: ``<user_id>`` for extract, filter, persona, bigfive and situations;
``<user_id>:<category>`` for queries and inspect (one situation, hence one
query, per category and user).

Stage results always come from the stage files, so ``stages=[...]`` only
chooses which stages may do *new* work: ``stages=["persona"]`` adds personas
for users that lack one and leaves everything else alone. The filter (no LLM)
is recomputed on every run from the current rules; export is rewritten when
selected.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from attunement.building.config import STAGES, BuildConfig
from attunement.building.export import write_dataset
from attunement.building.extraction import run_extract
from attunement.building.filters import filter_user
from attunement.building.importers import load_users
from attunement.building.stages import (
    STAGE_PROMPTS,
    StageRecord,
    item_key,
    run_bigfive,
    run_inspect,
    run_persona,
    run_query,
    run_situations,
)
from attunement.concurrency import run_bounded
from attunement.jsonl import JsonlAppender, RecordError, parse_line, write_jsonl, write_manifest
from attunement.llm import ChatModel
from attunement.prompts import load_prompt
from attunement.records import (
    BigFive,
    Example,
    MemoryItem,
    Persona,
    Query,
    Situation,
    Usage,
    UserHistory,
)

LLM_STAGES = ("extract", "persona", "bigfive", "situations", "queries", "inspect")


class StageCount(BaseModel):
    """How one stage went: keys it saw, outcomes, and how many were new this run."""

    model_config = ConfigDict(extra="forbid")

    input: int = 0
    ok: int = 0
    rejected: int = 0
    new: int = 0
    resumed: int = 0
    pending: int = 0  # eligible keys not done because the stage was not selected


class BuildReport(BaseModel):
    """The summary :func:`build_dataset` returns (also stored in the manifest)."""

    model_config = ConfigDict(extra="forbid")

    out_dir: str
    users: int
    stages: dict[str, StageCount] = Field(default_factory=dict)
    accepted: int = 0  # examples exported
    accepted_users: int = 0
    inspection_passed: int = 0  # exported examples that passed every inspection check
    rejected: int = 0  # rejection records over all stages
    rejection_reasons: dict[str, int] = Field(default_factory=dict)
    paths: dict[str, str] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    seconds: float = 0.0
    prompt_renderer: str | None = None


class StageStore:
    """The records of one stage file, loaded for resuming and appended to."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, StageRecord] = {}
        if path.exists():
            lines = path.read_text(encoding="utf-8").split("\n")
            for lineno, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    rec = parse_line(path, lineno, line, StageRecord)
                except RecordError:
                    if lineno == len(lines):  # a torn last line (no newline): redo it
                        continue
                    raise
                self.records[rec.key] = rec

    def get(self, key: str) -> StageRecord | None:
        return self.records.get(key)

    def ok(self, key: str) -> StageRecord | None:
        rec = self.records.get(key)
        return rec if rec is not None and rec.status == "ok" else None


Job = tuple[str, Callable[[], Awaitable[StageRecord]]]


class _Build:
    def __init__(self, out_dir: Path, model: ChatModel, config: BuildConfig, stages: set[str],
                 seed: int, concurrency: int, show_progress: bool | None):
        self.out_dir = out_dir
        self.model = model
        self.config = config
        self.selected = stages
        self.seed = seed
        self.concurrency = concurrency
        self.show_progress = show_progress
        self.counts: dict[str, StageCount] = {}
        self.stores = {s: StageStore(out_dir / "stages" / f"{s}.jsonl") for s in LLM_STAGES}
        self.keys: dict[str, list[str]] = {}

    async def run_stage(self, stage: str, jobs: list[Job]) -> None:
        store = self.stores[stage]
        count = StageCount(input=len(jobs))
        self.keys[stage] = [k for k, _ in jobs]
        todo = [(k, fn) for k, fn in jobs if k not in store.records]
        count.resumed = len(jobs) - len(todo)
        if todo and stage in self.selected:
            with JsonlAppender(store.path) as out:

                def on_result(_job: Job, rec: StageRecord) -> None:
                    out.write(rec)
                    store.records[rec.key] = rec
                    count.new += 1

                await run_bounded(todo, lambda job: job[1](), limit=self.concurrency,
                                  on_result=on_result, description=stage,
                                  show_progress=self.show_progress)
        count.pending = len(jobs) - count.resumed - count.new
        for key, _ in jobs:
            rec = store.records.get(key)
            if rec is not None:
                if rec.status == "ok":
                    count.ok += 1
                else:
                    count.rejected += 1
        self.counts[stage] = count


def needs_memory_extraction(user: UserHistory) -> bool:
    """True for histories with conversations but no memories and no annotation."""
    return not user.memories and bool(user.sessions) and not user.meta.get("annotated")


def _with_memories(user: UserHistory, rec: StageRecord | None) -> UserHistory:
    if rec is None or rec.status != "ok":
        return user
    memories = [MemoryItem.model_validate(m) for m in rec.output.get("memories", [])]
    return user.model_copy(update={"memories": memories})


async def build_dataset(
    source: str | Sequence[UserHistory],
    out_dir: Path,
    model: ChatModel,
    config: BuildConfig | None = None,
    *,
    stages: Sequence[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    concurrency: int = 4,
    show_progress: bool | None = None,
) -> BuildReport:
    """Build (or resume building) a PersonaEmp-style dataset in ``out_dir``.

    ``source`` is ``KIND:PATH`` (see :mod:`attunement.building.importers`) or
    user histories already in memory. ``limit`` keeps the first N users of the
    source. ``stages`` selects which stages may do new work (default: all of
    :data:`~attunement.building.config.STAGES`).
    """
    started = time.monotonic()
    config = config or BuildConfig()
    out_dir = Path(out_dir)
    selected = set(stages) if stages is not None else set(STAGES)
    unknown = selected - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if limit is not None and limit < 1:
        raise ValueError("limit must be >= 1")

    if isinstance(source, str):
        users = load_users(source, config.import_options)
        source_label = source
    else:
        users = list(source)
        source_label = f"<{len(users)} user histories given in memory>"
        ids = [u.user_id for u in users]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate user ids in the given histories: {dupes[:5]}")
    if limit is not None:
        users = users[:limit]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "users.jsonl", users)
    usage_before = model.usage.snapshot()
    b = _Build(out_dir, model, config, selected, seed, concurrency, show_progress)
    by_id = {u.user_id: u for u in users}

    # extract: users that arrive without memories (and no annotation) but with conversations
    needs_extraction = {u.user_id for u in users if needs_memory_extraction(u)}
    await b.run_stage("extract", [
        (u.user_id, lambda u=u: run_extract(model, u, config, seed=seed))
        for u in users if u.user_id in needs_extraction])
    users = [_with_memories(u, b.stores["extract"].get(u.user_id))
             if u.user_id in needs_extraction else u for u in users]
    by_id = {u.user_id: u for u in users}

    # filter: cheap and deterministic, recomputed from the current rules every run
    filter_records = []
    for u in users:
        d = filter_user(u, config.filter_rules)
        extract_rec = b.stores["extract"].get(u.user_id) if u.user_id in needs_extraction else None
        if not d.keep and extract_rec is not None and extract_rec.status == "rejected":
            d = d.model_copy(update={"reason_code": "filter.no_memories",
                                     "reason": f"no memories: {extract_rec.reason}"})
        filter_records.append(StageRecord(
            stage="filter", key=u.user_id, user_id=u.user_id,
            status="ok" if d.keep else "rejected", reason_code=d.reason_code, reason=d.reason,
            output={"deep_memory_ids": d.deep_memory_ids}))
    write_jsonl(out_dir / "stages" / "filter.jsonl", filter_records)
    kept = [by_id[r.user_id] for r in filter_records if r.status == "ok"]
    b.counts["filter"] = StageCount(input=len(users), ok=len(kept),
                                    rejected=len(users) - len(kept), new=len(users))
    b.keys["filter"] = [u.user_id for u in users]

    # persona (with the depth gate)
    await b.run_stage("persona", [
        (u.user_id, lambda u=u: run_persona(model, u, config, seed=seed)) for u in kept])
    personas = {u.user_id: Persona.model_validate(rec.output) for u in kept
                if (rec := b.stores["persona"].ok(u.user_id))}

    # Big Five
    await b.run_stage("bigfive", [
        (uid, lambda uid=uid: run_bigfive(model, by_id[uid], personas[uid], config, seed=seed))
        for uid in personas])
    full: dict[str, Persona] = {}
    for uid, persona in personas.items():
        rec = b.stores["bigfive"].ok(uid)
        if rec is not None:
            full[uid] = persona.model_copy(update={"big_five": BigFive.model_validate(rec.output)})

    # situations
    await b.run_stage("situations", [
        (uid, lambda uid=uid: run_situations(model, by_id[uid], full[uid], config, seed=seed))
        for uid in full])
    situations: list[tuple[str, Situation]] = []
    for uid in full:
        rec = b.stores["situations"].ok(uid)
        if rec is not None:
            situations += [(uid, Situation.model_validate(s)) for s in rec.output["situations"]]

    # queries
    await b.run_stage("queries", [
        (item_key(uid, s.category),
         lambda uid=uid, s=s: run_query(model, by_id[uid], full[uid], s, config, seed=seed))
        for uid, s in situations])
    queries: list[tuple[str, Query]] = []
    for uid, s in situations:
        rec = b.stores["queries"].ok(item_key(uid, s.category))
        if rec is not None:
            queries.append((uid, Query.model_validate(rec.output)))

    # inspection
    await b.run_stage("inspect", [
        (q.query_id, lambda uid=uid, q=q: run_inspect(model, by_id[uid], full[uid], q, config,
                                                      seed=seed))
        for uid, q in queries])

    # export
    examples: list[Example] = []
    for uid, q in queries:
        insp = b.stores["inspect"].ok(q.query_id)
        if insp is None and config.inspection == "annotate":
            insp = b.stores["inspect"].get(q.query_id)
            if insp is not None and "checks" not in (insp.output or {}):
                insp = None  # the inspector gave no verdict at all: nothing to annotate
        if insp is None:
            continue
        passed = insp.status == "ok"
        user = by_id[uid]
        examples.append(Example(
            example_id=q.query_id, query=q.text, user_id=uid, category=q.category,
            situation=q.situation, persona=full[uid], memories=user.memories,
            language=q.language,
            meta={"source": user.source, "relevant_memory_ids": q.relevant_memory_ids,
                  "reasoning": q.reasoning, "inspection": insp.output.get("reason"),
                  "inspection_passed": passed,
                  "inspection_checks": insp.output.get("checks", {})},
        ))

    report = BuildReport(out_dir=str(out_dir), users=len(users))
    report.paths = {"out_dir": str(out_dir), "users": str(out_dir / "users.jsonl"),
                    "stages": str(out_dir / "stages")}
    if "export" in selected:
        paths, renderer = write_dataset(out_dir, examples)
        report.paths.update({k: str(v) for k, v in paths.items()})
        report.prompt_renderer = renderer
        b.counts["export"] = StageCount(input=len(examples), ok=len(examples), new=len(examples))

    reasons: Counter[str] = Counter()
    for rec in filter_records:
        if rec.status == "rejected":
            reasons[rec.reason_code or "unknown"] += 1
    for stage in LLM_STAGES:
        for key in b.keys.get(stage, []):
            rec = b.stores[stage].get(key)
            if rec is not None and rec.status == "rejected":
                reasons[rec.reason_code or "unknown"] += 1
    report.stages = {s: b.counts[s] for s in STAGES if s in b.counts}
    report.accepted = len(examples)
    report.accepted_users = len({e.user_id for e in examples})
    report.inspection_passed = sum(1 for e in examples if e.meta["inspection_passed"])
    report.rejected = sum(reasons.values())
    report.rejection_reasons = dict(reasons.most_common())
    report.usage = _usage_delta(usage_before, model.usage.snapshot())
    report.seconds = round(time.monotonic() - started, 3)

    manifest = out_dir / "manifest.json"
    write_manifest(
        manifest, kind="attunement.build", source=source_label, limit=limit, seed=seed,
        model=model.name, stages=sorted(selected, key=STAGES.index), concurrency=concurrency,
        prompts={stage: {"name": name, "version": load_prompt(name).version}
                 for stage, name in STAGE_PROMPTS.items()},
        filter_rules_version=config.filter_rules.version,
        categories=[c.value for c in config.categories],
        config=json.loads(config.model_dump_json()),
        report=json.loads(report.model_dump_json()),
    )
    report.paths["manifest"] = str(manifest)
    return report


def _usage_delta(before: Usage, after: Usage) -> Usage:
    return Usage(calls=after.calls - before.calls,
                 cached_calls=after.cached_calls - before.cached_calls,
                 prompt_tokens=after.prompt_tokens - before.prompt_tokens,
                 completion_tokens=after.completion_tokens - before.completion_tokens)


def load_stage_records(out_dir: Path, stage: str) -> list[StageRecord]:
    """The records of one stage file of a build (for stats and inspection)."""
    return list(StageStore(Path(out_dir) / "stages" / f"{stage}.jsonl").records.values())


__all__ = ["BuildReport", "StageCount", "StageStore", "build_dataset", "load_stage_records"]
