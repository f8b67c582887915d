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
outputs, schema and settings; see :class:`~attunement.building.calls.StageCall`).
When the call a key would make now has another fingerprint, the record is
stale: if an upstream record of the same user was (re)done in this run, it is
redone; otherwise the build stops before calling anything in that stage and
says what changed (``redo=["stale"]`` redoes them). ``redo`` also selects
records to do again without deleting files: ``rejected``, ``codes:C1,C2``
(reason codes, e.g. ``inspect.language``) and ``keys:FILE`` (record keys, one
per line: a user id for the user-level stages, ``user:CAT`` for an item). A
redo asks for sample numbers the key has not used, so a cache serves fresh
answers. The newest record of a key wins; files only grow
(:mod:`attunement.building.store`).

``stages=[...]`` only chooses which stages may do *new* work:
``stages=["persona"]`` adds personas for users that lack one and leaves
everything else alone. The filter (no LLM) is recomputed on every run from the
current rules; export is rewritten when selected. A lock file keeps two builds
off one folder.

The run reads as its steps: :meth:`_Build.run` calls one short method per
stage, in the order of :data:`~attunement.building.config.STAGES`, then
:meth:`_Build.export` and :meth:`_Build.report`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from attunement.building.calls import StageRecord
from attunement.building.config import LLM_STAGES, STAGES, BuildConfig
from attunement.building.export import write_dataset, write_users
from attunement.building.extraction import extract_call, needs_memory_extraction
from attunement.building.filters import filter_user
from attunement.building.importers import load_users
from attunement.building.manifest import write_build_manifest, write_scrub_report
from attunement.building.report import (
    BuildEstimate,
    BuildReport,
    StageCount,
    StageEstimate,
    usage_delta,
)
from attunement.building.runner import StageFailedError, StageRunner
from attunement.building.stages import (
    bigfive_call,
    inspect_call,
    persona_call,
    query_call,
    situation_items,
    situations_call,
)
from attunement.building.store import BuildLock, Redo
from attunement.building.verdicts import draw_stats, regated
from attunement.jsonl import write_jsonl
from attunement.llm import ChatModel
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

#: what the inspect step hands on: (user id, query, the inspector's record)
Inspected = tuple[str, Query, StageRecord]


