"""The fixed criteria of an evaluation: written once per example, stored, resumed.

PersonaEmp's protocol writes criteria once per (example, dimension) with one
judge and scores every reply set against those same criteria, so the judges
compare replies, not criteria. :func:`ensure_criteria` keeps them in
``OUT/criteria.jsonl`` (appended as they are written, with a manifest that
refuses another criteria judge or other criteria settings), fills the
examples from it, and asks the judge only for what is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attunement.jsonl import (
    JsonlAppender,
    check_settings,
    manifest_path,
    read_jsonl,
    write_manifest,
)
from attunement.judging import CriteriaConfig, prepare_criteria
from attunement.judging.criteria import criteria_manifest, needs_criteria
from attunement.llm import ChatModel
from attunement.records import Example


def criteria_path(out: Path) -> Path:
    return out / "criteria.jsonl"


async def ensure_criteria(
    examples: dict[str, Example],
    judge: ChatModel,
    out: Path,
    config: CriteriaConfig,
    *,
    concurrency: int,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Fill ``examples`` (in place) with fixed criteria, resuming ``OUT/criteria.jsonl``.

    Examples that arrive with criteria for every dimension keep them (no call).
    Returns a summary; examples whose criteria could not be written stay without
    and are listed under ``failed``.
    """
    path = criteria_path(out)
    manifest_file = manifest_path(path)
    dims = config.dimensions
    given = [eid for eid, ex in examples.items() if not needs_criteria(ex, dims)]
    stored: dict[str, Example] = {}
    if path.exists():
        for ex in read_jsonl(path, Example):
            if ex.example_id in examples and not needs_criteria(ex, dims):
                stored[ex.example_id] = ex
    todo = [ex for eid, ex in examples.items() if eid not in given and eid not in stored]
    info = criteria_manifest(judge, config)
    if todo or stored:
        check_settings(
            manifest_file,
            info,
            keys=("judge", "output_format", "config", "prompts"),
            outputs=[path] if stored else [],
            fix="use a new --out folder or the same --criteria-judge and criteria settings",
        )
    for eid, ex in stored.items():
        examples[eid] = examples[eid].model_copy(
            update={"criteria": ex.criteria, "meta": {**examples[eid].meta, **ex.meta}}
        )
    failed: dict[str, dict[str, str]] = {}
    prepared = 0
    if todo:
        write_manifest(manifest_file, command="evaluate:criteria", **info)
        with JsonlAppender(path) as sink:

            def keep(ex: Example) -> None:
                nonlocal prepared
                if ex.meta.get("criteria_errors"):
                    failed[ex.example_id] = ex.meta["criteria_errors"]
                    return
                sink.write(ex)
                examples[ex.example_id] = ex
                prepared += 1

            await prepare_criteria(
                todo,
                judge,
                concurrency=concurrency,
                config=config,
                on_example=keep,
                show_progress=show_progress,
            )
    return {
        "judge": judge.name,
        "file": str(path),
        "from_input": len(given),
        "resumed": len(stored),
        "prepared_now": prepared,
        "failed": failed,
        "prompts": info["prompts"],
        "temperature": config.temperature,
    }
