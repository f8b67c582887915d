"""Simulated talks on the embedded model (slow): SmolLM2-135M as policy and as
simulated user, in JSON mode (it never writes the labelled format), on the bundled
users; and the demo with its one short talk."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.demo import example_queries_path
from attunement.dialogue import read_dialogues, users_from_examples
from attunement.jsonl import read_jsonl
from attunement.records import Example

pytestmark = pytest.mark.slow


def test_the_bundled_queries_are_simulated_users():
    users = users_from_examples(read_jsonl(example_queries_path(), Example))
    assert len(users) == 5 and all(u.example.memories and u.hidden_need for u in users)


def test_attune_converse_on_the_bundled_users_with_the_embedded_model(local_model, tmp_path):
    out = tmp_path / "talks.jsonl"
    args = [
        "converse", "--users", str(example_queries_path()), "--limit", "1",
        "--policy", "local", "--simulator", "local", "--format", "json",
        "--max-turns", "2", "--max-tokens", "96", "--simulator-max-tokens", "320",
        "-c", "1", "-o", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    [talk] = read_dialogues(out)
    print(talk.model_dump_json(indent=1))  # the talk, for the record (pytest -s)
    assert talk.user_id == "demo-maren:talk" and talk.turns[0].role == "user"
    assert any(t.role == "assistant" for t in talk.turns)
    # JSON answers make the tiny simulator readable: a scorable talk
    assert talk.end != "unscorable", talk.reason
    assert 0 <= talk.final_emotion <= 100


def test_attune_demo_multi_turn_on_the_embedded_model(local_model, tmp_path):
    result = CliRunner().invoke(
        build_app(),
        ["demo", "--out", str(tmp_path), "--queries", "1", "--threads", "1", "--multi-turn"],
    )
    assert result.exit_code == 0, result.output
    assert "simulated talk: 3 user turns" in result.output or "simulated talk:" in result.output
    [talk] = read_dialogues(tmp_path / "dialogues.jsonl")
    assert sum(t.role == "user" for t in talk.turns) <= 3
    page = (tmp_path / "eval" / "report.html").read_text()
    assert 'id="dialogues"' in page
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["dialogues"]["rows"][0]["dialogues"] == 1
