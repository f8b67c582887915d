"""Dialogue scoring: emotion figures by hand, summaries, and judges on each turn."""

from __future__ import annotations

import pytest
from dialogue_scripted import policy, simulator, user

from attunement.dialogue import (
    Assessment,
    ConverseSettings,
    Dialogue,
    DialogueTurn,
    area_under,
    attach_turn_rewards,
    converse,
    judge_dialogue,
    max_assessments,
    read_dialogues,
    score_dialogue,
    summarize_dialogues,
    trajectory,
    turn_examples,
)
from attunement.jsonl import read_jsonl
from attunement.judging import PermConfig, perm_reward, score_dataset
from attunement.llm import ScriptedChatModel
from attunement.records import RewardBreakdown


def turns_for(emotions, *, last_unassessed=False):
    turns = [DialogueTurn(index=0, role="user", text="hello", emotion=40)]
    for k, e in enumerate(emotions, start=1):
        before = turns[-1].emotion if turns[-1].role == "user" else 40
        a = Assessment(change=e - before, stated=e - before, emotion=e, level="B")
        turns.append(DialogueTurn(index=len(turns), role="assistant", text=f"r{k}", assessment=a))
        turns.append(DialogueTurn(index=len(turns), role="user", text=f"m{k}", emotion=e))
    if last_unassessed:
        turns.append(DialogueTurn(index=len(turns), role="assistant", text="last"))
    return turns


def dialogue(emotions, end="turn_cap", **kw):
    turns = turns_for(emotions, **kw)
    final = emotions[-1] if emotions else 40
    return Dialogue(
        dialogue_id="u1:0",
        user_id="u1",
        policy="p",
        simulator="s",
        turns=turns,
        end=end,
        final_emotion=None if end == "unscorable" else final,
        reason="unreadable simulator analysis after 3 attempt(s): x"
        if end == "unscorable"
        else None,
    )


def test_trajectory_area_and_turns_to_success_by_hand():
    d = dialogue([50, 70, 100], end="success")
    assert trajectory(d) == [40, 50, 70, 100]
    s = score_dialogue(d, steps=5)
    # trapezoids 45, 60, 85, then 100 held for two more steps: (45+60+85+100+100)/5
    assert s.auc == pytest.approx(78.0)
    assert s.final_emotion == 100 and s.level == "S" and s.success and not s.failure
    assert s.turns_to_success == 3 and s.assistant_turns == 3


def test_an_early_success_scores_a_larger_area_than_a_late_one():
    early = score_dialogue(dialogue([70, 100], end="success"), steps=9)
    late = score_dialogue(dialogue([45, 50, 55, 60, 70, 80, 90, 95, 100], end="success"), steps=9)
    assert early.final_emotion == late.final_emotion == 100
    assert early.auc > late.auc and early.turns_to_success < late.turns_to_success


def test_failure_keeps_its_low_value_and_unassessed_replies_do_not_count():
    s = score_dialogue(dialogue([20, 5], end="failure"), steps=3)
    assert s.failure and s.level == "F" and s.turns_to_success is None
    assert s.auc == pytest.approx((30 + 12.5 + 5) / 3)
    capped = dialogue([41] * 9, last_unassessed=True)
    assert len(trajectory(capped)) == 10
    assert score_dialogue(capped, steps=max_assessments(10, False)).assistant_turns == 10


def test_area_under_rules():
    assert area_under([40], 0) == 40.0
    assert area_under([40, 60], 1) == 50.0
    with pytest.raises(ValueError):
        area_under([], 3)


def test_unscorable_talks_get_no_figures_and_are_counted_apart():
    good = score_dialogue(dialogue([60], end="turn_cap"), steps=1)
    bad = score_dialogue(dialogue([60], end="unscorable"), steps=1)
    assert bad.unscorable and bad.final_emotion is None and bad.auc is None
    summary = summarize_dialogues([good, bad])
    assert summary.dialogues == 2 and summary.scorable == 1 and summary.unscorable == 1
    assert summary.mean_final_emotion == 60.0
    assert summary.unscorable_reasons == {"unreadable simulator analysis after 3 attempt(s)": 1}


