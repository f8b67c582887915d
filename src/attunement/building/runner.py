"""How the calls of one build stage are made, recorded and counted.

:class:`StageRunner` holds a build's stage stores. For each stage it asks the
store which calls are due (new keys, redone records, stale records with fresh
input; :meth:`~attunement.building.store.StageStore.plan`), runs them with
bounded concurrency, appends each record as soon as it exists and counts every
key (:class:`~attunement.building.report.StageCount`). A stage that is not
selected does no new work; its due keys are counted as pending.

**Probes.** The first due request of each stage runs alone, as that stage's
probe of its endpoint: when none of its answers is JSON at all, or none fits
the stage's JSON schema (after the retries, the one re-ask over a length limit
and trimming), the endpoint cannot serve the stage and the build stops with
:class:`EndpointError`, one line naming the stage, before anything is recorded
for it, instead of writing a rejection for every key. A probe is a real call:
its record is kept when the endpoint passes.

**No silent empty stage.** When every record of a stage is a failure (an
answer that stayed invalid, not a verdict such as the persona gate), the build
stops with :class:`StageFailedError`, naming the stage, the count and the
first reason: an endpoint that returns JSON the stage cannot use must not end
in an empty dataset and exit code 0.

**Progress when piped.** On a terminal each stage shows a progress bar. When
stderr is not a terminal (a log file, ``| tee``), each stage prints a line when
it starts and when it ends, and a line at least every
:data:`PROGRESS_SECONDS` while it runs, also while a call stalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from attunement.building.calls import StageCall, StageRecord
from attunement.building.config import LLM_STAGES
from attunement.building.report import StageCount, usage_delta
from attunement.building.store import Redo, StageStore
from attunement.concurrency import LogProgress, run_bounded
from attunement.jsonl import JsonlAppender
from attunement.llm import ChatModel

#: seconds between two progress lines of a stage when stderr is not a terminal
PROGRESS_SECONDS = 10.0
#: failure kinds that say the endpoint cannot produce the schema's JSON
ENDPOINT_KINDS = frozenset({"not_json", "schema", "length"})
#: reason codes (after the stage's name) of records that are failures, not verdicts
FAILURE_CODES = ("invalid_output", "template_echo")


class EndpointError(ValueError):
    """The endpoint cannot answer a stage's JSON schema (checked by each stage's probe)."""


class StageFailedError(ValueError):
    """Every record of a stage failed; ``report`` is the build's report up to there."""

    def __init__(self, message: str):
        super().__init__(message)
        self.report: Any = None


def log_line(line: str) -> None:
    """One progress line on stderr (looked up late: tests swap ``sys.stderr``)."""
    print(line, file=sys.stderr, flush=True)


