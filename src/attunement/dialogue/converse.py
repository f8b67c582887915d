"""The conversation loop: a policy talks with simulated users, turn by turn.

One talk (:meth:`Conversation.play`)::

    user: opening message (emotion 40)
    repeat:
        assistant: reply to the latest user message (the policy, per memory mode)
        simulator: inner analysis of the reply -> change -> emotion, level
        user: next message, written with that emotion (a closing one at S or F)
    until the user reaches S or F, says a farewell word, or has sent
    ``max_turns`` messages (then the last reply is assessed unless
    ``assess_last_reply`` is off, as in SAGE)

Which move comes next is a pure function of the turns so far
(:func:`next_move`), so a talk can stop after any turn and go on later.

A talk can be resumed from any finished turn (``turns=``), and every new turn
is handed to ``on_turn`` as soon as it is finished: :func:`attunement.dialogue.run.converse`
journals them, so a killed run loses no finished turn. A model call that fails
raises (it is not a result); a simulator answer that cannot be read after its
retries ends the talk ``unscorable`` with the reason, and no emotion is invented.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from attunement.dialogue.assistant import AssistantSide
from attunement.dialogue.emotion import MAX_USER_TURNS, START_EMOTION, ends_talk, level_of
from attunement.dialogue.reading import reveals_need
from attunement.dialogue.records import Dialogue, DialogueTurn, EndReason, SimulatedUser
from attunement.dialogue.simulator import SimulatorSettings, UserModel
from attunement.llm.base import ChatModel
from attunement.policy import GenerationSettings

Move = Literal["assistant", "user"]


class ConverseSettings(BaseModel):
    """Everything that shapes the talks of a run (and its manifest)."""

    model_config = ConfigDict(extra="forbid")

    policy: GenerationSettings = Field(
        default_factory=GenerationSettings,
        description="the policy's memory mode and sampling (n must be 1)",
    )
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    max_turns: int = Field(
        MAX_USER_TURNS, ge=1, description="user messages per talk, the opening one included"
    )
    assess_last_reply: bool = Field(
        True,
        description="assess the reply to the last user message (SAGE leaves it unassessed)",
    )
    samples: int = Field(1, ge=1, description="talks per user")
    concurrency: int | None = Field(
        None, ge=1, description="talks in flight (when not given: the larger of the models' limits)"
    )

    @model_validator(mode="after")
    def _one_reply_per_turn(self) -> ConverseSettings:
        if self.policy.n != 1:
            raise ValueError("a talk has one reply per turn: policy.n must be 1")
        return self


# --------------------------------------------------------------------------- moves


def current_emotion(turns: Sequence[DialogueTurn]) -> int:
    """The emotion after the last readable assessment (the start value before any).

    >>> current_emotion([])
    40
    """
    for turn in reversed(turns):
        if turn.assessment is not None and turn.assessment.emotion is not None:
            return turn.assessment.emotion
    return START_EMOTION


def _user_turns(turns: Sequence[DialogueTurn]) -> int:
    return sum(1 for t in turns if t.role == "user")


def next_move(
    turns: Sequence[DialogueTurn],
    *,
    max_turns: int = MAX_USER_TURNS,
    assess_last_reply: bool = True,
    farewells: Sequence[str] = (),
) -> Move | EndReason:
    """Who speaks next, or how the talk ended.

    - after a user message: the talk is over if the reply before it brought
      the user to S or F (this was the closing message) or if it holds a
      farewell word; otherwise the assistant answers;
    - after an assistant reply: an unreadable assessment ends the talk
      unscorable; at the turn cap the talk ends (at the level the last
      assessment reached); otherwise the user speaks.
    """
    if not turns:
        raise ValueError("a talk starts with the user's opening message")
    last = turns[-1]
    if last.role == "user":
        before = turns[-2].assessment if len(turns) > 1 else None
        if before is not None and before.level is not None and ends_talk(before.level):
            return "success" if before.level == "S" else "failure"
        if last.index > 0 and any(word in last.text for word in farewells):
            return "farewell"
        return "assistant"
    if last.assessment is not None and not last.assessment.ok:
        return "unscorable"
    if _user_turns(turns) >= max_turns:
        level = last.assessment.level if last.assessment is not None else None
        if level is not None and ends_talk(level):
            return "success" if level == "S" else "failure"
        return "turn_cap"
    return "user"


def assessment_due(
    turns: Sequence[DialogueTurn], *, max_turns: int, assess_last_reply: bool
) -> bool:
    """Whether the reply about to answer ``turns[-1]`` gets assessed."""
    return assess_last_reply or _user_turns(turns) < max_turns


# --------------------------------------------------------------------------- one talk


def dialogue_id(user_id: str, sample_index: int) -> str:
    """``{user_id}:{sample_index}``: talks are joined to users by id, never by position."""
    return f"{user_id}:{sample_index}"


class Conversation:
    """A policy, its prompt setting and a simulated-user model, ready to talk."""

    def __init__(
        self,
        policy: ChatModel,
        assistant: AssistantSide,
        users: UserModel,
        settings: ConverseSettings | None = None,
    ):
        self.policy = policy
        self.assistant = assistant
        self.users = users
        self.settings = settings or ConverseSettings()

    async def reply(
        self, user: SimulatedUser, turns: Sequence[DialogueTurn], *, sample_index: int = 0
    ) -> DialogueTurn:
        """The policy's reply to ``turns[-1]``, with the simulator's assessment when due."""
        p = self.settings.policy
        messages, shown = await self.assistant.prompt(user, turns)
        [completion] = await self.policy.complete(
            messages,
            n=1,
            temperature=p.temperature,
            max_tokens=p.max_tokens,
            seed=p.seed,
            sample_start=sample_index,
        )
        reasoning, text = self.assistant.read(completion.text)
        turn = DialogueTurn(
            index=len(turns),
            role="assistant",
            text=text,
            reasoning=reasoning,
            raw=completion.text,
            memory_ids=shown,
        )
        s = self.settings
        if not assessment_due(turns, max_turns=s.max_turns, assess_last_reply=s.assess_last_reply):
            return turn
        emotion = current_emotion(turns)
        assessment = await self.users.assess(
            user, [*turns, turn], emotion, sample_index=sample_index
        )
        return turn.model_copy(
            update={
                "assessment": assessment,
                "emotion": assessment.emotion,
                "level": assessment.level,
            }
        )

    async def play(
        self,
        user: SimulatedUser,
        *,
        sample_index: int = 0,
        turns: Sequence[DialogueTurn] = (),
        on_turn: Callable[[DialogueTurn], None] | None = None,
    ) -> Dialogue:
        """Talk until the end, starting after ``turns`` (a resumed talk's finished
        turns); ``on_turn`` receives each new turn as soon as it is finished."""

        def commit(turn: DialogueTurn) -> None:
            done.append(turn)
            if on_turn is not None:
                on_turn(turn)

        done: list[DialogueTurn] = list(turns)
        if not done:
            start = START_EMOTION
            commit(
                DialogueTurn(
                    index=0, role="user", text=user.opening, emotion=start, level=level_of(start)
                )
            )
        s = self.settings
        reason = None
        while True:
            move = next_move(
                done,
                max_turns=s.max_turns,
                assess_last_reply=s.assess_last_reply,
                farewells=user.farewells,
            )
            if move == "assistant":
                commit(await self.reply(user, done, sample_index=sample_index))
                continue
            if move != "user":
                break
            emotion = current_emotion(done)
            last = done[-1].assessment
            if last is None:  # next_move asks the user to speak only after an assessed reply
                raise RuntimeError("the user speaks only after an assessed reply")
            speech = await self.users.speak(user, done, emotion, last, sample_index=sample_index)
            if speech.message.text is None:
                move = "unscorable"
                reason = (
                    f"unreadable user message after {speech.attempts} attempt(s): "
                    f"{speech.message.reason}"
                )
                break
            commit(
                DialogueTurn(
                    index=len(done),
                    role="user",
                    text=speech.message.text,
                    emotion=emotion,
                    level=level_of(emotion),
                    reasoning=speech.message.reasoning,
                    raw=speech.raw,
                    leak=reveals_need(speech.message.text, user.hidden_need),
                )
            )
        return self.finish(user, done, move, reason, sample_index)

    def finish(
        self,
        user: SimulatedUser,
        turns: Sequence[DialogueTurn],
        end: EndReason,
        reason: str | None,
        sample_index: int,
    ) -> Dialogue:
        """The finished talk as a record."""
        if end == "unscorable" and reason is None:
            last = turns[-1].assessment
            attempts = last.attempts if last is not None else 0
            why = last.reason if last is not None else "unknown"
            reason = f"unreadable simulator analysis after {attempts} attempt(s): {why}"
        return Dialogue(
            dialogue_id=dialogue_id(user.user_id, sample_index),
            user_id=user.user_id,
            sample_index=sample_index,
            source=user.source,
            policy=self.policy.name,
            simulator=self.users.model.name,
            memory_mode=self.assistant.memory_mode,
            turns=list(turns),
            end=end,
            final_emotion=None if end == "unscorable" else current_emotion(turns),
            reason=reason,
            leaks=sum(1 for t in turns if t.leak),
        )
