"""EmoBench's figures: an answer graded, and accuracies on 0-100 with Wilson intervals.

An item is right when every part is: EA has one part (the answer), EU two
(the emotion *and* its cause). An answer that cannot be read counts as wrong
and is counted separately (``unparsed``), so a model that does not answer
cannot look better than one that answers wrongly. Accuracies are given per
task, per EU part, per EA question type and per category; the interval method
is :func:`attunement.evaluation.stats.wilson_ci`. Each accuracy comes with its
**chance** level, the accuracy of a model that picks every option at random:
the mean over its items of 1 / (number of options), multiplied over the parts
an item needs right (EU with 6 feelings and 4 reasons: 1/24).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from attunement.benchmarks.emobench.data import Item, Task, expected_of, item_key, parts_of, task_of
from attunement.evaluation.stats import wilson_ci
from attunement.llm import StandInNote
from attunement.records import Record, Usage


class EmoBenchAnswer(Record):
    """The model's answer to one item and whether it was right."""

    task: Task
    qid: str
    language: str = "en"
    category: str = ""
    subcategory: str = Field("", description="EA: question type; EU: fine-grained category")
    predicted: dict[str, int | None] = Field(description="chosen option per part (0-based)")
    expected: dict[str, int]
    parts_correct: dict[str, bool]
    correct: bool
    raw: str = ""
    reason: str | None = Field(None, description="why the answer could not be read")
    usage: Usage = Field(default_factory=Usage)


def grade(item: Item, predicted: dict[str, int | None]) -> tuple[dict[str, bool], bool]:
    """Per-part correctness and the item's verdict (EU: both parts right).

    >>> from attunement.benchmarks.emobench.data import EUItem
    >>> eu = EUItem.model_validate({"qid": "1", "scenario": "s", "emotion_choices": ["a", "b"],
    ...     "emotion_label": "b", "cause_choices": ["x", "y"], "cause_label": "x"})
    >>> grade(eu, {"emotion": 1, "cause": 1})
    ({'emotion': True, 'cause': False}, False)
    """
    expected = expected_of(item)
    parts = {k: predicted.get(k) == v for k, v in expected.items()}
    return parts, all(parts.values())


class Accuracy(BaseModel):
    """Share of items right, on 0-100, with a Wilson interval."""

    group: dict[str, str] = Field(default_factory=dict)
    n: int
    correct: int
    unparsed: int = 0
    accuracy: float | None
    low: float | None = None
    high: float | None = None
    chance: float | None = Field(None, description="accuracy of random picks, 0-100")


class EmoBenchResults(BaseModel):
    model: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)
    prompts: str = Field("", description="which prompts asked the items, and what that means")
    answered_now: int = 0
    stand_in_judge: StandInNote = None
    tasks: list[Accuracy] = Field(default_factory=list, description="EU and EA (table 5)")
    parts: list[Accuracy] = Field(
        default_factory=list, description="EU emotion alone and cause alone"
    )
    question_types: list[Accuracy] = Field(default_factory=list)
    categories: list[Accuracy] = Field(default_factory=list)


def item_chance(item: Item, part: str | None = None) -> float:
    """The chance that random picks get an item (or one part of it) right.

    >>> from attunement.benchmarks.emobench.data import EUItem
    >>> eu = EUItem.model_validate({"qid": "1", "scenario": "s", "emotion_choices": list("abcd"),
    ...     "emotion_label": "b", "cause_choices": ["x", "y"], "cause_label": "x"})
    >>> item_chance(eu), item_chance(eu, "cause")
    (0.125, 0.5)
    """
    chance = 1.0
    for name, n in parts_of(item).items():
        if part is None or part == name:
            chance /= n
    return chance


def accuracy(
    answers: Sequence[EmoBenchAnswer],
    *,
    group: dict[str, str] | None = None,
    part: str | None = None,
    level: float = 0.95,
    items: Mapping[tuple[str, str, str], Item] | None = None,
) -> Accuracy:
    """Accuracy (0-100) of some answers, of the whole item or of one part of it, with
    the chance level of their ``items`` (when given)."""
    right = sum(1 for a in answers if (a.parts_correct.get(part, False) if part else a.correct))
    ci = wilson_ci(right, len(answers), level=level)
    pct = lambda x: None if x is None else 100 * x
    known = [
        items[k] for a in answers if items and (k := item_key(a.task, a.qid, a.language)) in items
    ]
    chance = sum(item_chance(i, part) for i in known) / len(known) if known else None
    return Accuracy(
        group=dict(group or {}),
        n=len(answers),
        correct=right,
        unparsed=sum(1 for a in answers if a.reason),
        accuracy=pct(ci.estimate),
        low=pct(ci.low),
        high=pct(ci.high),
        chance=pct(chance),
    )


def score_answers(
    answers: Sequence[EmoBenchAnswer],
    *,
    level: float = 0.95,
    items: Sequence[Item] = (),
) -> EmoBenchResults:
    """Every accuracy, with chance levels when the ``items`` are given."""
    by_key = {item_key(task_of(i), i.qid, i.language): i for i in items}
    res = EmoBenchResults()
    for task in ("EU", "EA"):
        mine = [a for a in answers if a.task == task]
        if not mine:
            continue
        res.tasks.append(accuracy(mine, group={"task": task}, level=level, items=by_key))
        if task == "EU":
            for part in ("emotion", "cause"):
                res.parts.append(
                    accuracy(
                        mine,
                        group={"task": task, "part": part},
                        part=part,
                        level=level,
                        items=by_key,
                    )
                )
        else:
            for qt in sorted({a.subcategory for a in mine}):
                res.question_types.append(
                    accuracy(
                        [a for a in mine if a.subcategory == qt],
                        group={"task": task, "question_type": qt},
                        level=level,
                        items=by_key,
                    )
                )
        for cat in sorted({a.category for a in mine}):
            res.categories.append(
                accuracy(
                    [a for a in mine if a.category == cat],
                    group={"task": task, "category": cat or "-"},
                    level=level,
                    items=by_key,
                )
            )
    return res
