"""Issue 17, finding 2: training and evaluation show the policy the same prompt.

Every path that shows a policy a prompt (GRPO rows, SFT rows written by distill,
generate, the verl and OpenRLHF exports) gives byte-identical messages for the
same example and memory mode under its own defaults; a training run records its
prompt, and ``generate --policy hf:RUN`` shows the policy that prompt unless a
flag says otherwise (checked on fake run folders: no training needed).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from train_scripted import examples
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.integrations.openrlhf import export_openrlhf
from attunement.integrations.verl import export_verl, read_verl, verl_rows
from attunement.jsonl import write_jsonl
from attunement.llm import ScriptedChatModel, spec
from attunement.policy import PromptContext, distill, generate_replies, policy_prompts
from attunement.training.config import GRPOSettings
from attunement.training.data import build_grpo_rows, prompt_record
from attunement.training.run import run_prompt

ANSWER = "# Analysis\na\n# Response\nr"


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class WordTokenizer:
    def apply_chat_template(self, messages, **kwargs):
        return {"input_ids": " ".join(m["content"] for m in messages).split()}


def as_bytes(by_id: dict[str, list[dict]]) -> dict[str, bytes]:
    """Messages as the bytes a trainer or a server would be sent."""
    return {
        k: json.dumps([{"role": m["role"], "content": m["content"]} for m in v]).encode()
        for k, v in by_id.items()
    }


def grpo_defaults(mode: str) -> dict[str, list[dict]]:
    """The rows ``attune train grpo`` builds when only --memory is given."""
    s = GRPOSettings(data="unused.jsonl", memory=mode)
    rows, _ = build_grpo_rows(
        examples(4),
        WordTokenizer(),
        memory=s.memory,
        persona=s.persona,
        situation=s.situation,
        seed=s.seed,
        max_prompt_length=100_000,
    )
    return {r["example_id"]: r["prompt"] for r in rows}


async def every_path(tmp_path: Path, mode: str) -> dict[str, dict[str, list[dict]]]:
    exs = examples(4)
    model = ScriptedChatModel(lambda request, index: ANSWER)
    prompts_out = tmp_path / "generate.prompts.jsonl"
    await generate_replies(
        exs, model, tmp_path / "generate.jsonl", memory_mode=mode, prompts_out=prompts_out
    )
    await distill(exs, model, tmp_path / "sft.jsonl", memory_mode=mode)
    await asyncio.to_thread(export_verl, exs, tmp_path / "verl" / "train.parquet", memory_mode=mode)
    await asyncio.to_thread(export_openrlhf, exs, tmp_path / "openrlhf", memory_mode=mode)
    return {
        "train grpo": await asyncio.to_thread(grpo_defaults, mode),
        "sft rows (distill)": {r["example_id"]: r["prompt"] for r in lines(tmp_path / "sft.jsonl")},
        "generate": {r["example_id"]: r["messages"] for r in lines(prompts_out)},
        "export verl": {
            r["extra_info"]["example_id"]: r["prompt"]
            for r in read_verl(tmp_path / "verl" / "train.parquet")
        },
        "verl_rows (library)": {
            r["extra_info"]["example_id"]: r["prompt"]
            for r in await verl_rows(exs, memory_mode=mode)
        },
        "export openrlhf": {
            r["label"]: r["prompt"] for r in lines(tmp_path / "openrlhf" / "prompts.jsonl")
        },
    }


@pytest.mark.parametrize("mode", ["full", "none", "mismatch", "rag"])
async def test_every_path_shows_byte_identical_messages_by_default(tmp_path, mode):
    paths = await every_path(tmp_path, mode)
    reference = as_bytes(paths["generate"])
    assert set(reference) == {e.example_id for e in examples(4)}
    for name, by_id in paths.items():
        assert as_bytes(by_id) == reference, name
    # the papers' task: memories and query, no persona or situation
    shown = paths["generate"]["ex0"][-1]["content"]
    assert "Honestly, my manager" in shown
    assert "<persona>" not in shown and "<situation>" not in shown


async def test_a_recorded_training_prompt_replays_byte_identically():
    settings = GRPOSettings(data="unused.jsonl", memory="rag", persona=True, seed=3)
    recorded = json.loads(json.dumps(settings.prompt_context().model_dump(mode="json")))
    replayed = await policy_prompts(examples(4), PromptContext.model_validate(recorded))
    trained = await asyncio.to_thread(
        lambda: build_grpo_rows(
            examples(4),
            WordTokenizer(),
            memory="rag",
            persona=True,
            situation=False,
            seed=3,
            max_prompt_length=100_000,
        )[0]
    )
    assert as_bytes({p.example.example_id: p.messages for p in replayed}) == as_bytes(
        {r["example_id"]: r["prompt"] for r in trained}
    )


async def test_an_sft_run_records_the_prompt_its_distilled_rows_show(tmp_path):
    model = ScriptedChatModel(lambda request, index: ANSWER)
    out = tmp_path / "sft.jsonl"
    await distill(examples(2), model, out, memory_mode="none", with_situation=True)
    record = prompt_record(out)
    context = PromptContext.model_validate(record["policy_prompt"])
    assert (context.memory_mode, context.persona, context.situation) == ("none", False, True)
    hand_made = tmp_path / "hand.jsonl"
    write_jsonl(hand_made, [{"messages": [{"role": "user", "content": "hi"}]}])
    missing = prompt_record(hand_made)
    assert missing["policy_prompt"] is None
    assert "not written by attune distill" in missing["policy_prompt_missing"]


# --------------------------------------------------------------------------- hf:RUN


@pytest.fixture
def hf_loads(monkeypatch) -> list[tuple[str, ScriptedChatModel]]:
    """Spec ``hf:FOLDER`` -> a scripted model; the folders loaded are recorded."""
    loaded: list[tuple[str, ScriptedChatModel]] = []

    def factory(parsed, options):
        model = ScriptedChatModel(lambda request, index: ANSWER, name=f"hf:{parsed.target}")
        loaded.append((parsed.target, model))
        return model

    monkeypatch.setitem(spec._BACKENDS, "hf", factory)
    return loaded


def fake_run(root: Path, command: str = "train grpo", **manifest) -> Path:
    (root / "final").mkdir(parents=True)
    doc = {"command": command, "status": "finished", **manifest}
    (root / "manifest.json").write_text(json.dumps(doc), encoding="utf-8")
    return root


def generate(data: Path, policy: str, out: Path, *flags: str):
    args = ["generate", "--data", str(data), "--policy", policy, "--out", str(out), *flags]
    return CliRunner().invoke(build_app(), args)


def shown(model: ScriptedChatModel) -> tuple[bool, bool]:
    """Whether the policy was shown (persona, situation)."""
    text = model.calls[0].messages[-1][1]  # (role, content)
    return "<persona>" in text, "<situation>" in text


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "test.jsonl"
    write_jsonl(path, examples(2))
    return path


TRAINED = PromptContext(memory_mode="full", persona=True, situation=False)


def one_line(output: str) -> str:
    [line] = [x for x in output.splitlines() if x.startswith("policy prompt:")]
    return line


def test_generate_shows_a_run_policy_the_prompt_it_was_trained_on(tmp_path, data, hf_loads):
    run = fake_run(tmp_path / "run", policy_prompt=TRAINED.model_dump(mode="json"))
    result = generate(data, f"hf:{run}/final", tmp_path / "r.jsonl")
    assert result.exit_code == 0, result.output
    assert shown(hf_loads[-1][1]) == (True, False)
    line = one_line(result.output)
    assert "persona on (as trained)" in line and "situation off (as trained)" in line
    assert str(run) in line
    assert not run_prompt(tmp_path)  # a folder that is no run's


def test_a_flag_wins_over_the_run_and_the_line_says_so(tmp_path, data, hf_loads):
    run = fake_run(tmp_path / "run", policy_prompt=TRAINED.model_dump(mode="json"))
    result = generate(data, f"hf:{run}/final", tmp_path / "r.jsonl", "--no-persona", "--situation")
    assert result.exit_code == 0, result.output
    assert shown(hf_loads[-1][1]) == (False, True)
    line = one_line(result.output)
    assert "persona off (given)" in line and "situation on (given)" in line


def test_hf_run_loads_the_runs_final_policy(tmp_path, data, hf_loads):
    run = fake_run(tmp_path / "run", policy_prompt=TRAINED.model_dump(mode="json"))
    result = generate(data, f"hf:{run}", tmp_path / "r.jsonl")
    assert result.exit_code == 0, result.output
    assert Path(hf_loads[-1][0]) == run / "final"
    assert shown(hf_loads[-1][1]) == (True, False)


def test_a_checkpoint_of_a_run_uses_the_runs_prompt(tmp_path, data, hf_loads):
    run = fake_run(tmp_path / "run", policy_prompt=TRAINED.model_dump(mode="json"))
    checkpoint = run / "checkpoints" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    result = generate(data, f"hf:{checkpoint}", tmp_path / "r.jsonl")
    assert result.exit_code == 0, result.output
    assert Path(hf_loads[-1][0]) == checkpoint and shown(hf_loads[-1][1]) == (True, False)


def test_an_older_grpo_run_is_read_from_its_whole_config(tmp_path, data, hf_loads):
    run = fake_run(tmp_path / "old")
    config = {"memory": "full", "persona": True, "situation": True, "seed": 0}
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")
    result = generate(data, f"hf:{run}/final", tmp_path / "r.jsonl")
    assert result.exit_code == 0, result.output
    assert shown(hf_loads[-1][1]) == (True, True)


def test_a_run_without_prompt_settings_gets_the_defaults_and_says_why(tmp_path, data, hf_loads):
    why = "the rows have no readable hand.manifest.json: not written by attune distill"
    run = fake_run(
        tmp_path / "sft", command="train sft", policy_prompt=None, policy_prompt_missing=why
    )
    result = generate(data, f"hf:{run}/final", tmp_path / "r.jsonl", "--persona")
    assert result.exit_code == 0, result.output
    assert shown(hf_loads[-1][1]) == (True, False)
    line = one_line(result.output)
    assert "persona on (given)" in line and "situation off (default)" in line
    assert "records no prompt settings" in re.sub(r"\s+", " ", line)


def test_a_policy_that_is_no_run_gets_the_defaults(tmp_path, data, hf_loads):
    folder = tmp_path / "someone-elses-checkpoint"
    folder.mkdir()
    result = generate(data, f"hf:{folder}", tmp_path / "r.jsonl")
    assert result.exit_code == 0, result.output
    assert shown(hf_loads[-1][1]) == (False, False)
    assert one_line(result.output) == (
        "policy prompt: persona off (default), situation off (default)"
    )


def test_exports_take_the_shared_prompt_options(tmp_path, data):
    out = tmp_path / "orl"
    args = ["export", "openrlhf", "--data", str(data), "--out", str(out), "--persona"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    [row, *_] = lines(out / "prompts.jsonl")
    assert "<persona>" in row["prompt"][-1]["content"]
    assert "<situation>" not in row["prompt"][-1]["content"]
    manifest = json.loads((out / "prompts.manifest.json").read_text())
    assert manifest["persona"] is True and manifest["situation"] is False
