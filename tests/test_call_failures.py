"""A failed judge call is never a result (issue 17, findings 1, 11 and 12).

Each verb that calls a judge is run against a loopback simulated server that
misbehaves as a real one does: down (a closed port), answering HTTP 500 to
every chat request, or refusing a wrong model name with HTTP 404. The first
run exits 1 with one line naming the cause and writes no final row for the
failed calls; the server comes back on the same port, the same command runs
again, retries exactly those items and exits 0.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from eval_scripted import example
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.jsonl import read_jsonl, write_jsonl
from attunement.perf.judge import RealisticJudge
from attunement.perf.simserver import SimConfig, SimServer
from attunement.records import Reply, RewardBreakdown

FAST = ["--retries", "0", "--timeout", "10", "-c", "2"]
EXAMPLES = ["e1", "e2", "e3"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def judge_at(port: int, *, failing: bool = False, **config) -> Iterator[SimServer]:
    """A simulated judge on ``port``; ``failing``: HTTP 500 to every chat request."""
    faults = ["500"] * 200 if failing else []
    cfg = SimConfig(base_latency=0.0, per_output_token=0.0, responder=RealisticJudge(), **config)
    cfg.faults = faults
    with SimServer(cfg, port=port) as server:
        yield server


def spec(port: int, model: str = "sim-judge") -> str:
    return f"openai:http://127.0.0.1:{port}/v1#{model}"


def invoke(*args: str):
    return CliRunner().invoke(build_app(), [*map(str, args)])


def error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    data, replies = tmp_path / "ex.jsonl", tmp_path / "re.jsonl"
    write_jsonl(data, [example(e) for e in EXAMPLES])
    write_jsonl(
        replies,
        [
            Reply(
                example_id=e,
                reply_id=f"{e}-r0",
                analysis="They feel small after being ignored.",
                response="Being ignored by your sister hurts; do you want to tell me more?",
            )
            for e in EXAMPLES
        ],
    )
    return data, replies


# --------------------------------------------------------------------------- score


def score_args(data: Path, replies: Path, out: Path, judge: str) -> list[str]:
    return ["score", "--data", data, "--replies", replies, "--out", out, "--judge", judge]


def test_score_a_judge_that_is_down_is_named_before_any_work(tmp_path, inputs):
    port = free_port()
    out = tmp_path / "s.jsonl"
    result = invoke(*score_args(*inputs, out, spec(port)), "--reward", "perm", *FAST)
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert line == (
        f"error: judge unreachable at http://127.0.0.1:{port}/v1 (connection refused); "
        "nothing was done"
    )
    assert not out.exists() or read_jsonl(out, RewardBreakdown) == []


def test_score_a_wrong_model_name_is_one_clear_line(tmp_path, inputs):
    port = free_port()
    with judge_at(port, known_model_only=True):
        result = invoke(
            *score_args(*inputs, tmp_path / "s.jsonl", spec(port, "sim-jugde")),
            "--reward",
            "perm",
            *FAST,
        )
    assert result.exit_code == 1, result.output
    assert error_line(result) == (
        f"error: judge not serving model 'sim-jugde' at http://127.0.0.1:{port}/v1 "
        "(HTTP 404); check the name after '#'; nothing was done"
    )


def test_score_failed_calls_are_not_written_and_the_next_run_retries_them(tmp_path, inputs):
    port = free_port()
    out = tmp_path / "s.jsonl"
    args = [*score_args(*inputs, out, spec(port)), "--reward", "perm", "--no-bystander", *FAST]
    with judge_at(port, failing=True):
        first = invoke(*args)
    assert first.exit_code == 1, first.output
    assert error_line(first) == (
        f"error: judge failing at http://127.0.0.1:{port}/v1 (HTTP 500): "
        "3 of 3 replies not scored; run again to retry"
    )
    assert read_jsonl(out, RewardBreakdown) == []
    with judge_at(port) as server:
        second = invoke(*args)
        asked = server.stats().requests
    assert second.exit_code == 0, second.output
    rows = read_jsonl(out, RewardBreakdown)
    assert sorted(b.example_id for b in rows) == EXAMPLES
    assert all(b.reward is not None for b in rows)
    assert asked > 0 and "scored now / resumed: 3 / 0" in second.stdout


def test_score_rows_an_older_version_wrote_for_failed_calls_are_retried(tmp_path, inputs):
    port = free_port()
    out = tmp_path / "s.jsonl"
    args = [*score_args(*inputs, out, spec(port)), "--reward", "perm", "--no-bystander", *FAST]
    with judge_at(port):
        assert invoke(*args).exit_code == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        # what the old rule wrote when the judge was down: an unscorable "result"
        old = "judge call failed: openai:http://x/v1#j: chat completion failed: connection failed"
        rows[1].update(reward=None, unscorable=True, reason=f"resonation: ... ({old})")
        rows[1]["judgements"][0].update(score=None, normalized=None, reason=old)
        write_jsonl(out, rows)
        again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "scored now / resumed: 1 / 2" in again.stdout
    rows = read_jsonl(out, RewardBreakdown)
    assert len(rows) == 3 and all(b.reward is not None for b in rows)


# --------------------------------------------------------------------------- the other judging verbs


def evaluate_args(data: Path, replies: Path, out: Path, judge: str) -> list[str]:
    return ["evaluate", "--data", data, "--replies", replies, "--out", out, "--judge", judge]


def criteria_args(data: Path, _: Path, out: Path, judge: str) -> list[str]:
    return ["criteria", "--data", data, "--out", out, "--judge", judge]


def card_args(data: Path, replies: Path, out: Path, judge: str) -> list[str]:
    return [
        *("judge-card", "--judge", judge, "--reward", "perm", "--limit", "2", "--runs", "1"),
        *("--emobench", FIXTURES / "card_ea.jsonl", "--out", out),
    ]


FIXTURES = Path(__file__).parent / "fixtures"


#: case -> (its arguments, what the one line counts)
def evaluate_perm_args(data: Path, replies: Path, out: Path, judge: str) -> list[str]:
    return [*evaluate_args(data, replies, out, judge), "--reward", "perm"]


VERBS = {
    "evaluate": (evaluate_args, "examples without criteria (no scores)"),
    "evaluate-perm": (evaluate_perm_args, "replies not scored (no report written)"),
    "criteria": (criteria_args, "examples without criteria"),
    "judge-card": (card_args, "replies not scored"),
}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_judge_down_then_up(verb, tmp_path, inputs):
    """Down (a closed port): refused before any work. Failing (HTTP 500 to every
    chat request): exit 1, the one line, nothing final. Back: exit 0."""
    build, unit = VERBS[verb]
    port = free_port()
    out = tmp_path / ("out" if verb != "criteria" else "criteria.jsonl")
    args = [*build(*inputs, out, spec(port)), *FAST]
    down = invoke(*args)
    assert down.exit_code == 1, down.output
    assert error_line(down) == (
        f"error: judge unreachable at http://127.0.0.1:{port}/v1 (connection refused); "
        "nothing was done"
    )
    with judge_at(port, failing=True):
        failing = invoke(*args)
    assert failing.exit_code == 1, failing.output
    line = error_line(failing)
    assert line.startswith(f"error: judge failing at http://127.0.0.1:{port}/v1 (HTTP 500): ")
    assert line.endswith(f" {unit}; run again to retry")
    written = [p for p in tmp_path.rglob("*.jsonl") if p.parent != tmp_path or p == out]
    assert all("call failed" not in p.read_text() for p in written)
    with judge_at(port):
        back = invoke(*args)
    assert back.exit_code == 0, back.output
    if verb.startswith("evaluate"):
        assert (out / "report.html").exists() and (out / "results.json").exists()
    if verb == "judge-card":
        assert (out / "card.json").exists()
    if verb == "criteria":
        assert len(out.read_text().splitlines()) == len(EXAMPLES)


def test_emobench_failed_calls_are_no_answers_and_are_asked_again(tmp_path):
    port = free_port()
    out = tmp_path / "emo"
    data = FIXTURES / "card_ea.jsonl"
    args = ["emobench", "--data", data, "--policy", spec(port), "--out", out, *FAST]
    assert "policy unreachable at" in error_line(invoke(*args))
    with judge_at(port, failing=True):
        failing = invoke(*args)
    assert failing.exit_code == 1
    assert error_line(failing) == (
        f"error: policy failing at http://127.0.0.1:{port}/v1 (HTTP 500): "
        "8 of 8 items not answered; run again to retry"
    )
    assert not (out / "answers.jsonl").read_text().strip()
    cfg = SimConfig(base_latency=0.0, per_output_token=0.0)
    with SimServer(cfg, port=port):
        back = invoke(*args)
    assert back.exit_code == 0, back.output
    assert len((out / "answers.jsonl").read_text().splitlines()) == 8
