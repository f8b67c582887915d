"""The pre-flight counts only when a call would be made (issue 17, finding 1).

A run whose every answer is in the completion cache needs no server: with the
judge down it scores from the cache and exits 0. A run that needs one call the
cache cannot serve fails on exactly that reply (the one line, exit 1), and an
empty cache with the judge down is refused before any work, as without one.
"""

from __future__ import annotations

import socket
from pathlib import Path

from eval_scripted import example
from typer.testing import CliRunner

from attunement.cli import build_app
from attunement.jsonl import read_jsonl, write_jsonl
from attunement.perf.judge import RealisticJudge
from attunement.perf.simserver import SimConfig, SimServer
from attunement.records import Reply, RewardBreakdown

FAST = ["--retries", "0", "--timeout", "10", "-c", "2", "--reward", "perm", "--no-bystander"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_inputs(folder: Path, ids: list[str]) -> tuple[Path, Path]:
    data, replies = folder / "ex.jsonl", folder / "re.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(data, [example(e) for e in ids])
    write_jsonl(
        replies,
        [
            Reply(
                example_id=e,
                reply_id=f"{e}-r0",
                response="Being ignored by your sister hurts; do you want to tell me more?",
            )
            for e in ids
        ],
    )
    return data, replies


def score(inputs: tuple[Path, Path], out: Path, port: int, cache: Path):
    data, replies = inputs
    judge = f"openai:http://127.0.0.1:{port}/v1#sim-judge"
    args = ["score", "--data", data, "--replies", replies, "--out", out, "--judge", judge]
    return CliRunner().invoke(build_app(), [*map(str, args), "--cache", str(cache), *FAST])


def error_lines(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]


def test_a_cached_run_needs_no_server_and_an_uncached_call_fails_alone(tmp_path):
    port = free_port()
    cache = tmp_path / "cache.sqlite"
    three = write_inputs(tmp_path / "a", ["e1", "e2", "e3"])
    cfg = SimConfig(base_latency=0.0, per_output_token=0.0, responder=RealisticJudge())
    with SimServer(cfg, port=port):
        first = score(three, tmp_path / "first.jsonl", port, cache)
    assert first.exit_code == 0, first.output
    scored = {b.example_id: b.reward for b in read_jsonl(tmp_path / "first.jsonl", RewardBreakdown)}

    # the server is down; the cache serves every call
    cached = score(three, tmp_path / "cached.jsonl", port, cache)
    assert cached.exit_code == 0, cached.output
    rows = read_jsonl(tmp_path / "cached.jsonl", RewardBreakdown)
    assert {b.example_id: b.reward for b in rows} == scored

    # one reply the cache cannot serve: it alone fails, with the one line
    four = write_inputs(tmp_path / "b", ["e1", "e2", "e3", "e4"])
    partly = score(four, tmp_path / "partly.jsonl", port, cache)
    assert partly.exit_code == 1, partly.output
    [line] = error_lines(partly)
    assert line == (
        f"error: judge unreachable at http://127.0.0.1:{port}/v1 (connection refused): "
        "1 of 4 replies not scored; run again to retry"
    )
    rows = read_jsonl(tmp_path / "partly.jsonl", RewardBreakdown)
    assert sorted(b.example_id for b in rows) == ["e1", "e2", "e3"]


def test_an_empty_cache_does_not_hide_a_server_that_is_down(tmp_path):
    port = free_port()
    result = score(
        write_inputs(tmp_path, ["e1"]), tmp_path / "s.jsonl", port, tmp_path / "c.sqlite"
    )
    assert result.exit_code == 1, result.output
    [line] = error_lines(result)
    assert line == (
        f"error: judge unreachable at http://127.0.0.1:{port}/v1 (connection refused); "
        "nothing was done"
    )