class _Build:
    """One run over a build folder: one method per stage, in order."""

    def __init__(
        self,
        out_dir: Path,
        users: list[UserHistory],
        runner: StageRunner,
        config: BuildConfig,
        *,
        selected: set[str],
        seed: int,
    ):
        self.out_dir = out_dir
        self.imported = users
        self.users = users
        self.by_id = {u.user_id: u for u in users}
        self.runner = runner
        self.models = runner.models
        self.stores = runner.stores
        self.config = config
        self.selected = selected
        self.seed = seed
        self.filter_records: list[StageRecord] = []
        self.extracted: set[str] = set()
        self.paths: dict[str, str] = {}
        self.renderer: str | None = None
        self.distinct = list({id(m): m for m in self.models.values()}.values())
        self.usage_before = [m.usage.snapshot() for m in self.distinct]

    async def run(self, on_estimate: Callable[[BuildEstimate], None] | None) -> BuildReport:
        """Every stage in order, the export, the users and filter files, the report.

        Nothing outside the stage files is written before the last stage is
        done; the stage files only grow by records of calls made (or verdicts
        reused, or re-decided) in this run.
        """
        estimate = BuildEstimate()
        await self.extract()
        kept = self.filter()
        if not self.runner.dry:
            estimate = self.estimate(kept)
            if on_estimate is not None:
                on_estimate(estimate)
        try:
            examples = await self.stages(kept)
        except StageFailedError as exc:
            exc.report = self.report([], estimate)
            raise
        if self.runner.dry:
            return self.report([], estimate)
        self.export(examples)
        self.finish()
        return self.report(examples, estimate)

    async def stages(self, kept: list[UserHistory]) -> list[Example]:
        """The LLM stages after the filter, in order; the examples they make."""
        personas = await self.persona(kept)
        personas = await self.bigfive(personas)
        situations = await self.situations(personas)
        queries = await self.queries(personas, situations)
        return self.examples(personas, await self.inspect(personas, queries))

    def finish(self) -> None:
        """``users.jsonl``, ``stages/filter.jsonl`` and ``scrub_report.json`` of this
        run (written last)."""
        write_users(
            self.out_dir / "users.jsonl",
            self.users,
            keep_dialogues=self.config.keep_dialogues,
            keep_evidence=self.config.export_evidence,
        )
        write_jsonl(self.out_dir / "stages" / "filter.jsonl", self.filter_records)
        write_scrub_report(self.out_dir / "scrub_report.json", self.imported, self.config)

    # ------------------------------------------------------------------ stages

    async def extract(self) -> None:
        """Memories for chat-log users that arrive without any (and no annotation)."""
        needs = [u for u in self.users if needs_memory_extraction(u)]
        await self.runner.run(
            "extract",
            [extract_call(u, self.models["extract"], self.config, seed=self.seed) for u in needs],
        )
        for u in needs:
            out = self.runner.ok_output("extract", u.user_id)
            if out is not None:
                memories = [MemoryItem.model_validate(m) for m in out.get("memories", [])]
                self.by_id[u.user_id] = u.model_copy(update={"memories": memories})
        self.users = [self.by_id[u.user_id] for u in self.users]
        self.extracted = {u.user_id for u in needs}

    def filter(self) -> list[UserHistory]:
        """The depth filter: cheap and deterministic, recomputed from the current rules."""
        records = [self._filter_record(u) for u in self.users]
        self.filter_records = records
        kept = [self.by_id[r.user_id] for r in records if r.status == "ok"]
        self.runner.counts["filter"] = StageCount(
            input=len(self.users),
            ok=len(kept),
            rejected=len(self.users) - len(kept),
            new=len(self.users),
        )
        self.runner.keys["filter"] = [u.user_id for u in self.users]
        self.runner.log(f"filter: {len(self.users)} users, {len(kept)} kept")
        return kept

    def _filter_record(self, user: UserHistory) -> StageRecord:
        d = filter_user(user, self.config.filter_rules)
        extract_rec = (
            self.stores["extract"].get(user.user_id) if user.user_id in self.extracted else None
        )
        if not d.keep and extract_rec is not None and extract_rec.status == "rejected":
            d = d.model_copy(
                update={
                    "reason_code": "filter.no_memories",
                    "reason": f"no memories: {extract_rec.reason}",
                }
            )
        return StageRecord(
            stage="filter",
            key=user.user_id,
            user_id=user.user_id,
            status="ok" if d.keep else "rejected",
            reason_code=d.reason_code,
            reason=d.reason,
            output={"deep_memory_ids": d.deep_memory_ids},
        )

    async def persona(self, kept: list[UserHistory]) -> dict[str, Persona]:
        """Persona and depth gate per kept user."""
        await self.runner.run(
            "persona",
            [persona_call(u, self.models["persona"], self.config, seed=self.seed) for u in kept],
        )
        return {
            u.user_id: Persona.model_validate(out)
            for u in kept
            if (out := self.runner.ok_output("persona", u.user_id)) is not None
        }

    async def bigfive(self, personas: dict[str, Persona]) -> dict[str, Persona]:
        """Big Five levels added to each persona."""
        model = self.models["bigfive"]
        await self.runner.run(
            "bigfive",
            [
                bigfive_call(self.by_id[uid], p, model, self.config, seed=self.seed)
                for uid, p in personas.items()
            ],
        )
        return {
            uid: p.model_copy(update={"big_five": BigFive.model_validate(out)})
            for uid, p in personas.items()
            if (out := self.runner.ok_output("bigfive", uid)) is not None
        }

    async def situations(self, personas: dict[str, Persona]) -> list[tuple[str, str, Situation]]:
        """(user id, item key, situation) for every supported situation."""
        model = self.models["situations"]
        await self.runner.run(
            "situations",
            [
                situations_call(self.by_id[uid], p, model, self.config, seed=self.seed)
                for uid, p in personas.items()
            ],
        )
        return [
            (uid, key, s)
            for uid in personas
            if (out := self.runner.ok_output("situations", uid)) is not None
            for key, s in situation_items(uid, out)
        ]

    async def queries(
        self, personas: dict[str, Persona], situations: list[tuple[str, str, Situation]]
    ) -> list[tuple[str, Query]]:
        """One query per situation; a query whose verdict a redo names is drawn anew
        (the verdict itself is final: :mod:`attunement.building.verdicts`)."""
        model = self.models["queries"]
        gates = self.config.inspection_gates
        verdicts = self.stores["inspect"].records
        redraw = {
            key
            for _, key, _ in situations
            if key in verdicts and self.runner.redo.matches(regated(verdicts[key], gates))
        }
        await self.runner.run(
            "queries",
            [
                query_call(
                    self.by_id[uid], personas[uid], key, s, model, self.config, seed=self.seed
                )
                for uid, key, s in situations
            ],
            redraw=redraw,
        )
        return [
            (uid, Query.model_validate(out))
            for uid, key, _ in situations
            if (out := self.runner.ok_output("queries", key)) is not None
        ]

    async def inspect(
        self, personas: dict[str, Persona], queries: list[tuple[str, Query]]
    ) -> list[Inspected]:
        """The inspector's verdict on each query; (user, query, verdict) of those exported."""
        model = self.models["inspect"]
        await self.runner.run(
            "inspect",
            [
                inspect_call(self.by_id[uid], personas[uid], q, model, self.config, seed=self.seed)
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

    def examples(self, personas: dict[str, Persona], inspected: list[Inspected]) -> list[Example]:
        """Each kept query joined with its user, persona and the inspector's verdict."""
        return [
            Example(
                example_id=q.query_id,
                query=q.text,
                user_id=uid,
                category=q.category,
                situation=q.situation,
                persona=personas[uid],
                memories=self.by_id[uid].memories,
                language=q.language,
                user_language=self.by_id[uid].language,
                meta={
                    "source": self.by_id[uid].source,
                    "relevant_memory_ids": q.relevant_memory_ids,
                    "reasoning": q.reasoning,
                    "inspection": insp.output.get("reason"),
                    "inspection_passed": insp.status == "ok",
                    "inspection_checks": insp.output.get("checks", {}),
                    "inspection_language": insp.output.get("language"),
                    "draws": self._draw(q.query_id),
                    **self._trimmed(uid, q.query_id),
                },
            )
            for uid, q, insp in inspected
        ]

    def _draw(self, key: str) -> int:
        rec = self.stores["queries"].get(key)
        return rec.draw if rec is not None else 1

    def _trimmed(self, uid: str, key: str) -> dict[str, list[str]]:
        """``{"trimmed": ["persona.profile", ...]}`` when a value the example holds
        was trimmed to its length limit (else nothing)."""
        found = []
        for stage, k in (("persona", uid), ("bigfive", uid), ("situations", uid), ("queries", key)):
            rec = self.stores[stage].get(k)
            found += [f"{stage}.{path}" for path in (rec.trimmed if rec is not None else [])]
        return {"trimmed": found} if found else {}

    def export(self, examples: list[Example]) -> None:
        """``examples.jsonl`` and ``prompts.jsonl`` (when the export stage is selected)."""
        self.paths = {
            "out_dir": str(self.out_dir),
            "users": str(self.out_dir / "users.jsonl"),
            "stages": str(self.out_dir / "stages"),
        }
        if "export" not in self.selected:
            return
        paths, self.renderer = write_dataset(
            self.out_dir,
            examples,
            keep_evidence=self.config.export_evidence,
            split_by_language=self.config.split_by_language,
        )
        self.paths.update({k: str(v) for k, v in paths.items()})
        self.runner.counts["export"] = StageCount(
            input=len(examples), ok=len(examples), new=len(examples)
        )

    # ------------------------------------------------------------------ accounting

    def report(self, examples: list[Example], estimate: BuildEstimate) -> BuildReport:
        """What this run did (the manifest stores it too)."""
        reasons = self.rejection_reasons()
        scrubbed: Counter[str] = Counter()
        for u in self.imported:
            scrubbed.update(u.meta.get("scrubbed", {}))
        total = Usage()
        for m, start in zip(self.distinct, self.usage_before, strict=True):
            total = total + usage_delta(start, m.usage.snapshot())
        return BuildReport(
            out_dir=str(self.out_dir),
            users=len(self.imported),
            estimate=estimate,
            paths=dict(self.paths),
            prompt_renderer=self.renderer,
            stages={s: self.runner.counts[s] for s in STAGES if s in self.runner.counts},
            accepted=len(examples),
            accepted_users=len({e.user_id for e in examples}),
            inspection_passed=sum(1 for e in examples if e.meta["inspection_passed"]),
            rejected=sum(reasons.values()),
            rejection_reasons=dict(reasons.most_common()),
            languages=dict(Counter(e.language for e in examples).most_common()),
            user_languages=dict(Counter(e.user_language for e in examples).most_common()),
            draws=draw_stats(
                self.runner.keys.get("inspect", []),
                self.stores["queries"].records,
                self.stores["inspect"].history,
                self.config.inspection_gates,
            ).summary(),
            scrubbed=dict(sorted(scrubbed.items())),
            import_warnings=sum(len(u.meta.get("import_warnings", [])) for u in self.imported),
            usage=total,
        )

    def rejection_reasons(self) -> Counter[str]:
        reasons: Counter[str] = Counter()
        for rec in self.filter_records:
            if rec.status == "rejected":
                reasons[rec.reason_code or "unknown"] += 1
        return reasons + self.runner.rejection_reasons()

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
            est.stages[stage] = StageEstimate(
                calls=calls,
                prompt_tokens=calls * avg_tokens,
                max_completion_tokens=calls * self.config.stage_settings(stage).max_tokens,
            )
        return est


def _selected(stages: Sequence[str] | None, stage_models: dict[str, ChatModel] | None) -> set[str]:
    selected = set(stages) if stages is not None else set(STAGES)
    unknown = (selected | set(stage_models or {})) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    return selected


def _users(
    source: str | Sequence[UserHistory], config: BuildConfig, limit: int | None
) -> tuple[list[UserHistory], str]:
    """The users to build (the first ``limit``) and how to name their source."""
    if isinstance(source, str):
        users = load_users(source, config.import_options)
        label = source
    else:
        users = list(source)
        label = f"<{len(users)} user histories given in memory>"
        if not users:
            raise ValueError("no user histories were given")
        ids = [u.user_id for u in users]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate user ids in the given histories: {dupes[:5]}")
    return (users[:limit] if limit is not None else users), label


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
    specs: dict[str, str] | None = None,
) -> BuildReport:
    """Build (or resume building) a PersonaEmp-style dataset in ``out_dir``.

    ``source`` is ``KIND:PATH`` (see :mod:`attunement.building.importers`) or
    user histories already in memory. ``stage_models`` answers some stages
    with other models (e.g. ``{"inspect": judge}``); ``model`` answers the
    rest. ``limit`` keeps the first N users of the source. ``stages`` selects
    which stages may do new work (default: all of
    :data:`~attunement.building.config.STAGES`); ``redo`` selects records to do
    again (see the module docstring). ``probe`` runs each stage's first request
    alone and stops the build when the endpoint cannot answer the stage's
    schema (:mod:`attunement.building.runner`). ``on_estimate`` receives the
    :class:`BuildEstimate` after the filter, before the first call. ``specs``
    (``{"model": SPEC, "inspect": SPEC, ...}``, as the command line was given
    them) are kept in the manifest, so a rerun can load the same models.

    Before anything is written, a dry pass checks every stage's stored records
    (:class:`~attunement.building.store.StaleRecordsError` leaves the folder as
    it was); a stage whose every record failed stops the build
    (:class:`~attunement.building.runner.StageFailedError`).
    """
    started = time.monotonic()
    config = config or BuildConfig()
    out_dir = Path(out_dir)
    selected = _selected(stages, stage_models)
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if limit is not None and limit < 1:
        raise ValueError("limit must be >= 1")
    redo_rules = Redo(redo)
    models = {s: (stage_models or {}).get(s, model) for s in LLM_STAGES}
    users, source_label = _users(source, config, limit)
    with BuildLock(out_dir):

        def runner(dry: bool) -> StageRunner:
            return StageRunner(
                out_dir,
                models,
                selected=selected,
                redo=redo_rules,
                concurrency=concurrency,
                show_progress=show_progress,
                probe=probe,
                dry=dry,
            )

        # every stage's stale records are checked before anything is written
        await _Build(out_dir, users, runner(True), config, selected=selected, seed=seed).run(None)
        build = _Build(out_dir, users, runner(False), config, selected=selected, seed=seed)
        report = await build.run(on_estimate)
        report.seconds = round(time.monotonic() - started, 3)
        report.paths["manifest"] = str(
            write_build_manifest(
                out_dir,
                report,
                config,
                source=source_label,
                model=model.name,
                stage_models={s: m.name for s, m in models.items()},
                selected=selected,
                redo=list(redo),
                limit=limit,
                seed=seed,
                concurrency=concurrency,
                specs=specs or {},
            )
        )
    return report


__all__ = ["build_dataset"]
