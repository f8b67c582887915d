"""How the calls of one build stage are made, recorded and counted.

:class:`StageRunner` holds a build's stage stores. For each stage it asks the
store which calls are due (new keys, redone records, stale records with fresh
input; :meth:`~attunement.building.store.StageStore.plan`), runs them with
bounded concurrency, appends each record as soon as it exists and counts every
key (:class:`~attunement.building.report.StageCount`). A stage that is not
selected does no new work; its due keys are counted as pending.

The build's very first request runs alone as a probe: when none of its answers
is JSON at all, the endpoint ignores the schema and the build stops with
:class:`EndpointError` before recording anything, instead of writing a
rejection for every key.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from attunement.building.calls import StageCall, StageRecord
from attunement.building.config import LLM_STAGES
from attunement.building.report import StageCount, usage_delta
from attunement.building.store import Redo, StageStore
from attunement.concurrency import run_bounded
from attunement.jsonl import JsonlAppender
from attunement.llm import ChatModel


class EndpointError(ValueError):
    """The model's answers are not JSON at all (checked on the first request)."""


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
    ):
        self.models = models
        self.selected = selected
        self.redo = redo
        self.concurrency = concurrency
        self.show_progress = show_progress
        self.probe_pending = probe
        self.stores = {s: StageStore(out_dir / "stages" / f"{s}.jsonl") for s in LLM_STAGES}
        self.counts: dict[str, StageCount] = {}
        self.keys: dict[str, list[str]] = {}
        self.fresh_users: set[str] = set()  # users with a record (re)done in this run

    def ok_output(self, stage: str, key: str) -> dict[str, Any] | None:
        """The output of ``key``'s accepted record in ``stage``, if it has one."""
        rec = self.stores[stage].ok(key)
        return rec.output if rec is not None else None

    async def run(self, stage: str, calls: list[StageCall[Any]]) -> None:
        """Make the calls of ``stage`` that are due, record each result, count them all."""
        store = self.stores[stage]
        count = StageCount(input=len(calls))
        self.keys[stage] = [c.key for c in calls]
        todo, count.redone = store.plan(calls, self.redo, self.fresh_users)
        count.resumed = len(calls) - len(todo)
        model = self.models[stage]
        before = model.usage.snapshot()
        if todo and stage in self.selected:
            count.new = await self._call(stage, todo, len(calls))
        else:
            count.redone = 0
        count.usage = usage_delta(before, model.usage.snapshot())
        count.pending = len(calls) - count.resumed - count.new
        for rec in store.current(calls):
            count.ok += rec.status == "ok"
            count.rejected += rec.status == "rejected"
        self.counts[stage] = count

    async def _call(self, stage: str, todo: list[StageCall[Any]], keys: int) -> int:
        """Run ``todo`` (the build's first request alone, as the probe); return how many."""
        store = self.stores[stage]
        done = 0
        with JsonlAppender(store.path) as out:

            def keep(rec: StageRecord) -> None:
                nonlocal done
                out.write(rec)
                store.records[rec.key] = rec
                self.fresh_users.add(rec.user_id)
                done += 1

            if self.probe_pending:
                self.probe_pending = False
                keep(_probed(stage, await todo[0].run()))
                todo = todo[1:]
            await run_bounded(
                todo,
                lambda call: call.run(),
                limit=self.concurrency,
                on_result=lambda _call, rec: keep(rec),
                description=f"{stage} ({keys} keys)",
                show_progress=self.show_progress,
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
