"""JSONL input and output with validation, append-only writing and manifests.

Reading validates every line *before* any work starts, and a bad line fails
with ``file:line: field: message``. With ``skip_invalid`` the bad lines go to a
rejects file instead, each with its error, and the good ones are returned.

Writing is append-only and flushed per record, so a long job that is killed
loses at most the record it was writing; :func:`read_done_keys` lets the job
skip what it already wrote when it is run again. A torn last line (the process
died mid-write) is tolerated on resume and truncated away; a whole record that
only lacks its newline is kept (:func:`repair_tail`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class RecordError(ValueError):
    """A line of a JSONL file that is not a valid record."""

    def __init__(self, path: str | Path, line: int, field: str, message: str):
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        where = f"{self.path}:{line}"
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


def _errors_of(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "<record>"
        out.append((field, err.get("msg", "invalid")))
    return out


def parse_line(path: str | Path, lineno: int, line: str, model: type[M]) -> M:
    """Parse one JSONL line into ``model`` or raise :class:`RecordError`."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordError(path, lineno, "", f"not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(obj, dict):
        raise RecordError(path, lineno, "", f"expected a JSON object, got {type(obj).__name__}")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        field, msg = _errors_of(exc)[0]
        more = len(exc.errors()) - 1
        if more:
            msg += f" (and {more} more error{'s' if more > 1 else ''})"
        raise RecordError(path, lineno, field, msg) from None


def iter_jsonl_raw(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) of the non-blank lines of a file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                yield lineno, line


def read_jsonl(
    path: str | Path,
    model: type[M],
    *,
    skip_invalid: bool = False,
    rejects: str | Path | None = None,
) -> list[M]:
    """Read and validate a whole JSONL file.

    Raises :class:`RecordError` on the first bad line unless ``skip_invalid``;
    then bad lines are written to ``rejects`` (default ``<path>.rejects.jsonl``)
    as ``{"line", "field", "error", "raw"}`` objects.
    """
    good: list[M] = []
    bad: list[dict[str, Any]] = []
    for lineno, line in iter_jsonl_raw(path):
        try:
            good.append(parse_line(path, lineno, line, model))
        except RecordError as err:
            if not skip_invalid:
                raise
            bad.append(
                {"line": lineno, "field": err.field, "error": err.message, "raw": line.rstrip("\n")}
            )
    if bad:
        target = Path(rejects) if rejects else Path(str(path) + ".rejects.jsonl")
        with target.open("w", encoding="utf-8") as fh:
            for row in bad:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return good


def dumps(record: BaseModel | dict[str, Any]) -> str:
    if isinstance(record, BaseModel):
        return record.model_dump_json(exclude_none=False)
    return json.dumps(record, ensure_ascii=False)


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write records to a new file atomically (temp file, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(dumps(rec) + "\n")
            n += 1
    os.replace(tmp, p)
    return n


def drop_records(path: str | Path, unwanted: Callable[[dict[str, Any]], bool]) -> int:
    """Rewrite ``path`` without the records ``unwanted`` picks (atomically, lines
    kept byte for byte); the number dropped. Lines that are not JSON are kept.

    A resuming job uses it to take back rows that are not results (a failed
    model call an older version wrote as final), so the retried rows replace
    them instead of sitting beside them.
    """
    p = Path(path)
    if not p.exists():
        return 0
    kept: list[str] = []
    dropped = 0
    with p.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict) and unwanted(record):
                dropped += 1
            else:
                kept.append(line)
    if dropped:
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, p)
    return dropped


