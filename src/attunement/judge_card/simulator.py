"""The judge card's simulator check: can the model, playing the users, tell a good
assistant from a bad one?

A model used as a simulated user decides every multi-turn figure (``attune
converse``, ``attune sage``, multi-turn training), so before its emotions are
trusted it must at least react to obvious differences. Two scripted
assistants talk with the same users (the card's PersonaEmp examples), played
by the model under test with attunement's simulator:

- the **good** one listens: it names the feeling, stays with it and asks what
  would help, each turn a different attentive line;
- the **bad** one brushes the user off: it changes the subject, minimises and
  lectures.

Per user, the final emotion of the good talk minus the bad one's is the
paired difference; its mean and bootstrap interval over users come from
:func:`attunement.evaluation.stats.compare_paired`. The check **passes** when
the interval lies above 0, **warns** when the mean is above 0 but the
interval reaches 0 (too few users, or a weak simulator), **fails** when the
mean is not above 0 or when most talks are unscorable (the simulator's
answers cannot be read), and is **n/a** with fewer than two users scored in
both talks. The scripted lines are written in English.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from attunement.dialogue import (
    ConverseSettings,
    Dialogue,
    SimulatorSettings,
    SystemPromptAssistant,
    converse,
    read_dialogues,
    users_from_examples,
)
from attunement.evaluation.stats import compare_paired
from attunement.judge_card.checks import Estimate, Status
from attunement.judging import approx_tokens
from attunement.llm import ChatModel
from attunement.llm.base import ChatRequest, Completion
from attunement.records import Example

#: what the good scripted assistant says, turn by turn
GOOD_LINES: tuple[str, ...] = (
    (
        "That sounds really painful, and it makes sense that it is weighing on you. "
        "I'm here with you. What part of it is hardest right now?"
    ),
    (
        "Thank you for telling me more. Feeling that way after everything you put in is "
        "completely understandable. Would it help to think it through together, or do "
        "you mostly need to be heard for a moment?"
    ),
    (
        "You're handling a lot, and you don't have to sort it all out at once. What would "
        "feel like a small, kind next step for you?"
    ),
)
#: what the bad scripted assistant says, turn by turn
BAD_LINES: tuple[str, ...] = (
    "Everyone has problems. You should just get over it and stop dwelling on it.",
    "Honestly this is not a big deal. Anyway, have you seen the weather forecast for the weekend?",
    "I already told you what to do. If you keep complaining nothing will change.",
)
Side = Literal["good", "bad"]


class ScriptedAssistant(ChatModel):
    """Answers the k-th assistant turn of a talk with ``lines[k]`` (the last line again
    after that), whatever was said."""

    max_concurrency = 64

    def __init__(self, lines: Sequence[str], name: str):
        super().__init__()
        if not lines:
            raise ValueError("a scripted assistant needs at least one line")
        self.lines = tuple(lines)
        self.name = name

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        turn = sum(1 for role, _ in request.messages if role == "assistant")
        text = self.lines[min(turn, len(self.lines) - 1)]
        return [
            Completion(
                text=text,
                prompt_tokens=sum(approx_tokens(c) for _, c in request.messages),
                completion_tokens=approx_tokens(text),
                sample_index=request.sample_start + i,
                finish_reason="stop",
            )
            for i in range(request.n)
        ]


class SimulatorCheck(BaseModel):
    """The check's figures and verdict."""

    status: Status
    verdict: str
    simulator: str
    users: int = Field(description="users scored in both talks")
    max_turns: int
    good: Estimate = Field(description="mean final emotion with the good assistant (0-100)")
    bad: Estimate = Field(description="mean final emotion with the bad assistant (0-100)")
    difference: Estimate = Field(description="good minus bad, paired by user")
    wins: int = 0
    losses: int = 0
    ties: int = 0
    unscorable: dict[str, int] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)


