"""Scripted policies and simulators for the dialogue tests.

The policy writes the change it "deserves" into its reply as ``<<+N>>`` (by
turn, from a list), and the scripted simulator reads it from the fenced reply
in its prompt, so every emotion in a test can be computed by hand. Requests
are routed by prompt: a simulator request is an assessment when its system
message holds the first line of the ``dialogue_user_assess`` prompt file, and
a message request when it holds that of ``dialogue_user_speak``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from attunement.dialogue import SimulatedUser, user_from_example
from attunement.dialogue.simulator import ASSESS_PROMPT, SPEAK_PROMPT
from attunement.llm import ScriptedChatModel
from attunement.llm.base import ChatRequest
from attunement.prompts import load_prompt
from attunement.records import Example, MemoryItem, Persona, Situation

ASSESS_HEAD = load_prompt(ASSESS_PROMPT).messages[0][1].strip().splitlines()[0]
SPEAK_HEAD = load_prompt(SPEAK_PROMPT).messages[0][1].strip().splitlines()[0]
_TAG = re.compile(r"<<([+-]\d+)>>")


def step_of(request: ChatRequest) -> str:
    """``assess``, ``speak`` or ``policy``, by which prompt the request was built from."""
    system = request.messages[0][1]
    if ASSESS_HEAD in system:
        return "assess"
    if SPEAK_HEAD in system:
        return "speak"
    return "policy"


def example(uid: str = "u1", *, memories: Sequence[str] = ("likes rowing",)) -> Example:
    return Example(
        example_id=uid,
        user_id=uid,
        query=f"Opening message of {uid}: my rowing club dropped me.",
        category="ES",
        situation=Situation(category="ES", description=f"{uid} was dropped from a crew."),
        persona=Persona(profile=f"Persona of {uid}, a shy student."),
        memories=[
            MemoryItem(memory_id=f"{uid}-m{i}", value=value) for i, value in enumerate(memories)
        ],
    )


def user(uid: str = "u1", **kwargs) -> SimulatedUser:
    return user_from_example(example(uid, **kwargs))


def user_turns(request: ChatRequest) -> int:
    return sum(1 for role, _ in request.messages if role == "user")


def policy(changes: Sequence[int], *, name: str = "policy", delay: float = 0.0):
    """A policy whose k-th reply (k from 1) carries ``<<changes[k-1]>>``; the turn is
    read from the request (the earlier turns come as chat turns)."""

    def answer(request: ChatRequest, index: int) -> str:
        k = user_turns(request)
        change = changes[min(k, len(changes)) - 1]
        return f"# Analysis\nthinking {k}\n# Response\nReply {k} <<{change:+d}>>"

    return ScriptedChatModel(answer, name=name, delay=delay)


def assessment(change: int | str, *, feeling: str = "fine") -> str:
    return f"Understood: a reply\nNeed met: partly\nFeeling: {feeling}\nChange: {change}"


def latest_reply(request: ChatRequest) -> str:
    text = request.messages[-1][1]
    return text[text.rindex("<reply>") : text.rindex("</reply>") + len("</reply>")]


def simulator(
    *,
    assess: Callable[[ChatRequest, int], str] | None = None,
    speak: Callable[[ChatRequest, int], str] | None = None,
    name: str = "simulator",
    delay: float = 0.0,
) -> ScriptedChatModel:
    """A simulator that applies the change tagged in the reply and answers with
    ``message N``; ``assess`` / ``speak`` replace either step."""

    def default_assess(request: ChatRequest, index: int) -> str:
        found = _TAG.search(latest_reply(request))
        return assessment(found.group(1) if found else "+0")

    def default_speak(request: ChatRequest, index: int) -> str:
        n = request.messages[-1][1].count("\nUser: ") + 1
        return f"Plan: keep going\nMessage: message {n}"

    def answer(request: ChatRequest, index: int) -> str:
        step = step_of(request)
        if step == "assess":
            return (assess or default_assess)(request, index)
        if step == "speak":
            return (speak or default_speak)(request, index)
        raise AssertionError("the simulator got a policy request")

    return ScriptedChatModel(answer, name=name, delay=delay)
