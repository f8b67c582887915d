"""The simulated user: two steps per turn, each read by strict rules and retried.

After every assistant reply the simulator model is asked twice:

1. **assess**: an inner analysis of the reply, as the user (what it says,
   whether it meets the hidden need, how it feels), ending in a ``Change:``
   line. The change moves the emotion (:mod:`attunement.dialogue.emotion`);
2. **speak**: the user's next message, in character and in the user's
   language, written knowing that reaction and the new emotion.

A :class:`UserSimulator` says how both prompts look and how their answers are
read; :class:`PersonaEmpSimulator` is attunement's own (prompts
``dialogue_user_role``, ``dialogue_user_assess``, ``dialogue_user_speak``),
and SAGE's lives in :mod:`attunement.benchmarks.sage`. :class:`UserModel`
binds a simulator to a chat model and runs the steps.

**Prefix caching.** Each prompt starts with what does not change during a
talk: the role and the user's whole record (one system block shared by both
steps, ``dialogue_user_role``), then that step's instructions; the
conversation, the reply and the emotion come last, in the user message. A
server with a prefix cache (vLLM, SGLang, llama.cpp) computes the profile
once per user and step, not once per turn.

**Untrusted text.** The assistant's replies are the policy's output: they are
shown fenced (:func:`attunement.render.fence`), and the change is parsed with
every text the simulator was shown as untrusted (:func:`reading.parse_change`),
so a reply cannot move the emotion by containing ``Change: +10``.

**JSON answers** (``SimulatorSettings.output = "json"``). A small model
often never writes the labelled format (SmolLM2-135M wrote no ``Change:``
line in any answer), so the talk would be unscorable. In JSON mode each step
asks for one object whose keys are the step's labels, with a schema generated
from the pydantic model that reads it (:func:`labelled_answer_model`): free
text bounded in length, the change one of the whole numbers -10..+10. The
object is turned back into the labelled text (:func:`labelled_text`) and read
by the very same rules as a text answer, copy detection included; an answer
that is not such an object (a server that ignored the schema) is read as text.

**Retries.** An answer that cannot be read is drawn again, with a fresh
sample number so a cache does not hand back the same answer, at most
``max_resamples`` times; then the step's outcome carries the reason and the
dialogue is marked unscorable. A model call that fails (server down,
deadline) raises: it is not a result, and the dialogue is resumed later.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, create_model

from attunement.dialogue.emotion import CHANGE_LIMIT, MAX_EMOTION, apply_change, level_of
from attunement.dialogue.reading import (
    ReadChange,
    ReadMessage,
    parse_change,
    read_message,
    read_sections,
)
from attunement.dialogue.records import Assessment, DialogueTurn, SimulatedUser, as_turns
from attunement.llm.base import ChatModel, Message
from attunement.prompts import load_prompt
from attunement.render import (
    fence,
    render_dialogue,
    render_memories,
    render_persona,
    render_situation,
    sections,
)
from attunement.textjson import last_json_object

ROLE_PROMPT = "dialogue_user_role"
ASSESS_PROMPT = "dialogue_user_assess"
SPEAK_PROMPT = "dialogue_user_speak"

#: the labelled parts of an assessment and of a message, in the order asked for
ASSESS_LABELS = ("Understood", "Need met", "Feeling", "Change")
SPEAK_LABELS = ("Plan", "Message")
#: the parts of an assessment shown back to the user when it writes its message
REACTION_LABELS = ("Need met", "Feeling")


class SimulatorSettings(BaseModel):
    """How the simulator model is sampled."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0.0, le=2.0, description="simulator sampling temperature")
    max_tokens: int = Field(1024, ge=16, description="token budget of one simulator answer")
    max_resamples: int = Field(2, ge=0, description="fresh draws after an unreadable answer")
    seed: int = 0
    output: Literal["text", "json"] = Field(
        "text",
        description="text: labelled parts; json: one schema-constrained object per step "
        "(for small models), read by the same rules",
    )


#: the longest free-text part of a JSON answer (a bound keeps small models from
#: writing until max_tokens and leaving the object open)
JSON_TEXT_CHARS = 400


def _key(label: str) -> str:
    """A label as a JSON key: ``Need met`` -> ``need_met``."""
    return re.sub(r"\W+", "_", label.strip()).strip("_").lower()


@cache
def labelled_answer_model(labels: tuple[str, ...], number: str | None = None) -> type[BaseModel]:
    """The pydantic model of a JSON answer with one key per label; ``number``
    names the label that holds the change (a whole number of -10..+10 in the
    schema, any whole number accepted when read: the clamp applies later)."""
    change = Annotated[
        int,
        WithJsonSchema({"type": "integer", "enum": list(range(-CHANGE_LIMIT, CHANGE_LIMIT + 1))}),
    ]
    text = Annotated[str, WithJsonSchema({"type": "string", "maxLength": JSON_TEXT_CHARS})]
    fields: dict[str, Any] = {
        _key(label): (change if label == number else text, ...) for label in labels
    }
    return create_model(
        "SimulatorAnswer",
        __config__=ConfigDict(extra="ignore"),
        **fields,
    )


