"""Length limits: stated in every prompt, asked again once, trimmed and flagged; a
stage that only fails stops the build; endpoints that ignore or cut at maxLength."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest
from build_scripted import default_answer, scripted_builder, stage_of, verbose_responder
from typer.testing import CliRunner

from attunement.building import EndpointError, build_dataset, load_stage_records
from attunement.building.limits import limits_text, over_limits, trim_text
from attunement.building.llm_io import StageSettings, answer_schema, ask_json
from attunement.building.stages import PersonaAnswer
from attunement.cli import build_app
from attunement.jsonl import read_jsonl
from attunement.llm import ScriptedChatModel
from attunement.llm import spec as spec_module
from attunement.perf.simserver import SimConfig, SimServer
from attunement.records import Example

EXAMPLE_USERS = resources.files("attunement").joinpath("data/example_users.jsonl")
USERS = f"users:{EXAMPLE_USERS}"


def _strings_and_lists(node, name=None):
    """(field name, kind, limit) of every bounded value of a schema."""
    if isinstance(node, dict):
        if node.get("type") == "string" and "maxLength" in node and "enum" not in node:
            yield name, "characters", node["maxLength"]
        if node.get("type") == "array" and "maxItems" in node:
            yield name, "items", node["maxItems"]
        for key, sub in node.get("properties", {}).items():
            yield from _strings_and_lists(sub, key)
        if isinstance(node.get("items"), dict):
            yield from _strings_and_lists(node["items"], name)


async def test_every_stage_prompt_states_its_schemas_limits_in_words(tmp_path):
    model = scripted_builder()
    await build_dataset(USERS, tmp_path, model, limit=1, show_progress=False)
    assert {stage_of(c) for c in model.calls} == {
        "persona",
        "bigfive",
        "situations",
        "queries",
        "inspect",
    }
    for call in model.calls:
        prompt = call.messages[-1][1]
        limits = prompt.split("Length limits", 1)[1]
        bounded = list(_strings_and_lists(call.json_schema))
        assert bounded, stage_of(call)
        for name, kind, limit in bounded:
            line = next((x for x in limits.splitlines() if x.startswith(f'- "{name}": ')), "")
            assert re.search(rf"\b{limit} {kind}\b", line), (stage_of(call), name, line)
        # no prose that contradicts the limits
        for words in ("2 to 5 sentences", "one or two short paragraphs", "one or two sentences"):
            assert words not in prompt, (stage_of(call), words)


def test_limit_words_come_from_the_schema():
    schema = answer_schema(PersonaAnswer)
    text = limits_text(schema)
    assert '- "profile": 20 to 500 characters' in text
    assert '- "topics": at most 5 items, each at most 40 characters' in text
    assert '- "gate_reason": at most 160 characters' in text


def test_trim_cuts_at_a_sentence_end_inside_the_limit():
    text = "She lost her job last week. She is scared to tell her father. He will be angry."
    assert trim_text(text, 70) == "She lost her job last week. She is scared to tell her father."
    assert len(trim_text(text, 70)) < 70
    assert trim_text("我失业了。我不敢告诉父亲，他会很生气。", 12) == "我失业了。"
    assert trim_text("short", 40) == "short"


def _answers(*texts):
    return ScriptedChatModel(outputs=list(texts))


async def test_an_answer_over_a_limit_is_asked_again_once_with_the_limit_named():
    schema = answer_schema(PersonaAnswer)
    long_topic = "the long story of her move to a new city far from home"
    answer = {
        "profile": "A caring person under strain who values close ties [m1].",
        "topics": [long_topic, "work"],
        "is_deep": True,
        "gate_reason": "Clear context.",
    }
    shorter = {**answer, "topics": ["moving far from home", "work"]}
    model = _answers(json.dumps(answer), json.dumps(shorter))
    asked = await ask_json(
        model, [{"role": "user", "content": "persona?"}], schema, dict, StageSettings()
    )
    assert asked.ok and asked.value["topics"][0] == "moving far from home"
    assert asked.trimmed == [] and asked.kinds == ["over_limit"]
    second = model.calls[1]
    assert len(second.messages) == 3 and second.messages[1] == ("assistant", json.dumps(answer))
    note = second.messages[2][1]
    assert '"topics.0" has 54 characters (limit 40)' in note

    # a model that does not shorten: asked once more only, then trimmed and flagged
    stubborn = _answers(json.dumps(answer), json.dumps(answer))
    asked = await ask_json(
        stubborn, [{"role": "user", "content": "persona?"}], schema, dict, StageSettings()
    )
    assert len(stubborn.calls) == 2
    assert asked.ok and asked.trimmed == ["topics.0"]
    assert len(asked.value["topics"][0]) < 40 and long_topic.startswith(asked.value["topics"][0])
    assert over_limits(asked.value, schema) == []


def _cli(monkeypatch, model_factory=None):
    if model_factory is not None:
        monkeypatch.setitem(
            spec_module._BACKENDS, "scripted", lambda spec, options: model_factory()
        )
    runner = CliRunner()
    app = build_app()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def _within_limits(example: Example) -> None:
    assert len(example.query) < 450
    assert len(example.persona.profile) < 500
    assert all(len(t) < 40 for t in example.persona.topics)
    assert all(len(r) < 120 for r in example.persona.big_five.justifications.values())
    assert len(example.situation.description) < 450


@pytest.mark.parametrize("behaviour", ["ignore", "cut"])
def test_a_build_against_a_server_that_ignores_or_cuts_at_max_length(
    monkeypatch, tmp_path, behaviour
):
    """Done when: examples within limits, or exit 1 naming the cause; never 0 and 0."""
    config = SimConfig(
        slots=4, base_latency=0.0, per_output_token=0.0, responder=verbose_responder()
    )
    config.max_length = behaviour
    cli = _cli(monkeypatch)
    out = tmp_path / "out"
    with SimServer(config) as server:
        res = cli(
            "build",
            "--source",
            USERS,
            "--out",
            out,
            "--model",
            f"openai:{server.base_url}#sim",
            "--concurrency",
            "4",
        )
        requests = server.stats().requests
    assert res.exit_code == 0, res.output
    examples = read_jsonl(out / "examples.jsonl", Example)
    assert len(examples) == 15 and "6 users -> 15 examples" in res.output
    for e in examples:
        _within_limits(e)
        assert "queries.query" in e.meta["trimmed"] and "persona.profile" in e.meta["trimmed"]
        assert e.query.endswith(".")  # cut at a sentence end, not mid-word
    # each generation call was asked once more (the limits named), then trimmed (a
    # verbose answer may first hit the token budget: retried with a larger one); the
    # inspector's answers fit
    assert 2 * (5 + 5 + 5 + 15) + 15 <= requests <= 3 * (5 + 5 + 5 + 15) + 15
    for stage in ("persona", "bigfive", "situations", "queries"):
        for r in load_stage_records(out, stage):
            assert r.trimmed and r.failure_kinds[-1] == "over_limit", (stage, r.failure_kinds)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["report"]["stages"]["queries"]["trimmed"] == 15


def test_a_stage_in_which_every_record_fails_stops_the_build_with_exit_1(monkeypatch, tmp_path):
    def persona(request, index):  # valid JSON, always too thin to use
        data = json.loads(default_answer(request, index))
        return json.dumps({**data, "profile": "Kind person here [m1]."})

    cli = _cli(monkeypatch, lambda: scripted_builder({"persona": persona}))
    out = tmp_path / "out"
    res = cli("build", "--source", USERS, "--out", out, "--model", "scripted")
    assert res.exit_code == 1, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error: persona: every one of its 5 records failed")
    assert "persona.invalid_output 5" in line and "profile too short" in line
    assert not (out / "examples.jsonl").exists()


async def test_a_probe_per_stage_stops_an_endpoint_that_cannot_give_the_schema(tmp_path):
    def situations(request, index):  # JSON, but not the situations schema at all
        return json.dumps({"answer": "Here are some situations for this user."})

    model = scripted_builder({"situations": situations})
    with pytest.raises(EndpointError, match=r"^situations: the endpoint cannot satisfy"):
        await build_dataset(USERS, tmp_path, model, show_progress=False)
    assert [stage_of(c) for c in model.calls].count("situations") == 3  # the probe only
    assert load_stage_records(tmp_path, "situations") == []
