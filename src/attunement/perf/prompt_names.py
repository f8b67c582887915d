"""Which prompt template a chat request was rendered from, read off the templates.

The simulated judge answers each judge prompt in the format that prompt asks
for, so it has to know which template produced the messages it receives.
Looking for a phrase copied out of a prompt file would break the day someone
rewords that file. Instead every template's *fixed opening* is derived from the
template itself (:func:`attunement.prompts.load_prompt`): its messages up to
the first placeholder. A message before that placeholder (a system prompt, as
a rule) must arrive whole and unchanged; the message that holds it must start
with the text in front of it. Rewording a prompt file rewords its opening with
it, and nothing here needs to change.

A request comes from the template whose opening it starts with; when several
match, the longest opening wins (one template's opening may extend another's).
Text a client adds at the end of the last message, such as the JSON schema it
writes into the prompt for a server without a JSON mode, does not disturb the
match. Two templates with the same opening cannot be told apart, nor can a
template that starts with a placeholder: :class:`PromptIndex` refuses both
when it is built, so an ambiguity shows up as an error, never as a wrong answer.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attunement.prompts import PromptTemplate, load_prompt


@dataclass(frozen=True)
class OpeningPart:
    """One message of an opening: ``text`` is the whole message or its start."""

    role: str
    text: str
    whole: bool


@dataclass(frozen=True)
class Opening:
    """The fixed start of the messages a template renders."""

    name: str
    parts: tuple[OpeningPart, ...]

    @property
    def size(self) -> int:
        """Characters it pins down (the longest matching opening wins)."""
        return sum(len(p.text) for p in self.parts)

    def matches(self, messages: Sequence[Mapping[str, Any]]) -> bool:
        if len(messages) < len(self.parts):
            return False
        for part, message in zip(self.parts, messages, strict=False):
            content = str(message.get("content") or "")
            if message.get("role") != part.role:
                return False
            if not (content == part.text if part.whole else content.startswith(part.text)):
                return False
        return True


def _literal_prefix(body: str) -> tuple[str, bool]:
    """The text of ``body`` before its first placeholder (``$$`` read as ``$``), and
    whether the body has no placeholder at all."""
    out, pos = [], 0
    for m in string.Template.pattern.finditer(body):
        out.append(body[pos : m.start()])
        if m.group("named") or m.group("braced"):
            return "".join(out), False
        out.append("$")  # an escaped (or stray) dollar renders as itself
        pos = m.end()
    out.append(body[pos:])
    return "".join(out), True


def opening_of(template: PromptTemplate) -> Opening:
    """The template's messages up to its first placeholder.

    Rendering strips each message, so the compared text is stripped too.

    >>> from attunement.prompts import parse_template
    >>> t = parse_template("t", "=== system ===\\nBe brief.\\n=== user ===\\nRate ${x} now")
    >>> [(p.role, p.text, p.whole) for p in opening_of(t).parts]
    [('system', 'Be brief.', True), ('user', 'Rate', False)]
    """
    parts = []
    for role, body in template.messages:
        text, whole = _literal_prefix(body)
        parts.append(OpeningPart(role, text.strip(), whole))
        if not whole:
            break
    return Opening(template.name, tuple(parts))


class PromptIndex:
    """Tells which of some templates rendered a list of chat messages."""

    def __init__(self, templates: Iterable[PromptTemplate]):
        self.openings = tuple(opening_of(t) for t in templates)
        seen: dict[tuple[OpeningPart, ...], str] = {}
        for o in self.openings:
            if not o.parts[0].text:
                raise ValueError(
                    f"prompt {o.name!r} starts with a placeholder: nothing fixed identifies it"
                )
            if o.parts in seen:
                raise ValueError(
                    f"prompts {seen[o.parts]!r} and {o.name!r} open alike: "
                    "a request cannot be traced to one of them"
                )
            seen[o.parts] = o.name

    @classmethod
    def of(cls, names: Iterable[str]) -> PromptIndex:
        """The index of the package's templates ``names``."""
        return cls(load_prompt(name) for name in names)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.openings)

    def identify(self, messages: Sequence[Mapping[str, Any]]) -> str | None:
        """The name of the template that rendered ``messages``, or None for none of them."""
        found = [o for o in self.openings if o.matches(messages)]
        return max(found, key=lambda o: o.size).name if found else None