def _final(dialogues: Sequence[Dialogue]) -> dict[str, float]:
    """Per user, the mean final emotion of the scorable talks."""
    by_user: dict[str, list[int]] = {}
    for d in dialogues:
        if d.final_emotion is not None:
            by_user.setdefault(d.user_id, []).append(d.final_emotion)
    return {u: sum(v) / len(v) for u, v in by_user.items()}


def _estimate(values: Sequence[float]) -> Estimate:
    if not values:
        return Estimate(estimate=None, low=None, high=None, n=0)
    return Estimate(estimate=sum(values) / len(values), low=None, high=None, n=len(values))


def simulator_check(
    good: Sequence[Dialogue],
    bad: Sequence[Dialogue],
    *,
    simulator: str,
    max_turns: int,
    seed: int = 0,
) -> SimulatorCheck:
    """The verdict from the two sets of talks (see the module docstring)."""
    a, b = _final(good), _final(bad)
    users = sorted(set(a) & set(b))
    unscorable = {
        "good": sum(1 for d in good if d.final_emotion is None),
        "bad": sum(1 for d in bad if d.final_emotion is None),
    }
    cmp = compare_paired([a[u] for u in users], [b[u] for u in users], seed=seed)
    diff = Estimate.of(cmp.diff)
    status, verdict = _verdict(diff, unscorable, len(good) + len(bad))
    return SimulatorCheck(
        status=status,
        verdict=verdict,
        simulator=simulator,
        users=len(users),
        max_turns=max_turns,
        good=_estimate([a[u] for u in users]),
        bad=_estimate([b[u] for u in users]),
        difference=diff,
        wins=cmp.wins,
        losses=cmp.losses,
        ties=cmp.ties,
        unscorable=unscorable,
    )


def _verdict(diff: Estimate, unscorable: dict[str, int], talks: int) -> tuple[Status, str]:
    lost = sum(unscorable.values())
    if talks and lost * 2 > talks:
        return "fail", f"{lost} of {talks} talks unscorable: the simulator's answers cannot be read"
    if diff.n < 2 or diff.estimate is None:
        return "n/a", "fewer than two users scored with both assistants"
    if diff.estimate <= 0:
        return "fail", (
            f"the bad assistant left users no worse off ({diff.estimate:+.1f} emotion): the "
            "simulator does not tell them apart"
        )
    if diff.low is not None and diff.low > 0:
        return "pass", f"good minus bad {diff.estimate:+.1f} emotion, interval above 0"
    return "warn", f"good minus bad {diff.estimate:+.1f} emotion, but the interval reaches 0"


async def run_simulator_check(
    examples: Sequence[Example],
    simulator_model: ChatModel,
    out: str | Path,
    *,
    max_turns: int = 3,
    settings: SimulatorSettings | None = None,
    seed: int = 0,
    show_progress: bool | None = None,
) -> SimulatorCheck:
    """Play both scripted assistants against ``simulator_model`` (resuming the talks
    in ``out/simulator_{good,bad}.jsonl``) and judge the difference."""
    users = users_from_examples(examples)
    talk = ConverseSettings(simulator=settings or SimulatorSettings(seed=seed), max_turns=max_turns)
    out = Path(out)
    files: dict[str, str] = {}
    played: dict[Side, list[Dialogue]] = {}
    for side, lines in (("good", GOOD_LINES), ("bad", BAD_LINES)):
        path = out / f"simulator_{side}.jsonl"
        await converse(
            users,
            ScriptedAssistant(lines, name=f"scripted-{side}"),
            simulator_model,
            path,
            talk,
            assistant=SystemPromptAssistant("scripted assistant", name=f"scripted-{side}"),
            show_progress=show_progress,
        )
        wanted = {u.user_id for u in users}
        played[side] = [d for d in read_dialogues(path) if d.user_id in wanted]
        files[f"simulator_{side}"] = str(path)
    check = simulator_check(
        played["good"],
        played["bad"],
        simulator=simulator_model.name,
        max_turns=max_turns,
        seed=seed,
    )
    return check.model_copy(update={"files": files})
