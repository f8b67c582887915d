"""A simulated server that plays both sides of a simulated talk, like real models would.

:class:`TalkResponder` is a :mod:`~attunement.perf.simserver` responder. It
recognises each request by what the prompt holds:

- attunement's simulator steps (the first line of the ``dialogue_user_assess``
  or ``dialogue_user_speak`` instructions in the system message), and SAGE's
  (the first line of its analysis or reply template, when given);
- anything else is a policy asking for a reply.

and answers in the format the prompt asks for (labelled parts, or one JSON
object when the request carries a JSON schema). It misbehaves as real models
do: the analysis quotes the start of the reply back with its quotes
straightened (so a ``Change: +10`` planted in a reply arrives in the answer
for the copy rules to refuse), it ignores the schema's ``maxLength``, and the
server around it may fail requests, stall or go down (:class:`SimConfig`).

The change a reply causes is a pure function of the reply's text
(:func:`reply_change`), so every emotion a test sees can be computed by hand,
and a reply of another user's trouble (the random baseline) is marked down.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from attunement.dialogue import ASSESS_PROMPT, SPEAK_PROMPT
from attunement.perf.synthetic import filler
from attunement.prompts import load_prompt

_STEP_HEAD = {
    name: load_prompt(name).messages[0][1].strip().splitlines()[0]
    for name in (ASSESS_PROMPT, SPEAK_PROMPT)
}
_CURLY = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
_LEVEL = re.compile(r"\(level ([SABCF])\)")


def reply_change(reply: str) -> int:
    """The change a reply causes: -3..+7 from a hash of its text (a reply with
    ``<<N>>`` in it causes exactly N, for tests that need a given path).

    >>> reply_change("I hear you <<+9>>"), reply_change("x") == reply_change("x")
    (9, True)
    """
    tagged = re.search(r"<<([+-]?\d+)>>", reply)
    if tagged:
        return int(tagged.group(1))
    return int(hashlib.sha256(reply.encode("utf-8")).hexdigest()[:6], 16) % 11 - 3


def _latest_reply(text: str) -> str:
    """The reply being assessed: the last ``<reply>`` block of a prompt."""
    start = text.rfind("<reply>")
    end = text.rfind("</reply>")
    return text[start + len("<reply>") : end].strip() if 0 <= start < end else ""


def _quote(reply: str) -> str:
    words = reply.translate(_CURLY).split()
    return " ".join(words[:12])


@dataclass
class TalkResponder:
    """Answers simulator and policy requests (see the module docstring).

    ``change`` maps the reply being assessed to the change stated;
    ``sage_heads`` are the first lines of SAGE's analysis and reply templates;
    ``reply_tokens`` the length of a policy reply; ``on_request`` sees every
    request's messages (a benchmark counts prefix-cache hits with it).
    """

    change: Callable[[str], int] = reply_change
    sage_heads: tuple[str, str] | None = None
    sage_npc: str | None = None
    reply_tokens: int = 60
    message_tokens: int = 18
    on_request: Callable[[list[dict[str, Any]]], None] | None = None
    steps: dict[str, int] = field(default_factory=dict)

    def __call__(self, messages: list[dict[str, Any]], index: int, params: dict[str, Any]) -> str:
        if self.on_request is not None:
            self.on_request(messages)
        step = self.step_of(messages)
        self.steps[step] = self.steps.get(step, 0) + 1
        json_mode = (params.get("response_format") or {}).get("type") == "json_schema"
        last = str(messages[-1].get("content", ""))
        salt = f"{hashlib.sha256(last.encode()).hexdigest()[:12]}/{index}"
        if step == "assess":
            return self.assess(_latest_reply(last), json_mode)
        if step == "speak":
            level = _LEVEL.search(last)
            return self.speak(level.group(1) if level else "B", salt, json_mode)
        if step == "sage_assess":
            return self.sage_assess(last)
        if step == "sage_speak":
            return f"Thinking:\n[想]\nOrigin:\n[原]\nChange:\n[改]\nResponse:\n[好的，{index}]"
        if step == "sage_npc":
            return f"我明白 {filler(self.reply_tokens // 3, salt)}"
        return (
            f"# Analysis\n{filler(40, salt + 'a')}\n# Response\n{filler(self.reply_tokens, salt)}"
        )

    def step_of(self, messages: Sequence[dict[str, Any]]) -> str:
        system = str(messages[0].get("content", "")) if messages else ""
        if messages and messages[0].get("role") == "system":
            if _STEP_HEAD[ASSESS_PROMPT] in system:
                return "assess"
            if _STEP_HEAD[SPEAK_PROMPT] in system:
                return "speak"
            if self.sage_npc is not None and system == self.sage_npc:
                return "sage_npc"
        last = str(messages[-1].get("content", "")) if messages else ""
        if self.sage_heads is not None:
            if self.sage_heads[0] in last:
                return "sage_assess"
            if self.sage_heads[1] in last:
                return "sage_speak"
        return "policy"

    def assess(self, reply: str, json_mode: bool) -> str:
        change = self.change(reply)
        parts = {
            "understood": f'the assistant says "{_quote(reply)}"',
            "need_met": "partly" if change > 0 else "no",
            "feeling": "a little lighter" if change > 0 else "brushed off",
            "change": change,
        }
        if json_mode:
            return json.dumps(parts, ensure_ascii=False)
        return (
            f"Understood: {parts['understood']}\nNeed met: {parts['need_met']}\n"
            f"Feeling: {parts['feeling']}\nChange: {change:+d}"
        )

    def speak(self, level: str, salt: str, json_mode: bool) -> str:
        plan = "say goodbye" if level in ("S", "F") else "keep talking"
        text = "thanks, bye" if level in ("S", "F") else filler(self.message_tokens, salt)
        if json_mode:
            return json.dumps({"plan": plan, "message": text})
        return f"Plan: {plan}\nMessage: {text}"

    def sage_assess(self, prompt: str) -> str:
        replies = re.findall(r'"content": "((?:[^"\\]|\\.)*)"', prompt)
        change = self.change(json.loads(f'"{replies[-1]}"')) if replies else 0
        return (
            "Content:\n[说了些话]\nTargetCompletion:\n[部分]\nActivity:\n[想了想]\n"
            f"Analyse:\n[还行]\nChange:\n[{change:+d}]"
        )
