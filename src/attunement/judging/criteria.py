"""Fixed criteria for evaluation: written once per (query, dimension), stored.

PereGRM's evaluation protocol scores every system against the *same*
criteria, prepared ahead of time: for each example and empathy dimension the
judge writes 4-6 weighted criteria (weights summing to 100, none rewarding
mere recall of a remembered fact) at temperature 0.2, from the authors'
*evaluation* definitions of the dimensions. They are stored in
``Example.criteria[dimension]`` as the judge wrote them (a text answer's list
exactly as written, continuation lines and all; a JSON answer as a numbered
list) and used by ``PereGRMConfig(criteria_mode="fixed")``, which scores at
temperature 0.

A criteria answer that cannot be read (too few or too many items, missing
weights) is re-drawn with fresh samples; weights that do not sum to 100 are
rescaled proportionally and the dimension is listed under
``meta["criteria_info"]["rescaled"]``. A dimension that still fails is left
empty and its reason recorded under ``meta["criteria_errors"]``, so the
example is not silently scored against nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from attunement.concurrency import run_bounded
from attunement.judging.answers import criteria_answer
from attunement.judging.base import PROBE_EXAMPLE, Definitions, JudgeSampler
from attunement.judging.parsing import ParsedCriteria, parse_criteria
from attunement.judging.peregrm import criteria_messages
from attunement.judging.templates import (
    JSON_TEXT_CHARS,
    JudgeContext,
    OutputChoice,
    recording,
    resolve_output,
    schema,
    versions,
)
from attunement.llm.base import ChatModel
from attunement.records import EMPATHY_DIMENSIONS, Dimension, Example, Usage


class CriteriaConfig(BaseModel):
    """How fixed criteria are written (defaults: the authors' evaluation code)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.2, ge=0.0, le=2.0)
    max_tokens: int = Field(1024, ge=16)
    output: OutputChoice = "auto"
    max_resamples: int = Field(2, ge=0)
    json_text_chars: int = Field(JSON_TEXT_CHARS, ge=20)
    seed: int | None = 0
    min_items: int = Field(4, ge=1)
    max_items: int = Field(6, ge=1)
    dimensions: tuple[Dimension, ...] = EMPATHY_DIMENSIONS
    max_concurrency: int | None = Field(None, ge=1)
    definitions: Definitions = Field(
        "evaluation",
        description="dimension definitions the criteria are written from (the "
        "authors' evaluation code: 'evaluation')",
    )
    judge_context: JudgeContext = Field(
        "authors", description="what the judge sees of the user (see PereGRMConfig)"
    )


def _messages(example: Example, dimension: Dimension, fmt: str, config: CriteriaConfig):
    return criteria_messages(
        example, dimension, fmt, definitions=config.definitions, judge_context=config.judge_context
    )


def criteria_manifest(judge: ChatModel, config: CriteriaConfig) -> dict[str, Any]:
    fmt = resolve_output(config.output, judge)
    with recording() as names:
        for dim in config.dimensions:
            _messages(PROBE_EXAMPLE, dim, fmt, config)
    return {
        "judge": judge.name,
        "output_format": fmt,
        "config": config.model_dump(mode="json"),
        "prompts": versions(names),
    }


def needs_criteria(example: Example, dimensions: Sequence[str]) -> bool:
    return any(not example.criteria.get(d, "").strip() for d in dimensions)


async def prepare_criteria(
    examples: Sequence[Example],
    judge: ChatModel,
    *,
    concurrency: int = 4,
    config: CriteriaConfig | None = None,
    overwrite: bool = False,
    show_progress: bool | None = None,
    on_example: Callable[[Example], None] | None = None,
) -> list[Example]:
    """Return the examples (same order) with ``criteria`` filled per dimension.

    Examples that already hold criteria for every dimension are returned
    unchanged without a call unless ``overwrite``. ``on_example`` receives
    each finished example as soon as it is done (to append it to a file).
    ``usage`` of the whole job is left in the returned examples' meta only
    per example (``meta["criteria_info"]["usage"]``).
    """
    config = config or CriteriaConfig()
    if config.min_items > config.max_items:
        raise ValueError("min_items must not exceed max_items")
    unknown = [d for d in config.dimensions if d not in EMPATHY_DIMENSIONS]
    if unknown:
        raise ValueError(f"criteria are written for {list(EMPATHY_DIMENSIONS)} only, not {unknown}")
    fmt = resolve_output(config.output, judge)
    sampler = JudgeSampler(
        judge,
        fmt=fmt,
        max_tokens=config.max_tokens,
        max_resamples=config.max_resamples,
        seed=config.seed,
        limit=config.max_concurrency,
    )
    info_base = criteria_manifest(judge, config)
    answer_schema = schema(
        criteria_answer(config.min_items, config.max_items), config.json_text_chars
    )

    def parse(text: str) -> ParsedCriteria:
        return parse_criteria(
            text, fmt=fmt, min_items=config.min_items, max_items=config.max_items, weighted=True
        )

    async def one(example: Example) -> Example:
        if not overwrite and not needs_criteria(example, config.dimensions):
            return example
        criteria = dict(example.criteria)
        errors: dict[str, str] = {}
        rescaled: list[str] = []
        usage = Usage()
        todo = [d for d in config.dimensions if overwrite or not criteria.get(d, "").strip()]
        results = await asyncio.gather(
            *(
                sampler.sample(
                    _messages(example, dim, fmt, config),
                    k=1,
                    temperature=config.temperature,
                    schema=answer_schema,
                    parse=parse,
                )
                for dim in todo
            )
        )
        for dim, (samples, used) in zip(todo, results):
            usage = usage + used
            good = [s for s in samples if s.ok]
            if good:
                verdict: ParsedCriteria = good[0].verdict
                criteria[dim] = verdict.text
                if verdict.rescaled:
                    rescaled.append(dim)
            else:
                criteria.pop(dim, None)
                errors[dim] = "; ".join(sorted({s.reason or "unreadable" for s in samples}))
        meta = dict(example.meta)
        meta["criteria_info"] = {
            "judge": info_base["judge"],
            "prompts": info_base["prompts"],
            "temperature": config.temperature,
            "rescaled": rescaled,
            "usage": usage.model_dump(),
        }
        if errors:
            meta["criteria_errors"] = errors
        else:
            meta.pop("criteria_errors", None)
        return example.model_copy(update={"criteria": criteria, "meta": meta})

    def deliver(_: Example, done: Example) -> None:
        if on_example is not None:
            on_example(done)

    return await run_bounded(
        list(examples),
        one,
        limit=concurrency,
        on_result=deliver,
        description="criteria",
        show_progress=show_progress,
    )
