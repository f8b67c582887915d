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

from typing import Any, Literal

from pydantic import Field

from attunement.building.config import BuildConfig
from attunement.building.llm_io import InvalidOutput, array, ask_json, enum, obj, text
from attunement.building.stages import STAGE_PROMPTS, StageRecord, _Lenient
from attunement.building.taxonomy import TAXONOMY_LABELS, UNMAPPED
from attunement.llm import ChatModel
from attunement.prompts import load_prompt
from attunement.records import Evidence, MemoryItem, UserHistory
from attunement.render import fence


class _ItemOut(_Lenient):
    label: str
    label_suggestion: str = ""
    value: str
    quote: str
    type: Literal["direct", "indirect"] = "direct"


class _ExtractOut(_Lenient):
    memories: list[_ItemOut] = Field(default_factory=list)


def extract_schema(max_items: int) -> dict[str, Any]:
    item = obj({
        "label": enum([*TAXONOMY_LABELS, UNMAPPED]),
        "label_suggestion": text(60, 0),
        "value": text(200, 3),
        "quote": text(200, 3),
        "type": enum(["direct", "indirect"]),
    })
    return obj({"memories": array(item, max_items=max_items)})


def _norm(s: str) -> str:
    return " ".join(s.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
                    .casefold().split())


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


async def run_extract(model: ChatModel, user: UserHistory, config: BuildConfig,
                      *, seed: int | None = None) -> StageRecord:
    """Extract labelled memory items with evidence quoted from the user's own turns."""
    template = load_prompt(STAGE_PROMPTS["extract"])
    messages = template.render(
        conversation=fence("conversation", render_conversation(
            user, config.extract_conversation_chars)),
        labels="\n".join(f"  {label}" for label in TAXONOMY_LABELS),
        max_items=config.extract_max_items,
    )
    dropped: list[dict[str, Any]] = []

    def parse(data: dict[str, Any]) -> list[MemoryItem]:
        out = _ExtractOut.model_validate(data)
        dropped.clear()
        items: list[MemoryItem] = []
        for raw in out.memories:
            quote = raw.quote.strip()
            if len(quote) < config.min_quote_chars:
                dropped.append({"value": raw.value, "quote": quote,
                                "reason": f"quote shorter than {config.min_quote_chars} chars"})
                continue
            where = find_quote(user, quote)
            if where is None:
                dropped.append({"value": raw.value, "quote": quote,
                                "reason": "quote not found in any user turn"})
                continue
            label = raw.label if raw.label in TAXONOMY_LABELS else UNMAPPED
            suggestion = raw.label_suggestion.strip() or None
            items.append(MemoryItem(
                memory_id=f"x{len(items) + 1}", value=raw.value.strip(), label=label,
                label_suggestion=suggestion if label == UNMAPPED else None, type=raw.type,
                evidence=[Evidence(session_id=where[0], utterance_index=where[1], text=quote)],
            ))
        if out.memories and not items:
            raise InvalidOutput(f"none of the {len(out.memories)} items quotes a user turn: "
                                + "; ".join(d["reason"] for d in dropped[:3]))
        return items

    asked = await ask_json(model, messages, extract_schema(config.extract_max_items), parse,
                           config.extract, seed=seed)
    if not asked.ok:
        return StageRecord(stage="extract", key=user.user_id, user_id=user.user_id,
                           status="rejected", reason_code="extract.invalid_output",
                           reason=asked.reason, attempts=asked.attempts, failures=asked.failures)
    output = {"memories": [m.model_dump(mode="json") for m in asked.value], "dropped": dropped}
    if not asked.value:
        return StageRecord(stage="extract", key=user.user_id, user_id=user.user_id,
                           status="rejected", reason_code="extract.nothing_found",
                           reason="the model found nothing to remember about the user",
                           attempts=asked.attempts, output=output, failures=asked.failures)
    return StageRecord(stage="extract", key=user.user_id, user_id=user.user_id, status="ok",
                       attempts=asked.attempts, output=output, failures=asked.failures)
