"""Resume never reuses stale work; redo without deleting files; one build per folder."""

from __future__ import annotations

import asyncio
import json
from importlib import resources

import pytest
from build_scripted import default_answer, scripted_builder, stage_of

from attunement.building import (
    BuildConfig,
    BuildLockedError,
    StaleRecordsError,
    build_dataset,
    load_stage_records,
)
from attunement.building.llm_io import StageSettings
from attunement.jsonl import read_jsonl
from attunement.llm import CachedChatModel, CompletionCache
from attunement.records import Example

EXAMPLE_USERS = f"users:{resources.files('attunement').joinpath('data/example_users.jsonl')}"


def _stages(calls) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in calls:
        out[stage_of(c)] = out.get(stage_of(c), 0) + 1
    return out


async def test_a_smoke_run_with_another_model_is_not_reused(tmp_path):
    small = scripted_builder(name="local")
    await build_dataset(EXAMPLE_USERS, tmp_path, small, limit=2, show_progress=False)
    big = scripted_builder(name="openai:http://gpu:8000/v1#llama-70b")
    with pytest.raises(StaleRecordsError) as info:
        await build_dataset(EXAMPLE_USERS, tmp_path, big, limit=2, show_progress=False)
    message = str(info.value)
    assert "persona.jsonl: 2 record(s)" in message and "'local' -> 'openai:" in message
    assert "--redo stale" in message
    assert big.calls == []  # refused before any call

    report = await build_dataset(
        EXAMPLE_USERS, tmp_path, big, limit=2, redo=["stale"], show_progress=False
    )
    assert len(big.calls) == 2 * 3 + 6 + 6 and report.accepted == 6
    for stage in ("persona", "bigfive", "situations", "queries", "inspect"):
        assert {r.model for r in load_stage_records(tmp_path, stage)} == {big.name}, stage
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["model"] == big.name


async def test_a_changed_stage_setting_makes_only_that_stage_stale(tmp_path):
    await build_dataset(EXAMPLE_USERS, tmp_path, scripted_builder(), limit=2, show_progress=False)
    config = BuildConfig(queries=StageSettings(temperature=0.2, max_tokens=300))
    model = scripted_builder()
    with pytest.raises(
        StaleRecordsError,
        match=r"queries.jsonl: 6 record\(s\).*inputs or "
        r"settings changed",
    ):
        await build_dataset(EXAMPLE_USERS, tmp_path, model, config, limit=2, show_progress=False)
    assert model.calls == []
    await build_dataset(
        EXAMPLE_USERS, tmp_path, model, config, limit=2, redo=["stale"], show_progress=False
    )
    # the queries are redone; the scripted model wrote the same queries again, so the
    # inspections (whose input did not change) are kept
    assert _stages(model.calls) == {"queries": 6}


async def test_downstream_records_follow_a_redone_upstream_record(tmp_path):
    await build_dataset(EXAMPLE_USERS, tmp_path, scripted_builder(), limit=2, show_progress=False)

    def persona(request, index):  # the redo draws a different persona for demo-maren
        data = json.loads(default_answer(request, index))
        data["profile"] = "A teacher who keeps her worries to herself [m2]."
        return json.dumps(data)

    keys = tmp_path / "redo.txt"
    keys.write_text("demo-maren\n")
    model = scripted_builder({"persona": persona})
    await build_dataset(
        EXAMPLE_USERS,
        tmp_path,
        model,
        limit=2,
        redo=[f"keys:{keys}"],
        stages=["persona", "bigfive", "situations", "queries", "inspect", "export"],
        show_progress=False,
    )
    # demo-maren's persona changed, so everything after it was redone for her only
    assert _stages(model.calls) == {
        "persona": 1,
        "bigfive": 1,
        "situations": 1,
        "queries": 3,
        "inspect": 3,
    }
    examples = read_jsonl(tmp_path / "examples.jsonl", Example)
    maren = [e for e in examples if e.user_id == "demo-maren"]
    assert maren and all(e.persona.profile.startswith("A teacher") for e in maren)


async def test_redo_rejected_and_by_code_draws_fresh_samples_from_a_cache(tmp_path):
    # the inspector judges the text: the first HEQ query fails, a fresh draw passes
    def queries(request, index):
        data = json.loads(default_answer(request, index))
        if index > 0:
            data["query"] = "My sister and I fought again and I do not know how to fix it."
        return json.dumps(data)

    def inspect(request, index):
        data = json.loads(default_answer(request, index))
        if "(HEQ), I feel stuck" in request.messages[-1][1]:
            data["role_awareness"] = False
        return json.dumps(data)

    cache = CompletionCache(tmp_path / "cache.sqlite")
    inner = scripted_builder({"queries": queries, "inspect": inspect})
    model = CachedChatModel(inner, cache)
    report = await build_dataset(EXAMPLE_USERS, tmp_path / "b", model, limit=2, show_progress=False)
    assert report.rejection_reasons == {"inspect.role_awareness": 2}
    before = len(inner.calls)

    report = await build_dataset(
        EXAMPLE_USERS,
        tmp_path / "b",
        model,
        limit=2,
        redo=["codes:inspect.role_awareness"],
        show_progress=False,
    )
    # not served from the cache: new sample numbers draw new queries; the new texts
    # are inspected, the old verdicts are never asked for again
    assert _stages(inner.calls[before:]) == {"queries": 2, "inspect": 2}
    redrawn = [c for c in inner.calls[before:] if stage_of(c) == "queries"]
    assert all(c.sample_start == 1 for c in redrawn)
    assert report.rejection_reasons == {} and report.accepted == 6
    assert report.stages["queries"].redone == 2

    # nothing rejected any more: redo rejected has nothing to do
    idle = len(inner.calls)
    await build_dataset(
        EXAMPLE_USERS, tmp_path / "b", model, limit=2, redo=["rejected"], show_progress=False
    )
    assert len(inner.calls) == idle
    await model.aclose()


async def test_redo_rejected_redoes_every_rejected_record(tmp_path):
    def queries(request, index):
        if "Social Strategy" in request.messages[-1][1] and index < 3:
            return "not json"
        return default_answer(request, index)

    report = await build_dataset(
        EXAMPLE_USERS,
        tmp_path,
        scripted_builder({"queries": queries}),
        limit=2,
        show_progress=False,
    )
    assert report.rejection_reasons == {"queries.invalid_output": 2}
    model = scripted_builder({"queries": queries})
    report = await build_dataset(
        EXAMPLE_USERS, tmp_path, model, limit=2, redo=["rejected"], show_progress=False
    )
    assert _stages(model.calls) == {"queries": 2, "inspect": 2}
    assert report.accepted == 6
    with pytest.raises(ValueError, match="unknown redo"):
        await build_dataset(EXAMPLE_USERS, tmp_path, model, redo=["everything"])


async def test_two_builds_on_one_folder_are_refused(tmp_path):
    slow = scripted_builder()
    slow.delay = 0.05
    first = asyncio.create_task(
        build_dataset(EXAMPLE_USERS, tmp_path, slow, limit=1, show_progress=False)
    )
    await asyncio.sleep(0.02)
    second = scripted_builder()
    with pytest.raises(BuildLockedError, match="another build is running"):
        await build_dataset(EXAMPLE_USERS, tmp_path, second, limit=1, show_progress=False)
    assert second.calls == []
    report = await first
    assert report.accepted == 3
    # the lock is released with the first build
    third = scripted_builder()
    await build_dataset(EXAMPLE_USERS, tmp_path, third, limit=1, show_progress=False)
    assert third.calls == []
