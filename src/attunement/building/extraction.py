"""Memory extraction for plain chat logs, which arrive without memories.

One LLM call per user reads the user's conversations (fenced as untrusted
material, so instructions inside the dialogue are data) and proposes labelled
memory items, each with a quote. A quote is accepted only if it really occurs
in one of the user's own turns (compared case-insensitively with whitespace
collapsed, at least ``min_quote_chars`` long); the turn where it occurs becomes
the item's evidence. Items whose quote is not found are dropped and listed
with the reason; an answer in which no item survives is retried with a fresh
sample, and after the last attempt the user is rejected. A model that finds
nothing to remember returns an empty list, which rejects the user with reason
``extract.nothing_found``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field

from attunement.building.calls import StageCall, StageRecord, user_call
from attunement.building.config import BuildConfig
from attunement.building.llm_io import Answer, Asked, InvalidOutput
from attunement.building.taxonomy import TAXONOMY_LABELS, UNMAPPED
from attunement.llm import ChatModel
from attunement.records import Evidence, MemoryItem, UserHistory
from attunement.render import fence

Label = Literal[TAXONOMY_LABELS + (UNMAPPED,)]  # type: ignore[valid-type]


class ItemAnswer(Answer):
    label: Label
    label_suggestion: Annotated[str, Field(max_length=60)]
    value: Annotated[str, Field(min_length=3, max_length=200)]
    quote: Annotated[str, Field(min_length=3, max_length=200)]
    type: Literal["direct", "indirect"]


@lru_cache(maxsize=8)
def extract_answer(max_items: int) -> type[Answer]:
    class ExtractAnswer(Answer):
        memories: Annotated[list[ItemAnswer], Field(max_length=max_items)]

    return ExtractAnswer


def needs_memory_extraction(user: UserHistory) -> bool:
    """True for histories with conversations but no memories and no annotation."""
    return not user.memories and bool(user.sessions) and not user.meta.get("annotated")


def _norm(s: str) -> str:
    return " ".join(
        s.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"').casefold().split()
    )


def render_conversation(user: UserHistory, max_chars: int) -> str:
    """All turns, tagged ``[session#index role]``, until ``max_chars`` are used."""
    lines: list[str] = []
    used = 0
    for session in user.sessions:
        for i, turn in enumerate(session.turns):
            body = " ".join(turn.text.split())
            line = f"[{session.session_id}#{i} {turn.role.upper()}] {body}"
            if used + len(line) > max_chars:
                room = max_chars - used
                if room > 80:
                    lines.append(line[:room].rstrip() + " ...")
                return "\n".join(lines)
            lines.append(line)
            used += len(line) + 1
    return "\n".join(lines)


def find_quote(user: UserHistory, quote: str) -> tuple[str, int] | None:
    """(session id, turn index) of the first user turn containing ``quote``."""
    needle = _norm(quote.strip().strip('"').strip("'").strip())
    if not needle:
        return None
    for session in user.sessions:
        for i, turn in enumerate(session.turns):
            if turn.role == "user" and needle in _norm(turn.text):
                return session.session_id, i
    return None


def _quote_problem(
    user: UserHistory, quote: str, min_chars: int
) -> tuple[str, tuple[str, int] | None]:
    """Where ``quote`` occurs in the user's own turns, or why it cannot be evidence."""
    if len(quote) < min_chars:
        return f"quote shorter than {min_chars} chars", None
    where = find_quote(user, quote)
    return ("quote not found in any user turn" if where is None else ""), where


def extract_call(
    user: UserHistory, model: ChatModel, config: BuildConfig, *, seed: int | None = None
) -> StageCall[tuple[list[MemoryItem], list[dict]]]:
    """Extract labelled memory items with evidence quoted from the user's own turns."""
    answer = extract_answer(config.extract_max_items)

    def parse(data: dict[str, Any]) -> tuple[list[MemoryItem], list[dict[str, Any]]]:
        out = answer.model_validate(data)
        dropped: list[dict[str, Any]] = []
        items: list[MemoryItem] = []
        for raw in out.memories:
            quote = raw.quote.strip()
            problem, where = _quote_problem(user, quote, config.min_quote_chars)
            if where is None:
                dropped.append({"value": raw.value, "quote": quote, "reason": problem})
                continue
            label = raw.label if raw.label in TAXONOMY_LABELS else UNMAPPED
            suggestion = raw.label_suggestion.strip() or None
            items.append(
                MemoryItem(
                    memory_id=f"x{len(items) + 1}",
                    value=raw.value.strip(),
                    label=label,
                    label_suggestion=suggestion if label == UNMAPPED else None,
                    type=raw.type,
                    evidence=[Evidence(session_id=where[0], utterance_index=where[1], text=quote)],
                )
            )
        if out.memories and not items:
            raise InvalidOutput(
                f"none of the {len(out.memories)} items quotes a user turn: "
                + "; ".join(d["reason"] for d in dropped[:3])
            )
        return items, dropped

    def decide(call: StageCall[Any], asked: Asked[Any]) -> StageRecord:
        if not asked.ok:
            return call.invalid(asked)
        items, dropped = asked.value
        output = {"memories": [m.model_dump(mode="json") for m in items], "dropped": dropped}
        if not items:
            return call.rejected(
                "nothing_found", "the model found nothing to remember about the user", asked, output
            )
        return call.ok(asked, output)

    return user_call(
        "extract",
        user.user_id,
        user,
        model,
        config,
        answer,
        parse,
        decide,
        seed=seed,
        rules={"min_quote_chars": config.min_quote_chars},
        conversation=fence(
            "conversation", render_conversation(user, config.extract_conversation_chars)
        ),
        labels="\n".join(f"  {label}" for label in TAXONOMY_LABELS),
        max_items=config.extract_max_items,
    )
