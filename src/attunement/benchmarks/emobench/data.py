"""EmoBench items (Sabour et al., MIT licence): reading the published JSONL files.

Two tasks, both multiple choice:

- **EU** (emotional understanding): a scenario about ``subject``; pick the
  emotion from ``emotion_choices`` *and* its cause from ``cause_choices``. An
  item counts as right only when both are right.
- **EA** (emotional application): a scenario; pick the best ``choices`` entry.
  ``question type`` is ``"Response"`` (what to say) or ``"Action"`` (what to do).

Labels are the *text* of the right choice, as published; :meth:`EAItem.answer_index`
turns them into positions and fails loudly when a label is not among the choices.
Files are read through :func:`attunement.jsonl.read_jsonl`, so a bad line is
reported as ``file:line: field: message`` before any model call;
:func:`read_items` reads both tasks from files or folders, telling each file's
task from its fields.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from attunement.jsonl import read_jsonl


class _Item(BaseModel):
    # EmoBench files carry a few fields we do not use (e.g. language variants)
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    qid: str
    language: str = "en"
    scenario: str = Field(min_length=1)
    subject: str = ""

    @model_validator(mode="before")
    @classmethod
    def _qid_text(cls, data):
        if isinstance(data, dict) and isinstance(data.get("qid"), int):
            data = {**data, "qid": str(data["qid"])}
        return data


def _index(label: str, choices: list[str], what: str) -> int:
    try:
        return choices.index(label)
    except ValueError:
        raise ValueError(f"{what} label {label!r} is not one of its choices") from None


class EAItem(_Item):
    """One emotional-application item: pick the best response or action."""

    category: str = ""
    question_type: Literal["Response", "Action"] = Field(alias="question type")
    choices: list[str] = Field(min_length=2)
    label: str

    @model_validator(mode="after")
    def _label_in_choices(self) -> EAItem:
        _index(self.label, self.choices, "EA")
        return self

    @property
    def answer_index(self) -> int:
        return _index(self.label, self.choices, "EA")


class EUItem(_Item):
    """One emotional-understanding item: the emotion and its cause."""

    coarse_category: str = ""
    finegrained_category: str = ""
    emotion_choices: list[str] = Field(min_length=2)
    emotion_label: str
    cause_choices: list[str] = Field(min_length=2)
    cause_label: str

    @model_validator(mode="after")
    def _labels_in_choices(self) -> EUItem:
        _index(self.emotion_label, self.emotion_choices, "emotion")
        _index(self.cause_label, self.cause_choices, "cause")
        return self

    @property
    def emotion_index(self) -> int:
        return _index(self.emotion_label, self.emotion_choices, "emotion")

    @property
    def cause_index(self) -> int:
        return _index(self.cause_label, self.cause_choices, "cause")


def read_ea(
    path: Path | str, *, question_type: Literal["Response", "Action"] | None = None
) -> list[EAItem]:
    """EA items of a file, optionally only one question type."""
    items = read_jsonl(Path(path), EAItem)
    return [i for i in items if question_type is None or i.question_type == question_type]


def read_eu(path: Path | str) -> list[EUItem]:
    return read_jsonl(Path(path), EUItem)


# --------------------------------------------------------------------------- items of both tasks

Task = Literal["EU", "EA"]
Item = EAItem | EUItem


def task_of(item: Item) -> Task:
    return "EU" if isinstance(item, EUItem) else "EA"


def item_key(task: str, qid: str, language: str) -> tuple[str, str, str]:
    return (task, qid, language)


def read_items(paths: Sequence[Path | str]) -> list[Item]:
    """EA and EU items from files or folders; each file's task is read from its fields."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(
                f
                for f in p.iterdir()
                if f.suffix == ".jsonl" and not f.name.endswith(".rejects.jsonl")
            )
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    items: list[Item] = []
    for f in files:
        kind = _file_task(f)
        items += read_eu(f) if kind == "EU" else read_ea(f)
    keys = [item_key(task_of(i), i.qid, i.language) for i in items]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"items appear twice: {dupes[:3]}")
    return items


def _file_task(path: Path) -> Task:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    raise ValueError(f"{path}:1: not valid JSON") from None
                if "emotion_choices" in first:
                    return "EU"
                if "choices" in first:
                    return "EA"
                raise ValueError(
                    f"{path}: neither an EU file (emotion_choices) nor an EA file (choices)"
                )
    raise ValueError(f"{path}: empty file")


def parts_of(item: Item) -> dict[str, int]:
    """Each answer part with its number of options."""
    if isinstance(item, EUItem):
        return {"emotion": len(item.emotion_choices), "cause": len(item.cause_choices)}
    return {"answer": len(item.choices)}


def expected_of(item: Item) -> dict[str, int]:
    if isinstance(item, EUItem):
        return {"emotion": item.emotion_index, "cause": item.cause_index}
    return {"answer": item.answer_index}
