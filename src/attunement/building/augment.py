"""PERM-style augmentation of EmpatheticDialogues-like rows (PERM appendix A.3).

An input row holds an emotion label, a one-line situation and the speaker's
first utterance::

    {"conv_id": "hit:12_conv:24", "emotion": "sentimental",
     "situation": "I found my old school diary", "utterance": "I was reading ..."}

(``context`` and ``prompt``, the EmpatheticDialogues column names, are accepted
for ``emotion`` and ``situation``; ``_comma_`` is turned back into a comma.)

One LLM call per row writes a fuller scenario and a light persona (name, age,
gender, occupation). The result is an :class:`~attunement.records.Example`
PERM can train on: ``query`` is the first utterance, the situation carries the
scenario and the emotion, the persona the four fields. EmpatheticDialogues has
no query categories; rows are labelled Emotional Support (``ES``), and
``meta["category_assumed"]`` says so.

Resumable like the builder: ``DIR/stages/augment.jsonl`` keyed by ``conv_id``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from attunement.building.calls import StageCall, StageRecord, min_units, ok_or_invalid, stage_call
from attunement.building.export import write_dataset
from attunement.building.llm_io import Answer, InvalidOutput, StageSettings
from attunement.building.store import StageStore
from attunement.concurrency import run_bounded
from attunement.jsonl import JsonlAppender, read_jsonl, write_manifest
from attunement.llm import ChatModel
from attunement.prompts import load_prompt
from attunement.records import Category, Example, Persona, Situation
from attunement.render import fence

PROMPT = "build_augment"


class EDRow(BaseModel):
    """One EmpatheticDialogues-like input row."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    conv_id: str = Field(validation_alias=AliasChoices("conv_id", "id"))
    emotion: str = Field(min_length=1, validation_alias=AliasChoices("emotion", "context"))
    situation: str = Field(min_length=1, validation_alias=AliasChoices("situation", "prompt"))
    utterance: str = Field(min_length=1)

    @field_validator("emotion", "situation", "utterance")
    @classmethod
    def _clean(cls, value: str) -> str:
        cleaned = value.replace("_comma_", ",").strip()
        if not cleaned:
            raise ValueError("must not be blank")
        return cleaned


class AugmentReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: int
    accepted: int
    rejected: int
    rejection_reasons: dict[str, int] = Field(default_factory=dict)
    paths: dict[str, str] = Field(default_factory=dict)
    seconds: float = 0.0


class AugmentAnswer(Answer):
    scenario: Annotated[str, Field(min_length=20, max_length=450)]
    name: Annotated[str, Field(min_length=1, max_length=30)]
    age: Annotated[int, Field(ge=16, le=90)]
    gender: Annotated[str, Field(min_length=1, max_length=20)]
    occupation: Annotated[str, Field(min_length=1, max_length=50)]


def augment_call(
    model: ChatModel, row: EDRow, settings: StageSettings, *, seed: int | None = None
) -> StageCall[dict[str, Any]]:
    """Scenario and light persona for one row."""

    def parse(data: dict[str, Any]) -> dict[str, Any]:
        out = AugmentAnswer.model_validate(data)
        scenario = min_units(out.scenario, 8, "scenario")
        fields = {k: getattr(out, k).strip() for k in ("name", "gender", "occupation")}
        empty = [k for k, v in fields.items() if not v]
        if empty:
            raise InvalidOutput(f"empty {', '.join(empty)}")
        return {"scenario": scenario, "age": out.age, **fields}

    return stage_call(
        "augment",
        row.conv_id,
        row.conv_id,
        model,
        settings,
        AugmentAnswer,
        parse,
        ok_or_invalid(lambda value: value),
        seed=seed,
        prompt=PROMPT,
        emotion=row.emotion,
        situation=row.situation,
        utterance=fence("utterance", row.utterance),
    )


async def augment_row(
    model: ChatModel, row: EDRow, settings: StageSettings, *, seed: int | None = None
) -> StageRecord:
    return await augment_call(model, row, settings, seed=seed).run()


def to_example(row: EDRow, out: dict, source: str) -> Example:
    persona = Persona(
        name=out["name"], age=out["age"], gender=out["gender"], occupation=out["occupation"]
    )
    return Example(
        example_id=row.conv_id,
        query=row.utterance,
        category=Category.ES,
        situation=Situation(category=Category.ES, description=out["scenario"], emotion=row.emotion),
        persona=persona,
        meta={"source": source, "original_situation": row.situation, "category_assumed": True},
    )


async def augment_dataset(
    data: Path,
    out_dir: Path,
    model: ChatModel,
    *,
    settings: StageSettings | None = None,
    limit: int | None = None,
    seed: int = 0,
    concurrency: int = 4,
    skip_invalid: bool = False,
    show_progress: bool | None = None,
) -> AugmentReport:
    """Augment every row of ``data`` (resumable) and write examples, prompts, manifest."""
    started = time.monotonic()
    settings = settings or StageSettings(temperature=0.7, max_tokens=260)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = read_jsonl(
        data,
        EDRow,
        skip_invalid=skip_invalid,
        rejects=out_dir / "input.rejects.jsonl" if skip_invalid else None,
    )
    ids = [r.conv_id for r in rows]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"{data}: conv_id values occur more than once: {dupes[:5]}")
    if limit is not None:
        rows = rows[:limit]
    out_dir.mkdir(parents=True, exist_ok=True)
    store = StageStore(out_dir / "stages" / "augment.jsonl")
    todo = [r for r in rows if r.conv_id not in store.records]
    if todo:
        with JsonlAppender(store.path) as sink:

            def on_result(_row: EDRow, rec: StageRecord) -> None:
                sink.write(rec)
                store.records[rec.key] = rec

            await run_bounded(
                todo,
                lambda r: augment_row(model, r, settings, seed=seed),
                limit=concurrency,
                on_result=on_result,
                description="augment",
                show_progress=show_progress,
            )
    source = f"empathetic-dialogues:{Path(data).name}"
    examples = [
        to_example(r, rec.output, source) for r in rows if (rec := store.ok(r.conv_id)) is not None
    ]
    reasons: dict[str, int] = {}
    for r in rows:
        rec = store.get(r.conv_id)
        if rec is not None and rec.status == "rejected":
            reasons[rec.reason_code or "unknown"] = reasons.get(rec.reason_code or "unknown", 0) + 1
    paths, renderer = write_dataset(out_dir, examples)
    report = AugmentReport(
        rows=len(rows),
        accepted=len(examples),
        rejected=sum(reasons.values()),
        rejection_reasons=reasons,
        paths={k: str(v) for k, v in paths.items()},
        seconds=round(time.monotonic() - started, 3),
    )
    manifest = write_manifest(
        out_dir / "manifest.json",
        kind="attunement.augment",
        source=str(data),
        limit=limit,
        seed=seed,
        model=model.name,
        prompt={"name": PROMPT, "version": load_prompt(PROMPT).version},
        settings=json.loads(settings.model_dump_json()),
        prompt_renderer=renderer,
        report=json.loads(report.model_dump_json()),
    )
    report.paths["manifest"] = str(manifest)
    return report
