"""The build, stats, split and augment verbs, with a scripted model behind a spec."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from build_scripted import scripted_builder
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.llm import spec as spec_module

EXAMPLE_USERS = resources.files("attunement").joinpath("data/example_users.jsonl")


@pytest.fixture()
def cli(monkeypatch):
    monkeypatch.setitem(spec_module._BACKENDS, "scripted", lambda spec, options: scripted_builder())
    runner = CliRunner()
    app = build_app()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_build_stats_split(cli, tmp_path):
    out = tmp_path / "build"
    res = cli("build", "--source", f"users:{EXAMPLE_USERS}", "--out", out, "--model", "scripted")
    assert res.exit_code == 0, res.output
    assert "15 examples" in res.output and "filter.shallow_memories 1" in res.output
    assert (out / "examples.jsonl").exists() and (out / "manifest.json").exists()

    png = tmp_path / "stats.png"
    res = cli("stats", out, "--plot", png)
    assert res.exit_code == 0, res.output
    assert "Big Five levels of 5 users" in res.output and png.stat().st_size > 10_000
    res = cli("stats", out, "--json")
    stats = json.loads(res.output)
    assert stats["categories"] == {"ES": 5, "HEQ": 5, "SS": 5}
    assert stats["big_five"]["neuroticism"]["high"] == 5
    assert stats["stages"]["filter"] == {"done": 6, "ok": 5, "rejected": 1}

    res = cli(
        "split",
        "--data",
        out / "examples.jsonl",
        "--mode",
        "random",
        "--out",
        tmp_path / "rand",
        "--ratio",
        "0.8",
    )
    assert res.exit_code == 0, res.output
    assert "train: 4 users / 12 examples; test: 1 users / 3 examples" in res.output
    manifest = json.loads((tmp_path / "rand" / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["test_users"] == 1


def test_build_malformed_input_names_line_and_field(cli, tmp_path):
    src = tmp_path / "users.jsonl"
    good = EXAMPLE_USERS.read_text().splitlines()[0]
    src.write_text(good + "\n" + '{"user_id": "x", "memories": [{"memory_id": "m1"}]}\n')
    res = cli("build", "--source", f"users:{src}", "--out", tmp_path / "o", "--model", "scripted")
    assert res.exit_code == 1
    assert f"{src}:2: memories.0.value: Field required" in res.output.replace("\n", "")

    res = cli(
        "build",
        "--source",
        f"users:{src}",
        "--out",
        tmp_path / "o",
        "--model",
        "scripted",
        "--skip-invalid",
    )
    assert res.exit_code == 0, res.output
    rejects = [
        json.loads(x) for x in (tmp_path / "o" / "input.rejects.jsonl").read_text().splitlines()
    ]
    assert rejects[0]["line"] == 2 and rejects[0]["field"] == "memories.0.value"


def test_build_show_filter_rules_and_override(cli, tmp_path):
    res = cli("build", "--show-filter-rules")
    assert res.exit_code == 0 and "deep_label_prefixes" in res.output
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"min_deep_memories": 7}))
    res = cli(
        "build",
        "--source",
        f"users:{EXAMPLE_USERS}",
        "--out",
        tmp_path / "o",
        "--model",
        "scripted",
        "--filter-rules",
        rules,
    )
    # a build that exports no example is a failure (issue 17, finding 11): exit 1 with the
    # cause and the command that would fix it
    assert res.exit_code == 1, res.output
    assert "0 examples" in res.output and "filter.shallow_memories 6" in res.output
    assert "error: no example was exported: every user or query was rejected" in res.output
    assert "run again with --redo rejected" in res.output
    res = cli(
        "build",
        "--source",
        f"nope:{EXAMPLE_USERS}",
        "--out",
        tmp_path / "o2",
        "--model",
        "scripted",
    )
    assert res.exit_code == 1 and "KIND:PATH" in res.output


def test_split_ood_prints_profiles(cli, tmp_path):
    out = tmp_path / "build"
    assert (
        cli(
            "build", "--source", f"users:{EXAMPLE_USERS}", "--out", out, "--model", "scripted"
        ).exit_code
        == 0
    )
    res = cli(
        "split",
        "--data",
        out / "examples.jsonl",
        "--mode",
        "ood",
        "--out",
        tmp_path / "ood",
        "--k",
        "2",
    )
    # the scripted model gives every user the same Big Five: one profile only
    assert res.exit_code == 1 and "only 1 distinct Big Five profiles" in res.output


def test_augment_verb(cli, tmp_path, fixtures_dir):
    res = cli(
        "augment",
        "--data",
        fixtures_dir / "build_ed.jsonl",
        "--model",
        "scripted",
        "--out",
        tmp_path / "aug",
    )
    assert res.exit_code == 0, res.output
    assert "3 rows -> 3 examples, 0 rejected" in res.output
