"""Training set-up without a trainer: settings and their precedence, the CLI, the run
folder and resuming, GRPO and SFT rows, group layout checks, plots, progress lines."""

from __future__ import annotations

import dataclasses
import doctest
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from train_scripted import examples, write_examples
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.training import config as config_module
from attunement.training import grpo as grpo_module
from attunement.training import presets as presets_module
from attunement.training import run as run_module
from attunement.training import sft as sft_module
from attunement.training.config import GRPOSettings, SFTSettings, changed_fields
from attunement.training.data import build_grpo_rows, read_examples, read_sft_rows
from attunement.training.grpo import TrainResult, check_groups_stay_whole, plot_panels
from attunement.training.run import RunFolder, plot_metrics, read_metrics

runner = CliRunner()


# --------------------------------------------------------------------------- settings


def test_defaults_follow_the_papers_and_the_cpu_rules():
    s = GRPOSettings(data=Path("x.jsonl"))
    assert (s.learning_rate, s.num_generations, s.max_prompt_length, s.max_completion_length) == (
        1e-6,
        8,
        1024,
        1024,
    )
    assert s.reward.config().temperature == 0.3  # the judge's temperature
    assert s.resolved_beta("cpu") == 0.0 and s.resolved_beta("cuda") == 0.01
    assert GRPOSettings(data=Path("x"), beta=0.02).resolved_beta("cpu") == 0.02
    with pytest.raises(ValueError, match="output_dir is set by attunement"):
        GRPOSettings(data=Path("x"), trl={"output_dir": "elsewhere"})


def test_cpu_config_uses_cpu_no_bf16_no_kl_and_no_checkpointing(tmp_path):
    args = grpo_module.grpo_args(
        GRPOSettings(
            data=Path("x"),
            num_generations=2,
            per_device_train_batch_size=4,
            trl={"scale_rewards": "batch"},
        ),
        RunFolder(tmp_path),
        device="cpu",
        show_bar=False,
    )
    assert args["use_cpu"] and not args["bf16"] and args["beta"] == 0.0
    assert args["logging_steps"] == 1 and args["remove_unused_columns"] is False
    assert args["learning_rate"] == 1e-6 and args["num_generations"] == 2
    # TRL's default is on: slow on a CPU (the field's name depends on the transformers release)
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in names
        else "gradient_checkpointing"
    )
    assert (
        args[name] is False
        and len({"activation_checkpointing", "gradient_checkpointing"} & set(args)) == 1
    )
    assert args["scale_rewards"] == "batch"
    with pytest.raises(ValueError, match="bf16 training on the CPU"):
        grpo_module.grpo_args(
            GRPOSettings(data=Path("x"), bf16=True),
            RunFolder(tmp_path),
            device="cpu",
            show_bar=False,
        )
    sft = sft_module.sft_args(
        SFTSettings(data=Path("x")), RunFolder(tmp_path), device="cpu", show_bar=True
    )
    assert sft["completion_only_loss"] is True and sft["use_cpu"] and not sft["disable_tqdm"]


def test_a_layout_that_splits_groups_across_processes_is_refused():
    two_gpus = SimpleNamespace(generation_batch_size=12, world_size=2, num_generations=4)
    with pytest.raises(ValueError, match="split across processes"):
        check_groups_stay_whole(two_gpus, rows=100)  # 6 per process: 1.5 groups
    check_groups_stay_whole(
        SimpleNamespace(generation_batch_size=16, world_size=2, num_generations=4), rows=100
    )
    with pytest.raises(ValueError, match="only 3 usable prompts"):
        check_groups_stay_whole(
            SimpleNamespace(generation_batch_size=16, world_size=1, num_generations=4), rows=3
        )


