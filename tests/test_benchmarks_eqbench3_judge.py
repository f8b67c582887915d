"""attune eqbench3 and its judge: the default reads the format the rubric prompt asks for,
the report names the judge and what the score is comparable with, and a random judge's
band stands next to the score (issue 17, finding 10)."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from test_benchmarks_eqbench3 import FILES, bench, model_under_test  # noqa: F401
from typer.testing import CliRunner

from attunement.benchmarks.eqbench3 import EQBenchSettings, run_eqbench3, write_eqbench_report
from attunement.benchmarks.eqbench3.baseline import comparability, random_judge_baseline
from attunement.cli import build_app
from attunement.llm import LLMOptions, ScriptedChatModel, load_chat_model
from attunement.llm.spec import register_backend
from attunement.perf.simserver import SimConfig, SimServer


def follows_the_request(messages, index, params) -> str:
    """A judge that answers in the format the request asks for: JSON by the schema when
    one is sent (with a reasoning far longer than its maxLength, as servers that ignore
    maxLength write), prose otherwise."""
    fmt = params.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema")
    if not schema:
        return "The assistant shows real empathy; I would give it about fifteen out of twenty."
    answer = {
        key: ("careful reasoning " * 300 if key == "chain_of_thought_reasoning" else 15)
        for key in schema["properties"]
    }
    return json.dumps(answer)


async def test_the_default_judge_format_is_what_the_rubric_asks_for(tmp_path, bench):  # noqa: F811
    config = SimConfig(responder=follows_the_request, base_latency=0.0, per_output_token=0.0)
    with SimServer(config) as server:
        options = LLMOptions(timeout=20, max_retries=0)
        async with load_chat_model(f"openai:{server.base_url}#judge", options) as judge:
            res = await run_eqbench3(
                bench, model_under_test(), judge, tmp_path, show_progress=False
            )
    # every scenario judged; 15 on every counted criterion is 75 on 0-100
    assert res.failed == {} and [t.score for t in res.tasks] == [15.0, 15.0, 15.0]
    assert res.rubric_score.mean == pytest.approx(75.0)
    sent = [r for r in server.received() if "response_format" in r]
    assert len(sent) == 3 and EQBenchSettings().judge_format == "json"


def random_judge(seed: int) -> ScriptedChatModel:
    """Scores every criterion the request's schema asks for uniformly in 0-20."""

    def respond(request, index):
        rng = random.Random(hashlib.sha256(f"{seed}{request.messages}".encode()).hexdigest())
        keys = (request.json_schema or {}).get("properties", {})
        return json.dumps(
            {
                k: "no reasoning" if k == "chain_of_thought_reasoning" else rng.randint(0, 20)
                for k in keys
            }
        )

    return ScriptedChatModel(respond, name="random-judge")


async def test_a_random_judge_score_stands_next_to_the_random_band(tmp_path, bench):  # noqa: F811
    res = await run_eqbench3(
        bench, model_under_test(), random_judge(3), tmp_path, show_progress=False
    )
    band = res.random_judge
    assert band.mean == 50.0 and band.n == 3 and band.low < res.rubric_score.mean < band.high
    assert "only under the leaderboard's judge, Claude 3.7 Sonnet" in res.comparable
    write_eqbench_report(res, bench, tmp_path)
    md = (tmp_path / "results.md").read_text()
    assert "judged by random-judge; a judge scoring at random gets 50.0 (95% of random" in md
    assert "Warning: this score lies within the band of a judge that scores at random" in md
    assert "Comparable: judged by random-judge" in md
    page = (tmp_path / "report.html").read_text()
    assert "a judge that scores at random" in page


def test_the_random_band_narrows_with_tasks_and_counts_overall_eq_thrice():
    few, many = random_judge_baseline([["a", "b"]] * 3), random_judge_baseline([["a", "b"]] * 45)
    assert (many.high - many.low) < (few.high - few.low) / 3
    # one criterion weighted three times spreads more than three independent ones
    heavy = random_judge_baseline([["overall_eq", "a"]] * 10)
    even = random_judge_baseline([["a", "b", "c", "d"]] * 10)
    assert heavy.high - heavy.low > even.high - even.low


