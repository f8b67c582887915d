"""Scoring a talk: the user's emotion over it, and the judges on every reply.

**From the emotion** (:func:`score_dialogue`), for a scorable talk:

- ``final_emotion``: the emotion after the last assessed reply; SAGE's score
  of the talk (0-100);
- ``level``, ``success`` (the user reached S) and ``failure`` (F);
- ``auc``: the area under the emotion trajectory, on the emotion's own
  0-100 scale. With ``e_0 = 40`` and ``e_t`` the emotion after the t-th
  assessed reply, the trajectory is held at its last value up to ``K``
  assessed replies (the most the turn cap allows) and::

      auc = (1 / K) * sum_{t=1..K} (e_{t-1} + e_t) / 2

  so a talk that lifts the user early scores higher than one that gets there
  at the last turn, and one that ends at S keeps 100 for the turns it did not
  need (one that ends at F keeps its low value);
- ``turns_to_success``: the assistant replies it took to reach S (``None``
  without success);
- ``leaks``: user messages that gave the hidden need away.

An unscorable talk has no emotion figures, only its reason; summaries
(:func:`summarize_dialogues`) count it apart and never fill it in.

**From the judges.** Each assistant reply is judged in its dialogue: the
user's message it answers is the query and the turns before it the
``Example.dialogue``, which every judge renders as the conversation before
the reply (:func:`turn_examples`). The resulting examples and replies go
through :func:`attunement.judging.score_dataset` (resumable, with a
manifest) or :func:`judge_dialogue` (in memory); :func:`attach_turn_rewards`
joins the breakdowns back to the talks by id.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import pairwise
from statistics import fmean

from pydantic import BaseModel, Field

from attunement.dialogue.assistant import example_at
from attunement.dialogue.emotion import START_EMOTION, Level, level_of
from attunement.dialogue.records import Dialogue, SimulatedUser
from attunement.judging import RewardModel
from attunement.records import Example, Reply, RewardBreakdown


def trajectory(dialogue: Dialogue) -> list[int]:
    """The emotion at the start and after each assessed reply."""
    return [
        START_EMOTION,
        *(
            t.assessment.emotion
            for t in dialogue.turns
            if t.assessment and t.assessment.emotion is not None
        ),
    ]


def area_under(emotions: Sequence[int], steps: int) -> float:
    """Mean height of the trajectory over ``steps`` steps, held at its last value.

    >>> area_under([40, 50, 60], 2)
    50.0
    >>> area_under([40, 100], 3)  # success after one reply: 100 is kept
    90.0
    """
    if not emotions:
        raise ValueError("a trajectory has at least its start value")
    steps = max(steps, len(emotions) - 1)
    if steps == 0:
        return float(emotions[0])
    held = [*emotions, *([emotions[-1]] * (steps + 1 - len(emotions)))]
    return sum((a + b) / 2 for a, b in pairwise(held)) / steps


def max_assessments(max_turns: int, assess_last_reply: bool) -> int:
    """How many replies a talk capped at ``max_turns`` user messages can have assessed.

    >>> max_assessments(10, True), max_assessments(10, False)
    (10, 9)
    """
    return max_turns if assess_last_reply else max_turns - 1


class DialogueScore(BaseModel):
    """The figures of one talk (``None`` where a figure does not apply)."""

    dialogue_id: str
    user_id: str
    policy: str
    unscorable: bool
    reason: str | None = None
    final_emotion: int | None = None
    level: Level | None = None
    success: bool = False
    failure: bool = False
    auc: float | None = None
    turns_to_success: int | None = None
    assistant_turns: int = 0
    leaks: int = 0
    turn_rewards: list[float | None] = Field(
        default_factory=list, description="judge reward of each assistant reply, in order"
    )
    mean_turn_reward: float | None = None


def score_dialogue(dialogue: Dialogue, *, steps: int) -> DialogueScore:
    """The emotion figures of a talk; ``steps`` is :func:`max_assessments` of its run."""
    replies = [t for t in dialogue.turns if t.role == "assistant"]
    base = {
        "dialogue_id": dialogue.dialogue_id,
        "user_id": dialogue.user_id,
        "policy": dialogue.policy,
        "assistant_turns": len(replies),
        "leaks": dialogue.leaks,
    }
    if dialogue.final_emotion is None:
        return DialogueScore(unscorable=True, reason=dialogue.reason, **base)
    emotions = trajectory(dialogue)
    level = level_of(dialogue.final_emotion)
    reached = next((t for t, e in enumerate(emotions) if t > 0 and level_of(e) == "S"), None)
    return DialogueScore(
        unscorable=False,
        final_emotion=dialogue.final_emotion,
        level=level,
        success=level == "S",
        failure=level == "F",
        auc=round(area_under(emotions, steps), 6),
        turns_to_success=reached,
        **base,
    )


class DialogueSummary(BaseModel):
    """Totals over the talks of one system."""

    dialogues: int
    scorable: int
    unscorable: int
    mean_final_emotion: float | None
    success: int
    failure: int
    levels: dict[str, int]
    mean_auc: float | None
    mean_turns_to_success: float | None
    leaks: int
    mean_turn_reward: float | None = None
    unscorable_reasons: dict[str, int] = Field(default_factory=dict)


def _mean(values: Sequence[float]) -> float | None:
    return round(fmean(values), 6) if values else None


def summarize_dialogues(scores: Sequence[DialogueScore]) -> DialogueSummary:
    """Means over scorable talks, counts over all; unscorable talks are counted
    apart with their reasons, never given a value."""
    ok = [s for s in scores if not s.unscorable]
    rewards = [s.mean_turn_reward for s in ok if s.mean_turn_reward is not None]
    reasons = Counter((s.reason or "unknown").split(":")[0] for s in scores if s.unscorable)
    return DialogueSummary(
        dialogues=len(scores),
        scorable=len(ok),
        unscorable=len(scores) - len(ok),
        mean_final_emotion=_mean(
            [float(s.final_emotion) for s in ok if s.final_emotion is not None]
        ),
        success=sum(s.success for s in ok),
        failure=sum(s.failure for s in ok),
        levels=dict(sorted(Counter(s.level for s in ok if s.level).items())),
        mean_auc=_mean([s.auc for s in ok if s.auc is not None]),
        mean_turns_to_success=_mean(
            [float(s.turns_to_success) for s in ok if s.turns_to_success is not None]
        ),
        leaks=sum(s.leaks for s in scores),
        mean_turn_reward=_mean(rewards),
        unscorable_reasons=dict(reasons),
    )


# --------------------------------------------------------------------------- judges


def turn_reply_id(dialogue_id: str, index: int) -> str:
    """The id of the reply at turn ``index`` of a talk (also its example's id)."""
    return f"{dialogue_id}#{index}"


def turn_examples(dialogue: Dialogue, user: SimulatedUser) -> list[tuple[Example, Reply]]:
    """Each assistant reply of a talk as a judgeable (example, reply) pair: the
    user message it answers is the query, the turns before that the dialogue."""
    if dialogue.user_id != user.user_id:
        raise ValueError(f"dialogue {dialogue.dialogue_id!r} is not with user {user.user_id!r}")
    pairs = []
    for turn in dialogue.turns:
        if turn.role != "assistant":
            continue
        rid = turn_reply_id(dialogue.dialogue_id, turn.index)
        example = example_at(user, dialogue.turns[: turn.index]).model_copy(
            update={"example_id": rid}
        )
        reply = Reply(
            example_id=rid,
            reply_id=rid,
            response=turn.text,
            analysis=turn.reasoning,
            raw=turn.raw,
            policy=dialogue.policy,
            memory_mode=dialogue.memory_mode,
            sample_index=dialogue.sample_index,
        )
        pairs.append((example, reply))
    return pairs


async def judge_dialogue(
    reward: RewardModel, dialogue: Dialogue, user: SimulatedUser, *, criteria_round: int = 0
) -> list[RewardBreakdown]:
    """One breakdown per assistant reply, each judged in its dialogue, in order."""
    pairs = turn_examples(dialogue, user)
    reward.check_examples([example for example, _ in pairs])
    groups = await asyncio.gather(
        *(reward.score(ex, [reply], criteria_round=criteria_round) for ex, reply in pairs)
    )
    return [breakdown for [breakdown] in groups]


def attach_turn_rewards(
    score: DialogueScore, breakdowns: Mapping[str, RewardBreakdown], dialogue: Dialogue
) -> DialogueScore:
    """``score`` with the judge reward of each reply, looked up by reply id.

    A reply without a breakdown, or with an unscorable one, counts as ``None``;
    the mean is over the rewards that exist.
    """
    rewards: list[float | None] = []
    for turn in dialogue.turns:
        if turn.role == "assistant":
            found = breakdowns.get(turn_reply_id(dialogue.dialogue_id, turn.index))
            rewards.append(found.reward if found is not None else None)
    known = [r for r in rewards if r is not None]
    return score.model_copy(update={"turn_rewards": rewards, "mean_turn_reward": _mean(known)})


# --------------------------------------------------------------------------- training


def trajectory_reward(score: DialogueScore, *, turn_weight: float = 0.0) -> float | None:
    """The reward of a whole talk for training (TRL and verl alike).

    With ``e`` the final emotion (0-100) and ``m`` the mean judge reward of the
    talk's replies (each judged in its dialogue; the reward's own scale, in
    [0, 1] for PERM and PereGRM before penalties)::

        r = (1 - w) * e / 100 + w * m

    ``w = turn_weight`` (0: the final emotion alone, SAGE's score). An
    unscorable talk has no reward (``None``), and so has a talk with ``w > 0``
    none of whose replies the judge could score: never a constant in its place.

    >>> s = DialogueScore(dialogue_id="u:0", user_id="u", policy="p", unscorable=False,
    ...                   final_emotion=70, mean_turn_reward=0.5)
    >>> trajectory_reward(s), trajectory_reward(s, turn_weight=0.5)
    (0.7, 0.6)
    """
    if not 0.0 <= turn_weight <= 1.0:
        raise ValueError(f"turn_weight must be within [0, 1], got {turn_weight}")
    if score.unscorable or score.final_emotion is None:
        return None
    emotion = score.final_emotion / 100
    if turn_weight == 0.0:
        return emotion
    if score.mean_turn_reward is None:
        return None
    return round((1 - turn_weight) * emotion + turn_weight * score.mean_turn_reward, 6)