def answer_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The request schema of a flat answer model: every key required, no others."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    for node in schema.get("properties", {}).values():
        node.pop("title", None)
    return {**schema, "required": list(schema["properties"]), "additionalProperties": False}


def labelled_text(text: str, labels: Sequence[str], number: str | None = None) -> str:
    """A JSON answer rendered as the labelled text the readers take (``Label: value``
    lines in the labels' order); ``text`` itself when it holds no such object.

    >>> labelled_text('{"feeling": "calmer", "change": 3}', ["Feeling", "Change"], "Change")
    'Feeling: calmer\\nChange: +3'
    >>> labelled_text("Feeling: calm", ["Feeling", "Change"], "Change")
    'Feeling: calm'
    """
    model = labelled_answer_model(tuple(labels), number)
    found = last_json_object(text)
    if found is None:
        return text
    try:
        answer = model.model_validate(found.value)
    except ValidationError:
        return text
    lines = []
    for label in labels:
        value = getattr(answer, _key(label))
        shown = f"{value:+d}" if label == number else " ".join(str(value).split())
        lines.append(f"{label}: {shown}")
    return "\n".join(lines)


def untrusted_of(user: SimulatedUser, turns: Sequence[DialogueTurn]) -> tuple[str, ...]:
    """Every text the simulator is shown as data: the talk and the user's record."""
    ex = user.example
    texts = [
        *(t.text for t in turns),
        *(m.value for m in ex.memories),
        ex.persona.profile if ex.persona else "",
        ex.situation.description if ex.situation else "",
        *user.profile.values(),
    ]
    return tuple(t for t in texts if t.strip())


class UserSimulator(ABC):
    """How a kind of simulated user is prompted and how its answers are read.

    ``assess_labels`` / ``speak_labels`` are the labelled parts of each step's
    answer and ``change_label`` the one holding the change: JSON mode asks for
    an object of those keys (:func:`labelled_answer_model`).
    """

    kind: str
    assess_labels: tuple[str, ...] = ()
    speak_labels: tuple[str, ...] = ()
    change_label: str = "Change"

    def check_user(self, user: SimulatedUser) -> None:
        """Raise ``ValueError`` when this simulator cannot play ``user``."""

    @abstractmethod
    def assess_messages(
        self, user: SimulatedUser, turns: Sequence[DialogueTurn], emotion: int
    ) -> list[Message]:
        """Messages asking for the inner analysis of ``turns[-1]`` (an assistant reply)."""

    @abstractmethod
    def read_assessment(self, text: str, *, untrusted: Sequence[str]) -> Reading:
        """The change (and the labelled parts) of an assessment answer."""

    @abstractmethod
    def speak_messages(
        self,
        user: SimulatedUser,
        turns: Sequence[DialogueTurn],
        emotion: int,
        assessment: Assessment,
    ) -> list[Message]:
        """Messages asking for the user's next message after ``assessment``."""

    @abstractmethod
    def read_speech(self, text: str) -> ReadMessage:
        """The message (and the plan before it) of a speak answer."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Prompt versions and options, for manifests."""


@dataclass(frozen=True)
class Reading:
    """An assessment answer as read: the change and the labelled parts."""

    change: ReadChange
    sections: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.change.ok

    @property
    def reason(self) -> str | None:
        return self.change.reason


class PersonaEmpSimulator(UserSimulator):
    """attunement's simulator: a PersonaEmp user with persona, memories, situation
    and hidden need, in that user's language."""

    kind = "personaemp"
    assess_labels = ASSESS_LABELS
    speak_labels = SPEAK_LABELS

    def check_user(self, user: SimulatedUser) -> None:
        if user.example.persona is None and not user.example.memories:
            raise ValueError(
                f"user {user.user_id!r} has neither a persona nor memories: "
                "the simulator would have nobody to play"
            )

    def role(self, user: SimulatedUser) -> str:
        """The stable head of both prompts: the role and the user's whole record."""
        ex = user.example
        profile = sections(
            [
                ("Who you are", render_persona(ex.persona)),
                ("What you remember from your own life", render_memories(ex.memories)),
                ("Your situation now", render_situation(ex.situation)),
                ("What you really want from this talk (never say it outright)", user.hidden_need),
            ]
        )
        [message] = load_prompt(ROLE_PROMPT).render(profile=profile)
        return message["content"]

    def _messages(self, user: SimulatedUser, prompt: str, **values: object) -> list[Message]:
        system, question = load_prompt(prompt).render(**values)
        head = f"{self.role(user)}\n\n{system['content']}"
        return [{"role": "system", "content": head}, question]

    def assess_messages(
        self, user: SimulatedUser, turns: Sequence[DialogueTurn], emotion: int
    ) -> list[Message]:
        return self._messages(
            user,
            ASSESS_PROMPT,
            dialogue=render_dialogue(as_turns(turns[:-1])),
            reply=fence("reply", turns[-1].text),
            emotion=emotion,
            max_emotion=MAX_EMOTION,
            change_limit=CHANGE_LIMIT,
        )

    def read_assessment(self, text: str, *, untrusted: Sequence[str]) -> Reading:
        change = parse_change(text, untrusted=untrusted)
        return Reading(change, read_sections(text, ASSESS_LABELS))

    def speak_messages(
        self,
        user: SimulatedUser,
        turns: Sequence[DialogueTurn],
        emotion: int,
        assessment: Assessment,
    ) -> list[Message]:
        parts = [assessment.sections[k] for k in REACTION_LABELS if assessment.sections.get(k)]
        reaction = "\n".join(parts) or assessment.analysis
        return self._messages(
            user,
            SPEAK_PROMPT,
            dialogue=render_dialogue(as_turns(turns)),
            reaction=fence("analysis", reaction),
            emotion=emotion,
            max_emotion=MAX_EMOTION,
            level=level_of(emotion),
            language=user.language,
        )

    def read_speech(self, text: str) -> ReadMessage:
        return read_message(text, label="Message", labels=SPEAK_LABELS, plan="Plan")

    def settings(self) -> dict[str, Any]:
        names = (ROLE_PROMPT, ASSESS_PROMPT, SPEAK_PROMPT)
        return {"kind": self.kind, "prompts": {n: load_prompt(n).version for n in names}}


