"""What a build folder holds between runs: stage records, redo rules, the lock.

A stage file (``DIR/stages/<stage>.jsonl``) only grows: a redo appends a new
record for its key and the newest record of a key wins (:class:`StageStore`).
:class:`Redo` says which existing records a run does again, and
:func:`stale_message` explains the records a run refuses to reuse because the
call they came from would be different now. :class:`BuildLock` keeps two
builds off one folder.
"""

from __future__ import annotations

import fcntl
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from attunement.building.calls import StageCall, StageRecord
from attunement.jsonl import RecordError, parse_line


class StaleRecordsError(ValueError):
    """Records made with other settings, model or inputs, and no redo asked for."""


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

    def plan(
        self, calls: Sequence[StageCall[Any]], redo: Redo, fresh_users: set[str]
    ) -> tuple[list[StageCall[Any]], int]:
        """The calls to make now, and how many of them redo a record.

        A key without a record is new; a record ``redo`` selects is redone, and
        so is a stale one (its call would now have another fingerprint) when
        ``redo`` asks for stale records or an upstream record of its user was
        (re)done in this run. Any other stale record stops the stage before a
        call is made (:class:`StaleRecordsError`). A redone call starts at the
        record's first unused sample number.
        """
        todo: list[StageCall[Any]] = []
        stale: list[tuple[StageCall[Any], StageRecord]] = []
        redone = 0
        for call in calls:
            rec = self.get(call.key)
            if rec is None:
                todo.append(call)
                continue
            changed = rec.fingerprint != call.fingerprint
            if redo.selects(rec) or (changed and (redo.stale or call.user_id in fresh_users)):
                call.sample_base = rec.next_sample
                todo.append(call)
                redone += 1
            elif changed:
                stale.append((call, rec))
        if stale:
            raise StaleRecordsError(stale_message(self.path, stale))
        return todo, redone

    def current(self, calls: Sequence[StageCall[Any]]) -> list[StageRecord]:
        """The records that answer ``calls`` as they would be made now (same fingerprint)."""
        found = (self.get(call.key) for call in calls)
        fingerprints = {call.key: call.fingerprint for call in calls}
        return [r for r in found if r is not None and r.fingerprint == fingerprints[r.key]]


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


def stale_message(path: Path, stale: list[tuple[StageCall[Any], StageRecord]]) -> str:
    """Why the stale records of one stage file are refused, counted by cause."""
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


def load_stage_records(out_dir: Path, stage: str) -> list[StageRecord]:
    """The current records of one stage file of a build (for stats and inspection)."""
    return list(StageStore(Path(out_dir) / "stages" / f"{stage}.jsonl").records.values())
