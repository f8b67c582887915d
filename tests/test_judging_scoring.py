"""score_dataset (join, resume, manifest, summary), prepare_criteria and the CLI verbs."""

from __future__ import annotations

import asyncio
import json

import pytest
from test_judging_rewards import DIMS, dimension, example, judge_answer, kind, reply, scripted
from typer.testing import CliRunner

from attunement.jsonl import read_jsonl, write_jsonl
from attunement.judging import (
    CriteriaConfig,
    PereGRMConfig,
    PermConfig,
    peregrm_reward,
    perm_reward,
    prepare_criteria,
    score_dataset,
)
from attunement.llm import ScriptedChatModel
from attunement.llm.base import ChatRequest
from attunement.records import Example, RewardBreakdown


def run(coro):
    return asyncio.run(coro)


def dataset(n_examples: int = 3, n_replies: int = 2):
    examples = [
        example(f"e{i}").model_copy(update={"query": f"Question number {i}: why me?"})
        for i in range(n_examples)
    ]
    replies = [
        reply(f"e{i}-r{j}", eid=f"e{i}") for i in range(n_examples) for j in range(n_replies)
    ]
    return examples, replies


def test_score_dataset_writes_one_breakdown_per_reply_joined_by_id(tmp_path):
    examples, replies = dataset()
    out = tmp_path / "scores.jsonl"
    judge = scripted({"resonation": 4, "expression": 3, "reception": 5}, bystander=72)
    summary = run(
        score_dataset(
            perm_reward(judge),
            examples,
            list(reversed(replies)),
            out,
            concurrency=2,
            show_progress=False,
        )
    )
    rows = read_jsonl(out, RewardBreakdown)
    assert sorted((b.example_id, b.reply_id) for b in rows) == sorted(
        (r.example_id, r.reply_id) for r in replies
    )
    assert all(b.reply_id.startswith(b.example_id + "-") for b in rows)
    assert summary.replies == 6 and summary.scored_now == 6 and summary.resumed == 0
    assert summary.unscorable == 0 and summary.scorable == 6
    assert summary.reward_mean == pytest.approx(36 / 47 - 0.14)
    assert summary.dimension_means == {
        "resonation": 4.0,
        "expression": 3.0,
        "reception": 5.0,
        "bystander": 72.0,
    }
    assert summary.usage.calls == summary.usage_now.calls == 24
    manifest = json.loads((tmp_path / "scores.manifest.json").read_text())
    assert manifest["reward"]["reward_model"] == "perm" and manifest["command"] == "score"
    assert "perm_resonation" in manifest["reward"]["prompts"]


def test_score_dataset_resumes_without_rescoring(tmp_path):
    examples, replies = dataset()
    out = tmp_path / "scores.jsonl"
    judge = scripted()
    run(
        score_dataset(
            perm_reward(judge), examples, replies[:3], out, concurrency=2, show_progress=False
        )
    )
    first_calls = len(judge.calls)
    # a torn last line from a killed run is repaired and that reply is scored again
    with out.open("a") as fh:
        fh.write('{"example_id": "e1", "reply_id": "e1-r1", "rew')
    summary = run(
        score_dataset(
            perm_reward(judge), examples, replies, out, concurrency=2, show_progress=False
        )
    )
    assert summary.resumed == 3 and summary.scored_now == 3 and summary.replies == 6
    assert len(judge.calls) == first_calls + 3 * 4
    rows = read_jsonl(out, RewardBreakdown)
    assert len(rows) == 6 and len({(b.example_id, b.reply_id) for b in rows}) == 6
    again = run(
        score_dataset(
            perm_reward(judge), examples, replies, out, concurrency=2, show_progress=False
        )
    )
    assert again.scored_now == 0 and again.resumed == 6 and again.usage_now.calls == 0


def test_resuming_with_another_configuration_is_refused(tmp_path):
    examples, replies = dataset(1, 2)
    out = tmp_path / "scores.jsonl"
    run(
        score_dataset(
            perm_reward(scripted()), examples, replies[:1], out, concurrency=1, show_progress=False
        )
    )
    with pytest.raises(
        ValueError, match=r"other settings \(reward.config.lambda_bys: 0.5 -> 1.0\)"
    ):
        run(
            score_dataset(
                perm_reward(scripted(), PermConfig(lambda_bys=1.0)),
                examples,
                replies,
                out,
                concurrency=1,
                show_progress=False,
            )
        )