def test_resuming_refuses_other_settings_and_drops_records_past_the_checkpoint(tmp_path):
    run = RunFolder(tmp_path / "run")
    doc = json.loads(GRPOSettings(data=Path("d.jsonl")).model_dump_json())
    assert run.prepare(doc) is None and run.config.exists()
    ckpt = run.checkpoints / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    (run.checkpoints / "checkpoint-9").mkdir()  # no trainer state: torn, ignored
    run.metrics.write_text(
        "".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "lo'
    )
    run.breakdowns.write_text("".join(json.dumps({"step": s}) + "\n" for s in (0, 1, 2)))
    longer = {
        **doc,
        "max_steps": 50,
        "reward": {**doc["reward"], "options": {**doc["reward"]["options"], "concurrency": 64}},
    }
    assert run.prepare(longer) == ckpt
    assert [r["step"] for r in read_metrics(run.metrics)] == [1, 2]
    assert [r["step"] for r in read_metrics(run.breakdowns)] == [0, 1]
    with pytest.raises(ValueError, match="learning_rate"):
        run.prepare({**doc, "learning_rate": 1e-5})
    assert changed_fields(doc, {**doc, "reward": {**doc["reward"], "reward": "perm"}}) == ["reward"]


# --------------------------------------------------------------------------- data


class WordTokenizer:
    """Counts words of the whole chat as tokens (enough to test the length rule)."""

    def apply_chat_template(self, messages, **kwargs):
        return {"input_ids": " ".join(m["content"] for m in messages).split()}


def test_grpo_rows_carry_the_reply_prompt_and_the_example_id_only():
    exs = examples(2)
    rows, too_long = build_grpo_rows(
        exs,
        WordTokenizer(),
        memory="full",
        persona=True,
        situation=True,
        seed=0,
        max_prompt_length=10_000,
    )
    assert too_long == [] and [r["example_id"] for r in rows] == ["ex0", "ex1"]
    system, user = rows[0]["prompt"]
    assert system["role"] == "system" and user["role"] == "user"
    assert "# Analysis" in user["content"] and exs[0].query in user["content"]
    assert "Mentioned before" in user["content"]  # the memories, in full mode
    # no record travels in a column (TRL prints columns in its logs): the reward looks
    # the example up by id
    assert set(rows[0]) == {"prompt", "example_id"}
    none, _ = build_grpo_rows(
        exs,
        WordTokenizer(),
        memory="none",
        persona=False,
        situation=True,
        seed=0,
        max_prompt_length=10_000,
    )
    assert "Mentioned before" not in none[0]["prompt"][1]["content"]
    assert "Quiet engineer" not in none[0]["prompt"][1]["content"]
    assert "Mentioned before" not in json.dumps(none[0])


def test_prompts_that_do_not_fit_are_left_out_not_cut():
    exs = examples(3)
    exs[1] = exs[1].model_copy(update={"query": exs[1].query + " and more" * 30})
    full, _ = build_grpo_rows(
        exs,
        WordTokenizer(),
        memory="full",
        persona=True,
        situation=True,
        seed=0,
        max_prompt_length=10_000,
    )
    length = {
        r["example_id"]: len(WordTokenizer().apply_chat_template(r["prompt"])["input_ids"])
        for r in full
    }
    limit = sorted(length.values())[1]
    rows, too_long = build_grpo_rows(
        exs,
        WordTokenizer(),
        memory="full",
        persona=True,
        situation=True,
        seed=0,
        max_prompt_length=limit,
    )
    assert too_long == [i for i in length if length[i] > limit] and too_long
    assert rows == [r for r in full if length[r["example_id"]] <= limit]  # whole, not cut


def test_duplicate_example_ids_are_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    ex = examples(1)[0]
    path.write_text(ex.model_dump_json() + "\n" + ex.model_dump_json() + "\n")
    with pytest.raises(ValueError, match=r"d.jsonl:2: example_id 'ex0' already on line 1"):
        read_examples(path)


def test_sft_rows_become_prompt_completion_pairs(tmp_path):
    path = tmp_path / "sft.jsonl"
    sys_turn = {"role": "system", "content": "be kind"}
    user = {"role": "user", "content": "hi"}
    bot = {"role": "assistant", "content": "# Analysis\na\n\n# Response\nb"}
    path.write_text(
        json.dumps(
            {
                "prompt": [sys_turn, user],
                "completion": [bot],
                "example_id": "e1",
                "reply_id": "e1:full:0",
            }
        )
        + "\n"
        + json.dumps({"messages": [user, bot]})
        + "\n"
    )
    rows = read_sft_rows(path)
    assert rows == [
        {"prompt": [sys_turn, user], "completion": [bot]},
        {"prompt": [user], "completion": [bot]},
    ]
    path.write_text(json.dumps({"messages": [bot, user]}) + "\n")
    with pytest.raises(ValueError, match="sft.jsonl:1.*assistant turn"):
        read_sft_rows(path)


