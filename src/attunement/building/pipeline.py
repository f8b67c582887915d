"""The resumable build: source -> users -> stages -> examples.

Each LLM stage appends one :class:`StageRecord` per key to
``DIR/stages/<stage>.jsonl`` (flushed per record) as soon as it is done, and
skips the keys already there when run again; rejections are records too, so
they are not redone. Killing a build loses at most the calls in flight, and a
rerun with the same settings produces the same final files.

Keys: ``<user_id>`` for extract, filter, persona, bigfive and situations;
``<user_id>:<category>`` (``:<n>`` for a category's n-th situation) for
queries and inspect.

**Resume never reuses stale work.** Every record carries the fingerprint of
its call (model, prompt version, rendered messages, which hold the upstream
outputs, schema and settings; see :class:`~attunement.building.stages.StageCall`).
When the call a key would make now has another fingerprint, the record is
stale: if an upstream record of the same user was (re)done in this run, it is
redone; otherwise the build stops before calling anything in that stage and
says what changed (``redo=["stale"]`` redoes them). ``redo`` also selects
records to do again without deleting files: ``rejected``, ``codes:C1,C2``
(reason codes, e.g. ``inspect.language``) and ``keys:FILE`` (record keys, one
per line: a user id for the user-level stages, ``user:CAT`` for an item). A redo asks for sample numbers the key has not used, so a
cache serves fresh answers. The newest record of a key wins; files only grow.

``stages=[...]`` only chooses which stages may do *new* work:
``stages=["persona"]`` adds personas for users that lack one and leaves
everything else alone. The filter (no LLM) is recomputed on every run from the
current rules; export is rewritten when selected. A lock file keeps two builds
off one folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from attunement.building.config import LLM_STAGES, STAGES, BuildConfig
from attunement.building.export import write_dataset, write_users
from attunement.building.extraction import extract_call
from attunement.building.filters import filter_user
from attunement.building.importers import load_users
from attunement.building.stages import (
    STAGE_PROMPTS,
    StageCall,
    StageRecord,
    bigfive_call,
    inspect_call,
    persona_call,
    query_call,
    situation_items,
    situations_call,
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


class StageCount(BaseModel):
    """How one stage went: keys it saw, outcomes, and how many were new this run."""

    model_config = ConfigDict(extra="forbid")

    input: int = 0
    ok: int = 0
    rejected: int = 0
    new: int = 0
    resumed: int = 0
    redone: int = 0  # of the new ones, keys that had a record before (redo or stale)
    pending: int = 0  # eligible keys not done because the stage was not selected
    usage: Usage = Field(default_factory=Usage)


class StageEstimate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calls: int = 0  # at most, one attempt per key, every earlier key passing
    prompt_tokens: int = 0  # rough: characters / 4
    max_completion_tokens: int = 0


class BuildEstimate(BaseModel):
    """What a build may cost, known before the first call (upper bounds)."""

    model_config = ConfigDict(extra="forbid")

    users: int = 0  # users the filter keeps
    stages: dict[str, StageEstimate] = Field(default_factory=dict)

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.stages.values())


class BuildReport(BaseModel):
    """The summary :func:`build_dataset` returns (also stored in the manifest)."""

    model_config = ConfigDict(extra="forbid")

    out_dir: str
    users: int
    stages: dict[str, StageCount] = Field(default_factory=dict)
    accepted: int = 0  # examples exported
    accepted_users: int = 0
    inspection_passed: int = 0  # exported examples that passed every inspection gate
    rejected: int = 0  # rejection records over all stages
    rejection_reasons: dict[str, int] = Field(default_factory=dict)
    languages: dict[str, int] = Field(default_factory=dict)  # exported examples per language
    scrubbed: dict[str, int] = Field(default_factory=dict)  # personal data replaced at import
    import_warnings: int = 0
    estimate: BuildEstimate | None = None
    paths: dict[str, str] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    seconds: float = 0.0
    prompt_renderer: str | None = None


class StaleRecordsError(ValueError):
    """Records made with other settings, model or inputs, and no redo asked for."""


class EndpointError(ValueError):
    """The model's answers are not JSON at all (checked on the first request)."""


class BuildLockedError(RuntimeError):
    """Another build is writing to the same folder."""


