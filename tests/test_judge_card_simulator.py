"""The judge card's simulator check: a scripted good and bad assistant must be told apart.

The simulator here is scripted by how it reacts to the two assistants' lines, so
each verdict is known in advance: a simulator that warms to the attentive lines
and cools at the dismissive ones passes; one that reacts to nothing fails; one
whose answers cannot be read fails; too few users is n/a.
"""

from __future__ import annotations

import asyncio
import json

import dialogue_scripted as ds
import pytest
from card_judges import EXAMPLES, oracle_judge
from test_judge_card import card_of

from attunement.dialogue import Dialogue, DialogueTurn
from attunement.jsonl import read_jsonl
from attunement.judge_card.simulator import (
    BAD_LINES,
    GOOD_LINES,
    run_simulator_check,
    simulator_check,
)
from attunement.llm import ScriptedChatModel
from attunement.records import Example

USERS = [ds.example(f"u{i}") for i in range(6)]


def reacting(good: int, bad: int, *, readable: bool = True, name: str = "sim"):
    """A simulator: ``good`` for a reply among the good lines, ``bad`` for the bad ones."""

    def answer(request, index):
        step = ds.step_of(request)
        if step == "assess":
            if not readable:
                return "I feel something."
            reply = ds.latest_reply(request)
            change = good if any(line[:30] in reply for line in GOOD_LINES) else bad
            return ds.assessment(f"{change:+d}")
        if step == "speak":
            return f"Plan: go on\nMessage: and then what ({index})"
        raise AssertionError(f"unexpected request: {step}")

    return ScriptedChatModel(answer, name=name)


def check(tmp_path, simulator, users=USERS, turns=3):
    return asyncio.run(run_simulator_check(users, simulator, tmp_path, max_turns=turns))


def test_a_simulator_that_reacts_to_the_assistant_passes(tmp_path):
    result = check(tmp_path, reacting(+6, -6))
    assert result.status == "pass", result.verdict
    # three replies each: good 40 + 18, bad 40 - 18
    assert result.good.estimate == 58.0 and result.bad.estimate == 22.0
    assert result.difference.estimate == 36.0 and result.difference.low > 0
    assert result.users == 6 and result.wins == 6
    assert set(result.files) == {"simulator_good", "simulator_bad"}
    # the scripted lines were what the simulator saw, turn by turn
    [talk] = [
        d for d in read_jsonl(tmp_path / "simulator_bad.jsonl", Dialogue) if d.user_id == "u0"
    ]
    replies = [t.text for t in talk.turns if t.role == "assistant"]
    assert replies == list(BAD_LINES)


def test_a_simulator_blind_to_the_assistant_fails(tmp_path):
    result = check(tmp_path, reacting(+3, +3))
    assert result.status == "fail" and "does not tell them apart" in result.verdict


def test_a_simulator_whose_answers_cannot_be_read_fails(tmp_path):
    result = check(tmp_path, reacting(0, 0, readable=False), users=USERS[:2], turns=2)
    assert result.status == "fail" and "unscorable" in result.verdict
    assert result.unscorable == {"good": 2, "bad": 2}


def test_too_few_users_is_not_a_verdict():
    def talk(user, emotion):
        turns = [
            DialogueTurn(index=0, role="user", text="hi", emotion=40, level="B"),
        ]
        return Dialogue(
            dialogue_id=f"{user}:0", user_id=user, policy="p", simulator="s", turns=turns,
            end="turn_cap", final_emotion=emotion,
        )  # fmt: skip

    result = simulator_check([talk("a", 60)], [talk("a", 20)], simulator="s", max_turns=1)
    assert result.status == "n/a"
    # a weak but positive difference over few users warns instead of passing
    good = [talk(u, e) for u, e in zip("abc", (60, 41, 40), strict=True)]
    bad = [talk(u, e) for u, e in zip("abc", (20, 40, 41), strict=True)]
    weak = simulator_check(good, bad, simulator="s", max_turns=1)
    assert weak.status == "warn" and weak.difference.low <= 0 < weak.difference.estimate


def test_the_card_runs_the_check_with_its_judge_as_the_simulator(tmp_path):
    oracle = oracle_judge()
    simulator = reacting(+6, -6)

    def answer(request, index):
        if ds.step_of(request) in ("assess", "speak"):
            return simulator._responder(request, index)
        return oracle._responder(request, index)

    both = ScriptedChatModel(answer, name="oracle")
    card = card_of(tmp_path, both, simulator_turns=2)
    assert card.simulator is not None and card.simulator.status == "pass"
    assert card.simulator.users == len(read_jsonl(EXAMPLES, Example))
    summary = next(c for c in card.checks if c.name == "simulator")
    assert summary.status == "pass"
    saved = json.loads((tmp_path / "card" / "card.json").read_text())
    assert saved["simulator"]["difference"]["estimate"] == pytest.approx(24.0)
    assert "Simulator check" in (tmp_path / "card" / "card.md").read_text()
