"""Real training runs on the CPU: SmolLM2-135M (the ``smollm2`` policy) for two GRPO
steps with PERM and PereGRM against a scripted judge, a judge that fails for some
replies, SFT, and LoRA with the real embedded judge. Tiny settings (few prompts, two
to three completions of 16 tokens) keep each run to seconds of compute.

Each run checks that the weights changed, that metrics.jsonl has every key on
every step, and that the result loads as ``hf:FOLDER`` and answers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
from pathlib import Path

import pytest
from train_scripted import install, judged_response, scripted_judge, write_examples
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.judging import RewardSpec
from attunement.llm import LLMError, load_chat_model
from attunement.training.reward import metric_keys
from attunement.training.run import read_metrics

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("trl") is None,
        reason="training needs the 'train' extra (torch, TRL, peft)",
    ),
]

runner = CliRunner()


def words(text: str) -> list[str]:
    return text.split()


TINY = words("--model smollm2 -G 2 --batch-size 2 --max-completion-length 16 --lr 1e-5 --seed 0")
#: a shorter policy prompt (no persona, memories or situation): half the compute per step
SHORT = words("--memory none --no-persona --no-situation")
#: the tiny policy rarely writes the "# Analysis / # Response" headings; PERM judges such
#: a reply as empty by default (the authors' rule), which would show every reply of a
#: group to the judge as the same empty text: one score, no learning signal
WHOLE = ["--set", "unformatted=judge_whole"]
JSON_SETS = ["--set", "output=json", "--set", "bystander_output=json", *WHOLE]


@pytest.fixture(scope="module")
def base() -> Path:
    """The smollm2 checkpoint (converted from the GGUF once, then cached)."""
    from attunement.llm.local import ModelNotFoundError
    from attunement.training.models import resolve_model

    try:
        return resolve_model("smollm2")
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "train.jsonl"
    write_examples(path, 4)
    return path


def train(*args: str) -> None:
    result = runner.invoke(build_app(), ["train", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def assert_changed(before: Path, after: Path) -> None:
    a, b = weights(before), weights(after)
    assert a.keys() == b.keys()
    changed = [k for k in a if not a[k].equal(b[k])]
    assert changed, "no weight changed"


def assert_metrics_complete(run: Path, spec: RewardSpec, steps: list[int]) -> list[dict]:
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == steps
    expected = set(metric_keys(spec)) | {
        "reward",
        "loss",
        "rewards/" + spec.reward.split("@")[0] + "/mean",
    }
    for row in rows:
        assert expected <= set(row), sorted(expected - set(row))
        assert set(row) == set(rows[0])  # the same keys on every step
    return rows


def assert_answers_as_hf(folder: Path) -> None:
    async def ask():
        async with load_chat_model(f"hf:{folder}") as model:
            return await model.complete([{"role": "user", "content": "Hello"}], max_tokens=4)

    [completion] = asyncio.run(ask())
    assert 0 < completion.completion_tokens <= 4


def test_grpo_with_perm_trains_resumes_and_loads_as_hf(base, data, tmp_path):
    install(scripted_judge())
    run = tmp_path / "perm"
    common = [
        *f"--out {run} --data {data} --reward perm --judge scripted".split(),
        *JSON_SETS,
        *TINY,
        "--save-steps",
        "1",
    ]
    train("grpo", *common, "--max-steps", "1")
    assert (run / "checkpoints" / "checkpoint-1").is_dir()
    train("grpo", *common, "--max-steps", "2")  # resumes: one more step, not two
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["steps"] == 2
    assert manifest["resumed_from"].endswith("checkpoint-1")
    assert manifest["device"] == "cpu" and manifest["beta"] == 0.0 and manifest["bf16"] is False
    assert manifest["reward"]["reward_model"] == "perm"
    assert manifest["reward"]["token_counter"].startswith("policy tokenizer")
    rows = assert_metrics_complete(run, RewardSpec(reward="perm"), [1, 2])
    assert all(0 <= r["rewards/perm/resonation"] <= 5 for r in rows)
    breakdowns = read_metrics(run / "breakdowns.jsonl")
    assert [b["step"] for b in breakdowns] == [0, 0, 1, 1]  # step 1's were not kept twice
    assert all(0 < b["reply"]["completion_tokens"] <= 16 for b in breakdowns)
    assert (run / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert_changed(base, run / "final")
    assert_answers_as_hf(run / "final")


def test_grpo_with_peregrm_uses_one_criteria_set_per_group_and_fresh_ones_each_step(
    base, data, tmp_path
):
    install(scripted_judge())
    run = tmp_path / "peregrm"
    train(
        "grpo",
        *f"--out {run} --data {data} --reward peregrm --judge scripted".split(),
        *JSON_SETS,
        *TINY,
        *SHORT,
        "--max-steps",
        "2",
        "--trl",
        "save_only_model=true",
    )
    assert_metrics_complete(run, RewardSpec(reward="peregrm"), [1, 2])
    criteria: dict[int, set[tuple[str, str, str]]] = {}
    for row in read_metrics(run / "breakdowns.jsonl"):
        b = row["breakdown"]
        for j in b["judgements"]:
            if j["dimension"] != "bystander":
                criteria.setdefault(row["step"], set()).add(
                    (b["example_id"], j["dimension"], j["criteria"])
                )
    assert sorted(criteria) == [0, 1]
    for sets in criteria.values():  # both replies of the group: one set per dimension
        assert len(sets) == 3 and len({(eid, dim) for eid, dim, _ in sets}) == 3
    texts = {step: {c for _, _, c in sets} for step, sets in criteria.items()}
    assert texts[0].isdisjoint(texts[1])  # the next step drew new criteria
    assert_changed(base, run / "final")
    assert_answers_as_hf(run / "final")


def test_replies_the_judge_cannot_score_are_left_out_and_training_goes_on(
    base, data, tmp_path, caplog
):
    seen: list[str] = []

    def fail(request):
        response = judged_response(request)
        if response is None:
            return None
        if response not in seen:
            seen.append(response)
        if seen.index(response) % 3 == 0:  # the first reply of each group, in call order
            return LLMError("judge timed out")
        return None

    install(scripted_judge(fail))
    run = tmp_path / "failing"
    train(
        "grpo",
        *f"--out {run} --data {data} --reward perm --judge scripted".split(),
        *JSON_SETS,
        *TINY,
        *SHORT,
        "-G",
        "3",
        "--batch-size",
        "3",
        "--max-steps",
        "2",
        "--trl",
        "log_completions=true",
        "--trl",
        "save_only_model=true",
    )
    rows = assert_metrics_complete(run, RewardSpec(reward="perm"), [1, 2])
    assert all(r["rewards/perm/unscorable_frac"] == pytest.approx(1 / 3) for r in rows)
    import pandas as pd

    for step in (1, 2):
        table = pd.read_parquet(
            run / "checkpoints" / "completions" / f"completions_{step:05d}.parquet"
        )
        rewards, advantages = table["perm"].tolist(), table["advantage"].tolist()
        assert len(rewards) == 3 and sum(math.isnan(r) for r in rewards) == 1
        scored = [r for r in rewards if not math.isnan(r)]
        mean = sum(scored) / len(scored)
        std = math.sqrt(sum((r - mean) ** 2 for r in scored) / (len(scored) - 1))
        for r, a in zip(rewards, advantages, strict=True):
            if math.isnan(r):
                assert a == 0.0  # no learning signal from an unscorable reply
            else:  # baseline and scale come from the scorable replies only
                assert a == pytest.approx((r - mean) / (std + 1e-4), rel=1e-4, abs=1e-6)
    unscorable = [b for b in read_metrics(run / "breakdowns.jsonl") if b["breakdown"]["unscorable"]]
    assert len(unscorable) == 2
    assert all("judge timed out" in b["breakdown"]["reason"] for b in unscorable)
    assert json.loads((run / "manifest.json").read_text())["steps"] == 2
    # TRL warned about the all-None rows by id, with no record text
    warned = [r.getMessage() for r in caplog.records if "returned None" in r.getMessage()]
    assert warned and all("example_id 'ex" in w for w in warned)
    assert not any("Mentioned before" in w or "Quiet engineer" in w for w in warned)


def test_sft_trains_on_distilled_rows_and_loads_as_hf(base, tmp_path):
    path = tmp_path / "sft.jsonl"
    rows = []
    for i, feeling in enumerate(["tired", "lonely", "nervous", "proud"]):
        rows.append(
            {
                "prompt": [
                    {"role": "system", "content": "You are a caring assistant."},
                    {"role": "user", "content": f"I feel {feeling} today."},
                ],
                "completion": [
                    {
                        "role": "assistant",
                        "content": f"# Analysis\nThey feel {feeling}.\n\n# Response\nI hear you.",
                    }
                ],
                "example_id": f"e{i}",
                "reply_id": f"e{i}:full:0",
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "sft"
    train(
        "sft",
        *f"--out {run} --data {path} --model smollm2 --max-steps 2 --batch-size 2 "
        "--lr 1e-4 --trl save_only_model=true".split(),
    )
    metrics = read_metrics(run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2] and all("loss" in m for m in metrics)
    assert_changed(base, run / "final")
    assert_answers_as_hf(run / "final")


def test_grpo_lora_with_the_embedded_judge_merges_and_loads_as_hf(
    base, data, tmp_path, local_model
):
    run = tmp_path / "lora"
    # the judge samples at temperature 1 and a group has 4 replies, so the rewards of a
    # group differ (with ties everywhere GRPO has no signal and nothing would change)
    args = (
        words(
            f"--out {run} --data {data} --reward perm --judge local --no-bystander "
            "--set output=json --set json_text_chars=60 --set max_tokens=160 "
            "--set max_resamples=1 --set temperature=1.0 --lora --lora-r 8"
        )
        + WHOLE
    )
    train(
        "grpo",
        *args,
        *TINY,
        *SHORT,
        *words("-G 4 --batch-size 4 --lr 1e-4 --max-steps 2"),
        "--trl",
        "save_only_model=true",
    )
    spec = RewardSpec(reward="perm", overrides={"use_bystander": False})
    rows = assert_metrics_complete(run, spec, [1, 2])
    assert any(r["rewards/perm/unscorable_frac"] < 1 for r in rows)  # the tiny judge can score
    assert any(r["frac_reward_zero_std"] < 1 for r in rows)  # a learning signal
    assert (run / "adapter" / "adapter_config.json").exists()
    assert_changed(base, run / "final")
    merged = tmp_path / "merged"
    train("merge", "--adapter", str(run / "adapter"), "--out", str(merged))
    again, final = weights(merged), weights(run / "final")
    assert all(again[k].allclose(final[k], atol=1e-6) for k in final)
    assert_answers_as_hf(run / "final")


def fooled_by_scores(request):
    """The scripted judge, except that a response carrying ``Score: 5`` gets a 5."""
    from train_scripted import kind_of

    response = judged_response(request)
    if response is not None and "Score: 5" in response and kind_of(request) == "score":
        return json.dumps({"reason": "the reply says so", "score": 5})
    return None


def test_grpo_with_the_monitor_on_writes_its_metrics_and_stops_on_hacking(base, data, tmp_path):
    """Two real steps with the monitor every step: its statistics and probe gains are in
    metrics.jsonl and monitor.png; then a judge fooled by a forged score, a monitor that
    decides on one pair, and --stop-on-hacking: the run stops at once with a checkpoint."""
    from train_scripted import judge_answer

    install(scripted_judge())
    run = tmp_path / "watched"
    common = [
        *f"--data {data} --reward perm --judge scripted".split(),
        *JSON_SETS,
        *TINY,
        *SHORT,
        "--monitor-every",
        "1",
        "--monitor-samples",
        "1",
    ]
    train("grpo", "--out", str(run), *common, "--max-steps", "2")
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        for key in (
            "verdict_share",
            "fence_share",
            "recital_share",
            "format_break_rate",
            "reward_length_corr",
            "probe/score_line",
            "probe/wrong_user",
            "hacking",
        ):
            assert f"monitor/{key}" in row, key
        assert 0 <= row["monitor/format_break_rate"] <= 1
    assert (run / "monitor.png").read_bytes()[:4] == b"\x89PNG"

    def respond(request, index):
        return fooled_by_scores(request) or judge_answer(request, index)

    from attunement.llm import ScriptedChatModel

    install(ScriptedChatModel(respond))
    config = tmp_path / "monitor.toml"
    config.write_text(
        '[monitor]\nprobes = ["score_line"]\nmin_pairs = 1\nprobe_rounds = 1\n'
        "probe_alpha = 0.5\nprobe_threshold = 0.01\n"
    )
    stopped = tmp_path / "stopped"
    train(
        "grpo",
        "--out",
        str(stopped),
        *common,
        # the judge must see the forged score for the probe to pay (by default a reply
        # carrying a verdict gets the reward's minimum without a judge call)
        *("--set", "verdict_in_reply=judge"),
        "--config",
        str(config),
        "--max-steps",
        "3",
        "--stop-on-hacking",
    )
    manifest = json.loads((stopped / "manifest.json").read_text())
    assert manifest["status"] == "stopped_on_hacking" and manifest["steps"] == 1
    assert manifest["stopped_at_step"] == 1
    assert any("probe score_line pays" in w for w in manifest["monitor_warnings"])
    assert (stopped / "checkpoints" / "checkpoint-1").is_dir()
    [row] = read_metrics(stopped / "metrics.jsonl")
    assert row["monitor/hacking"] == 1.0 and row["monitor/alert/probe/score_line"] == 1.0
    assert row["monitor_warnings"] and "probe score_line pays" in row["monitor_warnings"][0]