# --------------------------------------------------------------------------- plots, progress


def test_the_plot_has_the_reward_and_each_dimension(tmp_path):
    rows = [
        {
            "step": s,
            "reward": 0.1 * s,
            "rewards/perm/resonation": 2 + s,
            "rewards/perm/bystander": None,
        }
        for s in (1, 2, 3)
    ]
    png = plot_metrics(
        rows, tmp_path / "m.png", panels=plot_panels("perm", ("resonation", "bystander")), title="t"
    )
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_metrics([], tmp_path / "none.png", panels=[("reward", "r")], title="t") is None


def test_docstring_examples_hold():
    for module in (config_module, run_module):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def captured(monkeypatch, tmp_path):
    """Replace the training functions; record the settings the CLI built."""
    seen: dict = {}

    def fake(settings, out):
        seen["settings"], seen["out"] = settings, out
        return TrainResult(
            out=out,
            final=out / "final",
            steps=0,
            resumed_from=None,
            metrics=out / "metrics.jsonl",
            left_out=[],
        )

    monkeypatch.setattr(grpo_module, "train_grpo", fake)
    monkeypatch.setattr(sft_module, "train_sft", fake)
    return seen


def test_grpo_flags_override_the_config_file_and_reward_flags_its_reward(tmp_path, captured):
    data = tmp_path / "train.jsonl"
    write_examples(data, 2)
    config = tmp_path / "run.toml"
    config.write_text(
        f'data = "{data}"\nlearning_rate = 2e-6\nnum_generations = 4\n'
        'per_device_train_batch_size = 4\n[trl]\nscale_rewards = "batch"\n'
        '[reward]\nreward = "perm"\njudge = "local"\n'
        "[reward.overrides]\nlambda_bys = 0.1\nk = 2\n"
    )
    result = runner.invoke(
        build_app(),
        [
            "train",
            "grpo",
            "--out",
            str(tmp_path / "run"),
            "--config",
            str(config),
            "--lr",
            "3e-6",
            "--no-bystander",
            "--set",
            "aggregation=softmin",
            "--set",
            "k=3",
            "--lora",
            "--lora-r",
            "4",
            "--trl",
            "log_completions=true",
            "-c",
            "16",
            "--max-steps",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    s = captured["settings"]
    assert s.learning_rate == 3e-6 and s.num_generations == 4 and s.max_steps == 5
    assert s.trl == {"scale_rewards": "batch", "log_completions": True}
    assert s.lora.r == 4 and s.lora.alpha == 32
    assert s.reward.reward == "perm" and s.reward.options.concurrency == 16
    assert s.reward.overrides == {
        "lambda_bys": 0.1,
        "k": 3,
        "use_bystander": False,
        "aggregation": "softmin",
    }
    assert "hf:" in result.output


def test_a_run_config_json_repeats_the_run(tmp_path, captured):
    data = tmp_path / "train.jsonl"
    write_examples(data, 2)
    first = GRPOSettings(
        data=data,
        reward={"reward": "rlpa@2", "judge": "local", "overrides": {"match_weight": 0.5}},
        seed=3,
    )
    saved = tmp_path / "config.json"
    saved.write_text(first.model_dump_json())
    result = runner.invoke(
        build_app(), ["train", "grpo", "--out", str(tmp_path / "again"), "--config", str(saved)]
    )
    assert result.exit_code == 0, result.output
    assert captured["settings"] == first
    # another reward kind starts from that kind's defaults
    result = runner.invoke(
        build_app(),
        [
            "train",
            "grpo",
            "--out",
            str(tmp_path / "x"),
            "--config",
            str(saved),
            "--reward",
            "peregrm",
        ],
    )
    assert result.exit_code == 0, result.output
    assert captured["settings"].reward.overrides == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reward", "rlpa", "--no-bystander"], "reward options: "),
        (["--trl", "output_dir=x"], "trl.output_dir is set by attunement"),
        (["--batch-size", "4", "-G", "3"], None),
        (["--reward", "nope"], "unknown reward 'nope'"),
    ],
)
def test_grpo_bad_settings_fail_cleanly_before_training(tmp_path, captured, args, message):
    data = tmp_path / "train.jsonl"
    write_examples(data, 2)
    result = runner.invoke(
        build_app(), ["train", "grpo", "--out", str(tmp_path / "r"), "--data", str(data), *args]
    )
    if message is None:  # a valid combination reaches training
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2 and "settings" not in captured
    assert message in result.output.replace("\n", " ")


