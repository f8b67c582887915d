"""Stage 7: join accepted queries with their users and write the dataset.

``DIR/examples.jsonl`` holds one :class:`~attunement.records.Example` per
accepted query (``example_id`` = query id = ``<user_id>:<category>``) with the
user's persona (Big Five included), all of the user's memories, the situation,
the query's language and the user's, and ``meta`` (source, the memory ids the
query relies on, the generator's reasoning, the inspector's verdict, the
query's draw count, and the values trimmed to a length limit, if any).

By default the quoted evidence text of every memory item is left out of the
exports (``keep_evidence``: the item itself stays, with where it came from),
and ``users.jsonl`` holds the users without their dialogues
(``keep_dialogues``): the dataset folder does not carry raw conversations
unless asked. ``split_by_language`` also writes ``examples.<lang>.jsonl`` and
``prompts.<lang>.jsonl`` per language, as the authors' export does.

``DIR/prompts.jsonl`` holds TRL-style rows for the same examples:
``{"prompt": [messages...], "example_id", "user_id", "category", "language"
(the query's), "user_language", "query", "persona", "memories", "situation",
"example"}``. The prompt is the
policy's, from its one home (:mod:`attunement.policy.context`) with the
defaults of ``attune generate``: full memory, no persona or situation. The
context columns are rendered text (what a reward function reads), ``example``
is the full Example as a JSON string (what a reward model needs to rebuild it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attunement.jsonl import write_jsonl
from attunement.policy import FullMemory, PromptContext, render_policy_prompt
from attunement.records import Example, MemoryItem, UserHistory
from attunement.render import render_memories, render_persona, render_situation

#: the function that renders the prompt column (recorded in the build's manifest)
POLICY_RENDERER = f"{render_policy_prompt.__module__}.{render_policy_prompt.__qualname__}"


def prompt_row(example: Example) -> dict[str, Any]:
    """One ``prompts.jsonl`` row: the policy's prompt with what generate shows by
    default (memories and query), the rendered context columns and the example."""
    prompt = render_policy_prompt(example, FullMemory.view(example), PromptContext())
    return {
        "prompt": prompt,
        "example_id": example.example_id,
        "user_id": example.user_id,
        "category": example.category.value if example.category else None,
        "language": example.language,
        "user_language": example.user_language,
        "query": example.query,
        "persona": render_persona(example.persona),
        "memories": render_memories(example.memories),
        "situation": render_situation(example.situation),
        "example": example.model_dump_json(),
    }


def without_evidence_text(memories: Sequence[MemoryItem]) -> list[MemoryItem]:
    """The memory items with their quoted evidence text removed (where it came from stays)."""
    return [
        m.model_copy(update={"evidence": [e.model_copy(update={"text": ""}) for e in m.evidence]})
        for m in memories
    ]


def write_users(
    path: Path,
    users: Sequence[UserHistory],
    *,
    keep_dialogues: bool = False,
    keep_evidence: bool = False,
) -> int:
    """``users.jsonl``: the imported users, without dialogues and evidence text by default."""
    rows = []
    for u in users:
        update: dict = {}
        if not keep_dialogues:
            update["sessions"] = []
        if not keep_evidence:
            update["memories"] = without_evidence_text(u.memories)
        rows.append(u.model_copy(update=update))
    return write_jsonl(path, rows)


def write_dataset(
    out_dir: Path,
    examples: Sequence[Example],
    *,
    keep_evidence: bool = False,
    split_by_language: bool = False,
) -> tuple[dict[str, Path], str]:
    """Write examples.jsonl and prompts.jsonl atomically; return paths and renderer name."""
    if not keep_evidence:
        examples = [
            e.model_copy(update={"memories": without_evidence_text(e.memories)}) for e in examples
        ]
    paths = {"examples": out_dir / "examples.jsonl", "prompts": out_dir / "prompts.jsonl"}
    write_jsonl(paths["examples"], examples)
    write_jsonl(paths["prompts"], map(prompt_row, examples))
    if split_by_language:
        for old in [*out_dir.glob("examples.*.jsonl"), *out_dir.glob("prompts.*.jsonl")]:
            old.unlink()  # languages that have no example any more
        for lang in sorted({e.language for e in examples}):
            part = [e for e in examples if e.language == lang]
            paths[f"examples.{lang}"] = out_dir / f"examples.{lang}.jsonl"
            paths[f"prompts.{lang}"] = out_dir / f"prompts.{lang}.jsonl"
            write_jsonl(paths[f"examples.{lang}"], part)
            write_jsonl(paths[f"prompts.{lang}"], map(prompt_row, part))
    return paths, POLICY_RENDERER
