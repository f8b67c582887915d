"""Multi-turn GRPO, for real: SmolLM2-135M on the CPU trains two TRL steps on talks with
simulated users played by a simulated server on loopback (slow).

The server (:class:`attunement.perf.simuser.TalkResponder`) answers the simulator's
prompts in their format and derives each change from the reply's text, so the talks
move; the run must finish both steps, change the weights, log the dialogue metrics
every step and keep every talk in ``dialogues.jsonl``.
"""

from __future__ import annotations

import importlib.util

import pytest
from test_training_e2e import SHORT, TINY, assert_changed, base, train  # noqa: F401
from train_scripted import write_examples

from attunement.dialogue import read_dialogues
from attunement.perf.simserver import SimConfig, SimServer
from attunement.perf.simuser import TalkResponder
from attunement.training.run import read_metrics

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("trl") is None,
        reason="training needs the 'train' extra (torch, TRL, peft)",
    ),
]


def test_multi_turn_grpo_runs_two_steps_against_a_served_simulator(base, tmp_path):  # noqa: F811
    data = tmp_path / "train.jsonl"
    write_examples(data, 4)
    run = tmp_path / "run"
    responder = TalkResponder()
    config = SimConfig(base_latency=0.0, per_output_token=0.0, responder=responder)
    with SimServer(config) as server:
        train(
            "grpo", "--data", str(data), "--out", str(run), *TINY, *SHORT,
            "--max-steps", "2", "--multi-turn", "--simulator",
            f"openai:{server.base_url}#simulated-user", "--max-turns", "2",
        )  # fmt: skip
        assert responder.steps.get("assess", 0) >= 4 and responder.steps.get("speak", 0) >= 1
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert 0 <= row["rewards/dialogue/final_emotion"] <= 100
        assert row["rewards/dialogue/failed_frac"] == 0.0
    talks = read_dialogues(run / "dialogues.jsonl")
    assert len(talks) == 4  # 2 steps x 1 prompt x 2 generations (batch size 2, -G 2)
    assert all(sum(t.role == "user" for t in d.turns) <= 2 for d in talks)
    assert len({d.dialogue_id for d in talks}) == 4  # sample numbers differ across steps
    assert_changed(base, run / "final")
