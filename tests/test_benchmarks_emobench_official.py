"""attune emobench --prompts official: asked and read as the official EmoBench code does,
so the number sits next to the paper's; and a report that states its prompts, draws
chance and renders at 0% and 100% (issue 17, finding 9)."""

from __future__ import annotations

import json
import re

import pytest
from test_benchmarks_emobench import ITEMS, ea, eu, model
from typer.testing import CliRunner

from attunement.benchmarks.emobench import (
    EmoBenchAnswer,
    EmoBenchSettings,
    load_official_prompts,
    run_emobench,
    write_emobench_report,
)
from attunement.benchmarks.emobench.official import parse_official
from attunement.cli import build_app
from attunement.jsonl import read_jsonl
from attunement.llm import ScriptedChatModel
from attunement.llm.spec import register_backend

OFFICIAL = {"settings": EmoBenchSettings(prompts="official")}


@pytest.fixture(scope="module")
def official(shared_data):
    return load_official_prompts(shared_data / "emobench" / "official")


def letters(item) -> dict[str, str]:
    from attunement.benchmarks.emobench import EUItem

    abc = "ABCDEFGH"
    if isinstance(item, EUItem):
        return {"answer_q1": abc[item.emotion_index], "answer_q2": abc[item.cause_index]}
    return {"answer": abc[item.answer_index]}


def upstream_like(answers):
    """A model that answers each item with the JSON object given, in the layouts models
    use: a fenced json block, bare JSON, or text upstream cannot read."""

    def respond(request, index):
        qid = re.search(r"Scenario (\d+)", request.messages[-1][1]).group(1)
        return answers[qid]

    return ScriptedChatModel(respond, name="Qwen/Qwen3-8B")


def test_the_messages_are_upstreams(official):
    item = ea("1", 2)
    system, user = official.messages(item, "Qwen/Qwen3-8B")
    # the instructions, then the base answer statement and the JSON fields in a fence
    assert system["content"].startswith("/no_think\n\n# Instructions\n")
    assert "Provide only one single correct answer" in system["content"]
    assert (
        '```json\n    {\n    "answer": "<Respond with the corresponding letter numbering>"\n'
        in (system["content"])
    )
    assert not official.messages(item, "llama-3")[0]["content"].startswith("/no_think")
    text = user["content"]
    assert "In this scenario, what is the most effective Response for Kim?" in text
    assert "A) option 1-0\nB) option 1-1\nC) option 1-2\nD) option 1-3" in text
    eu_user = official.messages(eu("10", 1, 2), "m")[1]["content"]
    # EU is two questions, each with its own lettered choices
    assert "## Question 1\nWhat emotion(s) would Ana ultimately feel" in eu_user
    assert "## Question 2\nWhy would Ana feel these emotions" in eu_user
    assert "A) Joy\nB) Guilt" in eu_user and "A) cause 10-0" in eu_user
    assert official.messages(eu("10", 1, 2), "m")[0]["content"].count("answer_q") == 2


def test_answers_are_read_as_upstream_reads_them():
    item = ea("1", 1)
    parts = {"answer": 4}
    assert parse_official('```json\n{"answer": "B"}\n```', item, parts) == ({"answer": 1}, None)
    assert parse_official('{"answer": "B"}', item, parts) == ({"answer": 1}, None)
    # upstream needs the letter exactly, and JSON as the whole answer or in a json fence
    for text in ('{"answer": "b"}', '{"answer": "B)"}', "Answer: B", '{"answer": "B"} ok'):
        chosen, reason = parse_official(text, item, parts)
        assert chosen == {"answer": None} and reason, text
    eu_item = eu("10", 1, 2)
    chosen, reason = parse_official(
        '```json\n{"answer_q1": "B", "answer_q2": "A"}\n```',
        eu_item,
        {"emotion": 6, "cause": 4},
    )
    assert chosen == {"emotion": 1, "cause": 0} and reason is None


async def test_official_run_scores_like_upstream(tmp_path, official):
    answers = {i.qid: json.dumps(letters(i)) for i in ITEMS}
    answers["1"] = f"```json\n{answers['1']}\n```"  # fenced: read
    answers["2"] = "Answer: B"  # right letter, not JSON: wrong, as upstream
    answers["10"] = json.dumps({"answer_q1": letters(ITEMS[4])["answer_q1"], "answer_q2": "A"})
    chat = upstream_like(answers)
    res = await run_emobench(
        ITEMS, chat, tmp_path, official=official, show_progress=False, **OFFICIAL
    )
    assert all(c.json_schema is None for c in chat.calls)  # free answers, as upstream
    tasks = {a.group["task"]: a for a in res.tasks}
    assert (tasks["EA"].correct, tasks["EA"].n, tasks["EA"].unparsed) == (3, 4, 1)
    assert (tasks["EU"].correct, tasks["EU"].n) == (2, 3)
    assert "official EmoBench prompt files" in res.prompts and "prompts.yaml" in res.prompts
    # chance: EA 1/4, EU 1/6 x 1/4
    assert tasks["EA"].chance == pytest.approx(25.0)
    assert tasks["EU"].chance == pytest.approx(100 / 24)
    with pytest.raises(ValueError, match="other settings"):  # other prompts, other folder
        await run_emobench(ITEMS, chat, tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="needs the official prompt files"):
        await run_emobench(ITEMS, chat, tmp_path / "x", show_progress=False, **OFFICIAL)


def test_a_folder_without_the_files_fails_before_any_call(tmp_path):
    with pytest.raises(ValueError, match="prompts.yaml: not found"):
        load_official_prompts(tmp_path)
    (tmp_path / "prompts.yaml").write_text("sys:\n  en: hi\n")
    (tmp_path / "response.yaml").write_text("base:\n  en: answer\n")
    with pytest.raises(ValueError, match="missing EA.en"):
        load_official_prompts(tmp_path)


@pytest.mark.parametrize("n", [1, 3, 7, 20, 50])
@pytest.mark.parametrize("right", [False, True])
async def test_the_report_renders_at_0_and_100_percent(tmp_path, n, right):
    items = [ea(str(i), 0) for i in range(n)]
    answers = {str(i): {"answer": "A" if right else "B"} for i in range(n)}
    res = await run_emobench(items, model(answers), tmp_path, show_progress=False)
    assert res.tasks[0].accuracy == (100.0 if right else 0.0)
    done = read_jsonl(tmp_path / "answers.jsonl", EmoBenchAnswer)
    page = write_emobench_report(res, items, done, tmp_path).read_text()
    assert "data:image/png;base64," in page
    md = (tmp_path / "results.md").read_text()
    assert "| chance |" in md and "| 25.0 |" in md
    assert "Prompts: attunement's own prompts: not the paper's" in md


def test_cli_official_prompts(tmp_path, shared_data):
    register_backend("scripted-official", lambda spec, options: upstream_like({}))
    args = ["emobench", "--policy", "scripted-official:x", "--data"]
    data = str(shared_data / "emobench" / "EA.sample.jsonl")
    result = CliRunner().invoke(
        build_app(), [*args, data, "--prompts", "official", "--out", str(tmp_path / "a")]
    )
    assert result.exit_code == 2 and "--official-prompts" in result.output
    folder = str(shared_data / "emobench" / "official")
    result = CliRunner().invoke(
        build_app(), [*args, data, "--official-prompts", folder, "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 2 and "go together" in result.output
