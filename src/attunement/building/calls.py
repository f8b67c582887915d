"""One LLM call of a build, prepared before any request, and the record it leaves.

A stage is defined once: its name (which is also the title of its JSON schema,
what tests and simulated servers route by), its prompt template
(:data:`~attunement.building.config.STAGE_PROMPTS`), its pydantic answer model
(the schema is generated from the model that validates the answer, so they
cannot disagree) and its ``parse`` function with the checks a schema cannot
state (cited memory ids exist, enough words in any script). :func:`stage_call`
puts these together for one key as a :class:`StageCall`.

A call has a :attr:`StageCall.fingerprint` (model, prompt version, rendered
messages, schema, settings, seed) computed before any request, so a resumed
build can tell a finished record from a stale one without calling anything.
Running the call gives one :class:`StageRecord`: ``ok`` with the output, or
``rejected`` with a ``reason_code`` (for counting) and a ``reason`` (for
reading). A rejection is either a verdict of the model (the persona gate, a
failed inspection gate, no situation supported by the evidence) or an answer
that stayed invalid after the bounded retries; nothing is ever filled in by
hand.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from attunement.building.config import STAGE_PROMPTS, BuildConfig
from attunement.building.language import text_units
from attunement.building.limits import limits_text
from attunement.building.llm_io import (
    MEMORY_ID,
    Asked,
    InvalidOutput,
    StageSettings,
    answer_schema,
    ask_json,
    json_example,
)
from attunement.llm import ChatModel, Message
from attunement.prompts import PromptTemplate, load_prompt
from attunement.records import MemoryItem, UserHistory
from attunement.render import render_memories

T = TypeVar("T")

#: a short free-text field of an answer
Text = Annotated[str, Field(min_length=1, max_length=160)]
#: a memory id an answer cites (the schema turns it into an enum of the user's ids)
MemoryId = Annotated[str, Field(max_length=64, json_schema_extra=MEMORY_ID)]


class StageRecord(BaseModel):
    """One line of ``stages/<stage>.jsonl``: the outcome of a stage for one key.

    ``model``, ``prompt_version`` and ``fingerprint`` say what produced it: a
    resumed build compares the fingerprint with the one it would use now.
    ``next_sample`` is the first sample number not used yet (a redo starts
    there, so a cache never serves the old answer again). ``trimmed`` names
    the values of the answer that stayed over a length limit after it was
    asked again, and were trimmed. ``draw`` counts the records of this key in
    this stage (a redo draws again); ``verdict_key`` identifies what an
    inspection judged (:mod:`attunement.building.verdicts`), and ``reused``
    marks a verdict taken from an earlier record of the same text, without a
    call.
    """

    model_config = ConfigDict(extra="forbid")

    stage: str
    key: str
    user_id: str
    status: Literal["ok", "rejected"]
    reason_code: str | None = None
    reason: str | None = None
    attempts: int = 0
    output: dict[str, Any] = Field(default_factory=dict)
    failures: list[str] = Field(default_factory=list)
    model: str | None = None
    prompt_version: str | None = None
    fingerprint: str | None = None
    next_sample: int = 0
    failure_kinds: list[str] = Field(default_factory=list)
    trimmed: list[str] = Field(default_factory=list)
    draw: int = 1
    verdict_key: str | None = None
    reused: bool = False

    @classmethod
    def from_call(
        cls, call: StageCall[Any], status: str, asked: Asked[Any] | None, **fields: Any
    ) -> StageRecord:
        samples = asked.samples if asked is not None else []
        return cls(
            stage=call.stage,
            key=call.key,
            user_id=call.user_id,
            status=status,
            attempts=asked.attempts if asked is not None else 0,
            failures=asked.failures if asked is not None else [],
            failure_kinds=asked.kinds if asked is not None else [],
            trimmed=asked.trimmed if asked is not None else [],
            model=call.model.name,
            prompt_version=call.template.version,
            fingerprint=call.fingerprint,
            next_sample=(max(samples) + 1) if samples else call.sample_base,
            draw=call.draw,
            verdict_key=call.verdict_key,
            **fields,
        )

    @classmethod
    def ok(cls, call: StageCall[Any], asked: Asked[Any], output: dict[str, Any]) -> StageRecord:
        """The record of a call whose answer was accepted."""
        return cls.from_call(call, "ok", asked, output=output)

    @classmethod
    def rejected(
        cls,
        call: StageCall[Any],
        code: str,
        reason: str,
        asked: Asked[Any] | None = None,
        output: dict[str, Any] | None = None,
    ) -> StageRecord:
        """The record of a rejection: ``code`` is prefixed with the stage's name."""
        return cls.from_call(
            call,
            "rejected",
            asked,
            reason_code=f"{call.stage}.{code}",
            reason=reason,
            output=output or {},
        )


