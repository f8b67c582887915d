"""Every prompt attunement sends, as text files in this folder.

A prompt file holds one or more messages, each introduced by a header line
``=== system ===``, ``=== user ===`` or ``=== assistant ===``. Placeholders are
``${name}``; rendering fails if a placeholder has no value, so a missing field
never reaches a model as a literal ``${...}``. ``$$`` is a literal dollar sign.

Each template has a ``version``: the first 12 hex digits of the SHA-256 of its
file, recorded in every output's manifest so a result can be traced to the
exact prompt that produced it.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from functools import cache
from importlib import resources

from attunement.llm.base import Message

_HEADER = re.compile(r"^=== (system|user|assistant) ===[ \t]*$", re.MULTILINE)


class PromptError(ValueError):
    """A template that cannot be loaded or rendered."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    messages: tuple[tuple[str, str], ...]
    version: str

    @property
    def placeholders(self) -> set[str]:
        names: set[str] = set()
        for _, body in self.messages:
            for m in string.Template.pattern.finditer(body):
                name = m.group("named") or m.group("braced")
                if name:
                    names.add(name)
        return names

    def render(self, **values: object) -> list[Message]:
        """Fill every placeholder; raise :class:`PromptError` naming any missing one."""
        missing = sorted(self.placeholders - set(values))
        if missing:
            raise PromptError(f"prompt {self.name!r} needs values for: {', '.join(missing)}")
        text_values = {k: "" if v is None else str(v) for k, v in values.items()}
        return [
            {"role": role, "content": string.Template(body).substitute(text_values).strip()}
            for role, body in self.messages
        ]


def parse_template(name: str, text: str) -> PromptTemplate:
    parts = _HEADER.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise PromptError(
            f"prompt {name!r} must start with a '=== system ===' or '=== user ===' header line"
        )
    messages = tuple((parts[i], parts[i + 1].strip("\n")) for i in range(1, len(parts), 2))
    version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return PromptTemplate(name=name, messages=messages, version=version)


@cache
def load_prompt(name: str) -> PromptTemplate:
    """Load ``prompts/<name>.txt`` from the package."""
    try:
        text = resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptError(f"no prompt template named {name!r}") from None
    return parse_template(name, text)


def list_prompts() -> list[str]:
    return sorted(
        p.name[:-4] for p in resources.files(__package__).iterdir() if p.name.endswith(".txt")
    )