def test_sft_cli_builds_settings(tmp_path, captured):
    result = runner.invoke(
        build_app(),
        [
            "train",
            "sft",
            "--out",
            str(tmp_path / "sft"),
            "--data",
            str(tmp_path / "sft.jsonl"),
            "--epochs",
            "2",
            "--max-length",
            "512",
            "--lora",
        ],
    )
    assert result.exit_code == 0, result.output
    s = captured["settings"]
    assert isinstance(s, SFTSettings) and s.num_train_epochs == 2 and s.max_length == 512
    assert s.learning_rate == 2e-5 and s.lora is not None
    result = runner.invoke(build_app(), ["train", "sft", "--out", str(tmp_path / "sft")])
    assert result.exit_code == 2 and "data: Field required" in result.output


def test_merge_refuses_a_folder_that_is_not_an_adapter(tmp_path):
    result = runner.invoke(
        build_app(), ["train", "merge", "--adapter", str(tmp_path), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 1 and "not a LoRA adapter folder" in result.output


# --------------------------------------------------------------------------- presets and checks


def test_the_perm_paper_preset_is_the_authors_launch_settings(tmp_path):
    s = GRPOSettings(data=Path("x"), preset="perm-paper")
    assert (s.learning_rate, s.num_generations, s.beta, s.warmup_ratio) == (1e-6, 8, 0.01, 0.1)
    assert (s.max_prompt_length, s.max_completion_length, s.seed) == (1024, 1024, 42)
    assert s.reward.reward == "perm"
    config = s.reward.config()
    assert (config.length_on, config.length_limit, config.length_coef) == ("completion", 768, 1e-3)
    assert (config.lambda_bys, config.aggregation, config.temperature) == (0.5, "harmonic", 0.3)
    assert s.lora is None  # the authors trained all weights
    with_lora = GRPOSettings(data=Path("x"), preset="perm-paper", lora={})
    assert (with_lora.lora.r, with_lora.lora.alpha, with_lora.lora.dropout) == (16, 32, 0.0)
    # 8 prompts x 8 completions per optimizer step, whole groups in one generation batch
    args = grpo_module.grpo_config(s, RunFolder(tmp_path), device="cpu", show_bar=False)
    assert args.generation_batch_size == 64 and args.num_generations == 8
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 64
    assert args.beta == 0.01 and args.lr_scheduler_type.value == "linear"
    assert args.warmup_steps == 0.1 or getattr(args, "warmup_ratio", None) == 0.1
    check_groups_stay_whole(args, 8)


def test_the_peregrm_paper_preset_is_the_authors_verl_settings(tmp_path):
    s = GRPOSettings(data=Path("x"), preset="peregrm-paper")
    assert s.reward.reward == "peregrm@4" and s.reward.config().k == 4
    assert (s.beta, s.max_prompt_length, s.save_steps) == (0.001, 512, 100)
    assert s.lr_scheduler_type == "constant_with_warmup" and s.warmup_ratio == 0.1
    args = grpo_module.grpo_config(s, RunFolder(tmp_path), device="cpu", show_bar=False)
    assert args.generation_batch_size == 64
    assert args.lr_scheduler_type.value == "constant_with_warmup"


def test_values_given_lie_over_the_preset_and_its_reward_settings_over_its_reward_only():
    s = GRPOSettings(data=Path("x"), preset="perm-paper", learning_rate=2e-6, seed=1)
    assert (s.learning_rate, s.seed, s.warmup_ratio) == (2e-6, 1, 0.1)
    rlpa = GRPOSettings(
        data=Path("x"), preset="peregrm-paper", reward={"reward": "rlpa", "judge": "local"}
    )
    assert rlpa.reward.reward == "rlpa" and rlpa.reward.overrides == {}
    assert rlpa.learning_rate == 1e-6 and rlpa.beta == 0.001
    mine = GRPOSettings(
        data=Path("x"),
        preset="perm-paper",
        reward={"reward": "perm", "overrides": {"lambda_bys": 0.1}},
    )
    assert mine.reward.config().lambda_bys == 0.1 and mine.reward.config().length_on == "completion"
    # a run's config.json (the preset and every value) repeats the run
    assert GRPOSettings.model_validate_json(s.model_dump_json()) == s


def test_the_preset_printout_names_each_value_its_source_and_what_changed():
    s = GRPOSettings(data=Path("x"), preset="perm-paper", learning_rate=2e-6)
    lines = presets_module.preset_lines("perm-paper", s)
    assert lines[0].startswith("preset perm-paper:") and "perm/grpo_train.sh" in lines[1]
    lr = next(line for line in lines if line.strip().startswith("learning_rate"))
    assert "2e-06" in lr and "--learning_rate 1e-6" in lr and "[changed from 1e-06]" in lr
    accum = next(line for line in lines if line.strip().startswith("gradient_accumulation"))
    assert "= 16" in accum and "[changed" not in accum
    assert any(line.strip().startswith("reward.length_on = completion") for line in lines)
    assert any("note:" in line and "--use_lora" in line for line in lines)
    assert not any(line.strip().startswith("lora.") for line in lines)


def test_docs_list_every_preset_value_with_its_source():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    for preset in presets_module.PRESETS.values():
        section = docs.split(f"### `--preset {preset.name}`", 1)[1].split("\n### ", 1)[0]
        rows = (
            [("", s) for s in preset.settings]
            + [("reward.", s) for s in preset.reward_settings]
            + [("lora.", s) for s in preset.lora]
        )
        for prefix, setting in rows:
            cell = f"| `{prefix}{setting.field}` | {presets_module.shown(setting.value)} |"
            assert cell in section, cell
        assert f"| reward | `{preset.reward}` |" in section


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-G", "8", "--trl", "num_generations=4"], "trl.num_generations=4 disagrees with"),
        (["--trl", "num_generations=4"], "set num_generations once"),
        (["--lr", "1e-6", "--trl", "learning_rate=1e-5"], "trl.learning_rate=1e-05 disagrees"),
        (["-G", "4", "--batch-size", "4", "--trl", "num_generations=4"], None),
    ],
)
def test_num_generations_in_the_trl_table_must_agree_with_g(tmp_path, captured, args, message):
    data = tmp_path / "train.jsonl"
    write_examples(data, 2)
    result = runner.invoke(
        build_app(), ["train", "grpo", "--out", str(tmp_path / "r"), "--data", str(data), *args]
    )
    if message is None:
        assert result.exit_code == 0, result.output
        assert captured["settings"].num_generations == 4
        return
    assert result.exit_code == 2 and "settings" not in captured
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_grpo_cli_takes_a_preset_and_the_monitor_options(tmp_path, captured):
    data = tmp_path / "train.jsonl"
    write_examples(data, 2)
    result = runner.invoke(
        build_app(),
        [
            "train",
            "grpo",
            "--out",
            str(tmp_path / "r"),
            "--data",
            str(data),
            "--preset",
            "peregrm-paper",
            "--lr",
            "5e-7",
            "--monitor-every",
            "3",
            "--monitor-samples",
            "2",
            "--stop-on-hacking",
        ],
    )
    assert result.exit_code == 0, result.output
    s = captured["settings"]
    assert s.preset == "peregrm-paper" and s.learning_rate == 5e-7 and s.beta == 0.001
    assert s.reward.reward == "peregrm@4" and s.reward.overrides["lambda_bys"] == 0.5
    assert (s.monitor.every, s.monitor.samples, s.monitor.stop_on_hacking) == (3, 2, True)
    assert "monitor.png" in result.output
    plain = runner.invoke(
        build_app(),
        ["train", "grpo", "--out", str(tmp_path / "p"), "--data", str(data), "--reward", "rlpa"],
    )
    assert plain.exit_code == 0, plain.output
    s = captured["settings"]
    assert s.preset is None and s.monitor == GRPOSettings(data=data).monitor
    assert s.monitor.every == 10 and not s.monitor.stop_on_hacking
