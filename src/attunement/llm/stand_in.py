"""The embedded stand-in judge: how it is named, recognised and noted.

Why: the spec ``local`` loads a 135M model that keeps every workflow runnable
offline; its verdicts are close to noise. A terminal warning is lost as soon
as a result file or report leaves the shell, so the fact travels with the
numbers instead: a model built from the bare spec knows it is the stand-in
(:attr:`attunement.llm.base.ChatModel.stand_in`), a reward judged by it puts
``stand_in_judge`` (:data:`STAND_IN_NOTE`) into its manifest
(:func:`stand_in_fields`), and every report shows one line found by
:func:`stand_in_line` in whatever manifest it was built from. Defined here,
below the CLI, so the rewards, benchmarks and reports that write and read the
note share one sentence and one test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, Field

from attunement.llm.base import ChatModel

#: the spec that names the embedded stand-in (``local:FILE.gguf`` is a model the user chose)
STAND_IN_SPEC = "local"
#: the manifest key that carries the note
STAND_IN_KEY = "stand_in_judge"
#: what is printed, and written into manifests and reports, when the stand-in judges
STAND_IN_NOTE = (
    "the embedded 135M stand-in (--judge local) judged: its numbers are not meaningful; "
    "name a real judge for results"
)


def is_stand_in(spec: str | None) -> bool:
    """The embedded toy model (``local``), not a GGUF file the user chose.

    >>> is_stand_in("local"), is_stand_in("local:/m/judge.gguf"), is_stand_in(None)
    (True, False, False)
    """
    return spec is not None and spec.strip() == STAND_IN_SPEC


#: a results model's field holding the note (named :data:`STAND_IN_KEY`)
StandInNote = Annotated[
    str | None, Field(description="set when the embedded stand-in judged: its numbers mean nothing")
]


def stand_in_note(model: ChatModel) -> str | None:
    """:data:`STAND_IN_NOTE` when ``model`` is the embedded stand-in, else None."""
    return STAND_IN_NOTE if model.stand_in else None


def stand_in_fields(model: ChatModel) -> dict[str, Any]:
    """What a manifest of work judged by ``model`` adds: the note, or nothing."""
    return {STAND_IN_KEY: STAND_IN_NOTE} if model.stand_in else {}


def stand_in_line(manifest: Any) -> str:
    """The note a report shows for a manifest ('' when no stand-in judged).

    Looks through nested manifests (a reward's inside a run's, a list of
    judges, a results model with a ``stand_in_judge`` field), so a report
    passes what it has, whatever its shape.

    >>> stand_in_line({"judges": [{"reward": {STAND_IN_KEY: STAND_IN_NOTE}}]}) == (
    ...     "Note: " + STAND_IN_NOTE + ".")
    True
    >>> stand_in_line({"judge": "openai:http://gpu/v1#qwen"})
    ''
    """
    return f"Note: {STAND_IN_NOTE}." if _holds_note(manifest) else ""


def _holds_note(value: Any) -> bool:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, Mapping):
        if value.get(STAND_IN_KEY):
            return True
        value = value.values()
    elif not isinstance(value, list | tuple):
        return False
    return any(_holds_note(v) for v in value)