def test_bad_joins_fail_before_any_call(tmp_path):
    examples, replies = dataset(1, 1)
    judge = scripted()
    with pytest.raises(ValueError, match="unknown example ids"):
        run(
            score_dataset(
                perm_reward(judge),
                examples,
                replies + [reply("x", eid="nope")],
                tmp_path / "o.jsonl",
                concurrency=1,
                show_progress=False,
            )
        )
    with pytest.raises(ValueError, match="appears twice"):
        run(
            score_dataset(
                perm_reward(judge),
                examples,
                replies + replies,
                tmp_path / "o.jsonl",
                concurrency=1,
                show_progress=False,
            )
        )
    with pytest.raises(ValueError, match="appears twice"):
        run(
            score_dataset(
                perm_reward(judge),
                examples + examples,
                replies,
                tmp_path / "o.jsonl",
                concurrency=1,
                show_progress=False,
            )
        )
    with pytest.raises(ValueError, match="attune criteria"):
        run(
            score_dataset(
                peregrm_reward(judge, PereGRMConfig(criteria_mode="fixed")),
                examples,
                replies,
                tmp_path / "o.jsonl",
                concurrency=1,
                show_progress=False,
            )
        )
    assert judge.calls == []


def test_unscorable_replies_are_counted_with_reasons(tmp_path):
    def respond(request: ChatRequest, index: int) -> str:
        if kind(request) == "bystander" and "BROKEN" in request.messages[-1][1]:
            return "no total here"
        return judge_answer(request, 4)

    examples, replies = dataset(1, 2)
    replies.append(reply("e0-bad", eid="e0", response="BROKEN reply"))
    summary = run(
        score_dataset(
            perm_reward(ScriptedChatModel(respond)),
            examples,
            replies,
            tmp_path / "o.jsonl",
            concurrency=1,
            show_progress=False,
        )
    )
    assert summary.unscorable == 1 and summary.scorable == 2
    assert summary.unscorable_reasons == {"bystander": 1}
    assert summary.failed_judgements == 3 and summary.resampled_judgements == 2
    bad = next(
        b for b in read_jsonl(tmp_path / "o.jsonl", RewardBreakdown) if b.reply_id == "e0-bad"
    )
    assert bad.reward is None and bad.unscorable


def test_shared_criteria_once_per_example_in_a_dataset(tmp_path):
    examples, replies = dataset(3, 4)
    judge = scripted()
    run(
        score_dataset(
            peregrm_reward(judge, PereGRMConfig(k=2)),
            examples,
            replies,
            tmp_path / "o.jsonl",
            concurrency=3,
            show_progress=False,
        )
    )
    assert sum(1 for c in judge.calls if kind(c) == "criteria") == 3 * 3


# --------------------------------------------------------------------------- criteria


def test_prepare_criteria_fills_every_dimension_and_skips_done_ones():
    judge = scripted()
    done = example("done", criteria={d: "1. Kept (100%): as is" for d in DIMS})
    out = run(prepare_criteria([example("a"), done], judge, concurrency=2, show_progress=False))
    assert [e.example_id for e in out] == ["a", "done"]
    assert set(out[0].criteria) == set(DIMS)
    assert out[0].criteria["expression"].startswith("1. C1 (25%): d")
    assert out[0].meta["criteria_info"]["rescaled"] == []
    assert out[1] == done
    calls = [c for c in judge.calls if kind(c) == "criteria"]
    assert len(calls) == 3 and all(c.temperature == 0.2 and c.n == 1 for c in calls)


def test_prepare_criteria_retries_then_records_failures():
    def respond(request: ChatRequest, index: int) -> str:
        if dimension(request) == "reception":
            return "1. Only one (100%): not enough"
        if dimension(request) == "expression" and index == 0:
            return "nothing useful"
        return judge_answer(request, 4)

    judge = ScriptedChatModel(respond)
    [out] = run(
        prepare_criteria(
            [example("a")],
            judge,
            concurrency=1,
            config=CriteriaConfig(max_resamples=1),
            show_progress=False,
        )
    )
    assert set(out.criteria) == {"resonation", "expression"}
    assert "1 criteria; expected 4-6" in out.meta["criteria_errors"]["reception"]
    exp = [c for c in judge.calls if dimension(c) == "expression"]
    assert [c.sample_start for c in exp] == [0, 1]


