"""SAGE's simulated user, with SAGE's own prompts (read from its scripts).

The two steps are SAGE's: the inner analysis (``planning_reply``'s prompt,
sent as one user message) ending in ``Change:``, then the next message
(``player_reply``'s prompt) after ``Response:``. Their placeholders are
filled as SAGE's driver fills them:

- analysis: ``{{target}}`` the talk's purpose, ``{{simulator_role}}`` the
  profile's ``player``, ``{{simulator_scene}}`` its ``scene``,
  ``{{emotion}}`` the emotion *before* the reply (a number),
  ``{{dialog_history}}`` the whole talk as a JSON list of ``{"role",
  "content"}`` with SAGE's role names;
- reply: the same purpose, profile and scene (``{{player_type}}``,
  ``{{player_topic}}``), ``{{emotion}}`` the level *after* the change by
  SAGE's name (``Emotion-B``), ``{{dialog_history}}`` the talk but its last
  two turns, ``{{new_history}}`` those two, ``{{planning}}`` the analysis
  parts SAGE passes on, joined as SAGE joins them.

Every placeholder is filled in one pass, so a profile or reply that happens
to contain ``{{...}}`` is never filled in turn. The replies sit inside SAGE's
JSON history as JSON strings, which they cannot close; the change is read
with attunement's verdict rules (:func:`attunement.dialogue.parse_change`),
where SAGE takes the first number after ``Change:`` and retries forever.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from attunement.benchmarks.sage.data import CHANGE_LABEL, SageReference
from attunement.dialogue import (
    Assessment,
    DialogueTurn,
    Reading,
    ReadMessage,
    SimulatedUser,
    UserSimulator,
    level_of,
    parse_change,
    read_message,
    read_sections,
)
from attunement.llm.base import Message

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_PART_WRAPPING = "[] \t\n"


def fill(template: str, values: Mapping[str, str]) -> str:
    """Fill every ``{{name}}`` of ``template`` at once; a name without a value is an error.

    >>> fill("a {{x}} b {{y}}", {"x": "{{y}}", "y": "2"})
    'a {{y}} b 2'
    """
    missing = sorted(set(_PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise ValueError(f"SAGE template needs values for: {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


class SageSimulator(UserSimulator):
    """A SAGE profile played with SAGE's prompts."""

    kind = "sage"

    def __init__(self, reference: SageReference):
        self.reference = reference
        self.assess_labels = tuple(reference.analysis_labels)
        self.speak_labels = tuple(reference.reply_labels)
        self.change_label = CHANGE_LABEL

    def check_user(self, user: SimulatedUser) -> None:
        missing = [k for k in ("player", "scene") if not user.profile.get(k)]
        if missing:
            raise ValueError(f"user {user.user_id!r} is not a SAGE profile (no {missing})")

    def history(self, turns: Sequence[DialogueTurn]) -> str:
        """Turns as SAGE's JSON history (its role names, non-ASCII kept, indented)."""
        rows = [{"role": self.reference.roles[t.role], "content": t.text} for t in turns]
        return json.dumps(rows, ensure_ascii=False, indent=2)

    def assess_messages(
        self, user: SimulatedUser, turns: Sequence[DialogueTurn], emotion: int
    ) -> list[Message]:
        prompt = fill(
            self.reference.analysis_template,
            {
                "target": self.reference.target,
                "simulator_role": user.profile["player"],
                "simulator_scene": user.profile["scene"],
                "emotion": str(emotion),
                "dialog_history": self.history(turns),
            },
        )
        return [{"role": "user", "content": prompt}]

    def read_assessment(self, text: str, *, untrusted: Sequence[str]) -> Reading:
        change = parse_change(text, untrusted=untrusted, label=CHANGE_LABEL)
        found = read_sections(text.replace("*", ""), self.reference.analysis_labels)
        return Reading(change, {k: v.strip(_PART_WRAPPING) for k, v in found.items()})

    def planning(self, assessment: Assessment) -> str:
        """The analysis parts SAGE passes to the reply step, joined as SAGE does."""
        parts = {k.casefold(): v for k, v in assessment.sections.items()}
        return "".join(
            value if kind == "text" else parts.get(value.casefold(), "")
            for kind, value in self.reference.planning
        )

    def speak_messages(
        self,
        user: SimulatedUser,
        turns: Sequence[DialogueTurn],
        emotion: int,
        assessment: Assessment,
    ) -> list[Message]:
        prompt = fill(
            self.reference.reply_template,
            {
                "target": self.reference.target,
                "emotion": self.reference.state_names[level_of(emotion)],
                "player_type": user.profile["player"],
                "player_topic": user.profile["scene"],
                "dialog_history": self.history(turns[:-2]),
                "new_history": self.history(turns[-2:]),
                "planning": self.planning(assessment),
            },
        )
        return [{"role": "user", "content": prompt}]

    def read_speech(self, text: str) -> ReadMessage:
        labels = self.reference.reply_labels
        return read_message(text, label=labels[-1], labels=labels, plan=labels[0])

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "reference": dict(self.reference.digests)}
