"""Ask a model for JSON, validate it, retry with fresh samples, never invent.

Every builder stage goes through :func:`ask_json`: one request with a JSON
schema, then the stage's own ``parse`` function turns the object into records
and raises :class:`InvalidOutput` (or a pydantic ``ValidationError``) with a
reason when the content is wrong. A bad answer is retried up to
``max_attempts`` times, each retry asking for a new sample number
(``sample_start``) at a non-zero temperature so it is a genuinely fresh
sample; when all attempts fail the result carries the last reason and no
value.

**One definition per answer.** Each stage's answer is a pydantic model
(:class:`Answer`); :func:`answer_schema` generates the request's JSON schema
from it (all strings bounded, every field required, no extra keys) and the
same model validates the answer, so the two cannot disagree.
:func:`json_example` renders a compact example object from that schema for the
prompt: endpoints that ignore ``response_format`` still see the shape.

**Room to answer.** :func:`token_floor` derives a ``max_tokens`` floor from
the schema (the longest answer it allows), and an answer cut off by the token
limit (``finish_reason == "length"``) is retried with twice the budget.

**No template echoes.** Small or careless models fill fields with the
prompt's own instructions ("2 to 5 sentences on who they are ..."). Given the
template text, :func:`template_echo` finds answer fields made of instruction
text (shared word 4-grams) and the answer is rejected as
:class:`TemplateEcho`, with its own rejection code.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from attunement.building.limits import limit_note, over_limits, trim_to_limits
from attunement.llm import ChatModel, Message
from attunement.textjson import NotJSONError, sole_json_object

T = TypeVar("T")

#: marks a string field whose values are memory ids (the schema gets their enum)
MEMORY_ID = {"x-memory-id": True}


class InvalidOutput(ValueError):
    """A model answer that parses as JSON but is wrong for the stage."""

    kind = "invalid_output"


class NotJSON(InvalidOutput):
    """An answer that is not one JSON object at all."""

    kind = "not_json"


class TemplateEcho(InvalidOutput):
    """An answer whose fields repeat the prompt's own instructions."""

    kind = "template_echo"


