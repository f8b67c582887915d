"""The stages' rules: inspection gates, several situations, Big Five kept out of
generation, per-stage models and usage, JSON shape in prompts, probing, token
budgets, template echoes, and schemas that agree with their answer models."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from build_scripted import default_answer, scripted_builder, stage_of
from pydantic import ValidationError

from attunement.building import (
    BuildConfig,
    EndpointError,
    StageFailedError,
    build_dataset,
    load_stage_records,
)
from attunement.building.llm_io import StageSettings, ask_json, json_example, token_floor
from attunement.building.stages import (
    BigFiveAnswer,
    InspectAnswer,
    PersonaAnswer,
    QueryAnswer,
    situations_answer,
)
from attunement.jsonl import read_jsonl
from attunement.llm import ScriptedChatModel, Step
from attunement.records import Category, Example

EXAMPLE_USERS = f"users:{resources.files('attunement').joinpath('data/example_users.jsonl')}"


def _text(request) -> str:
    return "\n".join(c for _, c in request.messages)


# --------------------------------------------------------------------------- inspection


async def test_no_memory_needed_fails_emotional_support_and_language_is_a_label(tmp_path):
    def inspect(request, index):
        data = json.loads(default_answer(request, index))
        if "(ES)" in request.messages[-1][1]:
            data["emotional_support"] = False  # answerable without knowing the user
        data["language"] = "es"  # a label only: the query is English, nothing is gated on it
        return json.dumps(data)

    model = scripted_builder({"inspect": inspect})
    report = await build_dataset(EXAMPLE_USERS, tmp_path, model, limit=2, show_progress=False)
    assert report.rejection_reasons == {"inspect.emotional_support": 2}
    assert report.accepted == 4
    examples = read_jsonl(tmp_path / "examples.jsonl", Example)
    assert all(e.meta["inspection_language"] == "es" for e in examples)
    assert all(e.meta["inspection_checks"]["language"] is False for e in examples)

    prompt = next(c for c in model.calls if stage_of(c) == "inspect").messages[-1][1]
    assert "without knowing anything about the user's history" in prompt
    # the inspector sees the generator's reasoning and which memories the query relies on
    assert "<reasoning>\nIt follows from m1.\n</reasoning>" in prompt
    relevant = prompt.split("Memories the message is meant to draw on:")[1].split(
        "Other things remembered"
    )[0]
    assert "[m1]" in relevant and "[m2]" not in relevant
    assert "[m2]" in prompt.split("Other things remembered about the user:")[1]


async def test_the_gate_set_is_configurable(tmp_path):
    def inspect(request, index):
        data = json.loads(default_answer(request, index))
        data["language"] = "fr"
        data["role_awareness"] = False
        return json.dumps(data)

    config = BuildConfig(inspection_gates=["emotional_support", "language"])
    report = await build_dataset(
        EXAMPLE_USERS,
        tmp_path,
        scripted_builder({"inspect": inspect}),
        config,
        limit=1,
        show_progress=False,
    )
    assert report.rejection_reasons == {"inspect.language": 3}
    rec = load_stage_records(tmp_path, "inspect")[0]
    assert rec.output["checks"]["role_awareness"] is False  # recorded, not a gate here
    assert rec.output["gates"] == ["emotional_support", "language"]


# --------------------------------------------------------------------------- situations


async def test_several_situations_per_category_get_their_own_keys(tmp_path):
    def situations(request, index):
        data = json.loads(default_answer(request, index))
        for cat, decision in data.items():
            first = decision["situations"][0]
            decision["situations"].append(
                {
                    **first,
                    "description": f"Another {cat} moment: an "
                    "old friend calls and the same worry comes back.",
                }
            )
        data["SS"] = {"supported": False, "why_not": "No social goal.", "situations": []}
        return json.dumps(data)

    config = BuildConfig(situations_per_category=2)
    model = scripted_builder({"situations": situations})
    report = await build_dataset(
        EXAMPLE_USERS, tmp_path, model, config, limit=1, show_progress=False
    )
    sit_call = next(c for c in model.calls if stage_of(c) == "situations")
    assert sit_call.json_schema["properties"]["ES"]["properties"]["situations"]["maxItems"] == 2
    assert "between 1 and 2 different situations" in sit_call.messages[-1][1]
    examples = read_jsonl(tmp_path / "examples.jsonl", Example)
    assert [e.example_id for e in examples] == [
        "demo-maren:ES",
        "demo-maren:ES:2",
        "demo-maren:HEQ",
        "demo-maren:HEQ:2",
    ]
    assert examples[1].situation.description.startswith("Another ES moment")
    assert report.accepted == 4


# --------------------------------------------------------------------------- Big Five


async def test_big_five_labels_stay_out_of_generation_prompts_by_default(tmp_path):
    model = scripted_builder()
    await build_dataset(EXAMPLE_USERS, tmp_path / "a", model, limit=1, show_progress=False)
    for call in model.calls:
        if stage_of(call) in ("situations", "queries", "inspect"):
            assert "Big Five" not in _text(call) and "Neuroticism" not in _text(call)
    examples = read_jsonl(tmp_path / "a" / "examples.jsonl", Example)
    assert examples[0].persona.big_five is not None  # still exported for the OOD split

    model = scripted_builder()
    await build_dataset(
        EXAMPLE_USERS,
        tmp_path / "b",
        model,
        BuildConfig(big_five_in_prompts=True),
        limit=1,
        show_progress=False,
    )
    query = next(c for c in model.calls if stage_of(c) == "queries")
    assert "- Neuroticism: high" in _text(query)


def test_stats_report_the_share_of_all_medium_users(tmp_path):
    from attunement.building.stats import compute_stats
    from attunement.records import BigFive, Persona

    medium = BigFive(
        openness="medium",
        conscientiousness="medium",
        extraversion="medium",
        agreeableness="medium",
        neuroticism="medium",
    )
    varied = medium.model_copy(update={"neuroticism": "high"})
    rows = [
        Example(
            example_id=f"u{i}:ES",
            user_id=f"u{i}",
            query="q",
            persona=Persona(big_five=medium if i < 3 else varied),
        )
        for i in range(4)
    ]
    path = tmp_path / "examples.jsonl"
    path.write_text("".join(e.model_dump_json() + "\n" for e in rows))
    stats = compute_stats(path)
    assert stats.all_medium_users == 3 and stats.all_medium_share == 0.75


# --------------------------------------------------------------------------- operating


async def test_per_stage_models_usage_and_an_estimate_before_the_first_call(tmp_path):
    judge = scripted_builder(name="judge-model")
    model = scripted_builder(name="builder-model")
    seen = []

    def on_estimate(estimate):
        seen.append((estimate, len(model.calls)))

    report = await build_dataset(
        EXAMPLE_USERS,
        tmp_path,
        model,
        limit=2,
        stage_models={"inspect": judge},
        on_estimate=on_estimate,
        show_progress=False,
    )
    assert {stage_of(c) for c in judge.calls} == {"inspect"} and len(judge.calls) == 6
    assert "inspect" not in {stage_of(c) for c in model.calls}
    [(estimate, calls_before)] = seen
    assert calls_before == 0
    assert estimate.users == 2
    assert {s: e.calls for s, e in estimate.stages.items()} == {
        "extract": 0,
        "persona": 2,
        "bigfive": 2,
        "situations": 2,
        "queries": 6,
        "inspect": 6,
    }
    assert estimate.stages["persona"].prompt_tokens > 0
    usage = {s: c.usage for s, c in report.stages.items()}
    assert usage["inspect"].calls == 6 and usage["queries"].calls == 6
    assert usage["persona"].prompt_tokens > 0 and usage["persona"].completion_tokens > 0
    assert report.usage.calls == 2 + 2 + 2 + 6 + 6
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["stage_models"]["inspect"] == "judge-model"
    assert manifest["stage_models"]["persona"] == "builder-model"
    assert manifest["report"]["stages"]["inspect"]["usage"]["calls"] == 6
    assert manifest["report"]["estimate"]["stages"]["queries"]["calls"] == 6
    records = load_stage_records(tmp_path, "inspect")
    assert {r.model for r in records} == {"judge-model"}


def test_build_cli_model_for_a_stage_and_the_estimate(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from attunement.cli import build_app
    from attunement.llm import spec as spec_module

    built = {}

    def factory(spec, options):
        built[spec.target] = scripted_builder(name=f"scripted:{spec.target}")
        return built[spec.target]

    monkeypatch.setitem(spec_module._BACKENDS, "scripted", factory)
    res = CliRunner().invoke(
        build_app(),
        [
            "build",
            "--source",
            EXAMPLE_USERS,
            "--out",
            str(tmp_path / "o"),
            "--model",
            "scripted:small",
            "--model-for",
            "inspect=scripted:judge",
            "--limit",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert {stage_of(c) for c in built["judge"].calls} == {"inspect"}
    assert "estimate: 1 users kept by the filter; at most 9 calls" in res.output
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["stage_models"]["inspect"] == "scripted:judge"
    res = CliRunner().invoke(
        build_app(),
        [
            "build",
            "--source",
            EXAMPLE_USERS,
            "--out",
            str(tmp_path / "o"),
            "--model-for",
            "inspection=scripted:judge",
        ],
    )
    assert res.exit_code == 1 and "unknown stage 'inspection'" in res.output


# --------------------------------------------------------------------------- JSON shape


def test_every_build_prompt_shows_a_json_example_of_its_schema(tmp_path):
    import asyncio

    model = scripted_builder()
    asyncio.run(build_dataset(EXAMPLE_USERS, tmp_path, model, limit=1, show_progress=False))
    assert {stage_of(c) for c in model.calls} == {
        "persona",
        "bigfive",
        "situations",
        "queries",
        "inspect",
    }
    for call in model.calls:
        example = json_example(call.json_schema)
        assert example in call.messages[-1][1], stage_of(call)
        assert set(json.loads(example)) == set(call.json_schema["properties"])


async def test_an_endpoint_that_ignores_the_schema_stops_the_build_before_any_rejection(tmp_path):
    chatty = ScriptedChatModel(
        lambda request, index: "Sure! Here is the persona you asked for: she is a caring person.",
        name="chatty",
    )
    with pytest.raises(EndpointError, match="not JSON.*response_format"):
        await build_dataset(EXAMPLE_USERS, tmp_path, chatty, show_progress=False)
    assert len(chatty.calls) == 3  # one key, its three attempts, and nothing else
    assert (
        not (tmp_path / "stages" / "persona.jsonl").exists()
        or load_stage_records(tmp_path, "persona") == []
    )


async def test_token_budget_has_a_schema_floor_and_grows_after_a_cut_off_answer():
    schema = {
        "title": "t",
        "type": "object",
        "additionalProperties": False,
        "required": ["text"],
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 400}},
    }
    assert token_floor(schema) > 200

    def respond(request, index):
        if index == 0:
            return Step('{"text": "a long answer that was cut of', completion_tokens=10)
        return '{"text": "done"}'

    model = ScriptedChatModel(respond)
    original = model._complete

    async def truncating(request):  # the first answer stops at the token limit
        out = await original(request)
        if request.sample_start == 0:
            from dataclasses import replace

            out = [replace(c, finish_reason="length") for c in out]
        return out

    model._complete = truncating
    asked = await ask_json(
        model,
        [{"role": "user", "content": "hi"}],
        schema,
        lambda d: d["text"],
        StageSettings(max_tokens=16),
    )
    assert asked.value == "done" and asked.kinds == ["length"]
    first, second = model.calls
    assert first.max_tokens == token_floor(schema)
    assert second.max_tokens == 2 * first.max_tokens
    assert "hit max_tokens" in asked.failures[0]


# --------------------------------------------------------------------------- echoes


async def test_answers_that_repeat_the_prompts_instructions_are_rejected(tmp_path):
    def persona(request, index):
        data = json.loads(default_answer(request, index))
        data["profile"] = (
            "2 to 5 sentences on who they are, what they care about, what weighs on them"
        )
        return json.dumps(data)

    def queries(request, index):
        data = json.loads(default_answer(request, index))
        if index == 0:
            data["query"] = "the one message they would now send to the assistant"
        return json.dumps(data)

    model = scripted_builder({"persona": persona, "queries": queries})
    # every persona failed: the build stops (exit 1 on the command line), with its report
    with pytest.raises(StageFailedError, match="persona: every one of its 2 records") as info:
        await build_dataset(EXAMPLE_USERS, tmp_path, model, limit=2, show_progress=False)
    report = info.value.report
    assert report.rejection_reasons == {"persona.template_echo": 2}
    rec = load_stage_records(tmp_path, "persona")[0]
    assert rec.attempts == 3 and "repeats the prompt's instructions" in rec.reason

    model = scripted_builder({"queries": queries})
    await build_dataset(EXAMPLE_USERS, tmp_path / "q", model, limit=1, show_progress=False)
    recs = load_stage_records(tmp_path / "q", "queries")
    assert all(r.status == "ok" and r.attempts == 2 for r in recs)  # echo retried, then fine
    assert all(r.failure_kinds == ["template_echo"] for r in recs)


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize(
    "answer",
    [
        PersonaAnswer,
        BigFiveAnswer,
        QueryAnswer,
        InspectAnswer,
        situations_answer(tuple(Category), 2),
    ],
)
def test_schemas_require_exactly_what_their_answer_models_require(answer):
    from attunement.building.llm_io import answer_schema

    schema = answer_schema(answer, memory_ids=["m1", "m2"])
    example = _instance(schema)
    answer.model_validate(example)  # the smallest answer the schema allows is valid
    for key in schema["required"]:  # and leaving out any required field is not
        with pytest.raises(ValidationError):
            answer.model_validate({k: v for k, v in example.items() if k != key})
    assert set(schema["required"]) == set(schema["properties"])
    assert schema["additionalProperties"] is False


def _instance(node):
    """The smallest value a schema allows (strings of minLength, one array item)."""
    if "enum" in node:
        return node["enum"][0]
    kind = node.get("type")
    if kind == "object":
        return {k: _instance(v) for k, v in node["properties"].items()}
    if kind == "array":
        return [_instance(node["items"])] * max(node.get("minItems", 0), 1)
    if kind == "boolean":
        return True
    if kind == "integer":
        return node.get("minimum", 0)
    return "x" * max(node.get("minLength", 1), 1)


# --------------------------------------------------------------------------- one definition each


async def test_each_stage_names_its_schema_and_prompt_once(tmp_path, fixtures_dir):
    from attunement.building.config import LLM_STAGES, STAGE_PROMPTS
    from attunement.prompts import load_prompt

    model = scripted_builder()
    chat = f"chatlog:{fixtures_dir / 'build_chatlog.jsonl'}"
    await build_dataset(chat, tmp_path / "chat", model, limit=1, show_progress=False)
    await build_dataset(EXAMPLE_USERS, tmp_path / "users", model, limit=1, show_progress=False)
    asked = {c.json_schema["title"] for c in model.calls}
    assert asked == set(LLM_STAGES)  # every stage asked, each schema titled with its stage
    for call in model.calls:
        stage = call.json_schema["title"]
        template = load_prompt(STAGE_PROMPTS[stage])
        assert (
            call.messages[0][1]
            == template.render(**dict.fromkeys(template.placeholders))[0]["content"]
        )
    for stage in LLM_STAGES:
        folder = tmp_path / ("chat" if stage == "extract" else "users")
        versions = {r.prompt_version for r in load_stage_records(folder, stage)}
        assert versions == {load_prompt(STAGE_PROMPTS[stage]).version}, stage


def test_answers_are_generated_from_the_lists_they_answer():
    from attunement.building.config import DEFAULT_GATES, INSPECTION_CHECKS
    from attunement.records import BIG_FIVE_TRAITS

    assert tuple(BigFiveAnswer.model_fields) == BIG_FIVE_TRAITS
    judged = [f for f in InspectAnswer.model_fields if f not in ("reason", "language")]
    assert tuple(judged) == DEFAULT_GATES == INSPECTION_CHECKS[:-1]
    assert INSPECTION_CHECKS[-1] == "language"


def test_extraction_drops_short_and_unfound_quotes_with_their_reason():
    from attunement.building.extraction import extract_call
    from attunement.records import Session, Turn, UserHistory

    user = UserHistory(
        user_id="u",
        sessions=[
            Session(session_id="s", turns=[Turn(role="user", text="My sister moved to Oslo")])
        ],
    )
    call = extract_call(user, ScriptedChatModel(lambda r, i: "{}"), BuildConfig())
    item = {"label": "UNMAPPED", "label_suggestion": "", "type": "direct", "value": "Sister abroad"}
    items, dropped = call.parse(
        {
            "memories": [
                {**item, "quote": "sister moved to oslo"},
                {**item, "quote": "My sister"},
                {**item, "quote": "My brother moved to Rome"},
            ]
        }
    )
    assert [m.evidence[0].utterance_index for m in items] == [0]
    assert [d["reason"] for d in dropped] == [
        "quote shorter than 12 chars",
        "quote not found in any user turn",
    ]
