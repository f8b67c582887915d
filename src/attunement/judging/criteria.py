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

from pydantic import Field, model_validator

from attunement.concurrency import run_bounded
from attunement.judging.answers import CRITERIA_ITEMS, criteria_answer
from attunement.judging.base import PROBE_EXAMPLE
from attunement.judging.criteria_lists import ParsedCriteria, parse_criteria
from attunement.judging.peregrm_prompts import criteria_messages
from attunement.judging.sampler import JudgeSampler, Sample
from attunement.judging.settings import Definitions, JudgeSettings, Temperature
from attunement.judging.templates import recording, resolve_output, schema, versions
from attunement.llm.base import ChatModel, Message
from attunement.llm.stand_in import stand_in_fields
from attunement.records import EMPATHY_DIMENSIONS, Dimension, Example, Usage

#: the authors' evaluation script writes its criteria at this temperature
CRITERIA_TEMPERATURE = 0.2


class CriteriaConfig(JudgeSettings):
    """How fixed criteria are written (defaults: the authors' evaluation code)."""

    temperature: Temperature = CRITERIA_TEMPERATURE
    min_items: int = Field(CRITERIA_ITEMS[0], ge=1, description="fewest criteria per set")
    max_items: int = Field(CRITERIA_ITEMS[1], ge=1, description="most criteria per set")
    dimensions: tuple[Dimension, ...] = Field(
        EMPATHY_DIMENSIONS, description="the empathy dimensions to write criteria for"
    )
    definitions: Definitions = Field(
        "evaluation",
        description="dimension definitions the criteria are written from (the "
        "authors' evaluation code: 'evaluation')",
    )

    @model_validator(mode="after")
    def _sound(self) -> CriteriaConfig:
        if self.min_items > self.max_items:
            raise ValueError("min_items must not exceed max_items")
        unknown = [d for d in self.dimensions if d not in EMPATHY_DIMENSIONS]
        if unknown:
            raise ValueError(
                f"criteria are written for {list(EMPATHY_DIMENSIONS)} only, not {unknown}"
            )
        return self


def _messages(example: Example, dimension: Dimension, fmt: str, config: CriteriaConfig):
    return criteria_messages(
        example,
        dimension,
        fmt,
        definitions=config.definitions,
        judge_context=config.judge_context,
        dimensions=config.dimensions,
    )


def criteria_manifest(judge: ChatModel, config: CriteriaConfig) -> dict[str, Any]:
    fmt = resolve_output(config.output, judge)
    with recording() as names:
        for dim in config.dimensions:
            _messages(PROBE_EXAMPLE, dim, fmt, config)
    return {
        "judge": judge.name,
        **stand_in_fields(judge),
        "output_format": fmt,
        "config": config.model_dump(mode="json"),
        "prompts": versions(names),
    }


def needs_criteria(example: Example, dimensions: Sequence[str]) -> bool:
    return any(not example.criteria.get(d, "").strip() for d in dimensions)


class CriteriaWriter:
    """Writes the missing criteria of one example at a time, on one judge."""

    def __init__(self, judge: ChatModel, config: CriteriaConfig, *, overwrite: bool = False):
        self.config = config
        self.overwrite = overwrite
        self.fmt = resolve_output(config.output, judge)
        self.sampler = JudgeSampler.for_settings(judge, self.fmt, config)
        self.manifest = criteria_manifest(judge, config)
        self.schema = schema(
            criteria_answer(config.min_items, config.max_items), config.json_text_chars
        )

    def parse(self, text: str) -> ParsedCriteria:
        cfg = self.config
        return parse_criteria(
            text, fmt=self.fmt, min_items=cfg.min_items, max_items=cfg.max_items, weighted=True
        )

    def messages(self, example: Example, dimension: Dimension) -> list[Message]:
        return _messages(example, dimension, self.fmt, self.config)

    async def fill(self, example: Example) -> Example:
        """The example with criteria written for every dimension that lacks them
        (every dimension with ``overwrite``), and what happened in its meta."""
        if not self.overwrite and not needs_criteria(example, self.config.dimensions):
            return example
        criteria = dict(example.criteria)
        todo = [
            d for d in self.config.dimensions if self.overwrite or not criteria.get(d, "").strip()
        ]
        results = await asyncio.gather(
            *(
                self.sampler.sample(
                    self.messages(example, dim),
                    k=1,
                    temperature=self.config.temperature,
                    schema=self.schema,
                    parse=self.parse,
                )
                for dim in todo
            )
        )
        usage, rescaled, errors = Usage(), [], {}
        for dim, (samples, used) in zip(todo, results):
            usage = usage + used
            written = first_valid(samples)
            if written is None:
                criteria.pop(dim, None)
                errors[dim] = "; ".join(sorted({s.reason or "unreadable" for s in samples}))
                continue
            criteria[dim] = written.text
            if written.rescaled:
                rescaled.append(dim)
        meta = self.meta(example, rescaled, usage, errors)
        return example.model_copy(update={"criteria": criteria, "meta": meta})

    def meta(
        self, example: Example, rescaled: list[str], usage: Usage, errors: dict[str, str]
    ) -> dict[str, Any]:
        """The example's meta with this run's ``criteria_info`` (and errors, if any)."""
        meta = dict(example.meta)
        meta["criteria_info"] = {
            "judge": self.manifest["judge"],
            "prompts": self.manifest["prompts"],
            "temperature": self.config.temperature,
            "rescaled": rescaled,
            "usage": usage.model_dump(),
        }
        if errors:
            meta["criteria_errors"] = errors
        else:
            meta.pop("criteria_errors", None)
        return meta


def first_valid(samples: Sequence[Sample]) -> ParsedCriteria | None:
    """The criteria of the first readable sample, if any."""
    good = [s for s in samples if s.ok]
    return good[0].verdict if good else None


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
    The usage of each example's criteria is in its meta
    (``meta["criteria_info"]["usage"]``).
    """
    writer = CriteriaWriter(judge, config or CriteriaConfig(), overwrite=overwrite)

    def deliver(_: Example, done: Example) -> None:
        if on_example is not None:
            on_example(done)

    return await run_bounded(
        list(examples),
        writer.fill,
        limit=concurrency,
        on_result=deliver,
        description="criteria",
        show_progress=show_progress,
    )