class StageStore:
    """The records of one stage file, loaded for resuming and appended to.

    A key may have several records (a redo appends a new one): the last wins.
    """

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


class Redo:
    """Which existing records to do again (see the module docstring)."""

    def __init__(self, specs: Sequence[str] = ()):
        self.stale = False
        self.rejected = False
        self.codes: set[str] = set()
        self.keys: set[str] = set()
        for spec in specs:
            kind, _, arg = spec.partition(":")
            if spec == "stale":
                self.stale = True
            elif spec == "rejected":
                self.rejected = True
            elif kind == "codes" and arg:
                self.codes |= {c.strip() for c in arg.split(",") if c.strip()}
            elif kind == "keys" and arg:
                path = Path(arg)
                if not path.exists():
                    raise FileNotFoundError(f"{path}: no such file (redo {spec!r})")
                self.keys |= {
                    line.strip()
                    for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and not line.startswith("#")
                }
            else:
                raise ValueError(
                    f"unknown redo {spec!r}: use stale, rejected, "
                    "codes:STAGE.CODE[,...] or keys:FILE"
                )

    def selects(self, rec: StageRecord) -> bool:
        if self.rejected and rec.status == "rejected":
            return True
        if rec.reason_code and rec.reason_code in self.codes:
            return True
        return rec.key in self.keys