def repair_tail(path: str | Path) -> bool:
    """Make the file end on a whole line. Returns True if it changed the file.

    A last line without its newline is either torn (the writer was killed
    mid-line: it is cut away) or a whole record whose newline never made it
    (it is valid JSON, :func:`read_done_keys` counts it as done, so it is
    kept and the newline is added; cutting it would lose a finished record).
    """
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return False
    with p.open("rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return False
        start = _last_line_start(fh, size)
        fh.seek(start)
        if _is_record(fh.read(size - start)):
            fh.seek(size)
            fh.write(b"\n")
        else:
            fh.truncate(start)
        return True


def _last_line_start(fh: Any, size: int, chunk: int = 4096) -> int:
    """Offset just after the last newline of an open binary file (0 if none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - chunk)
        fh.seek(start)
        idx = fh.read(pos - start).rfind(b"\n")
        if idx >= 0:
            return start + idx + 1
        pos = start
    return 0


def _is_record(raw: bytes) -> bool:
    """Is this line a whole JSON object (what a JSONL writer writes per line)?"""
    try:
        return isinstance(json.loads(raw.decode("utf-8")), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False


class JsonlAppender:
    """Append records to a JSONL file, one flushed line each.

    Use as a context manager. Safe to reopen on the same file to resume: a
    torn last line is repaired first.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        self._fh.write(dumps(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_done_keys(path: str | Path, key: Callable[[dict[str, Any]], Any]) -> set[Any]:
    """Keys of the records already in an output file (for resuming a job).

    A torn last line is ignored (it will be repaired by the next appender).
    """
    p = Path(path)
    done: set[Any] = set()
    if not p.exists():
        return done
    with p.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                done.add(key(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return done


# --------------------------------------------------------------------------- manifests


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(path: str | Path, **fields: Any) -> Path:
    """Write ``<path>`` (a JSON manifest) describing how an output was made.

    Adds the attunement version, Python version, platform and time; callers add
    seeds, model specs, prompt versions and parameters.
    """
    from attunement import __version__

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "attunement": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **fields,
    }
    p.write_text(
        json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    return p


def manifest_path(out: str | Path) -> Path:
    """Where the manifest of a file output lives: ``replies.jsonl`` ->
    ``replies.manifest.json`` (a folder output keeps ``manifest.json`` inside it).

    >>> manifest_path("runs/a/replies.jsonl").as_posix()
    'runs/a/replies.manifest.json'
    """
    out = Path(out)
    return out.with_name((out.stem if out.suffix == ".jsonl" else out.name) + ".manifest.json")


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """A manifest's fields, or None when the file is missing, unreadable or not an object."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


class SettingsChangedError(ValueError):
    """An output holds work made with other settings than this run's."""


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            found += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return found
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def check_settings(
    manifest: str | Path,
    current: dict[str, Any],
    *,
    keys: Iterable[str] | None = None,
    outputs: Iterable[str | Path] = (),
    fix: str = "write to a new --out, or run with the settings it was made with",
) -> None:
    """Refuse to resume into an output made with other settings.

    The one check every resumable job makes before it appends: ``current`` is
    compared with what ``manifest`` recorded (only ``keys``, when given), and
    the first differing settings are named with their old and new values, as
    dotted paths (``settings.temperature: 0.7 -> 0.0``). Nothing is checked when
    the manifest is missing or every one of ``outputs`` is absent or empty
    (nothing would be mixed).

    >>> import json, tempfile, pathlib
    >>> m = pathlib.Path(tempfile.mkdtemp()) / "x.manifest.json"
    >>> _ = m.write_text(json.dumps({"settings": {"temperature": 0.7, "n": 2}}))
    >>> check_settings(m, {"settings": {"temperature": 0.7, "n": 2}})
    >>> check_settings(m, {"settings": {"temperature": 0.0, "n": 2}}, fix="use a new --out")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    attunement.jsonl.SettingsChangedError: ... was made with other settings (settings.temperature: 0.7 -> 0.0); use a new --out
    """
    path = Path(manifest)
    outputs = [Path(p) for p in outputs]
    if not path.exists() or (outputs and not any(p.exists() and p.stat().st_size for p in outputs)):
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SettingsChangedError(
            f"{path}: unreadable manifest ({exc.msg}); remove it or {fix}"
        ) from None
    current = json.loads(json.dumps(current, default=str))
    wanted = list(keys) if keys is not None else list(current)
    changed: list[str] = []
    for key in wanted:
        if key in old or key in current:
            changed += _differences(old.get(key), current.get(key), f"{key}.")
    if changed:
        shown = "; ".join(changed[:3]) + (
            f"; and {len(changed) - 3} more" if len(changed) > 3 else ""
        )
        what = ", ".join(str(p) for p in outputs) or str(path)
        raise SettingsChangedError(f"{what} was made with other settings ({shown}); {fix}")
