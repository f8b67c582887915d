"""Reading a source file line by line, naming the file, line and field of every problem.

The importers (:mod:`attunement.building.importers`) share this plumbing: each
non-blank line is decoded (a byte-order mark skipped, bytes that are not UTF-8
replaced and reported), parsed as a JSON object and converted with a
:class:`LineContext` that knows the file and line. A problem with what the
builder uses raises :class:`~attunement.jsonl.RecordError` in the source's own
field names, or, with ``skip_invalid``, sends the line to a rejects file
(:class:`LineCollector`); a problem with what it does not use is a warning kept
on the user (``meta["import_warnings"]``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from attunement.building.language import identify_language
from attunement.building.privacy import ScrubOptions
from attunement.jsonl import RecordError
from attunement.records import Session, Turn, UserHistory

ErrorTagPolicy = Literal["drop", "strip", "keep"]

#: speaker names of the sources, mapped onto the three roles of a turn
ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "bot": "assistant",
    "gpt": "assistant",
    "ai": "assistant",
    "model": "assistant",
    "system": "system",
}


class ImportOptions(BaseModel):
    """How importers treat noisy input."""

    model_config = ConfigDict(extra="forbid")

    error_tags: ErrorTagPolicy = "drop"
    default_language: str = "en"
    scrub: ScrubOptions = Field(default_factory=ScrubOptions)
    skip_invalid: bool = False
    rejects: Path | None = None  # default: <source path>.rejects.jsonl


@dataclass
class LineContext:
    """Where we are in a source file, to name it in errors."""

    path: Path
    line: int
    options: ImportOptions
    warnings: list[dict[str, str]] = field(default_factory=list)

    def error(self, field_name: str, message: str) -> RecordError:
        return RecordError(self.path, self.line, field_name, message)

    def warn(self, field_name: str, message: str) -> None:
        self.warnings.append({"line": self.line, "field": field_name, "message": message})


@dataclass
class LineCollector:
    """Gathers rejected lines when ``skip_invalid`` is set."""

    path: Path
    options: ImportOptions
    bad: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> Iterator[tuple[LineContext, str, dict[str, Any] | None]]:
        """Yield (context, raw line, parsed object) for each line that is a JSON object."""
        for lineno, raw, bad_bytes in read_lines(self.path):
            ctx = LineContext(self.path, lineno, self.options)
            if bad_bytes:
                ctx.warn("", f"{bad_bytes} byte(s) that are not UTF-8 were replaced by U+FFFD")
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                self.fail(ctx.error("", f"not valid JSON ({exc.msg} at column {exc.colno})"), raw)
                continue
            if not isinstance(obj, dict):
                self.fail(ctx.error("", f"expected a JSON object, got {type(obj).__name__}"), raw)
                continue
            yield ctx, raw, obj

    def fail(self, err: RecordError, raw: str) -> None:
        if not self.options.skip_invalid:
            raise err
        self.bad.append(
            {"line": err.line, "field": err.field, "error": err.message, "raw": raw.rstrip("\n")}
        )

    def finish(self) -> None:
        if not self.bad:
            return
        target = self.options.rejects or Path(str(self.path) + ".rejects.jsonl")
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", encoding="utf-8") as fh:
            for row in self.bad:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")


M = TypeVar("M", bound=BaseModel)


def settings_file(model: type[M], path: str | Path, what: str) -> M:
    """A settings model from a JSON file of its fields (defaults for the rest);
    errors name the file and ``what`` it should hold."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: {what} must be a JSON object")  # noqa: TRY004
    try:
        return model.model_validate(data)
    except ValueError as exc:
        raise ValueError(f"{p}: invalid {what}: {exc}") from None