class StageRunner:
    """Runs each LLM stage of one build against its store (``DIR/stages/<stage>.jsonl``)."""

    def __init__(
        self,
        out_dir: Path,
        models: dict[str, ChatModel],
        *,
        selected: set[str],
        redo: Redo,
        concurrency: int,
        show_progress: bool | None,
        probe: bool,
        dry: bool = False,
    ):
        self.models = models
        self.dry = dry
        self.selected = selected
        self.redo = redo
        self.concurrency = concurrency
        self.show_progress = show_progress
        self.piped = show_progress is None and not sys.stderr.isatty()
        self.probe = probe
        self.probed: set[str] = set()
        self.stores = {s: StageStore(out_dir / "stages" / f"{s}.jsonl") for s in LLM_STAGES}
        self.counts: dict[str, StageCount] = {}
        self.keys: dict[str, list[str]] = {}
        self.fresh_users: set[str] = set()  # users with a record (re)done in this run

    def ok_output(self, stage: str, key: str) -> dict[str, Any] | None:
        """The output of ``key``'s accepted record in ``stage``, if it has one."""
        rec = self.stores[stage].ok(key)
        return rec.output if rec is not None else None

    async def run(
        self, stage: str, calls: list[StageCall[Any]], redraw: set[str] = frozenset()
    ) -> None:
        """Make the calls of ``stage`` that are due, record each result, count them all.

        ``redraw`` names keys whose record is done again (a rejected query is
        drawn anew). In a dry run (``dry``) nothing is called or written: the
        due calls only mark their users as fresh, so that every stage's stale
        records are checked before the real run writes anything.
        """
        store = self.stores[stage]
        count = StageCount(input=len(calls))
        self.keys[stage] = [c.key for c in calls]
        plan = store.plan(calls, self.redo, self.fresh_users, redraw)
        if self.dry:
            if stage in self.selected:
                self.fresh_users |= {c.user_id for c in plan.todo}
                self.fresh_users |= {r.user_id for r in plan.reused}
            return
        todo, count.redone = plan.todo, plan.redone
        count.resumed = len(calls) - len(todo) - len(plan.reused)
        model = self.models[stage]
        before = model.usage.snapshot()
        started = time.monotonic()
        if (todo or plan.reused) and stage in self.selected:
            self.log(f"{stage}: started, {len(todo)} calls to make ({count.resumed} keys done)")
            count.new = self._review(stage, calls, plan.reused)
            if todo:
                count.new += await self._call(stage, todo, len(calls))
        else:
            count.redone = 0
            self.log(f"{stage}: started, nothing to call ({len(calls)} keys)")
            self._review(stage, calls, [])
        count.usage = usage_delta(before, model.usage.snapshot())
        count.pending = len(calls) - count.resumed - count.new
        current = store.current(calls)
        for rec in current:
            count.ok += rec.status == "ok"
            count.rejected += rec.status == "rejected"
            count.trimmed += bool(rec.trimmed)
        self.counts[stage] = count
        self.log(
            f"{stage}: done in {time.monotonic() - started:.0f}s: {count.ok} ok, "
            f"{count.rejected} rejected, {count.new} new, {count.usage.calls} calls"
        )
        if stage in self.selected:
            _check_failures(stage, current)

    def _review(self, stage: str, calls: list[StageCall[Any]], reused: list[StageRecord]) -> int:
        """Append the verdicts taken from history and the stored records that the
        current settings decide otherwise (no call); return how many were reused."""
        store = self.stores[stage]
        updated: list[StageRecord] = []
        for call in calls:
            rec = store.get(call.key)
            if call.review is None or rec is None or rec.fingerprint != call.fingerprint:
                continue
            if (new := call.review(rec)) is not rec:
                updated.append(new)
        by_key = {c.key: c for c in calls}
        for rec in reused:
            call = by_key[rec.key]
            updated.append(call.review(rec) if call.review is not None else rec)
        if updated:
            with JsonlAppender(store.path) as out:
                for rec in updated:
                    out.write(rec)
                    store.add(rec)
        for rec in reused:
            self.fresh_users.add(rec.user_id)
        return len(reused)

    def log(self, line: str) -> None:
        """A stage's start or end line, when the build's output is piped (not in the
        dry pass)."""
        if self.piped and not self.dry:
            log_line(line)

    async def _call(self, stage: str, todo: list[StageCall[Any]], keys: int) -> int:
        """Run ``todo`` (the stage's first request alone, as its probe); return how many."""
        store = self.stores[stage]
        done = 0
        progress = LogProgress(len(todo), stage, interval=PROGRESS_SECONDS)
        with JsonlAppender(store.path) as out, progress:

            def keep(rec: StageRecord) -> None:
                nonlocal done
                out.write(rec)
                store.add(rec)
                self.fresh_users.add(rec.user_id)
                done += 1
                if self.piped:
                    progress.advance()

            async with _heartbeat(progress if self.piped else None):
                if self.probe and stage not in self.probed:
                    self.probed.add(stage)
                    keep(_probed(stage, await todo[0].run()))
                    todo = todo[1:]
                await run_bounded(
                    todo,
                    lambda call: call.run(),
                    limit=self.concurrency,
                    on_result=lambda _call, rec: keep(rec),
                    description=f"{stage} ({keys} keys)",
                    show_progress=False if self.piped else self.show_progress,
                )
        return done

    def rejection_reasons(self) -> Counter[str]:
        """Rejected records of this run's keys, by reason code, over every LLM stage."""
        reasons: Counter[str] = Counter()
        for stage in LLM_STAGES:
            for key in self.keys.get(stage, []):
                rec = self.stores[stage].get(key)
                if rec is not None and rec.status == "rejected":
                    reasons[rec.reason_code or "unknown"] += 1
        return reasons


@contextlib.asynccontextmanager
async def _heartbeat(progress: LogProgress | None) -> AsyncIterator[None]:
    """While the block runs, let ``progress`` write a line when its interval has
    passed, even when no call finishes (a stalled endpoint)."""
    if progress is None:
        yield
        return

    async def beat() -> None:
        while True:
            await asyncio.sleep(min(1.0, PROGRESS_SECONDS / 4))
            progress.advance(0)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _probed(stage: str, rec: StageRecord) -> StageRecord:
    """Stop the build when a stage's first answer never fitted its JSON schema."""
    kinds = [k for k in rec.failure_kinds if k != "over_limit"]
    if rec.status != "rejected" or not kinds or not set(kinds) <= ENDPOINT_KINDS:
        return rec
    n = len(kinds)
    if set(kinds) == {"not_json"}:
        raise EndpointError(
            f"the model's answers to the first {stage} request were not JSON "
            f"({n} of {n} attempts; last: {rec.failures[-1]}). The endpoint probably ignores "
            "response_format: use a server that supports JSON schemas (vLLM, SGLang, "
            "llama.cpp server) or a stronger model. Nothing was recorded for it."
        )
    raise EndpointError(
        f"{stage}: the endpoint cannot satisfy the stage's JSON schema: the answers to its "
        f"first request did not fit it ({n} of {n} attempts; last: {rec.failures[-1]}). Use "
        "a server that enforces JSON schemas (vLLM, SGLang, llama.cpp server) or a stronger "
        "model. Nothing was recorded for it."
    )


def _check_failures(stage: str, records: list[StageRecord]) -> None:
    """Stop the build when every record of ``stage`` is a failure (not a verdict)."""
    failed = [r for r in records if r.status == "rejected" and _is_failure(r)]
    if not records or len(failed) < len(records):
        return
    codes = Counter(r.reason_code for r in failed)
    first = failed[0]
    raise StageFailedError(
        f"{stage}: every one of its {len(records)} records failed "
        f"({', '.join(f'{c} {n}' for c, n in codes.most_common())}); first: {first.key}: "
        f"{first.reason}. Nothing was exported. Fix the model or endpoint, then run again "
        "with --redo rejected."
    )


def _is_failure(rec: StageRecord) -> bool:
    return (rec.reason_code or "").split(".", 1)[-1] in FAILURE_CODES