def test_comparability_names_the_leaderboard_judge():
    assert "comparable with the EQ-Bench 3 leaderboard's" in comparability(
        "openai:https://openrouter.ai/api/v1#anthropic/claude-3.7-sonnet"
    )
    assert "only under the leaderboard's judge" in comparability("Qwen3-8B")


def test_cli_prints_the_judge_and_the_random_band(tmp_path, bench):  # noqa: F811
    register_backend("eq-tested", lambda spec, options: model_under_test())
    register_backend("eq-random", lambda spec, options: random_judge(1))
    result = CliRunner().invoke(
        build_app(),
        [
            "eqbench3",
            "--policy",
            "eq-tested:x",
            "--judge",
            "eq-random:x",
            "--data",
            str(bench.folder),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", " ")
    assert "judge: random-judge; a judge scoring at random gets 50.0" in text
    assert "only under the leaderboard's judge" in text and "Warning:" in text


def test_cli_a_run_that_judged_nothing_exits_1_with_the_cause(tmp_path, bench):  # noqa: F811
    # issue 17, finding 11: 0 of N scenarios judged used to exit 0
    register_backend("eq-tested", lambda spec, options: model_under_test())
    register_backend(
        "eq-mute",
        lambda spec, options: ScriptedChatModel(rules=[], default="no verdict here", name="mute"),
    )
    args = ["eqbench3", "--policy", "eq-tested:x", "--judge", "eq-mute:x"]
    result = CliRunner().invoke(
        build_app(), [*args, "--data", str(bench.folder), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1, result.output
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: 0 of 3 scenarios judged (judge: ")
    assert line.endswith("try --judge-format json, then run the same command again")


def test_cli_judge_down_then_failing_then_up(tmp_path, bench):  # noqa: F811
    """Issue 17, finding 1, for eqbench3: a judge that is down is named before any
    work; one that answers HTTP 500 leaves the 3 scenarios unjudged (exit 1, one
    line, no verdict written); back on the same port, exactly those are judged."""
    from test_call_failures import free_port

    from attunement.benchmarks.eqbench3 import RubricVerdict
    from attunement.jsonl import read_jsonl

    port = free_port()
    register_backend("eq-tested", lambda spec, options: model_under_test())
    out = tmp_path / "out"
    args = [
        *("eqbench3", "--policy", "eq-tested:x", "--judge"),
        f"openai:http://127.0.0.1:{port}/v1#sim-judge",
        *("--data", str(bench.folder), "--out", str(out), "--retries", "0"),
    ]

    def run():
        result = CliRunner().invoke(build_app(), args)
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
        return result, errors

    down, errors = run()
    assert down.exit_code == 1 and len(errors) == 1, down.output
    assert errors[0].startswith(f"error: judge unreachable at http://127.0.0.1:{port}/v1")
    config = SimConfig(responder=follows_the_request, base_latency=0.0, per_output_token=0.0)
    config.faults = ["500"] * 50
    with SimServer(config, port=port):
        failing, errors = run()
    assert failing.exit_code == 1 and len(errors) == 1, failing.output
    assert errors[0].startswith(f"error: judge failing at http://127.0.0.1:{port}/v1 (HTTP 500)")
    assert errors[0].endswith("run again to retry")
    verdicts = out / "rubric.jsonl"
    assert not verdicts.exists() or not read_jsonl(verdicts, RubricVerdict)
    config.faults = []
    with SimServer(config, port=port) as server:
        back, errors = run()
    assert back.exit_code == 0 and not errors, back.output
    assert len(read_jsonl(verdicts, RubricVerdict)) == 3
    assert len([r for r in server.received() if "response_format" in r]) == 3
