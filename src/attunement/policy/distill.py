"""SFT data from a stronger model's replies (the "SFT" baseline).

:func:`distill` lets a teacher model answer the training examples through the
same prompt and memory mode a student will see, then writes one SFT row per
well-formed reply in TRL's conversational *prompt-completion* format::

    {"prompt": [{"role": "system", ...}, {"role": "user", ...}],
     "completion": [{"role": "assistant", "content": "# Analysis\\n...\\n\\n# Response\\n..."}],
     "example_id": "...", "reply_id": "..."}

or, with ``row_format="messages"``, ``{"messages": [system, user, assistant]}``.
TRL's ``SFTTrainer`` reads both (with prompt-completion it trains on the
completion only); the id columns let a row be traced back to its example.

Replies that did not follow the ``# Analysis`` / ``# Response`` format are
not turned into rows; they are counted. The teacher's raw replies and the
exact prompts go to ``<out>.replies.jsonl`` and ``<out>.prompts.jsonl``; those
are what make the job resumable, and the SFT file is rewritten from them at
the end of every run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from attunement.jsonl import manifest_path, read_jsonl, write_jsonl, write_manifest
from attunement.llm.base import ChatModel
from attunement.policy.generate import (
    GenerateReport,
    GenerationSettings,
    generate_replies,
    generation_settings,
)
from attunement.policy.retrieval import Retriever
from attunement.records import Example, Reply, UserHistory

RowFormat = Literal["prompt-completion", "messages"]


class DistillReport(BaseModel):
    out: Path
    replies: Path
    prompts: Path
    rows: int
    skipped_format: int
    generation: GenerateReport


def nothing_distilled(report: DistillReport) -> str | None:
    """Why a distillation wrote no row and what would fix it (None when it wrote
    some): ``attune distill`` then exits 1 with this line."""
    if report.rows:
        return None
    if report.skipped_format:
        return (
            f"0 SFT rows written: all {report.skipped_format} teacher replies skipped for not "
            f"following the format; delete {report.replies} and run again with a teacher that "
            "writes both headings (or a larger --max-tokens)"
        )
    return "0 SFT rows written: there was no teacher reply to distill; check --data and --limit"


def sidecar(out: str | Path, kind: str) -> Path:
    """``sft.jsonl`` -> ``sft.<kind>.jsonl``."""
    out = Path(out)
    stem = out.stem if out.suffix == ".jsonl" else out.name
    return out.with_name(f"{stem}.{kind}.jsonl")


def format_completion(reply: Reply, *, raw: bool = False) -> str:
    """The assistant turn a student learns: the reply in the prompt's format.

    By default the parsed analysis and response are written back under the
    two headings, so every row has the same shape whatever style the teacher
    used (e.g. ``<think>`` blocks); ``raw=True`` keeps the teacher's text.
    """
    if raw:
        return reply.raw.strip()
    return f"# Analysis\n{reply.analysis.strip()}\n\n# Response\n{reply.response.strip()}"


def sft_row(
    messages: Sequence[dict[str, str]],
    reply: Reply,
    *,
    row_format: RowFormat = "prompt-completion",
    raw: bool = False,
) -> dict[str, Any]:
    """One SFT row in TRL's conversational format."""
    assistant = {"role": "assistant", "content": format_completion(reply, raw=raw)}
    ids = {"example_id": reply.example_id, "reply_id": reply.reply_id}
    if row_format == "prompt-completion":
        return {"prompt": list(messages), "completion": [assistant], **ids}
    if row_format == "messages":
        return {"messages": [*messages, assistant], **ids}
    raise ValueError(
        f"unknown SFT row format {row_format!r}; expected 'prompt-completion' or 'messages'"
    )


def _read_prompts(path: Path) -> dict[str, list[dict[str, str]]]:
    prompts: dict[str, list[dict[str, str]]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():  # generate_replies has already repaired a torn tail
                row = json.loads(line)
                prompts[row["example_id"]] = row["messages"]
    return prompts


async def distill(
    examples: Sequence[Example],
    teacher: ChatModel,
    out: str | Path,
    settings: GenerationSettings | None = None,
    *,
    pool: Sequence[Example] | Sequence[UserHistory] | None = None,
    summarizer: ChatModel | None = None,
    retriever: Retriever | None = None,
    row_format: RowFormat = "prompt-completion",
    raw: bool = False,
    show_progress: bool | None = None,
    **overrides: Any,
) -> DistillReport:
    """Write SFT rows for ``examples`` from ``teacher``'s replies to ``out``.

    Generation settings (and keyword overrides of their fields) are those of
    :func:`generate_replies`, persona and situation switches included. Rows
    are joined to prompts by ``example_id`` and ordered like ``examples``.
    """
    if row_format not in ("prompt-completion", "messages"):
        raise ValueError(
            f"unknown SFT row format {row_format!r}; expected 'prompt-completion' or 'messages'"
        )
    settings = generation_settings(settings, **overrides)
    n = settings.n
    out = Path(out)
    replies_path, prompts_path = sidecar(out, "replies"), sidecar(out, "prompts")
    generation = await generate_replies(
        examples,
        teacher,
        replies_path,
        settings,
        pool=pool,
        summarizer=summarizer,
        retriever=retriever,
        prompts_out=prompts_path,
        show_progress=show_progress,
    )

    prompts = _read_prompts(prompts_path)
    wanted = {ex.example_id: pos for pos, ex in enumerate(examples)}
    replies = [
        r for r in read_jsonl(replies_path, Reply) if r.example_id in wanted and r.sample_index < n
    ]
    replies.sort(key=lambda r: (wanted[r.example_id], r.sample_index))
    rows, skipped = [], 0
    for reply in replies:
        if not reply.format_ok:
            skipped += 1
            continue
        messages = prompts.get(reply.example_id)
        if messages is None:
            raise ValueError(
                f"{prompts_path}: no prompt recorded for example "
                f"{reply.example_id!r}; delete {replies_path} to regenerate"
            )
        rows.append(sft_row(messages, reply, row_format=row_format, raw=raw))
    write_jsonl(out, rows)
    write_manifest(
        manifest_path(out),
        command="distill",
        teacher=teacher.name,
        settings=settings.model_dump(mode="json"),
        row_format=row_format,
        raw=raw,
        rows=len(rows),
        skipped_format=skipped,
        replies=str(replies_path),
        prompts=str(prompts_path),
    )
    return DistillReport(
        out=out,
        replies=replies_path,
        prompts=prompts_path,
        rows=len(rows),
        skipped_format=skipped,
        generation=generation,
    )
