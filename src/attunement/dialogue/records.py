"""What a simulated conversation is made of, as records that serialise to JSONL.

A :class:`SimulatedUser` is everything the simulator knows about the person it
plays (for a PersonaEmp user: the example, so persona, all memories, the
situation and the opening query; for a SAGE profile: SAGE's own profile text)
plus the hidden need it must never state. Its ``example`` is also what the
assistant side and the judges are given, so one record serves the whole run.

A :class:`Dialogue` is a finished talk: its :class:`DialogueTurn` list, how it
ended and the final emotion. Each assistant turn carries the simulator's
:class:`Assessment` of it (the inner analysis, the stated change, the emotion
after it), each user turn the emotion it was written with, so the emotion
trajectory and the reasons behind it can be read off the turns.

Unfinished talks live in a journal of :class:`TurnLine` records (one per
finished turn), from which a killed run resumes; see
:mod:`attunement.dialogue.converse`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from attunement.dialogue.emotion import Level
from attunement.records import Example, Record, Turn

#: how a talk ended: the user reached S or F, said a farewell word, the turn cap
#: was reached, or the simulator's answer could not be read after its retries
EndReason = Literal["success", "failure", "farewell", "turn_cap", "unscorable"]
END_REASONS: tuple[str, ...] = ("success", "failure", "farewell", "turn_cap", "unscorable")


class SimulatedUser(Record):
    """A person a simulator plays, and what the assistant side may be shown.

    ``opening`` is the user's first message (a PersonaEmp query, a SAGE
    ``first_talk``); ``hidden_need`` is what the user wants from the talk and
    never says outright (a message that repeats it is flagged as a leak).
    ``profile`` holds simulator-only text of sources other than PersonaEmp
    (SAGE: ``player``, ``scene``, ``character``, ``task``); ``farewells`` are
    words that end the talk when the user says them (SAGE's goodbye words).
    """

    user_id: str = Field(min_length=1)
    source: str = "personaemp"
    language: str = "en"
    opening: str = Field(min_length=1)
    hidden_need: str = Field(min_length=1)
    example: Example
    profile: dict[str, str] = Field(default_factory=dict)
    farewells: list[str] = Field(default_factory=list)


class Assessment(Record):
    """The simulator's inner analysis of one assistant reply.

    ``stated`` is the change as the simulator wrote it, ``change`` the one
    applied (clamped to +-10), ``emotion`` the emotion after it. When no
    attempt could be read, ``change`` and ``emotion`` are ``None`` and
    ``reason`` says why; ``refused`` lists why each earlier attempt was
    refused (unreadable, a range, a verdict copied from the reply).
    """

    change: int | None
    stated: int | None = None
    emotion: int | None = None
    level: Level | None = None
    analysis: str = ""
    sections: dict[str, str] = Field(default_factory=dict)
    attempts: int = 1
    refused: list[str] = Field(default_factory=list)
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.change is not None

    @model_validator(mode="after")
    def _consistent(self) -> Assessment:
        if self.ok and (self.emotion is None or self.level is None):
            raise ValueError("a readable assessment needs the emotion and level after it")
        if not self.ok and self.reason is None:
            raise ValueError("an unreadable assessment needs a reason")
        return self


class DialogueTurn(Record):
    """One turn of a talk.

    A user turn has the ``emotion`` (and ``level``) the user wrote it with and
    ``reasoning``, the simulator's plan before the message; ``leak`` marks a
    message that gave the hidden need away. An assistant turn has the
    policy's ``reasoning`` (its ``# Analysis``), the memory items it was shown
    (``memory_ids``; ``None`` when the assistant side shows no memory list) and
    the simulator's ``assessment``, with the ``emotion`` after it (``None``
    when the reply was not assessed: SAGE leaves the last reply unassessed).
    ``raw`` is the model's whole answer.
    """

    index: int = Field(ge=0)
    role: Literal["user", "assistant"]
    text: str
    emotion: int | None = None
    level: Level | None = None
    reasoning: str = ""
    raw: str = ""
    leak: bool = False
    memory_ids: list[str] | None = None
    assessment: Assessment | None = None


def as_turns(turns: Sequence[DialogueTurn]) -> list[Turn]:
    """Dialogue turns as the plain ``Turn`` records every renderer and judge takes."""
    return [Turn(role=t.role, text=t.text) for t in turns]


class TurnLine(Record):
    """One journal line: a finished turn of a (maybe unfinished) dialogue."""

    dialogue_id: str
    user_id: str
    sample_index: int = 0
    turn: DialogueTurn


class Dialogue(Record):
    """A finished talk between a policy and a simulated user.

    ``final_emotion`` is the emotion after the last assessed reply (SAGE's
    score), ``None`` when the talk is unscorable (``reason`` then says why).
    ``leaks`` counts user messages that gave the hidden need away.
    """

    dialogue_id: str
    user_id: str
    sample_index: int = 0
    source: str = "personaemp"
    policy: str
    simulator: str
    memory_mode: str | None = None
    turns: list[DialogueTurn]
    end: EndReason
    final_emotion: int | None
    reason: str | None = None
    leaks: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> Dialogue:
        if [t.index for t in self.turns] != list(range(len(self.turns))):
            raise ValueError("turn indices must run 0, 1, 2, ... without gaps")
        if (self.end == "unscorable") != (self.final_emotion is None):
            raise ValueError("final_emotion is None exactly when the dialogue is unscorable")
        if self.end == "unscorable" and not self.reason:
            raise ValueError("an unscorable dialogue needs a reason")
        return self
