"""attune emobench: answer reading, the EU rule (both parts right), accuracies by hand."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from attunement.benchmarks.emobench import (
    EAItem,
    EmoBenchAnswer,
    EmoBenchSettings,
    EUItem,
    read_items,
    run_emobench,
    write_emobench_report,
)
from attunement.benchmarks.emobench.prompts import answer_schema, item_messages, parse_answer
from attunement.benchmarks.emobench.scoring import grade, score_answers
from attunement.cli import build_app
from attunement.jsonl import read_jsonl, write_jsonl
from attunement.llm import CallsFailedError, LLMError, ScriptedChatModel
from attunement.llm.spec import register_backend

Z = 1.959963984540054


def wilson(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * (p * (1 - p) / n + Z * Z / (4 * n * n)) ** 0.5 / (1 + Z * Z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def ea(qid: str, label: int, qtype="Response", category="Personal-Self") -> EAItem:
    choices = [f"option {qid}-{i}" for i in range(4)]
    return EAItem.model_validate(
        {
            "qid": qid,
            "question type": qtype,
            "category": category,
            "scenario": f"Scenario {qid}: <b>Kim</b> was left out.",
            "subject": "Kim",
            "choices": choices,
            "label": choices[label],
        }
    )


def eu(qid: str, emotion: int, cause: int, coarse="complex_emotions") -> EUItem:
    emotions = ["Joy", "Guilt", "Fear", "Pride", "Relief", "Anger"]
    causes = [f"cause {qid}-{i}" for i in range(4)]
    return EUItem.model_validate(
        {
            "qid": qid,
            "coarse_category": coarse,
            "finegrained_category": "fine",
            "scenario": f"Scenario {qid}.",
            "subject": "Ana",
            "emotion_choices": emotions,
            "emotion_label": emotions[emotion],
            "cause_choices": causes,
            "cause_label": causes[cause],
        }
    )


ITEMS = [
    ea("1", 0),
    ea("2", 1),
    ea("3", 2, qtype="Action"),
    ea("4", 3, qtype="Action", category="Social-Others"),
    eu("10", 1, 2),
    eu("11", 0, 0),
    eu("12", 3, 1, coarse="perspective_taking"),
]

# what the scripted model answers, by item: EA 1, 2, 3 right and 4 wrong; EU 10 both
# right, 11 feeling right but reason wrong, 12 unreadable
JSON_ANSWERS = {
    "1": {"answer": "A"},
    "2": {"answer": "B"},
    "3": {"answer": "C"},
    "4": {"answer": "A"},
    "10": {"emotion": "B", "cause": "C"},
    "11": {"emotion": "A", "cause": "B"},
    "12": "I cannot choose.",
}


def model(answers=JSON_ANSWERS, name="mc-model", fail: str | None = None) -> ScriptedChatModel:
    def respond(request, index):
        user = request.messages[-1][1]
        qid = re.search(r"Scenario (\d+)", user).group(1)
        if qid == fail:
            return LLMError("server went away")
        a = answers[qid]
        if isinstance(a, str):
            return a
        if request.json_schema is not None:
            return json.dumps(a)
        return "\n".join(f"{k.capitalize()}: {v}" for k, v in a.items())

    return ScriptedChatModel(respond, name=name)


def test_parse_answers():
    eu_parts = {"emotion": 6, "cause": 4}
    assert parse_answer('{"emotion": "F", "cause": "D"}', eu_parts) == (
        {"emotion": 5, "cause": 3},
        None,
    )
    assert parse_answer('Sure! {"answer": "b"}', {"answer": 4}) == ({"answer": 1}, None)
    chosen, why = parse_answer('{"emotion": "G", "cause": "A"}', eu_parts)
    assert chosen == {"emotion": None, "cause": 0} and why == "emotion: 'G' is not one of A-F"
    assert parse_answer('{"emotion": "A"}', eu_parts)[1] == "cause: missing"
    assert parse_answer("Emotion: B\nReason: (D)", eu_parts, "text") == (
        {"emotion": 1, "cause": 3},
        None,
    )
    # the last line wins, as a model may think aloud first
    assert parse_answer("Answer: A... no. Answer: C", {"answer": 4}, "text") == (
        {"answer": 2},
        None,
    )
    assert parse_answer(" B. ", {"answer": 4}, "text") == ({"answer": 1}, None)
    assert parse_answer("Answer: E", {"answer": 4}, "text")[1] == "answer: 'E' is not one of A-D"
    assert parse_answer("no idea", {"answer": 4}, "text") == (
        {"answer": None},
        "answer: no letter A-D found",
    )
    # a lone letter does not answer a two-part question
    assert parse_answer("B", eu_parts, "text")[0] == {"emotion": None, "cause": None}


def test_eu_needs_both_parts():
    item = eu("1", 1, 2)
    assert grade(item, {"emotion": 1, "cause": 2}) == ({"emotion": True, "cause": True}, True)
    assert grade(item, {"emotion": 1, "cause": 0}) == ({"emotion": True, "cause": False}, False)
    assert grade(item, {"emotion": 0, "cause": 2}) == ({"emotion": False, "cause": True}, False)
    assert grade(item, {"emotion": None, "cause": None})[1] is False
    assert grade(ea("1", 3), {"answer": 3}) == ({"answer": True}, True)


def test_prompts_and_schema():
    msgs = item_messages(eu("1", 0, 0), "json")
    user = msgs[-1]["content"]
    assert "A. Joy" in user and "F. Anger" in user and "D. cause 1-3" in user
    assert '{"emotion":' in user and "What would Ana" in user
    schema = answer_schema(eu("1", 0, 0))
    assert schema["properties"]["emotion"]["enum"] == list("ABCDEF")
    assert schema["properties"]["cause"]["enum"] == list("ABCD")
    assert schema["additionalProperties"] is False
    text = item_messages(ea("2", 0, qtype="Action"), "text")[-1]["content"]
    assert "Answer: <the letter" in text and "action to take for Kim" in text
    assert (
        "thing to say for me"
        in item_messages(
            EAItem.model_validate({**ea("3", 0).model_dump(by_alias=True), "subject": "I"}), "text"
        )[-1]["content"]
    )


@pytest.mark.parametrize("output", ["json", "text"])
async def test_accuracies_by_hand(tmp_path, output):
    chat = model()
    res = await run_emobench(
        ITEMS, chat, tmp_path, EmoBenchSettings(output=output), show_progress=False
    )
    # json answers carry the schema, text answers none
    assert all((c.json_schema is not None) == (output == "json") for c in chat.calls)
    tasks = {a.group["task"]: a for a in res.tasks}
    assert (tasks["EA"].correct, tasks["EA"].n, tasks["EA"].accuracy) == (3, 4, 75.0)
    assert (tasks["EA"].low, tasks["EA"].high) == pytest.approx(wilson(3, 4))
    assert (tasks["EU"].correct, tasks["EU"].n, tasks["EU"].unparsed) == (1, 3, 1)
    assert tasks["EU"].accuracy == pytest.approx(100 / 3)
    parts = {a.group["part"]: a for a in res.parts}
    assert (parts["emotion"].correct, parts["cause"].correct) == (2, 1)
    qtypes = {a.group["question_type"]: a for a in res.question_types}
    assert (qtypes["Response"].correct, qtypes["Response"].n) == (2, 2)
    assert (qtypes["Action"].correct, qtypes["Action"].n) == (1, 2)
    cats = {(a.group["task"], a.group["category"]): a for a in res.categories}
    assert cats[("EA", "Personal-Self")].accuracy == 100.0
    assert cats[("EA", "Social-Others")].accuracy == 0.0
    assert cats[("EU", "complex_emotions")].correct == 1
    assert cats[("EU", "perspective_taking")].n == 1
    assert res.answered_now == 7 and res.model == "mc-model"

    calls = len(chat.calls)
    again = await run_emobench(
        ITEMS, chat, tmp_path, EmoBenchSettings(output=output), show_progress=False
    )
    assert len(chat.calls) == calls and again.answered_now == 0
    assert again.tasks == res.tasks


async def test_failed_calls_are_no_answers_and_the_next_run_asks_again(tmp_path):
    # issue 17: a failed call was stored as a wrong answer, kept on every rerun
    with pytest.raises(CallsFailedError, match="1 of 7 items not answered; run again to retry"):
        await run_emobench(ITEMS, model(fail="1"), tmp_path, show_progress=False)
    answers = read_jsonl(tmp_path / "answers.jsonl", EmoBenchAnswer)
    assert len(answers) == 6 and all(a.qid != "1" for a in answers)
    chat = model()
    res = await run_emobench(ITEMS, chat, tmp_path, show_progress=False)
    assert res.answered_now == 1 and len(chat.calls) == 1


async def test_answers_an_older_version_wrote_for_failed_calls_are_asked_again(tmp_path):
    await run_emobench(ITEMS, model(), tmp_path, show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    rows[0].update(reason="model call failed: server went away", correct=False, raw="")
    write_jsonl(tmp_path / "answers.jsonl", rows)
    chat = model()
    res = await run_emobench(ITEMS, chat, tmp_path, show_progress=False)
    assert res.answered_now == 1 and len(chat.calls) == 1
    answers = read_jsonl(tmp_path / "answers.jsonl", EmoBenchAnswer)
    assert len(answers) == 7 and not any("call failed" in (a.reason or "") for a in answers)


async def test_other_settings_are_refused_and_language_filters(tmp_path):
    await run_emobench(ITEMS, model(), tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="other settings"):
        await run_emobench(ITEMS, model(name="other"), tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="no EmoBench item in language 'zh'"):
        await run_emobench(
            ITEMS, model(), tmp_path / "zh", EmoBenchSettings(language="zh"), show_progress=False
        )


def test_scores_of_no_answers():
    assert score_answers([]).tasks == []


async def test_report_is_written_and_escaped(tmp_path):
    res = await run_emobench(ITEMS, model(), tmp_path, show_progress=False)
    answers = read_jsonl(tmp_path / "answers.jsonl", EmoBenchAnswer)
    page = write_emobench_report(res, ITEMS, answers, tmp_path, shown=3).read_text()
    assert "<b>Kim</b>" not in page and "&lt;b&gt;Kim&lt;/b&gt;" in page
    assert page.count('<details class="example"') == 3
    assert "data:image/png;base64," in page and "<script" not in page
    md = (tmp_path / "results.md").read_text()
    assert "| mc-model | 33.3 | 75.0 |" in md
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["tasks"][0]["group"] == {"task": "EU"}


def test_read_items_detects_each_file(tmp_path, shared_data):
    items = read_items([shared_data / "emobench"])
    assert sorted({type(i).__name__ for i in items}) == ["EAItem", "EUItem"]
    assert len(items) == 20
    single = read_items([shared_data / "emobench" / "EU.sample.jsonl"])
    assert len(single) == 10
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"qid": 1}\n')
    with pytest.raises(ValueError, match="neither an EU file"):
        read_items([bad])
    with pytest.raises(FileNotFoundError):
        read_items([tmp_path / "missing"])


async def test_published_samples_with_an_oracle(tmp_path, shared_data):
    """A model that always picks the labelled option scores 100 on the real samples."""
    items = read_items([shared_data / "emobench"])
    by_scenario = {i.scenario[:60]: i for i in items}

    def oracle(request, index):
        user = request.messages[-1][1]
        item = next(i for s, i in by_scenario.items() if s in user)
        letters = "ABCDEFGH"
        if isinstance(item, EUItem):
            return json.dumps(
                {"emotion": letters[item.emotion_index], "cause": letters[item.cause_index]}
            )
        return json.dumps({"answer": letters[item.answer_index]})

    res = await run_emobench(items, ScriptedChatModel(oracle), tmp_path, show_progress=False)
    assert [(a.group["task"], a.accuracy, a.n) for a in res.tasks] == [
        ("EU", 100.0, 10),
        ("EA", 100.0, 10),
    ]


def test_cli_emobench(tmp_path):
    register_backend("scripted-mc", lambda spec, options: model(name="scripted-mc"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "EA.jsonl").write_text(
        "".join(i.model_dump_json(by_alias=True) + "\n" for i in ITEMS if isinstance(i, EAItem))
    )
    (data / "EU.jsonl").write_text(
        "".join(i.model_dump_json() + "\n" for i in ITEMS if isinstance(i, EUItem))
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        build_app(),
        ["emobench", "--model", "scripted-mc:x", "--data", str(data), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"report: {out / 'report.html'}"
    data = json.loads((out / "results.json").read_text())
    assert [round(a["accuracy"], 1) for a in data["tasks"]] == [33.3, 75.0]
    assert (out / "cache.sqlite").exists()


@pytest.mark.slow
async def test_embedded_model_always_gives_a_valid_letter(local_model, shared_data, tmp_path):
    """The grammar sampler holds the tiny model to the schema: every answer is read."""
    items = read_items([shared_data / "emobench"])
    res = await run_emobench(
        items, local_model, tmp_path, EmoBenchSettings(concurrency=1), show_progress=False
    )
    assert [(a.group["task"], a.n, a.unparsed) for a in res.tasks] == [("EU", 10, 0), ("EA", 10, 0)]
    for answer in read_jsonl(tmp_path / "answers.jsonl", EmoBenchAnswer):
        assert all(v is not None for v in answer.predicted.values()), answer.raw