class StageSettings(BaseModel):
    """Sampling and retry settings of one LLM stage."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    retry_temperature: float = Field(
        default=0.9, ge=0.0, le=2.0, description="temperature of retries (a fresh sample)"
    )
    max_tokens: int = Field(
        default=512, ge=16, description="token budget; raised to the schema's floor"
    )
    max_tokens_cap: int = Field(
        default=4096, ge=16, description="largest budget a truncated answer is retried with"
    )
    max_attempts: int = Field(default=3, ge=1)


class Answer(BaseModel):
    """Base of stage answers: extra keys from servers without schema support are ignored."""

    model_config = ConfigDict(extra="ignore")


@dataclass
class Asked(Generic[T]):
    """The outcome of :func:`ask_json`: a value, or the reason there is none.

    ``kinds`` holds the kind of each failed attempt (``not_json``; ``schema``
    when the answer model refused the object; ``invalid_output`` and
    ``template_echo`` for content; ``length`` when the answer was cut off by
    the token limit; ``over_limit`` when a length limit was broken and the
    answer was asked again), ``samples`` the sample numbers used, ``trimmed``
    the paths of values trimmed to their limits in the accepted answer.
    """

    value: T | None
    attempts: int
    reason: str | None = None
    failures: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    trimmed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.value is not None

    @property
    def last_kind(self) -> str:
        return self.kinds[-1] if self.kinds else "invalid_output"


def _json_answer(text: str) -> dict[str, Any]:
    try:
        return sole_json_object(text)
    except NotJSONError as exc:
        raise NotJSON(str(exc)) from None


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        return f"{loc}: {err.get('msg')}" if loc else str(err.get("msg"))
    return str(exc)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


async def ask_json(
    model: ChatModel,
    messages: Sequence[Message],
    schema: dict[str, Any],
    parse: Callable[[dict[str, Any]], T],
    settings: StageSettings,
    *,
    seed: int | None = None,
    sample_base: int = 0,
    instructions: str | None = None,
) -> Asked[T]:
    """Ask until ``parse`` accepts an answer or the attempts run out.

    ``sample_base`` is the first sample number to use (a redo asks for numbers
    it has not used, so a cache serves fresh samples; a redo also samples at
    ``retry_temperature`` from its first attempt). ``instructions`` is the
    prompt's own template text: answers that repeat it are rejected.

    An answer at or over a length limit of ``schema`` is asked again once, in
    the same conversation, with every broken limit named (this extra call does
    not use up an attempt); when an answer is still over a limit after that, it
    is trimmed (:mod:`attunement.building.limits`) and the trimmed paths are
    flagged in :attr:`Asked.trimmed`.

    Errors of the model itself (:class:`attunement.llm.LLMError`: server down,
    timeouts after the backend's own retries) are not caught: they stop the
    job, which can then be resumed, instead of being recorded as a verdict.
    """
    state = _Asking(list(messages), settings, schema, sample_base)
    while state.calls < state.budget:
        attempt = state.calls
        completion = await state.ask(model, seed)
        truncated = completion.finish_reason == "length"
        try:
            data = _json_answer(completion.text)
            data, trimmed = state.fit(data, completion.text)
            if instructions:
                echo = template_echo(_strings(data), instructions)
                if echo:
                    raise TemplateEcho(f"the answer repeats the prompt's instructions: {echo!r}")
            value = parse(data)
        except _AskAgain:
            continue
        except (InvalidOutput, ValidationError) as exc:
            state.failed(exc, truncated)
            continue
        return Asked(
            value=value,
            attempts=attempt + 1,
            failures=state.failures,
            kinds=state.kinds,
            samples=state.samples,
            trimmed=trimmed,
        )
    return Asked(
        value=None,
        attempts=state.calls,
        reason=f"invalid output after {state.calls} attempts: {state.failures[-1]}",
        failures=state.failures,
        kinds=state.kinds,
        samples=state.samples,
    )


class _AskAgain(Exception):
    """The answer broke a length limit: the same conversation goes on once."""


@dataclass
class _Asking:
    """The state of one :func:`ask_json`: the conversation, budgets and failures."""

    messages: list[Message]
    settings: StageSettings
    schema: dict[str, Any]
    sample_base: int
    calls: int = 0
    reasked: bool = False
    failures: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    follow_up: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.budget = self.settings.max_attempts
        self.max_tokens = max(self.settings.max_tokens, token_floor(self.schema))

    async def ask(self, model: ChatModel, seed: int | None) -> Any:
        s = self.settings
        fresh = max(s.temperature, s.retry_temperature)
        first = self.calls == 0 and self.sample_base == 0
        sample = self.sample_base + self.calls
        self.samples.append(sample)
        self.calls += 1
        [completion] = await model.complete(
            [*self.messages, *self.follow_up],
            n=1,
            temperature=s.temperature if first or self.follow_up else fresh,
            max_tokens=self.max_tokens,
            json_schema=self.schema,
            seed=seed,
            sample_start=sample,
        )
        self.follow_up = []
        return completion

    def fit(self, data: dict[str, Any], text: str) -> tuple[dict[str, Any], list[str]]:
        """``data`` within its limits: ask again once, then trim."""
        broken = over_limits(data, self.schema)
        if not broken:
            return data, []
        if not self.reasked:
            self.reasked = True
            self.budget += 1
            note = limit_note(broken)
            self.failures.append(note)
            self.kinds.append("over_limit")
            self.follow_up = [
                {"role": "assistant", "content": text},
                {"role": "user", "content": note},
            ]
            raise _AskAgain
        return trim_to_limits(data, self.schema)

    def failed(self, exc: Exception, truncated: bool) -> None:
        note = _describe(exc)
        kind = exc.kind if isinstance(exc, InvalidOutput) else "schema"
        if truncated:
            note += f" (the answer hit max_tokens={self.max_tokens})"
            kind = "length"
            self.max_tokens = min(
                max(self.max_tokens * 2, self.max_tokens + 1), self.settings.max_tokens_cap
            )
        self.failures.append(note)
        self.kinds.append(kind)


# --------------------------------------------------------------------------- schemas


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        out = {k: _inline(v, defs) for k, v in node.items() if k not in ("title", "$defs")}
        if out.get("type") == "object" and "properties" in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _fill_memory_ids(node: Any, memory_ids: Sequence[str] | None) -> Any:
    if isinstance(node, dict):
        if node.pop("x-memory-id", False):
            node.pop("maxLength", None)
            node.pop("minLength", None)
            if memory_ids is None:
                raise ValueError("this answer cites memory ids: pass memory_ids")
            node["enum"] = list(memory_ids)
        for v in node.values():
            _fill_memory_ids(v, memory_ids)
    elif isinstance(node, list):
        for v in node:
            _fill_memory_ids(v, memory_ids)
    return node


def answer_schema(
    model: type[BaseModel],
    *,
    title: str | None = None,
    memory_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The JSON schema of ``model`` as a request constraint.

    References are inlined, objects forbid extra keys, titles are dropped
    except the top one (``title``: a build passes the stage's name, which tests
    and simulated servers route by; default the model's name), and string
    fields marked :data:`MEMORY_ID` become an enum of ``memory_ids``.
    """
    raw = model.model_json_schema()
    schema = _inline(raw, raw.get("$defs", {}))
    schema = _fill_memory_ids(schema, memory_ids)
    return {"title": title or model.__name__, **schema}


def json_example(schema: dict[str, Any]) -> str:
    """A compact one-line example object for ``schema`` (for the prompt).

    >>> json_example({"type": "object", "properties": {"ok": {"type": "boolean"},
    ...     "why": {"type": "string"}, "ids": {"type": "array", "items": {"enum": ["m1"]}}}})
    '{"ok": true, "why": "...", "ids": ["m1"]}'
    """

    def build(node: dict[str, Any]) -> Any:
        if "enum" in node:
            values = node["enum"]
            return (
                values[0] if len(values) != 3 or node.get("type") != "string" else "|".join(values)
            )
        if "const" in node:
            return node["const"]
        if "anyOf" in node:
            return build(node["anyOf"][0])
        kind = node.get("type")
        if kind == "object":
            return {k: build(v) for k, v in node.get("properties", {}).items()}
        if kind == "array":
            return [build(node.get("items", {}))]
        if kind == "boolean":
            return True
        if kind in ("integer", "number"):
            return node.get("minimum", 0)
        return "..."

    return json.dumps(build(schema), ensure_ascii=False)


def _max_chars(node: dict[str, Any]) -> int:
    """The longest JSON text ``node`` allows (strings at their maxLength)."""
    if "enum" in node:
        return max((len(json.dumps(v)) for v in node["enum"]), default=2)
    if "const" in node:
        return len(json.dumps(node["const"]))
    if "anyOf" in node:
        return max(_max_chars(n) for n in node["anyOf"])
    kind = node.get("type")
    if kind == "object":
        return 2 + sum(len(k) + 4 + _max_chars(v) for k, v in node.get("properties", {}).items())
    if kind == "array":
        return 2 + node.get("maxItems", 3) * (_max_chars(node.get("items", {})) + 2)
    if kind == "string":
        return node.get("maxLength", 200) + 2
    return 8


def token_floor(schema: dict[str, Any], chars_per_token: float = 2.0) -> int:
    """A ``max_tokens`` that leaves room for the longest answer ``schema`` allows.

    ``chars_per_token`` = 2 is generous for English (about 4) and covers most
    other scripts; a truncated answer is retried with a larger budget anyway.

    >>> token_floor({"type": "object", "properties": {"a": {"type": "string", "maxLength": 100}}})
    59
    """
    return math.ceil(_max_chars(schema) / chars_per_token) + 4


# --------------------------------------------------------------------------- echoes

_WORD = re.compile(r"\w+", re.UNICODE)
_PLACEHOLDER = re.compile(r"\$\{?\w+\}?")


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def template_echo(
    texts: Iterator[str] | Sequence[str],
    instructions: str,
    *,
    n: int = 4,
    share: float = 0.5,
    min_ngrams: int = 2,
) -> str | None:
    """The first text that is mostly made of the template's own wording, or None.

    A text counts as an echo when at least ``share`` of its word ``n``-grams
    (and at least ``min_ngrams`` of them) occur in ``instructions`` (the
    template with its placeholders removed, so the user's own data never
    counts). Texts shorter than ``n`` words are not judged.

    >>> template_echo(["2 to 5 sentences on who they are"],
    ...               "- profile: 2 to 5 sentences on who they are, what they care about")
    '2 to 5 sentences on who they are'
    >>> template_echo(["She misses her brother who moved abroad"],
    ...               "- profile: 2 to 5 sentences on who they are") is None
    True
    """
    source = set(_ngrams(_WORD.findall(_PLACEHOLDER.sub(" ", instructions).lower()), n))
    for text in texts:
        grams = _ngrams(_WORD.findall(text.lower()), n)
        if len(grams) < 1:
            continue
        hits = sum(1 for g in grams if g in source)
        if hits >= min(min_ngrams, len(grams)) and hits / len(grams) >= share:
            return text
    return None
