"""``attune train grpo`` never falls back silently to the embedded judge (issue 17,
finding 12): with no judge named, the stand-in note is printed before training."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.cli.options import STAND_IN_NOTE
from attunement.training import grpo as grpo_module


@pytest.fixture
def stopped(monkeypatch):
    """Training itself stops at once: what matters is printed before it."""

    def stop(settings, out_dir):
        raise typer.Exit(7)

    monkeypatch.setattr(grpo_module, "train_grpo", stop)


def train(tmp_path, *args: str):
    data = tmp_path / "d.jsonl"
    data.write_text("")
    return CliRunner().invoke(
        build_app(), ["train", "grpo", "--out", str(tmp_path / "run"), "--data", str(data), *args]
    )


@pytest.mark.parametrize("judge", [[], ["--judge", "local"]])
def test_the_embedded_judge_is_named_when_it_judges(judge, tmp_path, stopped):
    result = train(tmp_path, "--reward", "perm", *judge)
    assert result.exit_code == 7, result.output
    assert " ".join(STAND_IN_NOTE.split()) in " ".join(result.output.split())


def test_a_named_judge_gets_no_note(tmp_path, stopped):
    result = train(tmp_path, "--reward", "perm", "--judge", "openai:http://127.0.0.1:9/v1#j")
    assert result.exit_code == 7, result.output
    assert "stand-in" not in result.output