Outcome = TypeVar("Outcome", Reading, ReadMessage)


@dataclass(frozen=True)
class Asked(Generic[Outcome]):
    """The last answer of a step, how many draws it took and why earlier ones failed."""

    outcome: Outcome
    raw: str
    attempts: int
    refused: list[str]


@dataclass(frozen=True)
class Speech:
    """The user's next message as the simulator wrote it, or why it could not be read."""

    message: ReadMessage
    raw: str
    attempts: int
    refused: list[str]

    @property
    def ok(self) -> bool:
        return self.message.ok


class UserModel:
    """A simulator played by a chat model: the two steps, with their retries."""

    def __init__(
        self,
        model: ChatModel,
        simulator: UserSimulator,
        settings: SimulatorSettings | None = None,
    ):
        self.model = model
        self.simulator = simulator
        self.settings = settings or SimulatorSettings()

    async def _ask(
        self,
        messages: list[Message],
        read: Callable[[str], Outcome],
        sample_index: int,
        labels: tuple[str, ...],
    ) -> Asked[Outcome]:
        s = self.settings
        first = sample_index * (s.max_resamples + 1)
        refused: list[str] = []
        number = self.simulator.change_label if self.simulator.change_label in labels else None
        schema = None
        if s.output == "json" and labels:
            schema = answer_schema(labelled_answer_model(labels, number))
        for attempt in range(s.max_resamples + 1):
            [completion] = await self.model.complete(
                messages,
                n=1,
                temperature=s.temperature,
                max_tokens=s.max_tokens,
                seed=s.seed,
                sample_start=first + attempt,
                json_schema=schema,
            )
            text = completion.text
            if schema is not None:
                text = labelled_text(text, labels, number)
            outcome = read(text)
            if outcome.ok:
                return Asked(outcome, text, attempt + 1, refused)
            refused.append(outcome.reason or "unreadable")
        return Asked(outcome, text, s.max_resamples + 1, refused[:-1])

    async def assess(
        self,
        user: SimulatedUser,
        turns: Sequence[DialogueTurn],
        emotion: int,
        *,
        sample_index: int = 0,
    ) -> Assessment:
        """The simulator's reaction to ``turns[-1]``; unreadable after every draw:
        an assessment without a change, with the reason."""
        untrusted = untrusted_of(user, turns)
        asked = await self._ask(
            self.simulator.assess_messages(user, turns, emotion),
            lambda text: self.simulator.read_assessment(text, untrusted=untrusted),
            sample_index,
            self.simulator.assess_labels,
        )
        reading = asked.outcome
        common = {
            "analysis": asked.raw.strip(),
            "sections": reading.sections,
            "attempts": asked.attempts,
            "refused": asked.refused,
        }
        change = reading.change.change
        if change is None:
            return Assessment(change=None, reason=reading.reason, **common)
        after = apply_change(emotion, change)
        return Assessment(
            change=change,
            stated=reading.change.stated,
            emotion=after,
            level=level_of(after),
            **common,
        )

    async def speak(
        self,
        user: SimulatedUser,
        turns: Sequence[DialogueTurn],
        emotion: int,
        assessment: Assessment,
        *,
        sample_index: int = 0,
    ) -> Speech:
        """The user's next message after ``assessment`` (or why none could be read)."""
        asked = await self._ask(
            self.simulator.speak_messages(user, turns, emotion, assessment),
            self.simulator.read_speech,
            sample_index,
            self.simulator.speak_labels,
        )
        return Speech(asked.outcome, asked.raw, asked.attempts, asked.refused)

    def settings_record(self) -> dict[str, Any]:
        return {
            "model": self.model.name,
            "simulator": self.simulator.settings(),
            **self.settings.model_dump(),
        }
