"""SFT rows from a teacher's replies (the SFT baseline)."""

from __future__ import annotations

import json

import pytest

from attunement.llm import ScriptedChatModel
from attunement.policy import distill, sft_row
from attunement.records import Example, MemoryItem, Reply


def examples() -> list[Example]:
    mem = [MemoryItem(memory_id="m1", value="Plays guitar in a small band")]
    return [
        Example(example_id=f"e{i}", user_id=f"u{i % 2}", query=f"question number {i}", memories=mem)
        for i in range(4)
    ]


def teacher_reply(request, index) -> str:
    if "question number 2" in request.messages[-1][1] and index == 0:
        return "no headings at all, so this reply is skipped"
    if "question number 3" in request.messages[-1][1]:
        return f"<think>user seems tense {index}</think>\nTake a breath, {index}."
    return f"# Analysis\nShe is worried {index}.\n\n# Response\nYou are not alone {index}."


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_rows_are_trl_prompt_completion_and_skip_bad_format(tmp_path):
    teacher = ScriptedChatModel(teacher_reply, name="teacher")
    out = tmp_path / "sft.jsonl"
    report = await distill(examples(), teacher, out, n=2)
    rows = read_rows(out)
    assert report.rows == len(rows) == 7 and report.skipped_format == 1
    assert [r["reply_id"] for r in rows] == [
        "e0:full:0",
        "e0:full:1",
        "e1:full:0",
        "e1:full:1",
        "e2:full:1",
        "e3:full:0",
        "e3:full:1",
    ]
    first = rows[0]
    assert set(first) == {"prompt", "completion", "example_id", "reply_id"}
    assert [m["role"] for m in first["prompt"]] == ["system", "user"]
    # the prompt is exactly what the teacher saw
    seen = next(c for c in teacher.calls if "question number 0" in c.messages[-1][1])
    assert [(m["role"], m["content"]) for m in first["prompt"]] == list(seen.messages)
    assert first["completion"] == [
        {
            "role": "assistant",
            "content": "# Analysis\nShe is worried 0.\n\n# Response\nYou are not alone 0.",
        }
    ]
    # a think-style teacher reply is re-written under the two headings
    think = next(r for r in rows if r["reply_id"] == "e3:full:1")
    assert think["completion"][0]["content"] == (
        "# Analysis\nuser seems tense 1\n\n# Response\nTake a breath, 1."
    )
    # the teacher's raw replies are all kept beside the SFT file
    assert len(report.replies.read_text().splitlines()) == 8


async def test_messages_format_and_raw_completions(tmp_path):
    out = tmp_path / "sft.jsonl"
    await distill(
        examples(), ScriptedChatModel(teacher_reply), out, row_format="messages", raw=True
    )
    rows = read_rows(out)
    assert all([m["role"] for m in r["messages"]] == ["system", "user", "assistant"] for r in rows)
    think = next(r for r in rows if r["example_id"] == "e3")
    assert think["messages"][-1]["content"] == (
        "<think>user seems tense 0</think>\nTake a breath, 0."
    )


async def test_rerun_resumes_without_calls_and_rewrites_the_same_rows(tmp_path):
    out = tmp_path / "sft.jsonl"
    await distill(examples()[:2], ScriptedChatModel(teacher_reply), out)
    first = out.read_text()
    idle = ScriptedChatModel(teacher_reply)
    await distill(examples()[:2], idle, out)
    assert idle.calls == [] and out.read_text() == first
    grown = ScriptedChatModel(teacher_reply)
    report = await distill(examples(), grown, out)
    assert len(grown.calls) == 2 and report.rows == 3  # e2 sample 0 is malformed
    assert out.read_text().startswith(first)


async def test_memory_mode_shapes_the_sft_prompt(tmp_path):
    out = tmp_path / "sft.jsonl"
    await distill(examples(), ScriptedChatModel(teacher_reply), out, memory_mode="none")
    rows = read_rows(out)
    assert all("Plays guitar" not in r["prompt"][1]["content"] for r in rows)
    assert all(r["reply_id"].split(":")[1] == "none" for r in rows)


def test_unknown_row_format():
    reply = Reply(example_id="e", reply_id="e:full:0", response="r", analysis="a")
    with pytest.raises(ValueError, match="unknown SFT row format 'chatml'"):
        sft_row([{"role": "user", "content": "q"}], reply, row_format="chatml")


@pytest.mark.slow
async def test_trl_recognises_the_rows_as_conversational(tmp_path):
    data_utils = pytest.importorskip("trl.data_utils")
    out = tmp_path / "sft.jsonl"
    await distill(examples()[:2], ScriptedChatModel(teacher_reply), out)
    for row in read_rows(out):
        assert data_utils.is_conversational(row)
    await distill(
        examples()[:2],
        ScriptedChatModel(teacher_reply),
        tmp_path / "m.jsonl",
        row_format="messages",
    )
    for row in read_rows(tmp_path / "m.jsonl"):
        assert data_utils.is_conversational(row)
