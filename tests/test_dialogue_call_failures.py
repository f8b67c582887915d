"""A failed policy or simulator call is never a finished talk (issue 17, finding 1).

``attune converse`` and ``attune sage`` against loopback simulated servers, the
policy on one port and the simulator on another, each misbehaving as a real
server does: down (a closed port: refused by the pre-flight before any talk),
or answering HTTP 500 to every talk request after the pre-flight's one-token
probe. The failing run exits 1 with one line naming the side and the cause and
writes no talk; the server comes back on the same port and the same command
finishes every talk from its journaled turns and exits 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dialogue_scripted as ds
import pytest
from test_call_failures import error_line, free_port, invoke, spec

from attunement.benchmarks.sage import load_sage
from attunement.dialogue import read_dialogues, read_journal
from attunement.jsonl import write_jsonl
from attunement.perf.simserver import SimConfig, SimServer
from attunement.perf.simuser import TalkResponder

FAST = ["--retries", "0", "--timeout", "10", "-c", "1"]


@contextmanager
def talker_at(port: int, *, failing: bool = False, responder=None) -> Iterator[SimServer]:
    """A simulated model on ``port``; ``failing``: the first request (the pre-flight's
    probe) is answered, every later one gets HTTP 500."""
    cfg = SimConfig(base_latency=0.0, per_output_token=0.0, responder=responder or TalkResponder())
    cfg.faults = ["none", *["500"] * 300] if failing else []
    with SimServer(cfg, port=port) as server:
        yield server


@pytest.fixture
def users_file(tmp_path):
    path = tmp_path / "examples.jsonl"
    write_jsonl(path, [ds.example(f"u{i}") for i in range(3)])
    return path


@pytest.mark.parametrize("side", ["policy", "simulator"])
def test_converse_down_then_failing_then_up(side, tmp_path, users_file):
    ports = {"policy": free_port(), "simulator": free_port()}
    other = "simulator" if side == "policy" else "policy"
    out = tmp_path / "d.jsonl"
    args = [
        *("converse", "--users", users_file, "--max-turns", "2", "-o", out, *FAST),
        *("--policy", spec(ports["policy"], "p"), "--simulator", spec(ports["simulator"], "s")),
    ]
    url = f"http://127.0.0.1:{ports[side]}/v1"
    with talker_at(ports[other]):
        down = invoke(*args)
        assert down.exit_code == 1, down.output
        assert error_line(down) == (
            f"error: {side} unreachable at {url} (connection refused); nothing was done"
        )
        assert not out.exists() or not out.read_text().strip()
        with talker_at(ports[side], failing=True):
            failing = invoke(*args)
        assert failing.exit_code == 1, failing.output
        assert error_line(failing) == (
            f"error: {side} failing at {url} (HTTP 500): 3 of 3 talks not finished; "
            "run again to retry"
        )
        assert not out.read_text().strip()  # no talk written as finished
        journal = read_journal(out.with_name("d.turns.jsonl"))
        # the opening message is a turn; the failed reply is not one
        assert {k: [t.role for t in v] for k, v in journal.items()} == {
            f"u{i}:0": ["user"] for i in range(3)
        }
        assert "call failed" not in out.with_name("d.turns.jsonl").read_text()
        with talker_at(ports[side]):
            back = invoke(*args)
    assert back.exit_code == 0, back.output
    assert "3 talks finished now (3 resumed, 0 already done)" in back.output
    talks = read_dialogues(out)
    assert sorted(d.dialogue_id for d in talks) == ["u0:0", "u1:0", "u2:0"]
    assert all(d.end != "unscorable" for d in talks)


@pytest.mark.shared
def test_sage_down_then_failing_then_up(tmp_path, shared_data):
    data = load_sage(shared_data / "sage")
    ref = data.reference
    heads = (
        ref.analysis_template.strip().splitlines()[0],
        ref.reply_template.strip().splitlines()[0],
    )

    def responder() -> TalkResponder:
        return TalkResponder(change=lambda reply: 10, sage_heads=heads, sage_npc=ref.npc_system)

    tested, simulator = free_port(), free_port()
    out = tmp_path / "sage"
    args = [
        *("sage", "--data", shared_data / "sage", "-o", out, "--limit", "2", *FAST),
        *("--policy", spec(tested, "tested"), "--simulator", spec(simulator, "sim")),
    ]
    url = f"http://127.0.0.1:{simulator}/v1"
    with talker_at(tested, responder=responder()):
        down = invoke(*args)
        assert down.exit_code == 1, down.output
        assert error_line(down) == (
            f"error: simulator unreachable at {url} (connection refused); nothing was done"
        )
        with talker_at(simulator, failing=True, responder=responder()):
            failing = invoke(*args)
        assert failing.exit_code == 1, failing.output
        # two profiles, tested and the random baseline: four talks, none finished
        assert error_line(failing) == (
            f"error: simulator failing at {url} (HTTP 500): 4 of 4 talks not finished; "
            "run again to retry"
        )
        for name in ("dialogues.jsonl", "random.jsonl"):
            assert not (out / name).read_text().strip()
        with talker_at(simulator, responder=responder()):
            back = invoke(*args)
    assert back.exit_code == 0, back.output
    assert len(read_dialogues(out / "dialogues.jsonl")) == 2
    assert len(read_dialogues(out / "random.jsonl")) == 2
    assert "SAGE score" in back.output
