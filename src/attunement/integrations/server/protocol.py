"""The wire of ``attune serve``: request bodies, the OpenRLHF query, answers, errors.

OpenRLHF posts ``{"query": [...], "prompts": [...], "labels": [...]}``, where
``query[i]`` is the prompt followed by the policy's response, decoded with
special tokens: :func:`split_query` cuts the response out. With several
``--reward.remote_url`` URLs OpenRLHF sends the sample to the first and empty
lists to the others; those are answered with empty lists. The whole-group
endpoint takes :class:`GroupRequest`. Every refusal is an :class:`HTTPProblem`
(a status, a message and headers) that the app answers as
``{"error": {"message", "type"}}``. JSON has no NaN, so :func:`finite` writes a
missing number as null.

A body is checked before any model sees it (:func:`clean_json`): nesting
deeper than :data:`MAX_JSON_DEPTH` is refused (400) rather than left to blow
the interpreter's recursion limit, and a lone UTF-16 surrogate (valid JSON
escape, invalid text: the judge's HTTP client cannot encode it) is replaced by
U+FFFD, so such a sample is still scored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from attunement.integrations.outcomes import SCORE_KEY, Outcome
from attunement.records import Example

M = TypeVar("M", bound=BaseModel)

#: end-of-turn markers stripped from the end of an OpenRLHF query (it is decoded
#: with special tokens); extend with ``--end-marker``
END_MARKERS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "</s>",
    "<end_of_turn>",
    "<eos>",
    "<｜end▁of▁sentence｜>",
)
#: how much of the end of a prompt locates the response in a query whose start
#: differs (longest first)
_PROMPT_TAILS = (256, 128, 64, 32)
#: deepest JSON nesting accepted in a body (OpenRLHF's is 2; an inline example's about 5)
MAX_JSON_DEPTH = 64
_SURROGATE = re.compile("[\\ud800-\\udfff]")


class HTTPProblem(Exception):
    """A request the server answers with ``status`` and a message."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class OpenRLHFRequest(BaseModel):
    """OpenRLHF's body (unknown extra fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    query: list[str]
    prompts: list[str]
    labels: list[str | dict[str, Any]]

    @model_validator(mode="after")
    def _same_length(self) -> OpenRLHFRequest:
        n = len(self.query)
        if len(self.prompts) != n or len(self.labels) != n:
            raise ValueError(
                f"query, prompts and labels must have the same length "
                f"(got {n}, {len(self.prompts)}, {len(self.labels)})"
            )
        return self


class GroupReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reply_id: str | None = None
    response: str | None = None
    analysis: str = ""
    text: str | None = Field(
        None, description="a raw completion to split into analysis and response"
    )
    completion_tokens: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_text(self) -> GroupReply:
        if (self.response is None) == (self.text is None):
            raise ValueError("give exactly one of 'response' or 'text'")
        return self


class GroupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    example: Example | None = None
    example_id: str | None = None
    replies: list[GroupReply] = Field(min_length=1)
    criteria_round: int | None = Field(None, ge=0)
    split: str | None = None
    judgements: bool = Field(True, description="include every judge sample in the breakdowns")

    @model_validator(mode="after")
    def _one_example(self) -> GroupRequest:
        if (self.example is None) == (self.example_id is None):
            raise ValueError("give exactly one of 'example' or 'example_id'")
        return self


def validation_message(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e["loc"]) or "(body)"
        parts.append(f"{where}: {e['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD.

    >>> clean_text("ok " + chr(0xD800) + " done") == "ok \N{REPLACEMENT CHARACTER} done"
    True
    """
    return _SURROGATE.sub("\ufffd", text)


def clean_json(doc: Any) -> Any:
    """A parsed body with lone surrogates replaced, or a 400 when nested deeper than
    :data:`MAX_JSON_DEPTH` (walked without recursion).

    >>> clean_json({"a": [chr(0xDC00)]}) == {"a": ["\N{REPLACEMENT CHARACTER}"]}
    True
    """
    root: list[Any] = [doc]
    stack: list[tuple[Any, Any, int]] = [(root, 0, 0)]
    while stack:
        parent, slot, depth = stack.pop()
        value = parent[slot]
        if isinstance(value, str):
            parent[slot] = clean_text(value)
        elif isinstance(value, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise HTTPProblem(400, f"body is nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(value, dict):
                value = parent[slot] = {clean_text(k): v for k, v in value.items()}
                stack.extend((value, k, depth + 1) for k in value)
            else:
                stack.extend((value, i, depth + 1) for i in range(len(value)))
    return root[0]


def parse_body(model: type[M], body: Any) -> M:
    """The request body as ``model``, or a 422 naming the first invalid fields."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise HTTPProblem(422, validation_message(exc)) from None


def split_query(query: str, prompt: str, end_markers: Sequence[str] = END_MARKERS) -> str | None:
    """The policy's response in an OpenRLHF query (prompt + response, special tokens kept).

    >>> split_query("<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\nHello!<|im_end|>",
    ...             "<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n")
    'Hello!'
    """
    if query.startswith(prompt):
        rest = query[len(prompt) :]
    else:  # the prompt was truncated on the left, or re-tokenised differently
        for size in _PROMPT_TAILS:
            tail = prompt[-size:]
            at = query.find(tail) if tail else -1
            if at >= 0:
                rest = query[at + len(tail) :]
                break
        else:
            return None
    rest = rest.rstrip()
    stripped = True
    while stripped:
        stripped = False
        for marker in end_markers:
            if marker and rest.endswith(marker):
                rest = rest[: -len(marker)].rstrip()
                stripped = True
    return rest


def finite(value: Any) -> Any:
    """JSON has no NaN: a missing value is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def openrlhf_answer(outcomes: Sequence[Outcome], keys: Sequence[str]) -> dict[str, Any]:
    """OpenRLHF's answer: ``rewards`` and ``scores`` (the same numbers), and every
    other key of :func:`~attunement.integrations.outcomes.metric_keys` in
    ``extra_logs``, one number per item in each list."""
    rows = [o.metrics(keys) for o in outcomes]
    rewards = [row[SCORE_KEY] for row in rows]
    extra_logs = {key: [row[key] for row in rows] for key in keys if key != SCORE_KEY}
    return {"rewards": rewards, "scores": rewards, "extra_logs": extra_logs}


def group_answer(
    reward_model: str, example_id: str, outcomes: Sequence[Outcome], *, judgements: bool
) -> dict[str, Any]:
    """The whole-group endpoint's answer: one result per reply, with its breakdown
    (without the judge samples unless ``judgements``)."""
    exclude = None if judgements else {"judgements"}
    return {
        "reward_model": reward_model,
        "example_id": example_id,
        "criteria_round": outcomes[0].criteria_round,
        "results": [
            {
                "reply_id": o.reply_id,
                "score": o.score,
                "unscorable": o.unscorable,
                "timed_out": o.timed_out,
                "fallback": o.fallback,
                "reason": o.reason,
                "breakdown": (
                    o.breakdown.model_dump(mode="json", exclude=exclude)
                    if o.breakdown is not None
                    else None
                ),
            }
            for o in outcomes
        ],
    }
