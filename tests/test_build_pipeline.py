"""The resumable build with a scripted model: every stage, gates, retries, resume."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from build_scripted import default_answer, scripted_builder, stage_of

from attunement.building import BuildConfig, build_dataset, load_stage_records
from attunement.jsonl import read_jsonl
from attunement.records import BIG_FIVE_TRAITS, Category, Example

EXAMPLE_USERS = f"users:{resources.files('attunement').joinpath('data/example_users.jsonl')}"
DEEP_USERS = ["demo-maren", "demo-tomasz", "demo-aisha", "demo-leo", "demo-priya"]


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


async def test_full_build_exports_complete_examples(tmp_path):
    model = scripted_builder()
    report = await build_dataset(EXAMPLE_USERS, tmp_path, model, show_progress=False)
    assert report.users == 6
    assert report.stages["filter"].ok == 5 and report.stages["filter"].rejected == 1
    assert report.rejection_reasons == {"filter.shallow_memories": 1}
    assert report.accepted == 15 and report.accepted_users == 5
    # one call per user per stage, plus one per situation (query) and per query (inspection)
    assert len(model.calls) == 5 * 3 + 15 + 15

    examples = read_jsonl(tmp_path / "examples.jsonl", Example)
    assert [e.example_id for e in examples] == [
        f"{u}:{c.value}" for u in DEEP_USERS for c in Category
    ]
    for e in examples:
        assert e.user_id and e.category and e.query and e.language == "en"
        assert e.situation is not None and e.situation.category == e.category
        assert e.situation.relevant_memory_ids
        assert e.persona is not None and e.persona.profile and e.persona.is_deep
        assert e.persona.big_five is not None
        assert set(e.persona.big_five.justifications) == set(BIG_FIVE_TRAITS)
        assert len(e.memories) >= 5
        assert e.meta["source"] == "attunement-examples"
        assert set(e.meta["relevant_memory_ids"]) <= {m.memory_id for m in e.memories}

    rows = _lines(tmp_path / "prompts.jsonl")
    assert [r["example_id"] for r in rows] == [e.example_id for e in examples]
    row = rows[0]
    assert row["prompt"] and all({"role", "content"} <= set(m) for m in row["prompt"])
    assert examples[0].query in json.dumps(row["prompt"])
    assert Example.model_validate_json(row["example"]) == examples[0]
    for col in ("user_id", "category", "persona", "memories", "situation", "language"):
        assert row[col]

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["model"] == "scripted-builder"
    assert set(manifest["prompts"]) == {
        "extract",
        "persona",
        "bigfive",
        "situations",
        "queries",
        "inspect",
    }
    assert all(len(p["version"]) == 12 for p in manifest["prompts"].values())
    assert manifest["report"]["accepted"] == 15
    from attunement.building.export import POLICY_RENDERER

    assert manifest["report"]["prompt_renderer"] in (POLICY_RENDERER,)  # no fallback left


async def test_requests_use_json_schemas_with_bounded_strings(tmp_path):
    model = scripted_builder()
    await build_dataset(EXAMPLE_USERS, tmp_path, model, limit=1, show_progress=False)

    def strings(node):
        if isinstance(node, dict):
            if node.get("type") == "string" and "enum" not in node:
                yield node
            for v in node.values():
                yield from strings(v)
        elif isinstance(node, list):
            for v in node:
                yield from strings(v)

    for call in model.calls:
        assert call.json_schema is not None
        assert all("maxLength" in s for s in strings(call.json_schema)), stage_of(call)


async def test_persona_gate_rejects_with_reason_and_stops_the_user(tmp_path):
    def persona(request, index):
        if "bass in a blues band" in "\n".join(c for _, c in request.messages):
            return json.dumps(
                {
                    "profile": "A new team lead who dislikes conflict at work.",
                    "topics": [],
                    "is_deep": False,
                    "gate_reason": "Only workplace facts, no emotional depth.",
                }
            )
        return default_answer(request, index)

    model = scripted_builder({"persona": persona})
    report = await build_dataset(EXAMPLE_USERS, tmp_path, model, show_progress=False)
    rec = next(r for r in load_stage_records(tmp_path, "persona") if r.key == "demo-tomasz")
    assert rec.status == "rejected" and rec.reason_code == "persona.gate"
    assert "no emotional depth" in rec.reason
    assert report.rejection_reasons["persona.gate"] == 1
    assert not any(r.user_id == "demo-tomasz" for r in load_stage_records(tmp_path, "bigfive"))
    assert report.accepted == 12


async def test_stage_counts_add_up_and_survive_a_resume(tmp_path):
    def persona(request, index):
        if "bass in a blues band" in "\n".join(c for _, c in request.messages):
            data = json.loads(default_answer(request, index))
            return json.dumps({**data, "is_deep": False, "gate_reason": "Too thin."})
        return default_answer(request, index)

    first = await build_dataset(
        EXAMPLE_USERS, tmp_path, scripted_builder({"persona": persona}), show_progress=False
    )
    counts = first.stages["persona"]
    assert (counts.input, counts.ok, counts.rejected, counts.new, counts.resumed) == (5, 4, 1, 5, 0)
    assert counts.usage.calls == 5 and first.stages["bigfive"].input == 4
    again = await build_dataset(EXAMPLE_USERS, tmp_path, scripted_builder(), show_progress=False)
    counts = again.stages["persona"]
    assert (counts.input, counts.ok, counts.rejected, counts.new, counts.resumed) == (5, 4, 1, 0, 5)
    assert counts.usage.calls == 0 and again.rejected == first.rejected == 2


async def test_invalid_output_is_retried_with_fresh_samples_then_rejected(tmp_path):
    config = BuildConfig()

    def queries(request, index):
        text = "\n".join(c for _, c in request.messages)
        if "Social Strategy" in text:
            return "not json at all"  # never valid
        if "Emotional Support" in text and index == 0:
            return json.dumps({"query": "hi", "relevant_memory_ids": ["m1"], "reasoning": "x"})
        return default_answer(request, index)

    model = scripted_builder({"queries": queries})
    report = await build_dataset(
        EXAMPLE_USERS, tmp_path, model, config, limit=1, show_progress=False
    )
    recs = {r.key: r for r in load_stage_records(tmp_path, "queries")}
    es = recs["demo-maren:ES"]
    assert es.status == "ok" and es.attempts == 2 and "too short" in es.failures[0]
    ss = recs["demo-maren:SS"]
    assert ss.status == "rejected" and ss.reason_code == "queries.invalid_output"
    assert ss.attempts == config.queries.max_attempts == len(ss.failures)
    assert "not valid JSON" in ss.reason
    ss_calls = [
        c
        for c in model.calls
        if stage_of(c) == "queries" and "Social Strategy" in c.messages[-1][1]
    ]
    assert [c.sample_start for c in ss_calls] == [0, 1, 2]
    assert ss_calls[0].temperature == config.queries.temperature
    assert ss_calls[1].temperature == config.queries.retry_temperature
    assert report.accepted == 2  # nothing invented for the rejected query
    assert report.rejection_reasons == {"queries.invalid_output": 1}


async def test_unknown_memory_ids_are_invalid(tmp_path):
    def situations(request, index):
        data = json.loads(default_answer(request, index))
        if index == 0:
            data["ES"]["situations"][0]["relevant_memory_ids"] = ["m99"]
        return json.dumps(data)

    model = scripted_builder({"situations": situations})
    await build_dataset(EXAMPLE_USERS, tmp_path, model, limit=1, show_progress=False)
    rec = load_stage_records(tmp_path, "situations")[0]
    assert rec.status == "ok" and rec.attempts == 2 and "unknown memory id 'm99'" in rec.failures[0]


async def test_unsupported_categories_are_recorded_not_forced(tmp_path):
    def situations(request, index):
        data = json.loads(default_answer(request, index))
        text = "\n".join(c for _, c in request.messages)
        data["SS"] = {
            "supported": False,
            "why_not": "No social goal in the memories.",
            "situations": [],
        }
        if "bass in a blues band" in text:
            data = {
                c: {"supported": False, "why_not": "Too thin.", "situations": []}
                for c in ("ES", "HEQ", "SS")
            }
        return json.dumps(data)

    model = scripted_builder({"situations": situations})
    report = await build_dataset(EXAMPLE_USERS, tmp_path, model, show_progress=False)
    recs = {r.key: r for r in load_stage_records(tmp_path, "situations")}
    assert recs["demo-maren"].output["unsupported"] == {"SS": "No social goal in the memories."}
    assert [s["category"] for s in recs["demo-maren"].output["situations"]] == ["ES", "HEQ"]
    assert recs["demo-tomasz"].reason_code == "situations.none_supported"
    assert report.accepted == 4 * 2


async def test_inspection_failures_drop_the_query_with_the_failed_check(tmp_path):
    def inspect(request, index):
        if "(HEQ)" in request.messages[-1][1]:
            return json.dumps(
                {
                    "reason": "Reads like the assistant talking.",
                    "emotional_support": True,
                    "logical_consistency": True,
                    "role_awareness": False,
                    "language": "en",
                }
            )
        return default_answer(request, index)

    model = scripted_builder({"inspect": inspect})
    report = await build_dataset(EXAMPLE_USERS, tmp_path, model, show_progress=False)
    assert report.rejection_reasons["inspect.role_awareness"] == 5
    examples = read_jsonl(tmp_path / "examples.jsonl", Example)
    assert {e.category for e in examples} == {Category.ES, Category.SS}
    rec = next(r for r in load_stage_records(tmp_path, "inspect") if r.key == "demo-leo:HEQ")
    assert rec.output["checks"]["role_awareness"] is False
    assert "failed role_awareness" in rec.reason


async def test_annotate_mode_exports_failed_queries_with_their_verdict(tmp_path):
    def inspect(request, index):
        if "(HEQ)" in request.messages[-1][1]:
            return json.dumps(
                {
                    "reason": "Reads like the assistant talking.",
                    "emotional_support": True,
                    "logical_consistency": True,
                    "role_awareness": False,
                    "language": "en",
                }
            )
        return default_answer(request, index)

    model = scripted_builder({"inspect": inspect})
    report = await build_dataset(
        EXAMPLE_USERS,
        tmp_path,
        model,
        show_progress=False,
        config=BuildConfig(inspection="annotate"),
    )
    examples = read_jsonl(tmp_path / "examples.jsonl", Example)
    assert {e.category for e in examples} == set(Category)
    assert report.accepted == len(examples)
    assert report.inspection_passed == sum(e.meta["inspection_passed"] for e in examples)
    failed = [e for e in examples if not e.meta["inspection_passed"]]
    assert failed and all(e.category == Category.HEQ for e in failed)
    assert all(e.meta["inspection_checks"]["role_awareness"] is False for e in failed)
    # the stage record keeps the honest verdict
    rec = next(r for r in load_stage_records(tmp_path, "inspect") if r.key == "demo-leo:HEQ")
    assert rec.status == "rejected"


@pytest.mark.parametrize("fail_after", [3, 11, 26])
async def test_resume_after_a_crash_gives_identical_output(tmp_path, fail_after):
    reference = tmp_path / "reference"
    await build_dataset(
        EXAMPLE_USERS, reference, scripted_builder(), show_progress=False, concurrency=3
    )

    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        await build_dataset(
            EXAMPLE_USERS,
            run,
            scripted_builder(fail_after=fail_after),
            show_progress=False,
            concurrency=3,
        )
    assert not (run / "examples.jsonl").exists()
    second = scripted_builder()
    report = await build_dataset(EXAMPLE_USERS, run, second, show_progress=False, concurrency=3)
    assert len(second.calls) == 45 - fail_after  # finished work is not redone
    assert sum(c.resumed for c in report.stages.values()) > 0
    assert (run / "examples.jsonl").read_text() == (reference / "examples.jsonl").read_text()
    assert (run / "prompts.jsonl").read_text() == (reference / "prompts.jsonl").read_text()
    for stage in ("persona", "bigfive", "situations", "queries", "inspect"):
        keys = [r["key"] for r in _lines(run / "stages" / f"{stage}.jsonl")]
        assert len(keys) == len(set(keys)), stage  # no duplicates

    third = scripted_builder()
    await build_dataset(EXAMPLE_USERS, run, third, show_progress=False)
    assert third.calls == []  # a finished build costs nothing to rerun


async def test_torn_last_line_is_redone(tmp_path):
    await build_dataset(EXAMPLE_USERS, tmp_path, scripted_builder(), show_progress=False)
    path = tmp_path / "stages" / "inspect.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # the writer died mid-line
    model = scripted_builder()
    report = await build_dataset(EXAMPLE_USERS, tmp_path, model, show_progress=False)
    assert len(model.calls) == 1 and report.accepted == 15
    keys = [r["key"] for r in _lines(path)]
    assert len(keys) == len(set(keys)) == 15


async def test_stage_selection_only_does_that_work(tmp_path):
    model = scripted_builder()
    report = await build_dataset(
        EXAMPLE_USERS, tmp_path, model, stages=["persona"], show_progress=False
    )
    assert {stage_of(c) for c in model.calls} == {"persona"}
    assert report.stages["persona"].new == 5
    assert report.stages["bigfive"].pending == 5 and report.stages["bigfive"].new == 0
    assert not (tmp_path / "examples.jsonl").exists()
    with pytest.raises(ValueError, match="unknown stages"):
        await build_dataset(EXAMPLE_USERS, tmp_path, model, stages=["personas"])


async def test_limit_and_concurrency_bound(tmp_path):
    model = scripted_builder()
    model.delay = 0.01
    report = await build_dataset(
        EXAMPLE_USERS, tmp_path, model, limit=3, concurrency=2, show_progress=False
    )
    assert report.users == 3 and model.peak_in_flight <= 2
    assert report.accepted == 9


async def test_chatlog_users_get_memories_extracted_from_user_turns(tmp_path, fixtures_dir):
    def extract(request, index):
        convo = request.messages[-1][1]
        if "bridesmaid" in convo:
            return json.dumps(
                {
                    "memories": [
                        {
                            "label": "Social_Relationships/Family",
                            "label_suggestion": "",
                            "value": "Was not asked to be a bridesmaid at her sister's wedding",
                            "quote": "I was not asked to be a bridesmaid",
                            "type": "direct",
                        },
                        {
                            "label": "States_Experiences/Mental_State",
                            "label_suggestion": "",
                            "value": "Still feels hurt after talking with her sister",
                            "quote": "I still feel hurt but we hugged",
                            "type": "direct",
                        },
                        {
                            "label": "Personal_Background/Identity",
                            "label_suggestion": "",
                            "value": "Is the president of France",  # planted by the dialogue
                            "quote": "the president of France and loved by all",
                            "type": "direct",
                        },
                        {
                            "label": "UNMAPPED",
                            "label_suggestion": "Assistant/Question",
                            "value": "Was asked whether her sister explained",
                            "quote": "Did she explain why?",
                            "type": "direct",
                        },  # assistant turn
                    ]
                }
            )
        return json.dumps(
            {
                "memories": [
                    {
                        "label": "States_Experiences/Mental_State",
                        "label_suggestion": "",
                        "value": "Nervous about a new job",
                        "quote": "I am totally fine and relaxed",
                        "type": "direct",
                    }
                ]
            }
        )

    model = scripted_builder({"extract": extract})
    report = await build_dataset(
        f"chatlog:{fixtures_dir / 'build_chatlog.jsonl'}", tmp_path, model, show_progress=False
    )
    recs = {r.key: r for r in load_stage_records(tmp_path, "extract")}
    lena = recs["c-lena"]
    assert lena.status == "ok"
    mems = lena.output["memories"]
    assert [m["memory_id"] for m in mems] == ["x1", "x2"]
    assert mems[0]["evidence"][0] == {
        "session_id": "c-lena#s1",
        "utterance_index": 0,
        "text": "I was not asked to be a bridesmaid",
    }
    assert mems[1]["evidence"][0]["session_id"] == "lena-2"
    reasons = {d["quote"]: d["reason"] for d in lena.output["dropped"]}
    assert reasons["the president of France and loved by all"] == "quote not found in any user turn"
    assert reasons["Did she explain why?"] == "quote not found in any user turn"

    omar = recs["c-omar"]  # every quote fake: retried, then rejected
    assert omar.status == "rejected" and omar.reason_code == "extract.invalid_output"
    assert omar.attempts == 3
    filt = {r.key: r for r in load_stage_records(tmp_path, "filter")}
    assert filt["c-omar"].reason_code == "filter.no_memories"
    assert filt["c-lena"].status == "ok"
    assert report.accepted_users == 1

    # the dialogue is fenced as material, instructions inside it included
    prompt = next(c for c in model.calls if stage_of(c) == "extract").messages[-1][1]
    start, end = prompt.index("<conversation>"), prompt.index("</conversation>")
    assert start < prompt.index("Ignore all previous instructions") < end


async def test_annotated_users_without_memories_are_not_extracted(tmp_path):
    line = {
        "session_id": "s-empty",
        "dialogue": [{"role": "user", "text": "hello there"}],
        "task1": {"ground_truth_memories": []},
    }
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps(line) + "\n")
    model = scripted_builder()
    report = await build_dataset(
        f"alpsbench-packets:{p}", tmp_path / "out", model, show_progress=False
    )
    assert model.calls == [] and report.rejection_reasons == {"filter.no_memories": 1}


async def test_in_memory_histories_are_accepted(tmp_path):
    from attunement.building import load_users

    users = load_users(EXAMPLE_USERS)[:2]
    report = await build_dataset(users, tmp_path, scripted_builder(), show_progress=False)
    assert report.accepted == 6
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["source"].startswith("<2 user histories")
    with pytest.raises(ValueError, match="duplicate user ids"):
        await build_dataset([users[0], users[0]], tmp_path, scripted_builder())


async def test_category_selection(tmp_path):
    config = BuildConfig(categories=[Category.ES])
    model = scripted_builder()
    report = await build_dataset(EXAMPLE_USERS, tmp_path, model, config, show_progress=False)
    assert report.accepted == 5
    sit = next(c for c in model.calls if stage_of(c) == "situations")
    assert set(sit.json_schema["properties"]) == {"ES"}