def _digest(doc: Any) -> str:
    blob = json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


_LOOPBACK = re.compile(r"//(?:localhost|127(?:\.\d{1,3}){3}|\[::1\]|0\.0\.0\.0)(?=[:/#]|$)")


def model_identity(name: str) -> str:
    """A model's name as records compare it: a loopback host written as
    ``localhost``, ``127.0.0.1``, ``[::1]`` or ``0.0.0.0`` is one host, and
    trailing slashes of the address do not count.

    >>> model_identity("openai:http://localhost:8000/v1/#qwen")
    'openai:http://127.0.0.1:8000/v1#qwen'
    >>> model_identity("openai:http://127.0.0.1:8000/v1#qwen")
    'openai:http://127.0.0.1:8000/v1#qwen'
    """
    head, sep, model = name.partition("#")
    head = _LOOPBACK.sub("//127.0.0.1", head).rstrip("/")
    return head + sep + model


def instructions_of(template: PromptTemplate) -> str:
    """The template's own wording (what an answer must not simply repeat)."""
    return "\n".join(body for _, body in template.messages)


@dataclass
class StageCall(Generic[T]):
    """Everything one stage needs to answer one key, prepared before any request."""

    stage: str
    key: str
    user_id: str
    model: ChatModel
    template: PromptTemplate
    messages: list[Message]
    schema: dict[str, Any]
    parse: Callable[[dict[str, Any]], T]
    settings: StageSettings
    decide: Callable[[StageCall[T], Asked[T]], StageRecord]
    seed: int | None = None
    rules: dict[str, Any] = field(default_factory=dict)  # settings the parser applies
    sample_base: int = 0
    draw: int = 1
    verdict_key: str | None = None
    #: re-decides a stored record under the current settings without a call (or None)
    review: Callable[[StageRecord], StageRecord] | None = None

    @property
    def fingerprint(self) -> str:
        """Hash of what determines the answer: model, prompt, messages, schema, settings."""
        return _digest(
            {
                "stage": self.stage,
                "model": model_identity(self.model.name),
                "prompt": [self.template.name, self.template.version],
                "messages": self.messages,
                "schema": self.schema,
                "settings": self.settings.model_dump(),
                "seed": self.seed,
                "rules": self.rules,
            }
        )

    async def run(self) -> StageRecord:
        asked = await ask_json(
            self.model,
            self.messages,
            self.schema,
            self.parse,
            self.settings,
            seed=self.seed,
            sample_base=self.sample_base,
            instructions=instructions_of(self.template),
        )
        return self.decide(self, asked)

    def ok(self, asked: Asked[Any], output: dict[str, Any]) -> StageRecord:
        return StageRecord.ok(self, asked, output)

    def rejected(
        self,
        code: str,
        reason: str,
        asked: Asked[Any] | None = None,
        output: dict[str, Any] | None = None,
    ) -> StageRecord:
        return StageRecord.rejected(self, code, reason, asked, output)

    def invalid(self, asked: Asked[Any]) -> StageRecord:
        """The record of an answer that stayed invalid after every attempt."""
        code = "template_echo" if asked.last_kind == "template_echo" else "invalid_output"
        return self.rejected(code, asked.reason or "invalid output", asked)


Decide = Callable[[StageCall[T], Asked[T]], StageRecord]


def ok_or_invalid(to_output: Callable[[Any], dict[str, Any]]) -> Decide[Any]:
    """The decision of a stage without verdicts of its own: the output, or invalid."""

    def decide(call: StageCall[Any], asked: Asked[Any]) -> StageRecord:
        return call.ok(asked, to_output(asked.value)) if asked.ok else call.invalid(asked)

    return decide


