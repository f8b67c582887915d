"""``attune generate`` and ``attune distill`` on a scripted model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.jsonl import read_jsonl, write_jsonl
from attunement.llm import ScriptedChatModel, spec
from attunement.records import Example, MemoryItem, Reply


@pytest.fixture
def scripted_spec(monkeypatch):
    """Spec ``scripted`` -> a ScriptedChatModel; every built model is recorded."""
    built: list[ScriptedChatModel] = []

    def factory(parsed, options):
        model = ScriptedChatModel(
            rules=[
                ("Describe this user", "- Calm, outdoorsy"),
                ("The user's message", "# Analysis\nShe is stressed.\n# Response\nI hear you."),
            ],
            name=f"scripted:{parsed.target}",
        )
        built.append(model)
        return model

    monkeypatch.setitem(spec._BACKENDS, "scripted", factory)
    return built


@pytest.fixture
def data(tmp_path):
    rows = []
    for user in ("u1", "u2"):
        memories = [
            MemoryItem(memory_id=f"{user}-m{i}", value=v)
            for i, v in enumerate(
                [
                    f"{user} hikes every Sunday",
                    f"{user} has a demanding boss",
                    f"{user} grows tomatoes",
                    f"{user} learns Japanese",
                ]
            )
        ]
        rows += [
            Example(
                example_id=f"{user}-q{j}",
                user_id=user,
                memories=memories,
                query=f"My boss yelled at me again, question {j}",
            )
            for j in range(2)
        ]
    path = tmp_path / "test.jsonl"
    write_jsonl(path, rows)
    return path


def invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args))


def test_generate_rag(tmp_path, data, scripted_spec):
    out = tmp_path / "replies.jsonl"
    result = invoke(
        "generate",
        "--data",
        str(data),
        "--policy",
        "scripted:p",
        "--memory",
        "rag",
        "--out",
        str(out),
        "-n",
        "2",
        "--temperature",
        "0.3",
        "--seed",
        "4",
        "--top-k",
        "2",
    )
    assert result.exit_code == 0, result.output
    replies = read_jsonl(out, Reply)
    assert len(replies) == 8 and {r.memory_mode for r in replies} == {"rag"}
    assert all(r.format_ok and r.response == "I hear you." for r in replies)
    [policy] = scripted_spec
    assert all(c.n == 2 and c.temperature == 0.3 and c.seed == 4 for c in policy.calls)
    user_turn = policy.calls[0].messages[-1][1]
    assert "has a demanding boss" in user_turn and user_turn.count("\n- [u") == 2
    manifest = json.loads((tmp_path / "replies.manifest.json").read_text())
    assert manifest["settings"]["memory"]["retriever"].startswith("bm25")
    # running again resumes: nothing left to do
    again = invoke(
        "generate",
        "--data",
        str(data),
        "--policy",
        "scripted:p",
        "--memory",
        "rag",
        "--out",
        str(out),
        "-n",
        "2",
        "--temperature",
        "0.3",
        "--seed",
        "4",
        "--top-k",
        "2",
    )
    assert again.exit_code == 0 and scripted_spec[-1].calls == []


def test_generate_summary_caches_summaries_next_to_the_output(tmp_path, data, scripted_spec):
    out = tmp_path / "replies.jsonl"
    result = invoke(
        "generate",
        "--data",
        str(data),
        "--policy",
        "scripted:p",
        "--memory",
        "summary",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "replies.cache.sqlite").exists()
    [policy] = scripted_spec  # the policy itself summarised: one model was built
    summaries = [c for c in policy.calls if "Describe this user" in c.messages[-1][1]]
    assert len(summaries) == 2
    # a new process (fresh output, same cache) summarises from the cache
    out2 = tmp_path / "replies.jsonl"
    out2.unlink()
    result = invoke(
        "generate",
        "--data",
        str(data),
        "--policy",
        "scripted:p",
        "--memory",
        "summary",
        "--out",
        str(out2),
    )
    assert result.exit_code == 0, result.output
    assert not [c for c in scripted_spec[-1].calls if "Describe this user" in c.messages[-1][1]]


def test_generate_with_a_separate_summariser(tmp_path, data, scripted_spec):
    result = invoke(
        "generate",
        "--data",
        str(data),
        "--policy",
        "scripted:p",
        "--memory",
        "summary",
        "--summarizer",
        "scripted:s",
        "--out",
        str(tmp_path / "r.jsonl"),
        "--no-cache",
    )
    assert result.exit_code == 0, result.output
    policy, summariser = scripted_spec
    assert summariser.name == "scripted:s" and len(summariser.calls) == 2
    assert not (tmp_path / "r.cache.sqlite").exists()
    assert all("Describe this user" not in c.messages[-1][1] for c in policy.calls)


def test_generate_mismatch_with_one_user_fails_cleanly(tmp_path, scripted_spec):
    path = tmp_path / "one.jsonl"
    write_jsonl(
        path,
        [
            Example(
                example_id="a",
                user_id="u",
                query="hi",
                memories=[MemoryItem(memory_id="m", value="likes tea")],
            )
        ],
    )
    result = invoke(
        "generate",
        "--data",
        str(path),
        "--policy",
        "scripted:p",
        "--memory",
        "mismatch",
        "--out",
        str(tmp_path / "r.jsonl"),
    )
    assert result.exit_code == 1
    assert "at least two users" in result.output


def test_generate_bad_data_names_file_and_line(tmp_path, scripted_spec):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"example_id": "a", "query": "hi"}\n{"example_id": "b"}\n')
    result = invoke(
        "generate",
        "--data",
        str(path),
        "--policy",
        "scripted:p",
        "--out",
        str(tmp_path / "r.jsonl"),
    )
    assert result.exit_code == 1
    assert "bad.jsonl:2: query" in result.output.replace("\n", "")
    assert scripted_spec == [] or scripted_spec[0].calls == []


def test_persona_and_situation_flags(tmp_path, data, scripted_spec):
    from attunement.records import Persona

    rows = [
        e.model_copy(update={"persona": Persona(profile=f"{e.user_id} likes the hills")})
        for e in read_jsonl(data, Example)
    ]
    write_jsonl(data, rows)
    for verb, model_flag in (("generate", "--policy"), ("distill", "--teacher")):
        for extra in ([], ["--with-persona"]):
            out = tmp_path / f"{verb}{len(extra)}.jsonl"
            result = invoke(
                verb, "--data", str(data), model_flag, "scripted:p", "--out", str(out), *extra
            )
            assert result.exit_code == 0, result.output
            seen = "likes the hills" in scripted_spec[-1].calls[0].messages[-1][1]
            assert seen == bool(extra), (verb, extra)


def test_distill(tmp_path, data, scripted_spec):
    out = tmp_path / "sft.jsonl"
    result = invoke(
        "distill",
        "--data",
        str(data),
        "--teacher",
        "scripted:t",
        "--out",
        str(out),
        "--memory",
        "none",
        "--format",
        "messages",
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4
    assert rows[0]["messages"][-1] == {
        "role": "assistant",
        "content": "# Analysis\nShe is stressed.\n\n# Response\nI hear you.",
    }
    assert "hikes" not in rows[0]["messages"][1]["content"]
    assert (tmp_path / "sft.replies.jsonl").exists() and (tmp_path / "sft.prompts.jsonl").exists()


def test_distill_that_writes_no_row_fails_with_the_cause_and_the_fix(tmp_path, data, monkeypatch):
    """Issue 17, finding 11: a teacher that never writes the two headings gives 0 rows:
    exit 1, the cause and what to do (the replies file is kept for the record)."""

    def factory(parsed, options):
        return ScriptedChatModel(rules=[("", "Just a plain answer.")], name="plain")

    monkeypatch.setitem(spec._BACKENDS, "plain", factory)
    out = tmp_path / "sft.jsonl"
    result = invoke(
        "distill", "--data", str(data), "--teacher", "plain:t", "--out", str(out),
        "--memory", "none",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert (
        "error: 0 SFT rows written: all 4 teacher replies skipped for not following the "
        f"format; delete {tmp_path / 'sft.replies.jsonl'} and run again" in result.output
    )
    assert not out.read_text().strip()