def read_lines(path: Path) -> Iterator[tuple[int, str, int]]:
    """(line number, text, count of undecodable bytes) of each non-blank line.

    A UTF-8 byte-order mark at the start is skipped; bytes that are not UTF-8
    are replaced rather than stopping the import (the caller reports them).
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as fh:
        for lineno, data in enumerate(fh, start=1):
            if lineno == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            try:
                text, bad = data.decode("utf-8"), 0
            except UnicodeDecodeError:
                text = data.decode("utf-8", errors="replace")
                bad = text.count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd")
            if text.strip():
                yield lineno, text, bad


def with_warnings(user: UserHistory, ctx: LineContext) -> UserHistory:
    """The user with the line's warnings added to ``meta["import_warnings"]``."""
    if not ctx.warnings:
        return user
    meta = dict(user.meta)
    meta["import_warnings"] = list(meta.get("import_warnings", [])) + ctx.warnings
    return user.model_copy(update={"meta": meta})


def convert_lines(
    path: Path,
    options: ImportOptions,
    convert: Callable[[LineContext, dict[str, Any]], UserHistory],
) -> list[UserHistory]:
    """One user per line of ``path`` (a source where a line is a whole user)."""
    col = LineCollector(path, options)
    users = []
    for ctx, raw, obj in col.lines():
        try:
            users.append(with_warnings(convert(ctx, obj), ctx))
        except RecordError as err:
            col.fail(err, raw)
    col.finish()
    return users


def check_unique(users: list[UserHistory], path: Path) -> None:
    """Refuse a source in which a user id occurs twice."""
    seen: set[str] = set()
    for u in users:
        if u.user_id in seen:
            raise ValueError(f"{path}: user_id {u.user_id!r} occurs more than once")
        seen.add(u.user_id)


def get_field(
    ctx: LineContext,
    obj: dict[str, Any],
    key: str,
    where: str,
    kind: type | tuple[type, ...],
    *,
    required: bool = True,
    default: Any = None,
) -> Any:
    """``obj[key]`` checked to be a ``kind``; a missing required field is an error."""
    value = obj.get(key)
    name = f"{where}.{key}" if where else key
    if value is None:
        if required:
            raise ctx.error(name, "field required")
        return default
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ctx.error(name, f"expected {expected}, got {type(value).__name__}")
    return value


def validate_as(ctx: LineContext, where: str, model: type[BaseModel], data: dict[str, Any]) -> Any:
    """``data`` as ``model``; the first error names its field below ``where``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        name = ".".join(p for p in (where, loc) if p) or "<record>"
        raise ctx.error(name, err.get("msg", "invalid")) from None


def read_turn(ctx: LineContext, raw: Any, where: str, *, text_key: str = "text") -> Turn:
    """One dialogue turn: a known role and a text (``content`` when ``text`` is absent)."""
    if not isinstance(raw, dict):
        raise ctx.error(where, f"expected an object, got {type(raw).__name__}")
    role = get_field(ctx, raw, "role", where, str)
    mapped = ROLES.get(role.strip().lower())
    if mapped is None:
        raise ctx.error(f"{where}.role", f"unknown role {role!r} (expected user/assistant/system)")
    text = raw.get(text_key)
    if text is None and text_key == "text":
        text = raw.get("content")
    if not isinstance(text, str):
        raise ctx.error(f"{where}.{text_key}", "field required (a string)")
    return Turn(role=mapped, text=text)


def user_language(
    ctx: LineContext, sessions: list[Session], given: Any = None
) -> tuple[str, dict[str, Any]]:
    """The record's own language, else the one identified from the user's turns."""
    if isinstance(given, str) and given.strip():
        return given.strip(), {"language": given.strip(), "method": "record"}
    texts = [t.text for s in sessions for t in s.turns if t.role == "user"]
    guess = identify_language(texts, ctx.options.default_language)
    return guess.language, guess.as_meta()


def history(ctx: LineContext, data: dict[str, Any]) -> UserHistory:
    """The converted user, validated as a :class:`UserHistory` (errors name the line)."""
    return validate_as(ctx, "", UserHistory, data)
