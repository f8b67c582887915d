"""``attune chat``, ``attune doctor`` and ``attune bench llm``."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from attunement.cli import build_app, common
from attunement.cli import llm as llm_cli
from attunement.llm.endpoint import forget_endpoints
from attunement.perf.simserver import SimConfig, SimServer


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    return build_app()


@pytest.fixture(autouse=True)
def fresh_endpoints():
    """What servers showed about themselves is remembered per process: start clean."""
    forget_endpoints()
    yield
    forget_endpoints()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def server():
    def responder(messages, index, params):
        if (params.get("response_format") or {}).get("type") == "json_schema":
            return json.dumps({"mood": "calm"})
        return f"answer {index} seed {params.get('seed')}"

    with SimServer(SimConfig(base_latency=0.0, responder=responder)) as s:
        yield s


def flat(text: str) -> str:
    """Undo rich's line wrapping."""
    return " ".join(text.split())


def spec(server: SimServer) -> str:
    return f"openai:{server.base_url}#sim-judge"


def test_chat_prints_answer_and_tokens(app, runner, server):
    result = runner.invoke(
        app,
        [
            "chat",
            "I feel lonely",
            "--model",
            spec(server),
            "--system",
            "Be kind.",
            "--max-tokens",
            "20",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "answer 0 seed None"
    assert "1 call(s)" in flat(result.stderr) and "prompt +" in flat(result.stderr)
    body = server.received()[0]
    assert body["messages"][0] == {"role": "system", "content": "Be kind."}
    assert body["max_tokens"] == 20


def test_chat_n_samples_and_schema(app, runner, server, tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"mood": {"type": "string"}}}))
    result = runner.invoke(
        app,
        [
            "chat",
            "hi",
            "-m",
            spec(server),
            "-n",
            "3",
            "--temperature",
            "1",
            "--json-schema",
            str(schema),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.count("--- sample") == 3
    assert result.stdout.count('{"mood": "calm"}') == 3
    assert server.received()[0]["n"] == 3


def test_chat_cache_serves_second_run(app, runner, server, tmp_path):
    args = ["chat", "hi", "-m", spec(server), "--cache", str(tmp_path / "c.sqlite")]
    assert runner.invoke(app, args).exit_code == 0
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "from cache" in flat(second.stderr)
    assert server.stats().requests == 1


def test_chat_bad_schema_file(app, runner, server, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(app, ["chat", "hi", "-m", spec(server), "--json-schema", str(bad)])
    assert result.exit_code == 1 and "not valid JSON" in flat(result.stderr)


def test_chat_bad_spec_exits_cleanly(app, runner):
    result = runner.invoke(app, ["chat", "hi", "-m", "gpt4"])
    assert result.exit_code == 1 and "unknown model spec" in flat(result.stderr)


def test_doctor_checks_an_endpoint(app, runner, server, monkeypatch):
    # the table is read here: give it room, whatever the terminal (a table may wrap)
    monkeypatch.setattr(common.out, "_width", 400)
    result = runner.invoke(app, ["doctor", "--endpoint", spec(server)])
    assert result.exit_code == 0, result.output
    for name in (
        "python",
        "attunement",
        "openai",
        "pydantic",
        "llama_cpp",
        "torch",
        "transformers",
        "trl",
        "peft",
        "kmodes",
        "bm25s",
        "matplotlib",
        "embedded model",
    ):
        assert name in result.stdout
    assert "check passed" in result.stdout and "answer 0" in flat(result.stdout)


def test_doctor_fails_when_endpoint_errors(app, runner):
    with SimServer(SimConfig(base_latency=0.0, faults=["400"])) as failing:
        result = runner.invoke(app, ["doctor", "--endpoint", spec(failing)])
    assert result.exit_code == 1
    assert "check failed" in result.stdout and "HTTP 400" in flat(result.stdout)


def test_doctor_reports_missing_packages(monkeypatch):
    monkeypatch.setattr(llm_cli, "PACKAGES", (("nonexistent-pkg", ("nonexistent-pkg-xyz",)),))
    assert llm_cli.versions()["nonexistent-pkg"] == "not installed"


def test_bench_llm_needs_a_local_model(app, runner, server):
    result = runner.invoke(app, ["bench", "llm", "--model", spec(server)])
    assert result.exit_code == 1 and "local GGUF" in flat(result.stderr)


@pytest.mark.slow
def test_chat_and_doctor_on_embedded_model(app, runner, local_model):
    result = runner.invoke(app, ["chat", "Say hello.", "--max-tokens", "12"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() and "local:" in result.stderr
    doctor = runner.invoke(app, ["doctor"])
    assert doctor.exit_code == 0, doctor.output
    assert any(
        x.startswith("check passed: local:") and ".gguf@" in x for x in doctor.stdout.splitlines()
    )


@pytest.mark.slow
def test_bench_llm_on_embedded_model(app, runner, local_model):
    result = runner.invoke(app, ["bench", "llm", "--max-tokens", "8", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # plain lines: the table may wrap
    assert any(
        x.startswith("tokens/s: attunement interface ") and ", raw llama_cpp " in x for x in lines
    )
    assert any(x.startswith("overhead ratio (interface s/token / raw s/token): ") for x in lines)


def test_doctor_says_how_it_will_talk_to_a_limited_server(app, runner):
    """A llama.cpp-like server: n refused, json_schema refused, json_object taken."""
    with SimServer(
        SimConfig(base_latency=0.0, n_rejection=400, response_formats=("text", "json_object"))
    ) as limited:
        result = runner.invoke(app, ["doctor", "--endpoint", spec(limited)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "n > 1 samples: one request per sample" in lines
    assert "JSON output: json_object (the schema in the request and in the prompt)" in lines


def test_doctor_on_a_full_server(app, runner, server):
    result = runner.invoke(app, ["doctor", "--endpoint", spec(server)])
    lines = result.stdout.splitlines()
    assert "n > 1 samples: one request" in lines
    assert "JSON output: json_schema (enforced by the server)" in lines
