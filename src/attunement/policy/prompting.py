"""The policy's prompt and the parser of its replies.

The prompt (``prompts/policy_reply.txt``) is a system message asking for a
caring, personal reply and a user turn holding what is known about the user
(persona, memories or a summary of them, situation), the user's message, and
the required output format::

    # Analysis
    ...what the user feels and needs, which memories matter...

    # Response
    ...the reply itself...

Every piece of user context is rendered by :mod:`attunement.render` (the
memory summary, written by a model, is fenced as data), and a piece that is
missing leaves no heading behind. By default the prompt holds memory and query
only (the paper's task); the persona and situation are shown when given.

When the example is one turn of a longer conversation (``Example.dialogue``),
the earlier turns come as real chat turns between the system message and the
final user message, which holds the context and the user's latest message.

:func:`parse_reply` splits a completion back into analysis and response. It
also accepts the ``<think>...</think>`` replies of reasoning models, and it
never drops a reply: when the format was not followed the whole text becomes
the response, the analysis stays empty and ``format_ok`` is false with a
``reason``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from attunement.llm.base import Message
from attunement.prompts import load_prompt
from attunement.records import Example, MemoryItem, Persona, Situation
from attunement.render import fence, render_memories, render_persona, render_situation, sections

REPLY_PROMPT = "policy_reply"
SUMMARY_PROMPT = "policy_summary"

MEMORY_HEADING = "What you remember about the user"
SUMMARY_HEADING = "What you know about the user (summarised from past conversations)"


def reply_prompt_version() -> str:
    """Version (file hash) of the reply prompt, for manifests."""
    return load_prompt(REPLY_PROMPT).version


def prompt_versions() -> dict[str, str]:
    """Versions of every policy prompt, keyed by prompt name."""
    return {name: load_prompt(name).version for name in (REPLY_PROMPT, SUMMARY_PROMPT)}


def _chosen(given: Persona | Situation | bool | None, own: Persona | Situation | None):
    """``True`` means the example's own, ``False``/``None`` nothing, an object itself."""
    if given is True:
        return own
    if given is False:
        return None
    return given


def render_reply_context(
    example: Example,
    memories: Sequence[MemoryItem] | None,
    *,
    summary: str | None = None,
    persona: Persona | bool | None = None,
    situation: Situation | bool | None = None,
) -> str:
    """The user-context sections of the reply prompt (empty sections are left out).

    ``memories=None`` means the example's own memories; an empty sequence means
    none. A ``summary`` is shown in place of (or, if both are given, after) the
    memory list. ``persona`` and ``situation`` are shown when given (``True``:
    the example's own).
    """
    mem = example.memories if memories is None else memories
    shown_persona = _chosen(persona, example.persona)
    shown_situation = _chosen(situation, example.situation)
    return sections(
        [
            ("User profile", render_persona(shown_persona)),
            (MEMORY_HEADING, render_memories(mem)),
            (SUMMARY_HEADING, fence("memory_summary", summary) if summary else ""),
            ("Current situation", render_situation(shown_situation)),
        ]
    )


def render_reply_messages(
    example: Example,
    memories: Sequence[MemoryItem] | None,
    *,
    summary: str | None = None,
    persona: Persona | bool | None = None,
    situation: Situation | bool | None = None,
) -> list[Message]:
    """System and user messages asking the policy to answer ``example``.

    ``memories`` are the memory items the policy may see (``None``: the
    example's own; ``[]``: none); ``summary`` is a memory summary (the
    "Memory" baseline). ``persona`` and ``situation`` are left out unless
    given (PereGRM's task: memory and query only); pass ``True`` for the
    example's own, or another user's in a mismatch ablation. Earlier turns of
    the conversation (``example.dialogue``) come before the final user message.
    """
    context = render_reply_context(
        example, memories, summary=summary, persona=persona, situation=situation
    )
    messages = load_prompt(REPLY_PROMPT).render(context=context, query=example.query.strip())
    if not example.dialogue:
        return messages
    turns: list[Message] = [{"role": t.role, "content": t.text} for t in example.dialogue]
    return [messages[0], *turns, *messages[1:]]


def render_summary_messages(
    memories: Sequence[MemoryItem], *, max_points: int = 6
) -> list[Message]:
    """Messages asking a model to describe a user from their memory items."""
    if not memories:
        raise ValueError("cannot summarise an empty memory list")
    return load_prompt(SUMMARY_PROMPT).render(
        memories=render_memories(memories), max_points=max_points
    )


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ParsedReply:
    """A completion split into analysis and response.

    ``format_ok`` is false when the reply did not follow the requested format;
    ``reason`` then says what was wrong, ``analysis`` is empty and
    ``response`` holds the usable text (the whole reply unless a
    ``# Response`` section could still be found).
    """

    analysis: str
    response: str
    format_ok: bool
    reason: str | None = None


