"""The judges' JSON answers: one pydantic model per answer shape.

Each model both **validates** a JSON answer (the parsers in
:mod:`attunement.judging.parsing` call :meth:`~pydantic.BaseModel.model_validate`)
and **generates** the JSON schema sent to the judge (:func:`answer_schema`), so
the shape asked for and the shape accepted cannot drift apart.

Two details are the schema's alone, written on the fields:

- free-text fields carry ``maxLengthShare`` (with optional bounds):
  :func:`answer_schema` turns it into ``maxLength = share x json_text_chars``,
  because a small model given no bound writes until ``max_tokens`` and leaves an
  unterminated object. Validation does not enforce the length: a longer reason
  from a server that ignores schemas is still a valid answer;
- a criterion's weight is asked for in steps of 5 (an ``enum``, which every
  grammar sampler understands) but any positive weight is accepted and the
  weights are rescaled to sum to 100 afterwards.

The schemas are self-contained (no ``$ref``), close every object
(``additionalProperties: false``) and require every field, as strict
structured-output modes and llama.cpp's grammar converter expect.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model, field_validator

from attunement.judging.scale import BYSTANDER_KEYS, Part, Rating

#: how many criteria a stored (evaluation) or shared criteria set holds: asked for,
#: sent as the JSON schema and validated in JSON answers
CRITERIA_ITEMS = (4, 6)
#: a criterion's weight in percent
Weight = Annotated[
    int, Field(gt=0, le=100), WithJsonSchema({"type": "integer", "enum": list(range(5, 65, 5))})
]


def _text(share: float = 1.0, *, least: int = 20, most: int | None = None) -> Any:
    extra: dict[str, Any] = {"maxLengthShare": share, "maxLengthMin": least}
    if most is not None:
        extra["maxLengthMax"] = most
    return Field(json_schema_extra=extra)


_NUMERIC = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*\d+)?\s*")


def number_or_none(value: Any) -> float | int | None:
    """A JSON number, or a string holding only one (``"4"``, ``"4/5"``); else None.

    >>> number_or_none("4/5"), number_or_none(True), number_or_none("four")
    (4, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        match = _NUMERIC.fullmatch(value)
        if match:
            number = float(match.group(1))
            return int(number) if number.is_integer() else number
    return None


class Answer(BaseModel):
    """Base of the judge answers: extra keys are tolerated when reading (a judge
    may add a note), but the schema sent closes every object."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"additionalProperties": False})

    @field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, value: Any, info: Any) -> Any:
        field = cls.model_fields[info.field_name]
        if field.annotation is str or isinstance(value, list | dict):
            return value
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")  # noqa: TRY004 (pydantic wants ValueError)
        number = number_or_none(value)
        return value if number is None else number


class RatingAnswer(Answer):
    """PERM's 1-5 judges: a short reason, then the score."""

    reason: str = _text()
    score: Rating


class ScoreAnswer(Answer):
    """PereGRM against given criteria: an analysis, then the score."""

    analysis: str = _text()
    score: Rating


class InlineAnswer(Answer):
    """PereGRM inline: 3-5 criteria, an analysis, then the score."""

    criteria: list[Annotated[str, _text(0.5)]] = Field(min_length=3, max_length=5)
    analysis: str = _text()
    score: Rating


class CriterionAnswer(Answer):
    name: str = _text(0.25, least=12, most=60)
    weight: Weight
    description: str = _text(0.5)


class CriteriaAnswer(Answer):
    """Weighted criteria (how many: :func:`criteria_answer`)."""

    criteria: list[CriterionAnswer]


@cache
def criteria_answer(
    min_items: int = CRITERIA_ITEMS[0], max_items: int = CRITERIA_ITEMS[1]
) -> type[CriteriaAnswer]:
    """The criteria answer with ``min_items``-``max_items`` criteria."""
    return create_model(
        f"CriteriaAnswer{min_items}to{max_items}",
        __base__=CriteriaAnswer,
        criteria=(list[CriterionAnswer], Field(min_length=min_items, max_length=max_items)),
    )


#: the bystander: a short assessment, then the five sub-scores (named once, in scale.py)
BystanderAnswer: type[Answer] = create_model(
    "BystanderAnswer",
    __base__=Answer,
    __doc__="The bystander: a short assessment, then five whole-number sub-scores.",
    assessment=(str, _text()),
    **{key: (Part, ...) for key in BYSTANDER_KEYS},
)


def _inline(schema: dict[str, Any], defs: dict[str, Any], chars: int) -> dict[str, Any]:
    if "$ref" in schema:
        schema = copy.deepcopy(defs[schema["$ref"].rsplit("/", 1)[-1]])
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "$defs", "maxLengthMin", "maxLengthMax", "description", "default"):
            continue
        if key == "maxLengthShare":
            size = max(schema.get("maxLengthMin", 0), int(chars * value))
            if "maxLengthMax" in schema:
                size = min(size, schema["maxLengthMax"])
            out["maxLength"] = size
        elif key == "properties":
            out[key] = {name: _inline(sub, defs, chars) for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = _inline(value, defs, chars)
        else:
            out[key] = value
    if out.get("type") == "object":
        out["additionalProperties"] = False
        out["required"] = list(out.get("properties", {}))
    return out


def answer_schema(model: type[BaseModel], chars: int) -> dict[str, Any]:
    """The JSON schema of ``model`` as sent to a judge, free text bounded by ``chars``.

    >>> answer_schema(RatingAnswer, 100)["properties"]["reason"]
    {'maxLength': 100, 'type': 'string'}
    """
    schema = model.model_json_schema()
    return _inline(schema, schema.get("$defs", {}), chars)


def validation_problem(exc: Exception) -> str:
    """The first problem of a pydantic validation error, as ``field: message``."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    first = errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    value = first.get("input")
    if first.get("type") == "literal_error":
        allowed = [int(x) for x in re.findall(r"-?\d+", str(first.get("ctx", {}).get("expected")))]
        if allowed and allowed == list(range(allowed[0], allowed[-1] + 1)):
            return f"{where}: {value!r} is outside {allowed[0]}-{allowed[-1]}"
    shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
    return f"{where}: {first.get('msg')}{shown}" if where else f"{first.get('msg')}{shown}"