def stage_call(
    stage: str,
    key: str,
    user_id: str,
    model: ChatModel,
    settings: StageSettings,
    answer: type[BaseModel],
    parse: Callable[[dict[str, Any]], T],
    decide: Decide[T],
    *,
    seed: int | None,
    rules: dict[str, Any] | None = None,
    memory_ids: Sequence[str] | None = None,
    prompt: str | None = None,
    verdict_without: str | None = None,
    review: Callable[[StageRecord], StageRecord] | None = None,
    **values: Any,
) -> StageCall[T]:
    """The call of ``stage`` for one key: its prompt (``prompt``, else the stage's
    template) rendered with ``values``, the answer's JSON example and its length
    limits in words (both from the schema), and the schema of ``answer`` titled
    with the stage's name.

    ``verdict_without`` makes the call a verdict: its :attr:`StageCall.verdict_key`
    covers the model, prompt, schema, settings, seed, user and every value
    but that one (:mod:`attunement.building.verdicts`). ``review`` re-decides a
    stored record of the call under the current settings (see
    :class:`StageCall`)."""
    template = load_prompt(prompt or STAGE_PROMPTS[stage])
    schema = answer_schema(answer, title=stage, memory_ids=memory_ids)
    verdict_key = None
    if verdict_without is not None:
        shown = {k: str(v) for k, v in values.items() if k != verdict_without}
        verdict_key = _digest(
            [model_identity(model.name), template.name, template.version, schema]
            + [settings.model_dump(), seed, user_id, shown]
        )
    return StageCall(
        stage=stage,
        key=key,
        user_id=user_id,
        model=model,
        template=template,
        messages=template.render(
            answer_format=json_example(schema), answer_limits=limits_text(schema), **values
        ),
        schema=schema,
        parse=parse,
        settings=settings,
        decide=decide,
        seed=seed,
        rules=rules or {},
        verdict_key=verdict_key,
        review=review,
    )


def user_call(
    stage: str,
    key: str,
    user: UserHistory,
    model: ChatModel,
    config: BuildConfig,
    answer: type[BaseModel],
    parse: Callable[[dict[str, Any]], T],
    decide: Decide[T],
    **kwargs: Any,
) -> StageCall[T]:
    """:func:`stage_call` for a stage of the build: the user's id, the stage's settings."""
    return stage_call(
        stage,
        key,
        user.user_id,
        model,
        config.stage_settings(stage),
        answer,
        parse,
        decide,
        **kwargs,
    )


# --------------------------------------------------------------------------- shared checks


def user_turns_excerpt(
    user: UserHistory, max_chars: int, turn_chars: int, last: int | None = None
) -> str:
    """The user's own turns, each cut to ``turn_chars``, in order: the ``last``
    ones (all when None), the latest kept when ``max_chars`` runs out."""
    turns = [
        " ".join(t.text.split())
        for session in user.sessions
        for t in session.turns
        if t.role == "user" and t.text.strip()
    ]
    if last is not None:
        turns = turns[-last:] if last > 0 else []
    lines: list[str] = []
    used = 0
    for body in reversed(turns):
        if len(body) > turn_chars:
            body = body[:turn_chars].rstrip() + " ..."
        line = f"- {body}"
        if used + len(line) > max_chars:
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(reversed(lines))


def memories_text(memories: Sequence[MemoryItem], config: BuildConfig) -> str:
    """The memory list a stage prompt shows (at most ``config.max_prompt_memories``)."""
    return render_memories(memories, limit=config.max_prompt_memories) or "(none)"


def known_ids(ids: Sequence[str], known: set[str], what: str) -> list[str]:
    """The cited memory ids, each once, in order; an unknown one makes the answer invalid."""
    out: list[str] = []
    for mid in ids:
        mid = mid.strip()
        if mid not in known:
            raise InvalidOutput(f"{what} cites unknown memory id {mid!r}")
        if mid not in out:
            out.append(mid)
    return out


def min_units(text: str, minimum: int, what: str) -> str:
    """``text`` with its whitespace collapsed, if it has at least ``minimum`` words
    (:func:`~attunement.building.language.text_units`: any script); else invalid."""
    body = " ".join(text.split())
    if text_units(body) < minimum:
        raise InvalidOutput(f"{what} too short: {body!r}")
    return body
