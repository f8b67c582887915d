"""What a build folder holds between runs: stage records, redo rules, the lock.

A stage file (``DIR/stages/<stage>.jsonl``) only grows: a redo appends a new
record for its key and the newest record of a key wins (:class:`StageStore`);
the older ones stay as history (an inspection verdict is looked up there, so
the same text is never judged twice: :mod:`attunement.building.verdicts`).
:class:`Redo` says which existing records a run does again, and
:func:`stale_message` explains the records a run refuses to reuse because the
call they came from would be different now. :class:`BuildLock` keeps two
builds off one folder, and leaves the lock file empty when it is released, so a
refused run leaves the folder as it found it.
"""

from __future__ import annotations

import fcntl
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from attunement.building.calls import StageCall, StageRecord, model_identity
from attunement.jsonl import RecordError, parse_line


class StaleRecordsError(ValueError):
    """Records made with other settings, model or inputs, and no redo asked for."""


class BuildLockedError(RuntimeError):
    """Another build is writing to the same folder."""


class StageStore:
    """The records of one stage file, loaded for resuming and appended to.

    A key may have several records (a redo appends a new one): the last wins;
    ``verdicts`` holds the newest record of every verdict key ever written.
    """

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, StageRecord] = {}
        self.history: list[StageRecord] = []
        self.verdicts: dict[str, StageRecord] = {}
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
                self.add(rec)

    def add(self, rec: StageRecord) -> None:
        """Take ``rec`` as the newest record of its key."""
        self.records[rec.key] = rec
        self.history.append(rec)
        if rec.verdict_key is not None:
            self.verdicts[rec.verdict_key] = rec

    def get(self, key: str) -> StageRecord | None:
        return self.records.get(key)

    def ok(self, key: str) -> StageRecord | None:
        rec = self.records.get(key)
        return rec if rec is not None and rec.status == "ok" else None

    def plan(
        self,
        calls: Sequence[StageCall[Any]],
        redo: Redo,
        fresh_users: set[str],
        redraw: set[str] = frozenset(),
    ) -> Plan:
        """The calls to make now, the records to take from history instead, and
        how many keys are redone.

        A key without a record is new; a record ``redo`` selects (or whose key
        is in ``redraw``) is redone, and so is a stale one (its call would now
        have another fingerprint) when ``redo`` asks for stale records or an
        upstream record of its user was (re)done in this run. Any other stale
        record stops the stage before a call is made (:class:`StaleRecordsError`).
        A redone call starts at the record's first unused sample number and
        counts one more draw. A due call whose verdict key was judged before
        takes that verdict instead of a call.
        """
        plan = Plan()
        stale: list[tuple[StageCall[Any], StageRecord]] = []
        for call in calls:
            rec = self.get(call.key)
            if rec is not None:
                changed = rec.fingerprint != call.fingerprint
                again = redo.selects(rec) or rec.key in redraw
                if not (again or (changed and (redo.stale or call.user_id in fresh_users))):
                    if changed:
                        stale.append((call, rec))
                    continue
                call.sample_base = rec.next_sample
                call.draw = rec.draw + 1
                plan.redone += 1
            judged = self.verdicts.get(call.verdict_key) if call.verdict_key else None
            if judged is not None:
                plan.reused.append(_reused(judged, call))
            else:
                plan.todo.append(call)
        if stale:
            raise StaleRecordsError(stale_message(self.path, stale))
        return plan

    def current(self, calls: Sequence[StageCall[Any]]) -> list[StageRecord]:
        """The records that answer ``calls`` as they would be made now (same fingerprint)."""
        found = (self.get(call.key) for call in calls)
        fingerprints = {call.key: call.fingerprint for call in calls}
        return [r for r in found if r is not None and r.fingerprint == fingerprints[r.key]]


class Plan:
    """What a stage does in one run: calls to make, verdicts taken from history."""

    def __init__(self) -> None:
        self.todo: list[StageCall[Any]] = []
        self.reused: list[StageRecord] = []
        self.redone = 0


def _reused(judged: StageRecord, call: StageCall[Any]) -> StageRecord:
    """An earlier verdict on the same text, as the record of ``call`` (no call made)."""
    return judged.model_copy(
        update={
            "key": call.key,
            "fingerprint": call.fingerprint,
            "next_sample": max(judged.next_sample, call.sample_base),
            "draw": call.draw,
            "reused": True,
        }
    )


#: stages whose records a redo never selects: an inspection verdict is final for
#: its text; redoing a rejected query draws a new query instead (``redraws``)
FINAL_VERDICT_STAGES = ("inspect",)


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
        """Whether ``rec`` itself is done again (never an inspection verdict)."""
        return rec.stage not in FINAL_VERDICT_STAGES and self.matches(rec)

    def matches(self, rec: StageRecord) -> bool:
        """Whether ``rec`` is one the redo names (rejected, by code, by key)."""
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
            self._fh.seek(0)
            self._fh.truncate()  # released: the folder is as a run found it
            self._fh.flush()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def stale_message(path: Path, stale: list[tuple[StageCall[Any], StageRecord]]) -> str:
    """Why the stale records of one stage file are refused, counted by cause."""
    reasons: Counter[str] = Counter()
    for call, rec in stale:
        if rec.model is None or model_identity(rec.model) != model_identity(call.model.name):
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


def load_stage_records(out_dir: Path, stage: str) -> list[StageRecord]:
    """The current records of one stage file of a build (for stats and inspection)."""
    return list(StageStore(Path(out_dir) / "stages" / f"{stage}.jsonl").records.values())