# A heading line: optional Markdown heading marks (any level) or bold, the
# keyword, an optional colon. Text after the colon on the same line belongs to
# the section ("# Analysis: she feels...").
def _heading(word: str) -> re.Pattern[str]:
    return re.compile(
        r"^[ \t]*(?:#{1,6}[ \t]*|\*\*[ \t]*)?" + word + r"\b[ \t]*(?:\*\*)?[ \t]*:?(?:\*\*)?[ \t]*",
        re.IGNORECASE | re.MULTILINE,
    )


_ANALYSIS = _heading("analysis")
_RESPONSE = _heading("response")
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


def _is_heading(match: re.Match[str], text: str) -> bool:
    """A keyword match counts as a heading only if it carried a heading mark
    (``#`` or ``**``) or stands alone on its line ("Analysis" / "Analysis:")."""
    marked = "#" in match.group(0) or "**" in match.group(0)
    if marked:
        return True
    line_end = text.find("\n", match.end())
    rest = text[match.end() : line_end if line_end >= 0 else len(text)]
    return match.group(0).rstrip().endswith(":") or not rest.strip()


def _find(pattern: re.Pattern[str], text: str, start: int = 0) -> re.Match[str] | None:
    for m in pattern.finditer(text, start):
        if _is_heading(m, text):
            return m
    return None


def _unformatted(text: str, reason: str) -> ParsedReply:
    return ParsedReply(analysis="", response=text, format_ok=False, reason=reason)


def _parse_headings(text: str) -> ParsedReply:
    analysis = _find(_ANALYSIS, text)
    response = _find(_RESPONSE, text, analysis.end() if analysis else 0)
    if analysis is None and response is None:
        return _unformatted(text, "no '# Analysis' or '# Response' heading")
    if analysis is None:
        body = text[response.end() :].strip()
        if not body:
            return _unformatted(text, "empty '# Response' section and no '# Analysis' heading")
        return ParsedReply(
            analysis="", response=body, format_ok=False, reason="no '# Analysis' heading"
        )
    if response is None:
        if _find(_RESPONSE, text):
            return _unformatted(text, "'# Response' comes before '# Analysis'")
        return _unformatted(
            text,
            "no '# Response' heading after '# Analysis' (was the reply cut off by max_tokens?)",
        )
    body = text[response.end() :].strip()
    if not body:
        return _unformatted(text, "empty '# Response' section")
    return ParsedReply(
        analysis=text[analysis.end() : response.start()].strip(), response=body, format_ok=True
    )


def parse_reply(text: str) -> ParsedReply:
    """Split a policy completion into analysis and response.

    Accepted forms, in order of precedence:

    - ``<think>A</think> R``: analysis ``A``, response ``R`` (if ``R`` itself
      has ``# Analysis``/``# Response`` sections, its analysis is appended to
      ``A`` and its response section is used). A lone ``</think>`` (chat
      templates that open the think block in the prompt) works the same way.
    - ``# Analysis A # Response R`` with any heading level, any case, an
      optional colon, or bold headings (``**Analysis:**``); text before the
      analysis heading is dropped.

    Anything else is kept whole as the response with ``format_ok=False``.

    >>> parse_reply("# Analysis\\nShe is tired.\\n# Response\\nThat sounds hard.")
    ParsedReply(analysis='She is tired.', response='That sounds hard.', format_ok=True, reason=None)
    >>> parse_reply("<think>tired</think>\\nThat sounds hard.").response
    'That sounds hard.'
    >>> parse_reply("That sounds hard.").reason
    "no '# Analysis' or '# Response' heading"
    """
    text = text.strip()
    if not text:
        return ParsedReply(analysis="", response="", format_ok=False, reason="empty reply")
    close = _THINK_CLOSE.search(text)
    opened = _THINK_OPEN.search(text)
    if opened and not close:
        return _unformatted(
            text, "'<think>' block never closed (was the reply cut off by max_tokens?)"
        )
    if close is None:
        return _parse_headings(text)
    start = opened.end() if opened and opened.start() < close.start() else 0
    thought = text[start : close.start()].strip()
    after = text[close.end() :].strip()
    if not after:
        return _unformatted(text, "nothing after '</think>'")
    inner = _parse_headings(after)
    if inner.format_ok:
        analysis = "\n\n".join(p for p in (thought, inner.analysis) if p)
        return ParsedReply(analysis=analysis, response=inner.response, format_ok=True)
    # a "# Response" section without "# Analysis" still gives the cleaner response
    response = inner.response if inner.response != after else after
    if not thought:
        return _unformatted(response, "empty '<think>' block")
    return ParsedReply(analysis=thought, response=response, format_ok=True)
