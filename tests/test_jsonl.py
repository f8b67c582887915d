"""JSONL reading with file:line:field errors, appending, resume, manifests."""

from __future__ import annotations

import json

import pytest

from attunement.jsonl import (
    JsonlAppender,
    RecordError,
    read_done_keys,
    read_jsonl,
    repair_tail,
    write_jsonl,
    write_manifest,
)
from attunement.records import Example, MemoryItem, Query

GOOD = '{"memory_id": "m1", "value": "walks the dog every morning"}'


def write(tmp_path, *lines, name="in.jsonl"):
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return p


@pytest.mark.parametrize(
    "bad, model, field, words",
    [
        ('{"memory_id": "m2", "value": ', MemoryItem, "", "not valid JSON"),
        ("[1, 2]", MemoryItem, "", "expected a JSON object"),
        (
            '{"memory_id": "m2", "value": "x", "confidence": "very"}',
            MemoryItem,
            "confidence",
            "valid number",
        ),
        ('{"memory_id": "m2", "value": "x", "mood": "calm"}', MemoryItem, "mood", "Extra inputs"),
        ('{"value": "x"}', MemoryItem, "memory_id", "Field required"),
        (
            (
                '{"query_id": "q", "category": "Chit-chat", "text": "hi", '
                '"situation": {"category": "ES", "description": "d"}}'
            ),
            Query,
            "category",
            "unknown query category",
        ),
        ('{"memory_id": "m2", "value": "x", "type": "sideways"}', MemoryItem, "type", "direct"),
    ],
)
def test_bad_line_names_file_line_and_field(tmp_path, bad, model, field, words):
    path = write(tmp_path, GOOD if model is MemoryItem else "", bad)
    with pytest.raises(RecordError) as info:
        read_jsonl(path, model)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 2, field)
    assert words in err.message
    assert str(err).startswith(f"{path}:2: " + (f"{field}: " if field else ""))


def test_nested_field_path(tmp_path):
    line = (
        '{"example_id": "e", "query": "q", '
        '"memories": [{"memory_id": "a", "value": "v"}, {"memory_id": "b", "value": ""}]}'
    )
    with pytest.raises(RecordError) as info:
        read_jsonl(write(tmp_path, line), Example)
    assert info.value.field == "memories.1.value"


def test_several_errors_are_counted(tmp_path):
    with pytest.raises(RecordError, match=r"and 1 more error"):
        read_jsonl(write(tmp_path, '{"memory_id": 3, "value": 4}'), MemoryItem)


def test_skip_invalid_writes_rejects(tmp_path):
    path = write(
        tmp_path, GOOD, '{"memory_id": "m2"}', "", "not json", '{"memory_id": "m3", "value": "ok"}'
    )
    good = read_jsonl(path, MemoryItem, skip_invalid=True)
    assert [m.memory_id for m in good] == ["m1", "m3"]
    rejects_file = tmp_path / "in.jsonl.rejects.jsonl"
    rejects = [json.loads(x) for x in rejects_file.read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [(2, "value"), (4, "")]
    assert rejects[1]["raw"] == "not json"
    custom = tmp_path / "bad.jsonl"
    read_jsonl(path, MemoryItem, skip_invalid=True, rejects=custom)
    assert len(custom.read_text().splitlines()) == 2


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_jsonl(tmp_path / "nope.jsonl", MemoryItem)


def test_appender_repairs_torn_tail_and_resumes(tmp_path):
    out = tmp_path / "out.jsonl"
    with JsonlAppender(out) as app:
        app.write({"id": "a", "v": 1})
        app.write(MemoryItem(memory_id="b", value="x"))
    with out.open("a", encoding="utf-8") as fh:
        fh.write('{"id": "c", "v"')  # the writer was killed mid-line
    assert read_done_keys(out, lambda r: r.get("id") or r["memory_id"]) == {"a", "b"}
    with JsonlAppender(out) as app:
        app.write({"id": "c", "v": 3})
    lines = out.read_text().splitlines()
    assert [json.loads(x).get("id") or json.loads(x)["memory_id"] for x in lines] == ["a", "b", "c"]


def test_resume_keeps_a_whole_last_record_without_its_newline(tmp_path):
    """The record counts as done, so the appender must keep it, not cut it."""
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a"}\n{"id": "b"}', encoding="utf-8")  # no final newline
    done = read_done_keys(out, lambda r: r["id"])
    assert done == {"a", "b"}
    with JsonlAppender(out) as app:
        app.write({"id": "c"})
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["a", "b", "c"]
    assert out.read_text().endswith("\n")


def test_repair_tail_cuts_only_what_is_not_a_record(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n[1, 2]')  # valid JSON, but not a record a writer wrote
    assert repair_tail(p) is True and p.read_text() == '{"a": 1}\n'
    p.write_text('{"a": 1}')
    assert repair_tail(p) is True and p.read_text() == '{"a": 1}\n'
    p.write_text('{"a": 1}\n{"b": "\u00e9')  # torn inside a multi-byte string
    assert repair_tail(p) is True and p.read_text() == '{"a": 1}\n'


def test_appender_flushes_each_record(tmp_path):
    out = tmp_path / "o.jsonl"
    app = JsonlAppender(out)
    app.write({"id": 1})
    assert out.read_text() == '{"id": 1}\n'  # visible before close
    app.close()


def test_repair_tail_cases(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n')
    assert repair_tail(p) is False
    p.write_text('{"a": 1')
    assert repair_tail(p) is True and p.read_text() == ""
    assert repair_tail(tmp_path / "missing.jsonl") is False


def test_read_done_keys_missing_file_and_keyless_lines(tmp_path):
    assert read_done_keys(tmp_path / "none.jsonl", lambda r: r["id"]) == set()
    p = write(tmp_path, '{"id": 1}', '{"other": 2}')
    assert read_done_keys(p, lambda r: r["id"]) == {1}


def test_write_jsonl_atomic_and_readable(tmp_path):
    p = tmp_path / "sub" / "m.jsonl"
    n = write_jsonl(p, [MemoryItem(memory_id=f"m{i}", value="v") for i in range(3)])
    assert n == 3 and not p.with_name("m.jsonl.tmp").exists()
    assert [m.memory_id for m in read_jsonl(p, MemoryItem)] == ["m0", "m1", "m2"]


def test_manifest_records_provenance(tmp_path):
    path = write_manifest(
        tmp_path / "run" / "manifest.json", seed=7, model="local", prompts={"judge": "abc123"}
    )
    doc = json.loads(path.read_text())
    assert doc["seed"] == 7 and doc["prompts"] == {"judge": "abc123"}
    assert {"attunement", "python", "platform", "created"} <= set(doc)
