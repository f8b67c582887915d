"""Ask a model for JSON, validate it, retry with fresh samples, never invent.

Every builder stage goes through :func:`ask_json`: one request with a JSON
schema (strings carry ``maxLength`` so a small model cannot ramble forever),
then the stage's own ``parse`` function turns the object into records and
raises :class:`InvalidOutput` (or a pydantic ``ValidationError``) with a reason
when the content is wrong. A bad answer is retried up to ``max_attempts``
times, each retry asking for a new sample number (``sample_start``) at a
non-zero temperature so it is a genuinely fresh sample; when all attempts fail
the result carries the last reason and no value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from attunement.llm import ChatModel, Message

T = TypeVar("T")


class InvalidOutput(ValueError):
    """A model answer that parses as JSON but is wrong for the stage."""


class StageSettings(BaseModel):
    """Sampling and retry settings of one LLM stage."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    retry_temperature: float = Field(default=0.9, ge=0.0, le=2.0,
                                     description="temperature of retries (a fresh sample)")
    max_tokens: int = Field(default=512, ge=16)
    max_attempts: int = Field(default=3, ge=1)


@dataclass
class Asked(Generic[T]):
    """The outcome of :func:`ask_json`: a value, or the reason there is none."""

    value: T | None
    attempts: int
    reason: str | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.value is not None


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def loads_json_object(text: str) -> dict[str, Any]:
    """Parse a JSON object, tolerating a Markdown code fence around it.

    Servers without schema support sometimes wrap the object in
    ```json ... ```; anything else that is not one JSON object is an error.
    """
    body = text.strip()
    m = _FENCE.match(body)
    if m:
        body = m.group(1)
    try:
        obj = json.loads(body, strict=False)  # literal newlines inside strings are fine
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"not valid JSON ({exc.msg} at char {exc.pos}); "
                            f"answer began {body[:80]!r}") from None
    if not isinstance(obj, dict):
        raise InvalidOutput(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        return f"{loc}: {err.get('msg')}" if loc else str(err.get("msg"))
    return str(exc)


async def ask_json(
    model: ChatModel,
    messages: Sequence[Message],
    schema: dict[str, Any],
    parse: Callable[[dict[str, Any]], T],
    settings: StageSettings,
    *,
    seed: int | None = None,
) -> Asked[T]:
    """Ask until ``parse`` accepts an answer or the attempts run out.

    Errors of the model itself (:class:`attunement.llm.LLMError`: server down,
    timeouts after the backend's own retries) are not caught: they stop the
    job, which can then be resumed, instead of being recorded as a verdict.
    """
    failures: list[str] = []
    for attempt in range(settings.max_attempts):
        temperature = settings.temperature if attempt == 0 else max(
            settings.temperature, settings.retry_temperature)
        [completion] = await model.complete(
            list(messages), n=1, temperature=temperature, max_tokens=settings.max_tokens,
            json_schema=schema, seed=seed, sample_start=attempt)
        try:
            value = parse(loads_json_object(completion.text))
        except (InvalidOutput, ValidationError) as exc:
            note = _describe(exc)
            if completion.finish_reason == "length":
                note += " (the answer hit max_tokens)"
            failures.append(note)
            continue
        return Asked(value=value, attempts=attempt + 1, failures=failures)
    return Asked(value=None, attempts=settings.max_attempts,
                 reason=f"invalid output after {settings.max_attempts} attempts: {failures[-1]}",
                 failures=failures)


# --------------------------------------------------------------------------- schema helpers


def text(max_length: int, min_length: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length, "maxLength": max_length}


def enum(values: Sequence[str]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def obj(properties: dict[str, Any], required: Sequence[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(required if required is not None else properties),
            "additionalProperties": False}


def array(items: dict[str, Any], *, min_items: int = 0, max_items: int | None = None
          ) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "array", "items": items, "minItems": min_items}
    if max_items is not None:
        out["maxItems"] = max_items
    return out
