"""A real run records the prompt it trained on, and ``generate --policy hf:RUN`` shows
the trained policy that prompt (issue 17, finding 2): one GRPO step of the embedded
SmolLM2-135M against a scripted judge, then generation with the run's own policy."""

from __future__ import annotations

import importlib.util
import json

import pytest
from train_scripted import install, scripted_judge, write_examples
from typer.testing import CliRunner

from attunement.cli import build_app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("trl") is None,
        reason="training needs the 'train' extra (torch, TRL, peft)",
    ),
]

runner = CliRunner()


@pytest.fixture(scope="module")
def base():
    from attunement.llm.local import ModelNotFoundError
    from attunement.training.models import resolve_model

    try:
        return resolve_model("smollm2")
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))


def words(text: str) -> list[str]:
    return text.split()


def attune(*args: str):
    result = runner.invoke(build_app(), [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_a_trained_run_is_evaluated_on_the_prompt_it_was_trained_on(base, tmp_path):
    install(scripted_judge())
    data = tmp_path / "train.jsonl"
    write_examples(data, 2)
    run = tmp_path / "run"
    attune(
        *f"train grpo --out {run} --data {data} --reward perm --judge scripted".split(),
        *words("--set unformatted=judge_whole --set output=json --set bystander_output=json"),
        *words("--model smollm2 -G 2 --batch-size 2 --max-completion-length 8 --max-steps 1"),
        *words("--memory none --persona --no-situation"),
    )
    manifest = json.loads((run / "manifest.json").read_text())
    recorded = manifest["policy_prompt"]
    assert (recorded["memory_mode"], recorded["persona"], recorded["situation"]) == (
        "none",
        True,
        False,
    )

    out = tmp_path / "replies.jsonl"
    result = attune(
        "generate",
        *f"--data {data} --policy hf:{run} --out {out} --memory none --max-tokens 4".split(),
    )
    line = next(x for x in result.output.splitlines() if x.startswith("policy prompt:"))
    assert "persona on (as trained)" in line and "situation off (as trained)" in line
    settings = json.loads((tmp_path / "replies.manifest.json").read_text())["settings"]
    assert settings["with_persona"] is True and settings["with_situation"] is False
    assert settings["policy"].startswith("hf:final@")  # the run's final/ policy answered
