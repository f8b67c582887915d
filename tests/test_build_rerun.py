"""Reruns of a build folder: refused reruns change nothing, inspector verdicts are
final, stats describe the current build, gates apply to stored verdicts, endpoints
are compared as hosts, a rerun repeats the last run's settings, piped progress."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import pytest
from build_scripted import default_answer, scripted_builder, stage_of
from typer.testing import CliRunner

from attunement.building import (
    BuildConfig,
    StaleRecordsError,
    build_dataset,
    load_stage_records,
)
from attunement.building import runner as runner_module
from attunement.building.stats import compute_stats
from attunement.cli import build_app
from attunement.jsonl import read_jsonl
from attunement.llm import spec as spec_module
from attunement.records import Example

EXAMPLE_USERS = resources.files("attunement").joinpath("data/example_users.jsonl")
USERS = f"users:{EXAMPLE_USERS}"


def _folder_hash(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _stages(calls) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in calls:
        out[stage_of(c)] = out.get(stage_of(c), 0) + 1
    return out


@pytest.fixture()
def cli(monkeypatch):
    made = []

    def factory(spec, options):
        made.append(scripted_builder(name=f"scripted:{spec.target or ''}"))
        return made[-1]

    monkeypatch.setitem(spec_module._BACKENDS, "scripted", factory)
    runner = CliRunner()
    app = build_app()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    invoke.models = made
    return invoke


# --------------------------------------------------------------------------- finding 2


def _users_with_an_email(tmp_path: Path) -> str:
    rows = [json.loads(x) for x in EXAMPLE_USERS.read_text().splitlines() if x.strip()][:2]
    turn = rows[0]["sessions"][0]["turns"][0]
    turn["text"] += " You can write to me at maren.holm@example.org."
    path = tmp_path / "users.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"users:{path}"


def test_a_refused_rerun_leaves_the_folder_byte_identical(cli, tmp_path):
    out = tmp_path / "b"
    source = _users_with_an_email(tmp_path)
    res = cli("build", "--source", source, "--out", out, "--model", "scripted")
    assert res.exit_code == 0, res.output
    before = _folder_hash(out)
    assert "maren.holm@example.org" not in "".join(p.read_text() for p in out.rglob("*.json*"))
    # other privacy settings change what the prompts quote: the records are stale
    res = cli(
        "build", "--source", source, "--out", out, "--model", "scripted",
        "--no-scrub", "--keep-dialogues",
    )  # fmt: skip
    assert res.exit_code == 1 and "StaleRecords" not in res.output
    assert "record(s) were made with other settings" in res.output
    assert _folder_hash(out) == before  # users.jsonl, filter.jsonl, lock: untouched
    assert "maren.holm@example.org" not in "".join(p.read_text() for p in out.rglob("*.json*"))


async def test_a_later_stale_stage_refuses_before_an_earlier_stage_writes(tmp_path):
    await build_dataset(USERS, tmp_path, scripted_builder(), limit=1, show_progress=False)
    before = _folder_hash(tmp_path)
    # one more user (new persona work) and a changed query setting (stale queries)
    config = BuildConfig(query_min_words=5)
    model = scripted_builder()
    with pytest.raises(StaleRecordsError, match="queries.jsonl"):
        await build_dataset(USERS, tmp_path, model, config, limit=2, show_progress=False)
    assert model.calls == [] and _folder_hash(tmp_path) == before


# --------------------------------------------------------------------------- finding 3


def _inspector_that_rejects(text_part: str):
    def inspect(request, index):
        data = json.loads(default_answer(request, index))
        if text_part in request.messages[-1][1]:
            data["logical_consistency"] = False
        return json.dumps(data)

    return inspect


async def test_redo_rejected_never_asks_the_inspector_again_about_the_same_text(tmp_path):
    # a generator that writes the same text whatever the sample, and an inspector
    # that would pass it on a second sample: the verdict stays
    calls = {"n": 0}

    def inspect(request, index):
        calls["n"] += 1
        data = json.loads(default_answer(request, index))
        if "(HEQ)" in request.messages[-1][1] and calls["n"] <= 6:
            data["emotional_support"] = False  # the first verdicts reject HEQ
        return json.dumps(data)

    def queries(request, index):  # the same text, other reasoning on each draw
        data = json.loads(default_answer(request, index))
        return json.dumps({**data, "reasoning": f"It follows from m1 (draw {index})."})

    model = scripted_builder({"inspect": inspect, "queries": queries})
    report = await build_dataset(USERS, tmp_path, model, limit=2, show_progress=False)
    assert report.rejection_reasons == {"inspect.emotional_support": 2}
    for _ in range(3):
        model = scripted_builder({"inspect": inspect, "queries": queries})
        report = await build_dataset(
            USERS, tmp_path, model, limit=2, redo=["rejected"], show_progress=False
        )
        # the rejected queries are drawn again (same text): no inspection call at all
        assert _stages(model.calls) == {"queries": 2}
        assert report.rejection_reasons == {"inspect.emotional_support": 2}
    recs = {r.key: r for r in load_stage_records(tmp_path, "queries")}
    assert recs["demo-maren:HEQ"].draw == 4 and recs["demo-maren:ES"].draw == 1
    assert report.draws["verdicts"] == 6 and report.draws["rejected_verdicts"] == 2
    assert report.draws["redrawn"] == 2 and report.draws["redraw_rate"] == round(2 / 6, 4)
    assert {r.reused for r in load_stage_records(tmp_path, "inspect")} == {True, False}


async def test_examples_carry_their_draws_and_the_manifest_keeps_every_run(tmp_path):
    def queries(request, index):
        data = json.loads(default_answer(request, index))
        if index > 0:
            data["query"] = "My sister and I fought again and I do not know how to fix it."
        return json.dumps(data)

    inspect = _inspector_that_rejects("(HEQ), I feel stuck")
    await build_dataset(
        USERS, tmp_path, scripted_builder({"inspect": inspect}), limit=2, show_progress=False
    )
    report = await build_dataset(
        USERS,
        tmp_path,
        scripted_builder({"queries": queries, "inspect": inspect}),
        limit=2,
        redo=["rejected"],
        show_progress=False,
    )
    examples = {e.example_id: e for e in read_jsonl(tmp_path / "examples.jsonl", Example)}
    assert len(examples) == 6
    assert examples["demo-maren:HEQ"].meta["draws"] == 2
    assert examples["demo-maren:ES"].meta["draws"] == 1
    assert report.draws["rejection_rate"] == round(2 / 8, 4)  # 2 of 8 texts judged
    assert report.draws["redraw_rate"] == round(2 / 6, 4)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [r["redo"] for r in manifest["runs"]] == [[], ["rejected"]]
    assert manifest["runs"][1]["redone"] == {"queries": 2, "inspect": 2}
    assert manifest["report"]["draws"]["redrawn"] == 2


# --------------------------------------------------------------------------- finding 4


async def test_stats_describe_the_current_build_only_with_languages(tmp_path, cli):
    await build_dataset(USERS, tmp_path, scripted_builder(), show_progress=False)
    # fewer categories now: the queries of SS stay in the stage files, unused
    report = await build_dataset(
        USERS,
        tmp_path,
        scripted_builder(),
        BuildConfig(categories=["ES", "HEQ"]),
        redo=["stale"],
        show_progress=False,
    )
    stats = compute_stats(tmp_path)
    assert len(load_stage_records(tmp_path, "queries")) == 15  # the old keys are still there
    assert stats.stages["queries"].done == report.stages["queries"].input == 10
    assert stats.stages["inspect"].ok == report.stages["inspect"].ok == 10
    assert stats.rejection_reasons == report.rejection_reasons
    assert stats.languages == {"en": 10} and stats.user_languages == {"en": 10}
    res = cli("stats", tmp_path)
    assert res.exit_code == 0 and "languages" in res.output


# --------------------------------------------------------------------------- finding 8


async def test_changing_the_gates_reapplies_them_to_stored_verdicts_without_calls(tmp_path):
    inspect = _inspector_that_rejects("(HEQ)")
    first = await build_dataset(
        USERS, tmp_path, scripted_builder({"inspect": inspect}), limit=2, show_progress=False
    )
    assert first.accepted == 4
    model = scripted_builder()
    config = BuildConfig(inspection_gates=["emotional_support", "role_awareness"])
    report = await build_dataset(USERS, tmp_path, model, config, limit=2, show_progress=False)
    assert model.calls == [] and report.accepted == 6  # logical_consistency no longer gates
    back = await build_dataset(USERS, tmp_path, scripted_builder(), limit=2, show_progress=False)
    assert back.accepted == 4 and back.rejection_reasons == {"inspect.logical_consistency": 2}


async def test_an_endpoint_written_another_way_is_the_same_endpoint(tmp_path):
    first = scripted_builder(name="openai:http://127.0.0.1:8000/v1#qwen")
    await build_dataset(USERS, tmp_path, first, limit=1, show_progress=False)
    for name in ("openai:http://localhost:8000/v1/#qwen", "openai:http://[::1]:8000/v1#qwen"):
        again = scripted_builder(name=name)
        await build_dataset(USERS, tmp_path, again, limit=1, show_progress=False)
        assert again.calls == []
    other = scripted_builder(name="openai:http://localhost:8001/v1#qwen")
    with pytest.raises(StaleRecordsError):
        await build_dataset(USERS, tmp_path, other, limit=1, show_progress=False)


def test_a_rerun_without_options_repeats_the_last_runs_settings(cli, tmp_path):
    out = tmp_path / "b"
    res = cli(
        "build", "--source", USERS, "--out", out, "--model", "scripted:a", "--limit", "2",
        "--model-for", "inspect=scripted:judge", "--seed", "7", "--keep-dialogues",
        "--gates", "emotional_support,role_awareness",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    res = cli("build", "--out", out, "--limit", "2")
    assert res.exit_code == 0, res.output
    assert "taken from its manifest.json" in res.output
    assert "--source" in res.output and "--model" in res.output and "settings" in res.output
    assert [m.name for m in cli.models[-2:]] == ["scripted:judge", "scripted:a"] or {
        m.name for m in cli.models[-2:]
    } == {"scripted:a", "scripted:judge"}
    assert all(m.calls == [] for m in cli.models[-2:])  # nothing stale, nothing redone
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["config"]["keep_dialogues"] is True
    assert manifest["config"]["inspection_gates"] == ["emotional_support", "role_awareness"]
    # an option given still wins
    res = cli("build", "--out", out, "--limit", "2", "--no-keep-dialogues")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "manifest.json").read_text())["config"]["keep_dialogues"] is False


def test_a_directory_or_an_empty_source_is_one_line(cli, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    res = cli(
        "build", "--source", f"users:{folder}", "--out", tmp_path / "o", "--model", "scripted"
    )
    assert res.exit_code == 2 and res.output.strip() == f"error: {folder}: is a folder, not a file"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    res = cli("build", "--source", f"users:{empty}", "--out", tmp_path / "o", "--model", "scripted")
    assert res.exit_code == 1, res.output
    assert (
        res.output.strip()
        == f"error: {empty}: no user histories to build (the file has no records)"
    )
    assert not (tmp_path / "o").exists()


async def test_piped_progress_prints_each_stage_and_a_line_while_a_call_stalls(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(runner_module, "PROGRESS_SECONDS", 0.2)
    model = scripted_builder()
    model.delay = 0.15
    await build_dataset(USERS, tmp_path, model, limit=1, concurrency=1, show_progress=None)
    err = capsys.readouterr().err.splitlines()
    for stage in ("persona", "bigfive", "situations", "queries", "inspect"):
        assert any(line.startswith(f"{stage}: started") for line in err), stage
        assert any(line.startswith(f"{stage}: done in") for line in err), stage
    assert [line for line in err if line.startswith("filter: ")] == ["filter: 1 users, 1 kept"]
    # three query calls of 0.15 s: at least one progress line in between
    assert any(line.startswith("queries: ") and "elapsed" in line for line in err)