def test_prepared_criteria_drive_fixed_mode_scoring():
    judge = scripted({"expression": 2})
    [ready] = run(prepare_criteria([example("a")], judge, concurrency=1, show_progress=False))
    reward = peregrm_reward(judge, PereGRMConfig(criteria_mode="fixed"))
    [b] = run(reward.score(ready, [reply("r", eid="a")]))
    assert b.dimensions["expression"] == 2.0
    assert {j.criteria for j in b.judgements if j.dimension != "bystander"} == set(
        ready.criteria.values()
    )


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def scripted_backend():
    from attunement.llm import spec

    judge = scripted({"resonation": 4, "expression": 3, "reception": 5}, bystander=72)
    spec.register_backend("scripted", lambda parsed, options: judge)
    yield judge
    spec._BACKENDS.pop("scripted", None)


def test_cli_score_and_criteria(tmp_path, scripted_backend):
    from attunement.cli import build_app

    examples, replies = dataset(2, 2)
    write_jsonl(tmp_path / "ex.jsonl", examples)
    write_jsonl(tmp_path / "re.jsonl", replies)
    runner = CliRunner()
    result = runner.invoke(
        build_app(),
        [
            "score",
            "--data",
            str(tmp_path / "ex.jsonl"),
            "--replies",
            str(tmp_path / "re.jsonl"),
            "--reward",
            "perm",
            "--judge",
            "scripted",
            "-k",
            "2",
            "--out",
            str(tmp_path / "b.jsonl"),
            "--aggregation",
            "arithmetic",
            "--lambda-bys",
            "1.0",
            "--no-resonation",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_jsonl(tmp_path / "b.jsonl", RewardBreakdown)
    assert len(rows) == 4
    assert all(b.terms["r_emp"] == pytest.approx(0.8) for b in rows)  # mean(0.6, 1.0)
    assert all(b.terms["bystander_penalty"] == pytest.approx(-0.28) for b in rows)
    assert all("resonation" not in b.dimensions and b.config["k"] == 2 for b in rows)
    # a plain line, never wrapped (the table may wrap at a narrow terminal)
    assert (
        f"written: {tmp_path / 'b.jsonl'} (4 breakdowns: 4 scorable, 0 unscorable)"
        in result.stderr.splitlines()
    ), result.output
    assert "  scorable / unscorable: 4 / 0\n" in result.output, result.output

    bad = runner.invoke(
        build_app(),
        [
            "score",
            "--data",
            str(tmp_path / "ex.jsonl"),
            "--replies",
            str(tmp_path / "re.jsonl"),
            "--reward",
            "perm",
            "--judge",
            "scripted",
            "--criteria-mode",
            "shared",
            "--out",
            str(tmp_path / "c.jsonl"),
        ],
    )
    assert bad.exit_code == 1

    result = runner.invoke(
        build_app(),
        [
            "criteria",
            "--data",
            str(tmp_path / "ex.jsonl"),
            "--judge",
            "scripted",
            "--out",
            str(tmp_path / "crit.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    with_criteria = read_jsonl(tmp_path / "crit.jsonl", Example)
    assert sorted(e.example_id for e in with_criteria) == ["e0", "e1"]
    assert all(set(e.criteria) == set(DIMS) for e in with_criteria)

    result = runner.invoke(
        build_app(),
        [
            "score",
            "--data",
            str(tmp_path / "crit.jsonl"),
            "--replies",
            str(tmp_path / "re.jsonl"),
            "--reward",
            "peregrm",
            "--criteria-mode",
            "fixed",
            "--judge",
            "scripted",
            "--out",
            str(tmp_path / "fixed.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_jsonl(tmp_path / "fixed.jsonl", RewardBreakdown)
    assert len(rows) == 4 and not any(b.unscorable for b in rows)


def test_cli_score_passes_every_reward_option_through(tmp_path, scripted_backend):
    from attunement.cli import build_app

    examples, replies = dataset(1, 2)
    write_jsonl(tmp_path / "ex.jsonl", examples)
    write_jsonl(tmp_path / "re.jsonl", replies)
    (tmp_path / "reward.toml").write_text("lambda_bys = 1.0\nlength_limit = 1\n")
    base = [
        "score",
        "--data",
        str(tmp_path / "ex.jsonl"),
        "--replies",
        str(tmp_path / "re.jsonl"),
        "--judge",
        "scripted",
    ]
    runner = CliRunner()
    result = runner.invoke(
        build_app(),
        base
        + [
            "--reward",
            "peregrm@2",
            "--out",
            str(tmp_path / "a.jsonl"),
            "--criteria-mode",
            "per_reply",
            "--definitions",
            "evaluation",
            "--judge-context",
            "full",
            "--unformatted",
            "empty",
            "--length-penalty",
            "--length-on",
            "completion",
            "--tokenizer",
            "approx",
            "--reward-config",
            str(tmp_path / "reward.toml"),
            "--set",
            "length_coef=0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    [b, _] = read_jsonl(tmp_path / "a.jsonl", RewardBreakdown)
    c = b.config
    assert (
        c["k"],
        c["criteria_mode"],
        c["definitions"],
        c["judge_context"],
        c["unformatted"],
        c["length_on"],
        c["tokenizer"],
        c["lambda_bys"],
        c["length_limit"],
        c["length_coef"],
    ) == (2, "per_reply", "evaluation", "full", "empty", "completion", "approx", 1.0, 1, 0.5)
    assert b.terms["length_penalty"] < 0 and b.config["length_tokens"] > 1

    bad_choice = runner.invoke(
        build_app(), base + ["--out", str(tmp_path / "b.jsonl"), "--criteria-mode", "sometimes"]
    )
    assert bad_choice.exit_code != 0 and not (tmp_path / "b.jsonl").exists()
    perm_only = runner.invoke(
        build_app(),
        base
        + ["--reward", "perm", "--definitions", "training", "--out", str(tmp_path / "c.jsonl")],
    )
    assert perm_only.exit_code == 1 and "peregrm only" in perm_only.output
    bad_tok = runner.invoke(
        build_app(), base + ["--tokenizer", "gpt2", "--out", str(tmp_path / "d.jsonl")]
    )
    assert bad_tok.exit_code == 2 and "tokenizer" in bad_tok.output


def test_prepared_criteria_keep_the_judges_list_as_written():
    """`attune criteria` stores the validated list itself, continuation lines and all,
    and fixed-mode scoring shows exactly that text to the judge."""
    answer = (
        "Specific Criteria:\n"
        "1. **Names the shame** (Weight: 40%):\n"
        "   Says that failing twice stings, before any advice.\n"
        "2. Gentle pacing (20%): comfort first\n"
        "   - no tips in the first two sentences\n"
        "3. Respects autonomy (20%): offers, does not push\n"
        "4. One small step (20%): a concrete thing for tomorrow"
    )

    def respond(request: ChatRequest, index: int) -> str:
        return answer if kind(request) == "criteria" else judge_answer(request, 4)

    judge = ScriptedChatModel(respond)
    config = CriteriaConfig(output="text")
    [ready] = run(
        prepare_criteria([example("a")], judge, concurrency=1, config=config, show_progress=False)
    )
    assert not ready.meta.get("criteria_errors")
    for dim in DIMS:
        assert ready.criteria[dim] == answer.removeprefix("Specific Criteria:\n")
    judge.calls.clear()
    run(
        peregrm_reward(judge, PereGRMConfig(criteria_mode="fixed", output="text")).score(
            ready, [reply("r", eid="a")]
        )
    )
    scoring = [c for c in judge.calls if kind(c) == "score"]
    assert scoring and all(
        "   - no tips in the first two sentences" in c.messages[-1][1] for c in scoring
    )


def test_prepared_criteria_prompts_show_the_memories_not_the_demographics_and_only_the_dimensions_asked():
    """``attune criteria`` writes as the authors' criteria writer read the user: the
    memories in, the persona's demographic fields out whatever the reward's memory
    setting; its prompt defines the dimensions it writes for and no others."""
    from attunement.judging import CriteriaConfig
    from attunement.records import MemoryItem, Persona

    judge = scripted()
    ex = example("a").model_copy(
        update={
            "persona": Persona(profile="Quiet archivist.", age=61, occupation="trawlerman"),
            "memories": [MemoryItem(memory_id="m1", value="Lost a dog named Biscuit.")],
        }
    )
    config = CriteriaConfig(dimensions=("expression",))
    run(prepare_criteria([ex], judge, config=config, show_progress=False))
    (call,) = [c for c in judge.calls if kind(c) == "criteria"]
    user = call.messages[-1][1]
    assert "Lost a dog named Biscuit." in user and "Quiet archivist." in user
    assert "trawlerman" not in user and "61" not in user
    assert "## expression\n" in user
    assert "## resonation\n" not in user and "## reception\n" not in user
