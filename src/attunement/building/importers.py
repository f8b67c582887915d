"""Turn user histories from several formats into :class:`UserHistory` records.

A source is named ``KIND:PATH``:

=======================  ==================================================================
``alpsbench-packets:P``  AlpsBench annotation packets: one session per line with its
                         ``dialogue`` and ``task1.ground_truth_memories`` (the format of
                         ../shared/data/alpsbench). One packet is one user.
``alpsbench:P``          AlpsBench benchmark records: ``user_id``, ``sessions`` with
                         ``turns``, ``intents_ranked`` and ``memory_items``.
``chatlog:P``            plain chat logs: one conversation per line,
                         ``{"user_id", "messages": [{"role", "content"}, ...]}``; lines
                         of the same user become sessions of one history. They carry no
                         memories: the ``extract`` stage fills them in.
``users:P``              our own :class:`UserHistory` JSONL.
=======================  ==================================================================

Every line is validated before any LLM call is spent. A bad line raises
:class:`~attunement.jsonl.RecordError` naming the file, the line and the field
(in the source's own field names); with ``skip_invalid`` it goes to a rejects
file instead (``{"line", "field", "error", "raw"}``, like
:func:`attunement.jsonl.read_jsonl`).

AlpsBench annotations mark some memory values with ``[ERROR: ...]`` tags (an
annotator's note that the item is not supported). ``error_tags`` says what to
do with such items: ``drop`` them (default; the drop is recorded in
``UserHistory.meta["dropped_memories"]`` with the tag as reason), ``strip`` the
tag and keep the item, or ``keep`` the text as it is.

**Tolerant of what the builder does not use.** A byte-order mark is skipped,
bytes that are not UTF-8 are replaced (and reported), a ``null``
``utterance_index`` is treated as missing, and fields the builder never reads
(a ``confidence`` outside 0..1, an unknown memory ``type``, a non-text
``time_scope``) are dropped from the item with a warning instead of rejecting
the user. Warnings are kept per user in ``meta["import_warnings"]`` (with the
field) and counted in the build report; what the builder does use (ids,
values, roles, texts) still fails the line.

**Language.** A record's own ``language`` wins; otherwise it is identified from
the user's own turns (:func:`attunement.building.language.identify_language`),
and ``meta["language_detection"]`` says how.

**Personal data.** Every text (turns, memory values, label suggestions,
evidence) is scrubbed of e-mail addresses, phone numbers, street addresses,
URLs with identifiers and id numbers (:mod:`attunement.building.privacy`)
unless ``scrub.enabled`` is off; ``meta["scrubbed"]`` counts what was replaced.

Histories from annotated sources (both AlpsBench formats) carry
``meta["annotated"] = True``: their memory list is the annotation, even when it
is empty, so the builder never runs memory extraction on them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from attunement.building.language import identify_language
from attunement.building.privacy import ScrubOptions, scrub_text
from attunement.jsonl import RecordError, parse_line
from attunement.records import Evidence, MemoryItem, Session, Turn, UserHistory

SOURCE_KINDS = ("alpsbench-packets", "alpsbench", "chatlog", "users")

ErrorTagPolicy = Literal["drop", "strip", "keep"]

_ERROR_TAG = re.compile(r"\s*\[ERROR:[^\]]*\]?", re.IGNORECASE)
_ROLES = {
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


def parse_source(source: str) -> tuple[str, Path]:
    """Split ``KIND:PATH`` and check the kind.

    >>> parse_source("users:/tmp/u.jsonl")
    ('users', PosixPath('/tmp/u.jsonl'))
    """
    kind, sep, path = source.partition(":")
    if not sep or not path or kind not in SOURCE_KINDS:
        raise ValueError(
            f"source {source!r} must be KIND:PATH with KIND one of "
            + ", ".join(SOURCE_KINDS)
            + " (e.g. alpsbench-packets:/data/sessions.jsonl)"
        )
    return kind, Path(path)


def load_users(source: str, options: ImportOptions | None = None) -> list[UserHistory]:
    """Read every user of a ``KIND:PATH`` source (validated, in file order)."""
    options = options or ImportOptions()
    kind, path = parse_source(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (source {source!r})")
    if options.skip_invalid and options.rejects is not None:
        options.rejects.parent.mkdir(parents=True, exist_ok=True)
    importer = _IMPORTERS[kind]
    users = importer(path, options)
    _check_unique(users, path)
    if options.scrub.enabled:
        users = [scrub_user(u, options.scrub) for u in users]
    return users


def scrub_user(user: UserHistory, options: ScrubOptions) -> UserHistory:
    """The user with personal data replaced in every text; counts in ``meta["scrubbed"]``."""
    total: Counter[str] = Counter()

    def clean(text: str | None) -> str | None:
        if not text:
            return text
        out, counts = scrub_text(text, options.kinds)
        total.update(counts)
        return out

    sessions = [
        s.model_copy(
            update={"turns": [t.model_copy(update={"text": clean(t.text)}) for t in s.turns]}
        )
        for s in user.sessions
    ]
    memories = [
        m.model_copy(
            update={
                "value": clean(m.value),
                "label_suggestion": clean(m.label_suggestion),
                "evidence": [e.model_copy(update={"text": clean(e.text)}) for e in m.evidence],
            }
        )
        for m in user.memories
    ]
    meta = dict(user.meta)
    meta["scrubbed"] = dict(sorted(total.items()))
    return user.model_copy(update={"sessions": sessions, "memories": memories, "meta": meta})


# --------------------------------------------------------------------------- plumbing


@dataclass
class _Ctx:
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
class _Collector:
    """Gathers rejected lines when ``skip_invalid`` is set."""

    path: Path
    options: ImportOptions
    bad: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> Iterator[tuple[_Ctx, str, dict[str, Any] | None]]:
        """Yield (context, raw line, parsed object) for each line that is a JSON object."""
        for lineno, raw, bad_bytes in read_lines(self.path):
            ctx = _Ctx(self.path, lineno, self.options)
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


def _with_warnings(user: UserHistory, ctx: _Ctx) -> UserHistory:
    if not ctx.warnings:
        return user
    meta = dict(user.meta)
    meta["import_warnings"] = list(meta.get("import_warnings", [])) + ctx.warnings
    return user.model_copy(update={"meta": meta})


def _convert_lines(
    path: Path, options: ImportOptions, convert: Callable[[_Ctx, dict[str, Any]], UserHistory]
) -> list[UserHistory]:
    col = _Collector(path, options)
    users = []
    for ctx, raw, obj in col.lines():
        try:
            users.append(_with_warnings(convert(ctx, obj), ctx))
        except RecordError as err:
            col.fail(err, raw)
    col.finish()
    return users


def _check_unique(users: list[UserHistory], path: Path) -> None:
    seen: set[str] = set()
    for u in users:
        if u.user_id in seen:
            raise ValueError(f"{path}: user_id {u.user_id!r} occurs more than once")
        seen.add(u.user_id)


def _get(
    ctx: _Ctx,
    obj: dict[str, Any],
    key: str,
    where: str,
    kind: type | tuple[type, ...],
    *,
    required: bool = True,
    default: Any = None,
) -> Any:
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


def _validate(ctx: _Ctx, where: str, model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        name = ".".join(p for p in (where, loc) if p) or "<record>"
        raise ctx.error(name, err.get("msg", "invalid")) from None


def _turn(ctx: _Ctx, raw: Any, where: str, *, text_key: str = "text") -> Turn:
    if not isinstance(raw, dict):
        raise ctx.error(where, f"expected an object, got {type(raw).__name__}")
    role = _get(ctx, raw, "role", where, str)
    mapped = _ROLES.get(role.strip().lower())
    if mapped is None:
        raise ctx.error(f"{where}.role", f"unknown role {role!r} (expected user/assistant/system)")
    text = raw.get(text_key)
    if text is None and text_key == "text":
        text = raw.get("content")
    if not isinstance(text, str):
        raise ctx.error(f"{where}.{text_key}", "field required (a string)")
    return Turn(role=mapped, text=text)


def _user_language(
    ctx: _Ctx, sessions: list[Session], given: Any = None
) -> tuple[str, dict[str, Any]]:
    """The record's own language, else the one identified from the user's turns."""
    if isinstance(given, str) and given.strip():
        return given.strip(), {"language": given.strip(), "method": "record"}
    texts = [t.text for s in sessions for t in s.turns if t.role == "user"]
    guess = identify_language(texts, ctx.options.default_language)
    return guess.language, guess.as_meta()


# --------------------------------------------------------------------------- memory items


def error_tag(text: str | None) -> str | None:
    """The ``[ERROR: ...]`` annotation inside ``text``, if any."""
    if not text:
        return None
    m = _ERROR_TAG.search(text)
    return m.group(0).strip() if m else None


def strip_error_tags(text: str) -> str:
    return _ERROR_TAG.sub("", text).strip()


def _evidence(ctx: _Ctx, raw: Any, where: str, session_id: str | None) -> list[Evidence]:
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, ev in enumerate(items):
        name = f"{where}[{i}]" if isinstance(raw, list) else where
        if isinstance(ev, str):
            out.append(Evidence(session_id=session_id, text=ev))
            continue
        if not isinstance(ev, dict):
            raise ctx.error(name, f"expected an object, got {type(ev).__name__}")
        index = ev.get("utterance_index")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            if isinstance(index, str) and index.strip().isdigit():
                index = int(index)
            else:
                ctx.warn(f"{name}.utterance_index", f"not an integer ({index!r}); dropped")
                index = None
        text = ev.get("text")
        data = {
            "session_id": ev.get("session_id") or session_id,
            "utterance_index": index,
            "text": text if isinstance(text, str) else "",
        }
        out.append(_validate(ctx, name, Evidence, data))
    return out


def _memory(
    ctx: _Ctx,
    raw: Any,
    where: str,
    index: int,
    session_id: str | None,
    dropped: list[dict[str, Any]],
) -> MemoryItem | None:
    """Map one raw AlpsBench memory item onto :class:`MemoryItem` (None when dropped)."""
    if not isinstance(raw, dict):
        raise ctx.error(where, f"expected an object, got {type(raw).__name__}")
    memory_id = raw.get("memory_id")
    memory_id = str(memory_id) if memory_id not in (None, "") else f"m{index + 1}"
    value = _get(ctx, raw, "value", where, str)
    evidence = _evidence(ctx, raw.get("evidence"), f"{where}.evidence", session_id)
    if not evidence and isinstance(raw.get("evidence_text"), str):
        evidence = [Evidence(session_id=session_id, text=raw["evidence_text"])]
    label_suggestion = raw.get("label_suggestion")

    tag = error_tag(value) or error_tag(
        label_suggestion if isinstance(label_suggestion, str) else None
    )
    policy = ctx.options.error_tags
    if tag and policy == "drop":
        dropped.append({"memory_id": memory_id, "value": value, "reason": tag})
        return None
    if tag and policy == "strip":
        value = strip_error_tags(value)
        if isinstance(label_suggestion, str):
            label_suggestion = strip_error_tags(label_suggestion) or None
        if not value:
            dropped.append(
                {
                    "memory_id": memory_id,
                    "value": raw.get("value"),
                    "reason": f"{tag} (nothing left after stripping)",
                }
            )
            return None
    if not value.strip():
        dropped.append({"memory_id": memory_id, "value": value, "reason": "empty value"})
        return None
    data = {
        "memory_id": memory_id,
        "value": value.strip(),
        "label": _text_field(ctx, raw, "label", where),
        "label_suggestion": label_suggestion if isinstance(label_suggestion, str) else None,
        "type": _unused(
            ctx, raw, "type", where, lambda v: v in ("direct", "indirect"), "not direct or indirect"
        ),
        "confidence": _unused(
            ctx,
            raw,
            "confidence",
            where,
            lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0,
            "not a number in 0..1",
        ),
        "evidence": evidence,
        "time_scope": _text_field(ctx, raw, "time_scope", where),
        "emotion": _text_field(ctx, raw, "emotion", where),
        "preference_attitude": _text_field(ctx, raw, "preference_attitude", where),
    }
    return _validate(ctx, where, MemoryItem, data)


def _unused(
    ctx: _Ctx, raw: dict[str, Any], key: str, where: str, valid: Callable[[Any], bool], problem: str
) -> Any:
    """A field the builder does not use: kept when valid, else dropped with a warning."""
    value = raw.get(key)
    if value is None or valid(value):
        return value
    ctx.warn(f"{where}.{key}", f"{problem} ({value!r}); dropped")
    return None


def _text_field(ctx: _Ctx, raw: dict[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is None or isinstance(value, str):
        return value or None
    ctx.warn(f"{where}.{key}", f"not text ({value!r}); dropped")
    return None


def _memories(
    ctx: _Ctx, raw: Any, where: str, session_id: str | None
) -> tuple[list[MemoryItem], list[dict[str, Any]]]:
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        raise ctx.error(where, f"expected a list, got {type(raw).__name__}")
    dropped: list[dict[str, Any]] = []
    items = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        mem = _memory(ctx, item, f"{where}[{i}]", i, session_id, dropped)
        if mem is None:
            continue
        if mem.memory_id in seen:
            raise ctx.error(f"{where}[{i}].memory_id", f"duplicate memory_id {mem.memory_id!r}")
        seen.add(mem.memory_id)
        items.append(mem)
    return items, dropped


def _history(ctx: _Ctx, data: dict[str, Any]) -> UserHistory:
    return _validate(ctx, "", UserHistory, data)


# --------------------------------------------------------------------------- importers


def import_alpsbench_packets(path: Path, options: ImportOptions) -> list[UserHistory]:
    """AlpsBench annotation packets: ``session_id``, ``dialogue``, ``task1.ground_truth_memories``."""

    def convert(ctx: _Ctx, obj: dict[str, Any]) -> UserHistory:
        session_id = _get(ctx, obj, "session_id", "", str)
        dialogue = _get(ctx, obj, "dialogue", "", list)
        turns = [_turn(ctx, t, f"dialogue[{i}]") for i, t in enumerate(dialogue)]
        task1 = _get(ctx, obj, "task1", "", dict)
        raw_mem = _get(ctx, task1, "ground_truth_memories", "task1", list)
        memories, dropped = _memories(ctx, raw_mem, "task1.ground_truth_memories", session_id)
        sessions = [Session(session_id=session_id, turns=turns)]
        meta: dict[str, Any] = {"source_line": ctx.line, "annotated": True}
        if dropped:
            meta["dropped_memories"] = dropped
        language, meta["language_detection"] = _user_language(ctx, sessions)
        return _history(
            ctx,
            {
                "user_id": session_id,
                "source": f"alpsbench-packets:{path.name}",
                "language": language,
                "sessions": sessions,
                "memories": memories,
                "meta": meta,
            },
        )

    return _convert_lines(path, options, convert)


def _intent_text(ctx: _Ctx, raw: Any, where: str) -> str:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, dict):
        raise ctx.error(where, f"expected an object or string, got {type(raw).__name__}")
    parts = [
        str(raw[k]).strip()
        for k in ("intent_category", "intent_subtype")
        if raw.get(k) not in (None, "")
    ]
    if not parts:
        raise ctx.error(f"{where}.intent_category", "field required")
    return " / ".join(parts)


def _turn_order(position: int, raw: Any) -> tuple[int, int]:
    """Sort key of a turn: its ``utterance_index`` when it is a number, else its position."""
    index = raw.get("utterance_index") if isinstance(raw, dict) else None
    if isinstance(index, bool) or not isinstance(index, int | float):
        return (position, position)
    return (int(index), position)


def import_alpsbench_records(path: Path, options: ImportOptions) -> list[UserHistory]:
    """AlpsBench benchmark records: ``user_id``, ``sessions[].turns``, ``intents_ranked``,
    ``memory_items``."""

    def convert(ctx: _Ctx, obj: dict[str, Any]) -> UserHistory:
        user_id = obj.get("user_id")
        if user_id in (None, ""):
            raise ctx.error("user_id", "field required")
        raw_sessions = _get(ctx, obj, "sessions", "", list)
        sessions = []
        for i, s in enumerate(raw_sessions):
            where = f"sessions[{i}]"
            if not isinstance(s, dict):
                raise ctx.error(where, f"expected an object, got {type(s).__name__}")
            sid = s.get("session_id")
            sid = str(sid) if sid not in (None, "") else f"{user_id}#s{i + 1}"
            raw_turns = _get(ctx, s, "turns", where, list)
            ordered = sorted(enumerate(raw_turns), key=lambda it: _turn_order(it[0], it[1]))
            turns = [_turn(ctx, t, f"{where}.turns[{j}]") for j, t in ordered]
            sessions.append(Session(session_id=sid, turns=turns))
        first_sid = sessions[0].session_id if sessions else None
        memories, dropped = _memories(ctx, obj.get("memory_items"), "memory_items", first_sid)
        raw_intents = _get(ctx, obj, "intents_ranked", "", list, required=False, default=[])
        intents = [
            _intent_text(ctx, it, f"intents_ranked[{i}]") for i, it in enumerate(raw_intents)
        ]
        meta: dict[str, Any] = {"source_line": ctx.line, "annotated": True}
        if dropped:
            meta["dropped_memories"] = dropped
        language, meta["language_detection"] = _user_language(ctx, sessions, obj.get("language"))
        return _history(
            ctx,
            {
                "user_id": str(user_id),
                "source": f"alpsbench:{path.name}",
                "language": language,
                "sessions": sessions,
                "memories": memories,
                "intents": intents,
                "meta": meta,
            },
        )

    return _convert_lines(path, options, convert)


def import_chatlog(path: Path, options: ImportOptions) -> list[UserHistory]:
    """Plain chat logs, one conversation per line; lines of one user are merged in order."""
    col = _Collector(path, options)
    by_user: dict[str, dict[str, Any]] = {}
    for ctx, raw, obj in col.lines():
        try:
            user_id = obj.get("user_id")
            if not isinstance(user_id, str | int) or user_id == "":
                raise ctx.error("user_id", "field required (a string)")
            user_id = str(user_id)
            messages = _get(ctx, obj, "messages", "", list)
            if not messages:
                raise ctx.error("messages", "a conversation needs at least one message")
            turns = [
                _turn(ctx, m, f"messages[{i}]", text_key="content") for i, m in enumerate(messages)
            ]
            if not any(t.role == "user" for t in turns):
                raise ctx.error("messages", "no message with role 'user'")
            entry = by_user.setdefault(
                user_id, {"sessions": [], "lines": [], "language": None, "warnings": []}
            )
            entry["warnings"] += ctx.warnings
            sid = obj.get("session_id")
            sid = str(sid) if sid not in (None, "") else f"{user_id}#s{len(entry['sessions']) + 1}"
            entry["sessions"].append(Session(session_id=sid, turns=turns))
            entry["lines"].append(ctx.line)
            if isinstance(obj.get("language"), str):
                entry["language"] = obj["language"]
        except RecordError as err:
            col.fail(err, raw)
    col.finish()
    users = []
    for user_id, entry in by_user.items():
        sessions = entry["sessions"]
        ids = [s.session_id for s in sessions]
        if len(set(ids)) != len(ids):
            raise ValueError(
                f"{path}: user {user_id!r} has two conversations with the same "
                f"session_id (lines {entry['lines']})"
            )
        ctx = _Ctx(path, entry["lines"][0], options)
        language, detection = _user_language(ctx, sessions, entry["language"])
        meta: dict[str, Any] = {"source_lines": entry["lines"], "language_detection": detection}
        if entry["warnings"]:
            meta["import_warnings"] = entry["warnings"]
        users.append(
            UserHistory(
                user_id=user_id,
                source=f"chatlog:{path.name}",
                language=language,
                sessions=sessions,
                memories=[],
                meta=meta,
            )
        )
    return users


def import_users(path: Path, options: ImportOptions) -> list[UserHistory]:
    """Our own :class:`UserHistory` JSONL."""
    col = _Collector(path, options)
    users = []
    for lineno, raw, bad_bytes in read_lines(path):
        try:
            user = parse_line(path, lineno, raw, UserHistory)
        except RecordError as err:
            col.fail(err, raw)
            continue
        ctx = _Ctx(path, lineno, options)
        if bad_bytes:
            ctx.warn("", f"{bad_bytes} byte(s) that are not UTF-8 were replaced by U+FFFD")
        users.append(_with_warnings(user, ctx))
    col.finish()
    return users


_IMPORTERS: dict[str, Callable[[Path, ImportOptions], list[UserHistory]]] = {
    "alpsbench-packets": import_alpsbench_packets,
    "alpsbench": import_alpsbench_records,
    "chatlog": import_chatlog,
    "users": import_users,
}
