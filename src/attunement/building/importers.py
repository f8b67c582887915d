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

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attunement.building.memory_items import memory_items
from attunement.building.privacy import ScrubOptions, region_of, scrub_text
from attunement.building.reading import (
    ErrorTagPolicy,
    ImportOptions,
    LineCollector,
    LineContext,
    check_unique,
    convert_lines,
    get_field,
    history,
    read_lines,
    read_turn,
    user_language,
    with_warnings,
)
from attunement.jsonl import RecordError, parse_line
from attunement.records import Session, UserHistory

SOURCE_KINDS = ("alpsbench-packets", "alpsbench", "chatlog", "users")

__all__ = [
    "SOURCE_KINDS",
    "ErrorTagPolicy",
    "ImportOptions",
    "import_alpsbench_packets",
    "import_alpsbench_records",
    "import_chatlog",
    "import_users",
    "load_users",
    "parse_source",
    "read_lines",
    "scrub_user",
]


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
    if path.is_dir():
        raise IsADirectoryError(21, "is a folder, not a file", str(path))
    importer = _IMPORTERS[kind]
    users = importer(path, options)
    if not users:
        why = "every line was rejected" if options.skip_invalid else "the file has no records"
        raise ValueError(f"{path}: no user histories to build ({why})")
    check_unique(users, path)
    if options.scrub.enabled:
        users = [scrub_user(u, options.scrub) for u in users]
    return users


def scrub_user(user: UserHistory, options: ScrubOptions) -> UserHistory:
    """The user with personal data replaced in every text; counts in ``meta["scrubbed"]``."""
    total: Counter[str] = Counter()

    region = options.region or region_of(user.language)

    def clean(text: str | None) -> str | None:
        if not text:
            return text
        out, counts = scrub_text(text, options.kinds, region=region)
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
    if meta.get("dropped_memories"):  # their values are the user's words too
        meta["dropped_memories"] = [
            {**d, "value": clean(d["value"]) if isinstance(d.get("value"), str) else d.get("value")}
            for d in meta["dropped_memories"]
        ]
    meta["scrubbed"] = dict(sorted(total.items()))
    return user.model_copy(update={"sessions": sessions, "memories": memories, "meta": meta})


# --------------------------------------------------------------------------- importers


def import_alpsbench_packets(path: Path, options: ImportOptions) -> list[UserHistory]:
    """AlpsBench annotation packets: ``session_id``, ``dialogue``, ``task1.ground_truth_memories``."""

    def convert(ctx: LineContext, obj: dict[str, Any]) -> UserHistory:
        session_id = get_field(ctx, obj, "session_id", "", str)
        dialogue = get_field(ctx, obj, "dialogue", "", list)
        turns = [read_turn(ctx, t, f"dialogue[{i}]") for i, t in enumerate(dialogue)]
        task1 = get_field(ctx, obj, "task1", "", dict)
        raw_mem = get_field(ctx, task1, "ground_truth_memories", "task1", list)
        memories, dropped = memory_items(ctx, raw_mem, "task1.ground_truth_memories", session_id)
        sessions = [Session(session_id=session_id, turns=turns)]
        meta: dict[str, Any] = {"source_line": ctx.line, "annotated": True}
        if dropped:
            meta["dropped_memories"] = dropped
        language, meta["language_detection"] = user_language(ctx, sessions)
        return history(
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

    return convert_lines(path, options, convert)


def _intent_text(ctx: LineContext, raw: Any, where: str) -> str:
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

    def convert(ctx: LineContext, obj: dict[str, Any]) -> UserHistory:
        user_id = obj.get("user_id")
        if user_id in (None, ""):
            raise ctx.error("user_id", "field required")
        raw_sessions = get_field(ctx, obj, "sessions", "", list)
        sessions = []
        for i, s in enumerate(raw_sessions):
            where = f"sessions[{i}]"
            if not isinstance(s, dict):
                raise ctx.error(where, f"expected an object, got {type(s).__name__}")
            sid = s.get("session_id")
            sid = str(sid) if sid not in (None, "") else f"{user_id}#s{i + 1}"
            raw_turns = get_field(ctx, s, "turns", where, list)
            ordered = sorted(enumerate(raw_turns), key=lambda it: _turn_order(it[0], it[1]))
            turns = [read_turn(ctx, t, f"{where}.turns[{j}]") for j, t in ordered]
            sessions.append(Session(session_id=sid, turns=turns))
        first_sid = sessions[0].session_id if sessions else None
        memories, dropped = memory_items(ctx, obj.get("memory_items"), "memory_items", first_sid)
        raw_intents = get_field(ctx, obj, "intents_ranked", "", list, required=False, default=[])
        intents = [
            _intent_text(ctx, it, f"intents_ranked[{i}]") for i, it in enumerate(raw_intents)
        ]
        meta: dict[str, Any] = {"source_line": ctx.line, "annotated": True}
        if dropped:
            meta["dropped_memories"] = dropped
        language, meta["language_detection"] = user_language(ctx, sessions, obj.get("language"))
        return history(
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

    return convert_lines(path, options, convert)


def import_chatlog(path: Path, options: ImportOptions) -> list[UserHistory]:
    """Plain chat logs, one conversation per line; lines of one user are merged in order."""
    col = LineCollector(path, options)
    by_user: dict[str, dict[str, Any]] = {}
    for ctx, raw, obj in col.lines():
        try:
            user_id = obj.get("user_id")
            if not isinstance(user_id, str | int) or user_id == "":
                raise ctx.error("user_id", "field required (a string)")
            user_id = str(user_id)
            messages = get_field(ctx, obj, "messages", "", list)
            if not messages:
                raise ctx.error("messages", "a conversation needs at least one message")
            turns = [
                read_turn(ctx, m, f"messages[{i}]", text_key="content")
                for i, m in enumerate(messages)
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
        ctx = LineContext(path, entry["lines"][0], options)
        language, detection = user_language(ctx, sessions, entry["language"])
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
    col = LineCollector(path, options)
    users = []
    for lineno, raw, bad_bytes in read_lines(path):
        try:
            user = parse_line(path, lineno, raw, UserHistory)
        except RecordError as err:
            col.fail(err, raw)
            continue
        ctx = LineContext(path, lineno, options)
        if bad_bytes:
            ctx.warn("", f"{bad_bytes} byte(s) that are not UTF-8 were replaced by U+FFFD")
        users.append(with_warnings(user, ctx))
    col.finish()
    return users


_IMPORTERS: dict[str, Callable[[Path, ImportOptions], list[UserHistory]]] = {
    "alpsbench-packets": import_alpsbench_packets,
    "alpsbench": import_alpsbench_records,
    "chatlog": import_chatlog,
    "users": import_users,
}