def test_summary_counts_success_and_failure():
    scores = [
        score_dialogue(dialogue([100], end="success"), steps=2),
        score_dialogue(dialogue([5], end="failure"), steps=2),
        score_dialogue(dialogue([55]), steps=2),
    ]
    s = summarize_dialogues(scores)
    assert (s.success, s.failure) == (1, 1)
    assert s.levels == {"B": 1, "F": 1, "S": 1}
    assert s.mean_final_emotion == pytest.approx(160 / 3, abs=1e-5)
    assert s.mean_turns_to_success == 1.0


# --------------------------------------------------------------------------- judges


def judge_answer(request, index):
    """A PERM judge that gives 5 to the reply answering 'message 2', 3 to the others."""
    text = "\n".join(c for _, c in request.messages)
    score = 5 if "<message>\nmessage 2\n</message>" in text else 3
    return f"Reason: fine.\nScore: {score}"


async def played(tmp_path):
    u = user()
    await converse(
        [u],
        policy([+1] * 3),
        simulator(),
        tmp_path / "d.jsonl",
        ConverseSettings(max_turns=3),
        show_progress=False,
    )
    [d] = read_dialogues(tmp_path / "d.jsonl")
    return u, d


async def test_each_reply_is_judged_in_its_dialogue(tmp_path):
    u, d = await played(tmp_path)
    pairs = turn_examples(d, u)
    assert [r.reply_id for _, r in pairs] == ["u1:0#1", "u1:0#3", "u1:0#5"]
    first, second, third = (ex for ex, _ in pairs)
    assert first.query == u.opening and first.dialogue == []
    assert second.query == "message 2" and [t.text for t in second.dialogue] == [
        u.opening,
        d.turns[1].text,
    ]
    assert third.dialogue[-1].role == "assistant" and len(third.dialogue) == 4
    assert all(ex.memories == u.example.memories and ex.criteria == {} for ex, _ in pairs)
    assert pairs[1][1].response == d.turns[3].text and pairs[1][1].analysis == "thinking 2"


async def test_judge_dialogue_and_score_dataset_agree(tmp_path):
    u, d = await played(tmp_path)
    judge = ScriptedChatModel(judge_answer, name="judge")
    reward = perm_reward(judge, PermConfig(use_bystander=False, output="text"))
    breakdowns = await judge_dialogue(reward, d, u)
    assert [b.reply_id for b in breakdowns] == ["u1:0#1", "u1:0#3", "u1:0#5"]
    assert [b.dimensions["expression"] for b in breakdowns] == [3, 5, 3]
    seen = [r.messages[-1][1] for r in judge.calls]
    assert any("Earlier turns of this conversation" in m and u.opening in m for m in seen)

    pairs = turn_examples(d, u)
    summary = await score_dataset(
        reward,
        [ex for ex, _ in pairs],
        [r for _, r in pairs],
        tmp_path / "turns.scores.jsonl",
        concurrency=2,
        show_progress=False,
    )
    assert summary.replies == 3 and summary.unscorable == 0
    written = {b.reply_id: b for b in read_jsonl(tmp_path / "turns.scores.jsonl", RewardBreakdown)}
    score = attach_turn_rewards(score_dialogue(d, steps=3), written, d)
    assert score.turn_rewards == [b.reward for b in breakdowns]
    assert score.mean_turn_reward == pytest.approx(sum(score.turn_rewards) / 3, abs=1e-6)


def test_a_missing_breakdown_counts_as_none():
    d = dialogue([50, 60])
    b = RewardBreakdown(example_id="u1:0#1", reply_id="u1:0#1", reward_model="r", reward=0.8)
    s = attach_turn_rewards(score_dialogue(d, steps=2), {"u1:0#1": b}, d)
    assert s.turn_rewards == [0.8, None] and s.mean_turn_reward == 0.8


def test_turn_examples_refuse_another_users_dialogue():
    with pytest.raises(ValueError, match="not with user"):
        turn_examples(dialogue([50]), user("u9"))
