"""attune demo: the whole chain on a scripted model (fast) and on the embedded model (slow);
both end with the evaluation report."""

from __future__ import annotations

import json

import pytest
from build_scripted import default_answer, stage_of
from test_judging_rewards import judge_answer
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.demo import DEMO_MODES, example_users_path, run_demo
from attunement.jsonl import read_jsonl
from attunement.llm import ScriptedChatModel
from attunement.llm.base import ChatRequest
from attunement.records import Example, Reply, RewardBreakdown, UserHistory

POLICY_REPLY = "# Analysis\nThey feel alone with it.\n\n# Response\nThat sounds so heavy. I'm here."


def _is_builder(request: ChatRequest) -> bool:
    try:
        stage_of(request)
    except AssertionError:
        return False
    return True


def scripted_everything(no_situation_for: str | None = None) -> ScriptedChatModel:
    """Builder stages, policy replies and judge answers from one scripted model.

    ``no_situation_for``: a user for whom the situation stage finds nothing.
    """
    users = read_jsonl(example_users_path(), UserHistory)

    def respond(request: ChatRequest, index: int) -> str:
        if request.json_schema is not None and _is_builder(request):
            answer = default_answer(request, index)
            text = "\n".join(c for _, c in request.messages)
            asker = next(
                (u.user_id for u in users if any(m.value in text for m in u.memories)), None
            )
            if stage_of(request) == "situations" and asker == no_situation_for:
                why = {"supported": False, "why_not": "nothing in the memories", "situations": []}
                return json.dumps({"ES": why})
            if stage_of(request) == "queries":  # name the asker so prompts can be told apart
                data = json.loads(answer)
                data["query"] += f" (asked by {asker})"
                answer = json.dumps(data)
            return answer
        system = request.messages[0][1]
        if "caring, attentive assistant" in system:
            return POLICY_REPLY
        return judge_answer(request, score=4.0)

    return ScriptedChatModel(respond, name="scripted-demo")


async def test_demo_runs_the_chain_and_resumes_without_calls(tmp_path):
    model = scripted_everything()
    report = await run_demo(tmp_path, model, max_queries=3, show_progress=False)
    assert [r.mode for r in report.results] == list(DEMO_MODES)
    assert report.examples == 3 and report.users == 3
    for r in report.results:
        assert r.replies == 3 and r.unscorable == 0
        assert r.means == {"resonation": 4.0, "expression": 4.0, "reception": 4.0}
        # three users: no interval (a zero-width one said nothing about the population)
        assert (r.average, r.low, r.high, r.note) == (4.0, None, None, "n too small")
    # the run ends with the evaluation report
    page = report.report.read_text()
    assert report.report == tmp_path / "eval" / "report.html"
    assert "Memory ablation" in page and "Mismatch Memory" in page
    assert page.count('<details class="example"') == 3
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert [r["system"] for r in results["table"]] == list(DEMO_MODES)
    assert results["judges"][0]["reward"]["config"]["criteria_mode"] == "fixed"
    assert results["criteria"]["prepared_now"] == 3
    assert any(p["view"] == "memory" and p["system"] == "mismatch" for p in results["paired"])

    examples = {e.example_id: e for e in read_jsonl(tmp_path / "data/examples.jsonl", Example)}
    users = {u.user_id: u for u in read_jsonl(example_users_path(), UserHistory)}
    for mode in DEMO_MODES:
        replies = read_jsonl(tmp_path / f"replies.{mode}.jsonl", Reply)
        assert {r.memory_mode for r in replies} == {mode}
        scores = read_jsonl(
            tmp_path / "eval" / "scores" / "judge" / f"{mode}.jsonl", RewardBreakdown
        )
        assert {s.reply_id for s in scores} == {r.reply_id for r in replies}
    # the policy saw the asker's own memories in full mode and another bundled
    # user's memories in mismatch mode
    policy_prompts = [
        c.messages[-1][1] for c in model.calls if "caring, attentive assistant" in c.messages[0][1]
    ]
    examples_chosen = manifest_examples(tmp_path)
    assert len(policy_prompts) == 2 * len(examples_chosen)
    for eid in examples_chosen:
        ex = examples[eid]
        own = [m.value for m in users[ex.user_id].memories]
        others = [m.value for uid, u in users.items() if uid != ex.user_id for m in u.memories]
        prompts = [p for p in policy_prompts if ex.query in p]
        assert len(prompts) == 2
        full = [p for p in prompts if any(v in p for v in own)]
        mism = [p for p in prompts if not any(v in p for v in own)]
        assert len(full) == 1 and len(mism) == 1
        assert any(v in mism[0] for v in others)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["command"] == "demo" and len(manifest["examples"]) == 3
    assert set(manifest["examples"]) <= set(examples)
    assert set(users) >= {e.user_id for e in examples.values()}

    calls = len(model.calls)
    again = await run_demo(tmp_path, model, max_queries=3, show_progress=False)
    assert len(model.calls) == calls, "a resumed demo must not call the model again"
    assert [r.means for r in again.results] == [r.means for r in report.results]
    assert again.report.exists()


def test_demo_cli_prints_one_plain_line_per_memory_mode(tmp_path, monkeypatch):
    from attunement.llm import spec

    monkeypatch.setenv("COLUMNS", "40")  # lines never wrap, whatever the width
    model = scripted_everything()
    spec.register_backend("scripted-demo", lambda parsed, options: model)
    try:
        args = ["demo", "--out", str(tmp_path), "--model", "scripted-demo", "--queries", "2"]
        result = CliRunner().invoke(build_app(), args)
    finally:
        spec._BACKENDS.pop("scripted-demo", None)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for mode in DEMO_MODES:
        line = f"  {mode}: Res 4.00, Exp 4.00, Rec 4.00, Avg 4.00 [n too small], unscorable 0/2"
        assert line in lines, result.output
    assert lines[-1] == f"report: {tmp_path / 'eval' / 'report.html'}"


async def test_demo_replaces_a_user_whose_query_was_rejected(tmp_path):
    users = read_jsonl(example_users_path(), UserHistory)
    model = scripted_everything(no_situation_for=users[0].user_id)
    report = await run_demo(tmp_path, model, max_queries=3, show_progress=False)
    assert report.examples == 3
    chosen = {e.split(":")[0] for e in manifest_examples(tmp_path)}
    assert users[0].user_id not in chosen and len(chosen) == 3


def manifest_examples(run_dir) -> list[str]:
    return json.loads((run_dir / "manifest.json").read_text())["examples"]


@pytest.mark.slow
def test_attune_demo_on_the_embedded_model(local_model, tmp_path):
    # one llama.cpp thread: much faster than two on a machine other jobs keep busy
    result = CliRunner().invoke(
        build_app(), ["demo", "--out", str(tmp_path), "--queries", "2", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    # the report's path is the last thing printed
    report = tmp_path / "eval" / "report.html"
    assert result.output.strip().splitlines()[-1] == f"report: {report}"
    assert report.exists() and "Memory ablation" in report.read_text()
    for mode in DEMO_MODES:
        assert any(line.startswith(f"  {mode}: Res ") for line in result.output.splitlines())
        scores = read_jsonl(
            tmp_path / "eval" / "scores" / "local" / f"{mode}.jsonl", RewardBreakdown
        )
        assert len(scores) == 2
        for s in scores:
            for j in s.judgements:
                if j.score is not None:
                    assert (
                        (0 <= j.score <= 100) if j.dimension == "bystander" else (1 <= j.score <= 5)
                    )
