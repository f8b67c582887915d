"""The parquet verl trains on: one row per example, the example inside it.

verl calls a reward function once per sample with the decoded response only,
so everything the judges need (persona, memories, situation, query, example
id) travels in the row's ``extra_info``: :func:`export_verl` writes the
example there as its JSON (one string column: parquet struct columns would
unify the schemas of all rows, filling absent fields with nulls and failing
on fields whose type differs between rows), and :func:`example_from_extra_info`
reads it back inside verl's reward workers (:mod:`attunement.integrations.verl`).
The prompt column is the reply prompt the policy answers (``policy/prompting.py``),
with the memories of the chosen memory mode. Guide: docs/scale-out.md.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from attunement.jsonl import manifest_path, write_manifest
from attunement.policy import (
    DEFAULT_MEMORY_MODE,
    SHOW_PERSONA,
    SHOW_SITUATION,
    ModelFreeMemoryMode,
    PromptContext,
    policy_prompts,
)
from attunement.policy.prompting import reply_prompt_version
from attunement.records import Example

DATA_SOURCE = "attunement"
ABILITY = "empathy"
ExportMemoryMode = ModelFreeMemoryMode
#: the extra_info field holding the example's JSON
EXAMPLE_FIELD = "example"
#: the verl agent loop of multi-turn rows (:mod:`attunement.integrations.verl_agent`)
TALK_AGENT = "attunement_talk"


def plain(value: Any) -> Any:
    """OmegaConf containers and numpy scalars as plain Python values."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        return value.item()
    return value


# --------------------------------------------------------------------------- reading a row


def example_from_extra_info(extra_info: Mapping[str, Any] | None) -> tuple[Example, str | None]:
    """The example and split a verl row carries in ``extra_info``.

    ``extra_info["example"]`` is the example's JSON (as :func:`export_verl`
    writes it) or an object with the same fields.
    """
    if not extra_info or EXAMPLE_FIELD not in extra_info:
        seen = sorted(extra_info) if extra_info else []
        raise ValueError(
            f"extra_info has no {EXAMPLE_FIELD!r} field (it holds {seen}); write "
            "the parquet with `attune export verl`, which stores the example there"
        )
    raw = extra_info[EXAMPLE_FIELD]
    try:
        if isinstance(raw, (str, bytes)):
            example = Example.model_validate_json(raw)
        else:
            example = Example.model_validate(plain(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(example)"
        raise ValueError(f"extra_info.{EXAMPLE_FIELD}: {where}: {first['msg']}") from None
    split = extra_info.get("split")
    return example, (str(split) if split is not None else None)


# --------------------------------------------------------------------------- writing rows


@dataclass(frozen=True)
class ExportReport:
    out: Path
    manifest: Path
    rows: int
    split: str
    memory_mode: str


def _parquet_schema(agent_name: bool = False):
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    # verl routes a row to an agent loop by its top-level agent_name column
    agent = [("agent_name", pa.string())] if agent_name else []
    return pa.schema(
        [
            *agent,
            ("data_source", pa.string()),
            ("prompt", pa.list_(message)),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
            (
                "extra_info",
                pa.struct(
                    [
                        ("example_id", pa.string()),
                        ("split", pa.string()),
                        ("index", pa.int64()),
                        ("memory_mode", pa.string()),
                        ("memory_source_user", pa.string()),
                        (EXAMPLE_FIELD, pa.string()),
                    ]
                ),
            ),
        ]
    )


async def verl_rows(
    examples: Sequence[Example],
    *,
    split: str = "train",
    memory_mode: ExportMemoryMode = DEFAULT_MEMORY_MODE,
    data_source: str = DATA_SOURCE,
    ability: str = ABILITY,
    pool: Sequence[Example] | None = None,
    seed: int = 0,
    k: int = 3,
    persona: bool = SHOW_PERSONA,
    situation: bool = SHOW_SITUATION,
    agent_name: str | None = None,
) -> list[dict[str, Any]]:
    """One verl row per example: the reply prompt the policy answers, the example in
    ``extra_info``, the example id as ``reward_model.ground_truth``; ``agent_name``
    (a column) routes every row to that verl agent loop (multi-turn:
    ``attunement_talk``, :mod:`attunement.integrations.verl_agent`).

    ``memory_mode``, ``persona`` and ``situation`` choose what the policy is shown
    (as in ``attune generate``, with the same defaults); the judges always see the
    example's own user.
    """
    seen: set[str] = set()
    for e in examples:
        if e.example_id in seen:
            raise ValueError(f"example id {e.example_id!r} appears twice")
        seen.add(e.example_id)
    context = PromptContext(
        memory_mode=memory_mode,
        persona=persona,
        situation=situation,
        seed=seed,
        k=k,
    )
    rows = []
    for index, prompt in enumerate(await policy_prompts(examples, context, pool=pool)):
        example, view, messages = prompt.example, prompt.view, prompt.messages
        rows.append(
            {
                **({"agent_name": agent_name} if agent_name else {}),
                "data_source": data_source,
                "prompt": [{"role": m["role"], "content": m["content"]} for m in messages],
                "ability": ability,
                "reward_model": {"style": "model", "ground_truth": example.example_id},
                "extra_info": {
                    "example_id": example.example_id,
                    "split": split,
                    "index": index,
                    "memory_mode": memory_mode,
                    "memory_source_user": view.source_user_id,
                    EXAMPLE_FIELD: example.model_dump_json(exclude_defaults=True),
                },
            }
        )
    return rows


def write_parquet(rows: Sequence[Mapping[str, Any]], out: str | Path) -> Path:
    """Write verl rows to ``out`` atomically (a temporary file renamed into place)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    agent = bool(rows) and "agent_name" in rows[0]
    table = pa.Table.from_pylist(rows, schema=_parquet_schema(agent))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_verl(
    examples: Sequence[Example],
    out: str | Path,
    *,
    split: str = "train",
    memory_mode: ExportMemoryMode = "full",
    data_source: str = DATA_SOURCE,
    ability: str = ABILITY,
    pool: Sequence[Example] | None = None,
    seed: int = 0,
    k: int = 3,
    persona: bool = SHOW_PERSONA,
    situation: bool = SHOW_SITUATION,
    source: str | None = None,
    agent_name: str | None = None,
) -> ExportReport:
    """Write ``examples`` as a verl parquet file and its manifest (``<out>.manifest.json``)."""
    rows = asyncio.run(
        verl_rows(
            examples,
            split=split,
            memory_mode=memory_mode,
            data_source=data_source,
            ability=ability,
            pool=pool,
            seed=seed,
            k=k,
            persona=persona,
            situation=situation,
            agent_name=agent_name,
        )
    )
    path = write_parquet(rows, out)
    manifest = write_manifest(
        manifest_path(path),
        command="export verl",
        source=source,
        rows=len(rows),
        split=split,
        memory_mode=memory_mode,
        data_source=data_source,
        ability=ability,
        seed=seed,
        k=k,
        persona=persona,
        situation=situation,
        agent_name=agent_name,
        prompt={"policy_reply": reply_prompt_version()},
    )
    return ExportReport(
        out=path, manifest=manifest, rows=len(rows), split=split, memory_mode=memory_mode
    )


def read_verl(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a verl parquet file, as plain dicts."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def examples_from_verl(path: str | Path) -> list[Example]:
    """The examples a verl parquet file carries, in row order (the round trip)."""
    out = []
    for i, row in enumerate(read_verl(path)):
        try:
            example, _ = example_from_extra_info(row.get("extra_info"))
        except ValueError as exc:
            raise ValueError(f"{path}: row {i}: {exc}") from None
        out.append(example)
    return out
