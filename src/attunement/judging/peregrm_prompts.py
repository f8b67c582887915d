"""PereGRM's prompts for writing criteria and scoring by them (seed 000).

One prompt serves both tasks: instructions for each, both answer formats, the
definitions of the scored dimensions, the user's record and message, then the
task. A criteria request ends with the line naming its dimension; a scoring call
with the criteria sets of every dimension judged on the same text, the reply,
and the line naming the dimension and set to score by. So every request about
one example shares everything up to the task, and a server's prefix cache
prefills the user's record once per example and the reply once for all its
verdicts. ``fixed`` and ``inline`` modes keep their own prompts
(``peregrm_score``, ``peregrm_inline``), one dimension each.
"""

from __future__ import annotations

from collections.abc import Sequence

from attunement.judging.settings import Definitions, JudgeContext
from attunement.judging.templates import (
    named_dimension,
    prompt_piece,
    render_context,
    render_definitions,
    render_message,
    render_prompt,
)
from attunement.llm.base import Message
from attunement.records import EMPATHY_DIMENSIONS, Dimension, Example


def definition(dimension: Dimension, definitions: Definitions) -> str:
    """PereGRM's definition of ``dimension`` in the ``definitions`` version."""
    return prompt_piece(f"peregrm_def_{definitions}_{dimension}")


def defined(dimensions: Sequence[Dimension], definitions: Definitions) -> str:
    """The definitions of ``dimensions`` in the ``definitions`` version, as the
    criteria and scoring prompts show them (before the user's record)."""
    return render_definitions([(d, definition(d, definitions)) for d in dimensions])


def criteria_messages(
    example: Example,
    dimension: Dimension,
    fmt: str,
    *,
    definitions: Definitions = "training",
    judge_context: JudgeContext = "authors",
    dimensions: Sequence[Dimension] = EMPATHY_DIMENSIONS,
) -> list[Message]:
    """The prompt asking for weighted criteria for one example and dimension.

    It defines all ``dimensions`` before the user's record and names the one to
    write for in its last line, so the prompts for the dimensions of one example
    share everything before that line (a server's prefix cache prefills the
    record once) and the definitions are shared by every example.
    """
    if dimension not in dimensions:
        raise ValueError(f"{dimension} is not among the dimensions defined {list(dimensions)}")
    return write_or_score(
        example,
        fmt,
        definitions=definitions,
        context=render_context(
            example, judge_context=judge_context, include_memories=True, demographics=False
        ),
        dimensions=dimensions,
        task=named_dimension(dimension),
    )


def write_or_score(
    example: Example,
    fmt: str,
    *,
    definitions: Definitions,
    context: str,
    dimensions: Sequence[Dimension],
    task: str,
) -> list[Message]:
    """PereGRM's prompt for writing criteria and for scoring by criteria sets: one
    prompt whose last part (``task``) says which, so the criteria requests and the
    scoring calls of an example share everything before it (instructions, answer
    formats, definitions, the user's record and message) and a server's prefix
    cache prefills the record once per example."""
    return render_prompt(
        "peregrm_write_or_score",
        criteria_format=prompt_piece(f"peregrm_format_criteria_{fmt}"),
        score_format=prompt_piece(f"peregrm_format_score_{fmt}"),
        definitions=defined(dimensions, definitions),
        context=context,
        message=render_message(example),
        task=task,
    )