class BuildLock:
    """An exclusive lock on a build folder (``DIR/.lock``), released on exit."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / ".lock"
        self._fh: Any = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise BuildLockedError(
                f"{self.path.parent}: another build is running on this folder "
                f"(process {holder}); wait for it or build into another folder"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def needs_memory_extraction(user: UserHistory) -> bool:
    """True for histories with conversations but no memories and no annotation."""
    return not user.memories and bool(user.sessions) and not user.meta.get("annotated")


def _usage_delta(before: Usage, after: Usage) -> Usage:
    return Usage(
        calls=after.calls - before.calls,
        cached_calls=after.cached_calls - before.cached_calls,
        prompt_tokens=after.prompt_tokens - before.prompt_tokens,
        completion_tokens=after.completion_tokens - before.completion_tokens,
    )


class _Build:
    """One run over a build folder: one method per stage, in order."""

    def __init__(
        self,
        out_dir: Path,
        users: list[UserHistory],
        models: dict[str, ChatModel],
        config: BuildConfig,
        *,
        selected: set[str],
        redo: Redo,
        seed: int,
        concurrency: int,
        show_progress: bool | None,
        probe: bool,
    ):
        self.out_dir = out_dir
        self.users = users
        self.by_id = {u.user_id: u for u in users}
        self.models = models
        self.config = config
        self.selected = selected
        self.redo = redo
        self.seed = seed
        self.concurrency = concurrency
        self.show_progress = show_progress
        self.probe_pending = probe
        self.counts: dict[str, StageCount] = {}
        self.stores = {s: StageStore(out_dir / "stages" / f"{s}.jsonl") for s in LLM_STAGES}
        self.keys: dict[str, list[str]] = {}
        self.fresh_users: set[str] = set()  # users with a record (re)done in this run
        self.filter_records: list[StageRecord] = []
        self.extracted: set[str] = set()

    # ------------------------------------------------------------------ machinery

    def ok_output(self, stage: str, key: str) -> dict[str, Any] | None:
        rec = self.stores[stage].ok(key)
        return rec.output if rec is not None else None

    def _plan(self, stage: str, calls: list[StageCall[Any]]) -> tuple[list[StageCall[Any]], int]:
        """The calls to make now (new, redone or stale-with-fresh-input); refuse other stale."""
        store = self.stores[stage]
        todo: list[StageCall[Any]] = []
        stale: list[tuple[StageCall[Any], StageRecord]] = []
        redone = 0
        for call in calls:
            rec = store.get(call.key)
            if rec is None:
                todo.append(call)
                continue
            changed = rec.fingerprint != call.fingerprint
            if self.redo.selects(rec) or (
                changed and (self.redo.stale or call.user_id in self.fresh_users)
            ):
                call.sample_base = rec.next_sample
                todo.append(call)
                redone += 1
            elif changed:
                stale.append((call, rec))
        if stale:
            raise StaleRecordsError(_stale_message(stage, store.path, stale))
        return todo, redone

    async def run_stage(self, stage: str, calls: list[StageCall[Any]]) -> None:
        store = self.stores[stage]
        count = StageCount(input=len(calls))
        self.keys[stage] = [c.key for c in calls]
        todo, count.redone = self._plan(stage, calls)
        count.resumed = len(calls) - len(todo)
        model = self.models[stage]
        before = model.usage.snapshot()
        if todo and stage in self.selected:
            with JsonlAppender(store.path) as out:

                def keep(rec: StageRecord) -> None:
                    out.write(rec)
                    store.records[rec.key] = rec
                    self.fresh_users.add(rec.user_id)
                    count.new += 1

                if self.probe_pending:
                    self.probe_pending = False
                    keep(_probed(stage, await todo[0].run()))
                    todo = todo[1:]
                await run_bounded(
                    todo,
                    lambda call: call.run(),
                    limit=self.concurrency,
                    on_result=lambda _call, rec: keep(rec),
                    description=f"{stage} ({len(calls)} keys)",
                    show_progress=self.show_progress,
                )
        else:
            count.redone = 0
        count.usage = _usage_delta(before, model.usage.snapshot())
        count.pending = len(calls) - count.resumed - count.new
        for call in calls:
            rec = store.get(call.key)
            if rec is not None and rec.fingerprint == call.fingerprint:
                count.ok += rec.status == "ok"
                count.rejected += rec.status == "rejected"
        self.counts[stage] = count

    # ------------------------------------------------------------------ stages

    async def extract(self) -> None:
        """Memories for chat-log users that arrive without any (and no annotation)."""
        needs = [u for u in self.users if needs_memory_extraction(u)]
        await self.run_stage(
            "extract",
            [extract_call(u, self.models["extract"], self.config, seed=self.seed) for u in needs],
        )
        for u in needs:
            out = self.ok_output("extract", u.user_id)
            if out is not None:
                memories = [MemoryItem.model_validate(m) for m in out.get("memories", [])]
                self.by_id[u.user_id] = u.model_copy(update={"memories": memories})
        self.users = [self.by_id[u.user_id] for u in self.users]
        self.extracted = {u.user_id for u in needs}

    def filter(self) -> list[UserHistory]:
        """The depth filter: cheap and deterministic, recomputed from the current rules."""
        records = []
        for u in self.users:
            d = filter_user(u, self.config.filter_rules)
            extract_rec = (
                self.stores["extract"].get(u.user_id) if u.user_id in self.extracted else None
            )
            if not d.keep and extract_rec is not None and extract_rec.status == "rejected":
                d = d.model_copy(
                    update={
                        "reason_code": "filter.no_memories",
                        "reason": f"no memories: {extract_rec.reason}",
                    }
                )
            records.append(
                StageRecord(
                    stage="filter",
                    key=u.user_id,
                    user_id=u.user_id,
                    status="ok" if d.keep else "rejected",
                    reason_code=d.reason_code,
                    reason=d.reason,
                    output={"deep_memory_ids": d.deep_memory_ids},
                )
            )
        write_jsonl(self.out_dir / "stages" / "filter.jsonl", records)
        self.filter_records = records
        kept = [self.by_id[r.user_id] for r in records if r.status == "ok"]
        self.counts["filter"] = StageCount(
            input=len(self.users),
            ok=len(kept),
            rejected=len(self.users) - len(kept),
            new=len(self.users),
        )
        self.keys["filter"] = [u.user_id for u in self.users]
        return kept

    async def persona(self, kept: list[UserHistory]) -> dict[str, Persona]:
        """Persona and depth gate per kept user."""
        await self.run_stage(
            "persona",
            [persona_call(u, self.models["persona"], self.config, seed=self.seed) for u in kept],
        )
        return {
            u.user_id: Persona.model_validate(out)
            for u in kept
            if (out := self.ok_output("persona", u.user_id)) is not None
        }

    async def bigfive(self, personas: dict[str, Persona]) -> dict[str, Persona]:
        """Big Five levels added to each persona."""
        await self.run_stage(
            "bigfive",
            [
                bigfive_call(
                    self.by_id[uid], p, self.models["bigfive"], self.config, seed=self.seed
                )
                for uid, p in personas.items()
            ],
        )
        return {
            uid: p.model_copy(update={"big_five": BigFive.model_validate(out)})
            for uid, p in personas.items()
            if (out := self.ok_output("bigfive", uid)) is not None
        }

    async def situations(self, personas: dict[str, Persona]) -> list[tuple[str, str, Situation]]:
        """(user id, item key, situation) for every supported situation."""
        await self.run_stage(
            "situations",
            [
                situations_call(
                    self.by_id[uid], p, self.models["situations"], self.config, seed=self.seed
                )
                for uid, p in personas.items()
            ],
        )
        return [
            (uid, key, s)
            for uid in personas
            if (out := self.ok_output("situations", uid)) is not None
            for key, s in situation_items(uid, out)
        ]

    async def queries(
        self, personas: dict[str, Persona], situations: list[tuple[str, str, Situation]]
    ) -> list[tuple[str, Query]]:
        """One query per situation."""
        await self.run_stage(
            "queries",
            [
                query_call(
                    self.by_id[uid],
                    personas[uid],
                    key,
                    s,
                    self.models["queries"],
                    self.config,
                    seed=self.seed,
                )
                for uid, key, s in situations
            ],
        )
        return [
            (uid, Query.model_validate(out))
            for uid, key, _ in situations
            if (out := self.ok_output("queries", key)) is not None
        ]

    async def inspect(
        self, personas: dict[str, Persona], queries: list[tuple[str, Query]]
    ) -> list[tuple[str, Query, StageRecord]]:
        """The inspector's verdict on each query; (user, query, verdict) of those exported."""
        await self.run_stage(
            "inspect",
            [
                inspect_call(
                    self.by_id[uid],
                    personas[uid],
                    q,
                    self.models["inspect"],
                    self.config,
                    seed=self.seed,
                )
                for uid, q in queries
            ],
        )
        kept = []
        for uid, q in queries:
            rec = self.stores["inspect"].get(q.query_id)
            if rec is None or "checks" not in rec.output:
                continue  # not inspected, or no verdict at all
            if rec.status == "ok" or self.config.inspection == "annotate":
                kept.append((uid, q, rec))
        return kept

    def examples(
        self, personas: dict[str, Persona], inspected: list[tuple[str, Query, StageRecord]]
    ) -> list[Example]:
        out = []
        for uid, q, insp in inspected:
            user = self.by_id[uid]
            out.append(
                Example(
                    example_id=q.query_id,
                    query=q.text,
                    user_id=uid,
                    category=q.category,
                    situation=q.situation,
                    persona=personas[uid],
                    memories=user.memories,
                    language=q.language,
                    meta={
                        "source": user.source,
                        "relevant_memory_ids": q.relevant_memory_ids,
                        "reasoning": q.reasoning,
                        "inspection": insp.output.get("reason"),
                        "inspection_passed": insp.status == "ok",
                        "inspection_checks": insp.output.get("checks", {}),
                        "inspection_language": insp.output.get("language"),
                    },
                )
            )
        return out

    def rejection_reasons(self) -> Counter[str]:
        reasons: Counter[str] = Counter()
        for rec in self.filter_records:
            if rec.status == "rejected":
                reasons[rec.reason_code or "unknown"] += 1
        for stage in LLM_STAGES:
            for key in self.keys.get(stage, []):
                rec = self.stores[stage].get(key)
                if rec is not None and rec.status == "rejected":
                    reasons[rec.reason_code or "unknown"] += 1
        return reasons

    def estimate(self, kept: list[UserHistory]) -> BuildEstimate:
        """Upper bounds on the calls still to make, known before the first one."""
        est = BuildEstimate(users=len(kept))
        per_user = len(self.config.categories) * self.config.situations_per_category
        prompt_chars = []
        for u in kept:
            call = persona_call(u, self.models["persona"], self.config, seed=self.seed)
            prompt_chars.append(sum(len(m["content"]) for m in call.messages))
        avg_tokens = (sum(prompt_chars) // max(len(prompt_chars), 1)) // 4
        needs = sum(1 for u in self.users if needs_memory_extraction(u))
        keys = {
            "extract": needs,
            "persona": len(kept),
            "bigfive": len(kept),
            "situations": len(kept),
            "queries": len(kept) * per_user,
            "inspect": len(kept) * per_user,
        }
        for stage, n in keys.items():
            done = (
                len(self.stores[stage].records)
                if stage != "extract"
                else len([1 for u in self.users if self.stores["extract"].get(u.user_id)])
            )
            calls = max(n - done, 0)
            settings = self.config.stage_settings(stage)
            est.stages[stage] = StageEstimate(
                calls=calls,
                prompt_tokens=calls * avg_tokens,
                max_completion_tokens=calls * settings.max_tokens,
            )
        return est


def _probed(stage: str, rec: StageRecord) -> StageRecord:
    """Stop the build when the very first answer was never JSON at all."""
    if (
        rec.status == "rejected"
        and rec.failure_kinds
        and all(k == "not_json" for k in rec.failure_kinds)
    ):
        raise EndpointError(
            f"the model's answers to the first {stage} request were not JSON "
            f"({len(rec.failure_kinds)} of {len(rec.failure_kinds)} attempts; last: "
            f"{rec.failures[-1]}). The endpoint probably ignores response_format: use a server "
            "that supports JSON schemas (vLLM, SGLang, llama.cpp server) or a stronger model. "
            "Nothing was recorded for it."
        )
    return rec


def _stale_message(stage: str, path: Path, stale: list[tuple[StageCall[Any], StageRecord]]) -> str:
    reasons: Counter[str] = Counter()
    for call, rec in stale:
        if rec.model != call.model.name:
            reasons[f"model {rec.model!r} -> {call.model.name!r}"] += 1
        elif rec.prompt_version != call.template.version:
            reasons[
                f"prompt {call.template.name} {rec.prompt_version} -> {call.template.version}"
            ] += 1
        elif rec.fingerprint is None:
            reasons["made before fingerprints were recorded"] += 1
        else:
            reasons["inputs or settings changed"] += 1
    detail = "; ".join(f"{why} ({n})" for why, n in reasons.most_common())
    return (
        f"{path}: {len(stale)} record(s) were made with other settings ({detail}). "
        "Run again with --redo stale (redo=['stale']) to redo them, or build into a new "
        "folder."
    )


async def build_dataset(
    source: str | Sequence[UserHistory],
    out_dir: Path,
    model: ChatModel,
    config: BuildConfig | None = None,
    *,
    stage_models: dict[str, ChatModel] | None = None,
    stages: Sequence[str] | None = None,
    redo: Sequence[str] = (),
    limit: int | None = None,
    seed: int = 0,
    concurrency: int = 4,
    show_progress: bool | None = None,
    probe: bool = True,
    on_estimate: Callable[[BuildEstimate], None] | None = None,
) -> BuildReport:
    """Build (or resume building) a PersonaEmp-style dataset in ``out_dir``.

    ``source`` is ``KIND:PATH`` (see :mod:`attunement.building.importers`) or
    user histories already in memory. ``stage_models`` answers some stages
    with other models (e.g. ``{"inspect": judge}``); ``model`` answers the
    rest. ``limit`` keeps the first N users of the source. ``stages`` selects
    which stages may do new work (default: all of
    :data:`~attunement.building.config.STAGES`); ``redo`` selects records to do
    again (see the module docstring). ``probe`` stops the build when the first
    request's answers are not JSON at all. ``on_estimate`` receives the
    :class:`BuildEstimate` after the filter, before the first call.
    """
    started = time.monotonic()
    config = config or BuildConfig()
    out_dir = Path(out_dir)
    selected = set(stages) if stages is not None else set(STAGES)
    unknown = (selected | set(stage_models or {})) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if limit is not None and limit < 1:
        raise ValueError("limit must be >= 1")
    redo_rules = Redo(redo)
    models = {s: (stage_models or {}).get(s, model) for s in LLM_STAGES}

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

    with BuildLock(out_dir):
        report = await _run(
            users,
            out_dir,
            models,
            config,
            selected=selected,
            redo=redo_rules,
            seed=seed,
            concurrency=concurrency,
            show_progress=show_progress,
            probe=probe,
            on_estimate=on_estimate,
        )
        report.seconds = round(time.monotonic() - started, 3)
        manifest = out_dir / "manifest.json"
        write_manifest(
            manifest,
            kind="attunement.build",
            source=source_label,
            limit=limit,
            seed=seed,
            model=model.name,
            stage_models={s: m.name for s, m in models.items()},
            stages=sorted(selected, key=STAGES.index),
            redo=list(redo),
            concurrency=concurrency,
            prompts={
                stage: {"name": name, "version": load_prompt(name).version}
                for stage, name in STAGE_PROMPTS.items()
            },
            filter_rules_version=config.filter_rules.version,
            categories=[c.value for c in config.categories],
            privacy={
                "scrub": config.import_options.scrub.model_dump(),
                "scrubbed": report.scrubbed,
                "export_evidence": config.export_evidence,
                "keep_dialogues": config.keep_dialogues,
            },
            config=json.loads(config.model_dump_json()),
            report=json.loads(report.model_dump_json()),
        )
        report.paths["manifest"] = str(manifest)
    return report


async def _run(
    users: list[UserHistory],
    out_dir: Path,
    models: dict[str, ChatModel],
    config: BuildConfig,
    *,
    selected: set[str],
    redo: Redo,
    seed: int,
    concurrency: int,
    show_progress: bool | None,
    probe: bool,
    on_estimate: Callable[[BuildEstimate], None] | None,
) -> BuildReport:
    write_users(
        out_dir / "users.jsonl",
        users,
        keep_dialogues=config.keep_dialogues,
        keep_evidence=config.export_evidence,
    )
    distinct = list({id(m): m for m in models.values()}.values())
    before = [m.usage.snapshot() for m in distinct]
    b = _Build(
        out_dir,
        users,
        models,
        config,
        selected=selected,
        redo=redo,
        seed=seed,
        concurrency=concurrency,
        show_progress=show_progress,
        probe=probe,
    )

    await b.extract()
    kept = b.filter()
    estimate = b.estimate(kept)
    if on_estimate is not None:
        on_estimate(estimate)
    personas = await b.persona(kept)
    personas = await b.bigfive(personas)
    situations = await b.situations(personas)
    queries = await b.queries(personas, situations)
    examples = b.examples(personas, await b.inspect(personas, queries))

    report = BuildReport(out_dir=str(out_dir), users=len(users), estimate=estimate)
    report.paths = {
        "out_dir": str(out_dir),
        "users": str(out_dir / "users.jsonl"),
        "stages": str(out_dir / "stages"),
    }
    if "export" in selected:
        paths, renderer = write_dataset(
            out_dir,
            examples,
            keep_evidence=config.export_evidence,
            split_by_language=config.split_by_language,
        )
        report.paths.update({k: str(v) for k, v in paths.items()})
        report.prompt_renderer = renderer
        b.counts["export"] = StageCount(input=len(examples), ok=len(examples), new=len(examples))

    reasons = b.rejection_reasons()
    report.stages = {s: b.counts[s] for s in STAGES if s in b.counts}
    report.accepted = len(examples)
    report.accepted_users = len({e.user_id for e in examples})
    report.inspection_passed = sum(1 for e in examples if e.meta["inspection_passed"])
    report.rejected = sum(reasons.values())
    report.rejection_reasons = dict(reasons.most_common())
    report.languages = dict(Counter(e.language for e in examples).most_common())
    scrubbed: Counter[str] = Counter()
    for u in users:
        scrubbed.update(u.meta.get("scrubbed", {}))
    report.scrubbed = dict(sorted(scrubbed.items()))
    report.import_warnings = sum(len(u.meta.get("import_warnings", [])) for u in users)
    total = Usage()
    for m, start in zip(distinct, before, strict=True):
        total = total + _usage_delta(start, m.usage.snapshot())
    report.usage = total
    return report


def load_stage_records(out_dir: Path, stage: str) -> list[StageRecord]:
    """The current records of one stage file of a build (for stats and inspection)."""
    return list(StageStore(Path(out_dir) / "stages" / f"{stage}.jsonl").records.values())


__all__ = [
    "BuildEstimate",
    "BuildLock",
    "BuildLockedError",
    "BuildReport",
    "EndpointError",
    "Redo",
    "StageCount",
    "StageStore",
    "StaleRecordsError",
    "build_dataset",
    "load_stage_records",
]
