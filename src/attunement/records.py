"""The records every stage of attunement reads and writes.

All records are pydantic models that serialise to one JSON object per line
(see :mod:`attunement.jsonl`). They reject unknown fields, so a typo in a hand
written file fails loudly with its file, line and field instead of being
silently dropped.

The flow is::

    UserHistory --build--> Example --policy--> Reply --reward--> RewardBreakdown
                                                         (made of Judgements)
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Record(BaseModel):
    """Base of every record: strict about field names, lenient about order."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- categories


class Category(str, Enum):
    """The three kinds of empathy-seeking query of PersonaEmp."""

    ES = "ES"  # Emotional Support: comfort in a hard moment
    HEQ = "HEQ"  # High-EQ Interaction: respond well to a delicate social moment
    SS = "SS"  # Social Strategy: advice on handling people and relationships

    @property
    def title(self) -> str:
        return CATEGORY_TITLES[self]

    @classmethod
    def parse(cls, value: str | Category) -> Category:
        """Accept a code (``"ES"``) or a title (``"Emotional Support"``), any case."""
        if isinstance(value, Category):
            return value
        text = str(value).strip()
        for cat in cls:
            if text.upper() == cat.value or text.lower() == CATEGORY_TITLES[cat].lower():
                return cat
        squashed = text.lower().replace("-", " ").replace("_", " ")
        for cat in cls:
            if squashed == CATEGORY_TITLES[cat].lower().replace("-", " "):
                return cat
        raise ValueError(
            f"unknown query category {value!r}; expected one of "
            + ", ".join(f"{c.value} ({c.title})" for c in cls)
        )


CATEGORY_TITLES = {
    Category.ES: "Emotional Support",
    Category.HEQ: "High-EQ Interaction",
    Category.SS: "Social Strategy",
}


def _coerce_category(value: Any) -> Any:
    return Category.parse(value) if isinstance(value, str) else value


# --------------------------------------------------------------------------- memory


class Evidence(Record):
    """Where a memory item comes from: a quoted user utterance."""

    session_id: str | None = None
    utterance_index: int | None = None
    text: str = ""


class MemoryItem(Record):
    """One fact about a user, remembered from their past conversations."""

    memory_id: str
    value: str = Field(min_length=1)
    label: str | None = None  # taxonomy path, e.g. "Social_Relationships/Family"
    label_suggestion: str | None = None  # when label is "UNMAPPED"
    type: Literal["direct", "indirect"] | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    evidence: list[Evidence] = Field(default_factory=list)
    time_scope: str | None = None
    emotion: str | None = None
    preference_attitude: str | None = None


# --------------------------------------------------------------------------- persona

Level = Literal["low", "medium", "high"]
BIG_FIVE_TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")


class BigFive(Record):
    """Big Five personality levels, each low / medium / high, with justifications."""

    openness: Level
    conscientiousness: Level
    extraversion: Level
    agreeableness: Level
    neuroticism: Level
    justifications: dict[str, str] = Field(default_factory=dict)

    @field_validator(
        "openness",
        "conscientiousness",
        "extraversion",
        "agreeableness",
        "neuroticism",
        mode="before",
    )
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("justifications")
    @classmethod
    def _known_traits(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(BIG_FIVE_TRAITS))
        if unknown:
            raise ValueError(f"justifications for unknown traits: {unknown}")
        return value

    def levels(self) -> tuple[str, str, str, str, str]:
        """The five levels in canonical trait order (the k-modes feature vector)."""
        return tuple(getattr(self, t) for t in BIG_FIVE_TRAITS)  # type: ignore[return-value]


class Persona(Record):
    """Who the user is, as far as their history shows.

    ``profile`` is free text grounded in memory evidence. The demographic fields
    are the lightweight persona of PERM-style augmentation and stay empty for
    PersonaEmp users unless the history states them.
    """

    profile: str = ""
    is_deep: bool | None = None  # depth gate: is there enough for empathy queries?
    gate_reason: str | None = None
    topics: list[str] = Field(default_factory=list)
    big_five: BigFive | None = None
    name: str | None = None
    age: int | str | None = None
    gender: str | None = None
    occupation: str | None = None


# --------------------------------------------------------------------------- queries


class Situation(Record):
    """The circumstance behind an empathy-seeking query."""

    category: Category
    description: str = Field(min_length=1)
    emotion: str | None = None
    relevant_memory_ids: list[str] = Field(default_factory=list)

    _cat = field_validator("category", mode="before")(_coerce_category)


class Query(Record):
    """One empathy-seeking message written in the user's voice."""

    query_id: str
    category: Category
    text: str = Field(min_length=1)
    situation: Situation
    relevant_memory_ids: list[str] = Field(default_factory=list)
    reasoning: str | None = None
    language: str = "en"

    _cat = field_validator("category", mode="before")(_coerce_category)


class Turn(Record):
    role: Literal["user", "assistant", "system"]
    text: str


class Session(Record):
    session_id: str
    turns: list[Turn] = Field(default_factory=list)


class UserHistory(Record):
    """A user's long-term history: past sessions and the memories drawn from them."""

    user_id: str
    source: str = "unknown"
    language: str = "en"
    sessions: list[Session] = Field(default_factory=list)
    memories: list[MemoryItem] = Field(default_factory=list)
    intents: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_memory_ids(self) -> UserHistory:
        seen: set[str] = set()
        for item in self.memories:
            if item.memory_id in seen:
                raise ValueError(f"duplicate memory_id {item.memory_id!r}")
            seen.add(item.memory_id)
        return self


# --------------------------------------------------------------------------- examples

#: the three empathy dimensions of both papers, each rated 1-5
EmpathyDimension = Literal["resonation", "expression", "reception"]
#: the RLPA baseline's two judges (judging/rlpa.py), both on a 0-1 scale
RLPADimension = Literal["profile_match", "would_continue"]
#: every dimension a judge scores: the empathy ones, PERM's bystander, RLPA's
Dimension = Literal[EmpathyDimension, "bystander", RLPADimension]
EMPATHY_DIMENSIONS: tuple[Dimension, ...] = get_args(EmpathyDimension)
ALL_DIMENSIONS: tuple[Dimension, ...] = (*EMPATHY_DIMENSIONS, "bystander")
RLPA_DIMENSIONS: tuple[Dimension, ...] = get_args(RLPADimension)


class Example(Record):
    """What a policy answers and a judge scores: one query with its user context.

    ``criteria`` holds fixed evaluation criteria per empathy dimension, prepared
    ahead of time (PereGRM's fixed-criteria evaluation); it is empty for
    training data.

    ``dialogue`` holds the earlier turns of a multi-turn conversation, oldest
    first, ending before ``query`` (the user's latest message). It is empty for
    the single-turn data of both papers; when present, policies answer and
    judges judge the last reply *in* that dialogue.

    ``language`` is the language the query is written in; ``user_language``
    the language of the user's own words (a built dataset sets both; they
    differ when a user asked in one language about text in another).
    """

    example_id: str
    query: str = Field(min_length=1)
    user_id: str | None = None
    category: Category | None = None
    situation: Situation | None = None
    persona: Persona | None = None
    memories: list[MemoryItem] = Field(default_factory=list)
    criteria: dict[str, str] = Field(default_factory=dict)
    dialogue: list[Turn] = Field(default_factory=list)
    language: str = "en"
    user_language: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    _cat = field_validator("category", mode="before")(_coerce_category)

    @field_validator("dialogue")
    @classmethod
    def _dialogue_roles(cls, value: list[Turn]) -> list[Turn]:
        for i, turn in enumerate(value):
            if turn.role == "system":
                raise ValueError(f"dialogue[{i}]: a system turn does not belong in a dialogue")
        if value and value[-1].role != "assistant":
            raise ValueError(
                "dialogue must end with an assistant turn (the query is the user's next message)"
            )
        return value

    @field_validator("criteria")
    @classmethod
    def _criteria_dims(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(EMPATHY_DIMENSIONS))
        if unknown:
            raise ValueError(
                f"criteria for unknown dimensions {unknown}; expected {list(EMPATHY_DIMENSIONS)}"
            )
        return value


class Reply(Record):
    """A policy's answer to an Example: optional analysis, then the response."""

    example_id: str
    reply_id: str
    response: str
    analysis: str = ""
    raw: str = ""
    format_ok: bool = True  # False when the "# Analysis / # Response" format was not followed
    policy: str | None = None
    memory_mode: str | None = None
    sample_index: int = 0
    completion_tokens: int | None = None


# --------------------------------------------------------------------------- judging


class Usage(Record):
    """Token and call accounting for a piece of work."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            cached_calls=self.cached_calls + other.cached_calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class Judgement(Record):
    """One judge sample on one dimension of one reply.

    ``score`` is on the judge's own scale (1-5, or 0-100 for bystander) and is
    ``None`` when no valid score could be read; ``reason`` then says why.
    """

    dimension: Dimension
    score: float | None
    normalized: float | None = None
    sample_index: int = 0
    attempts: int = 1
    criteria: str | None = None
    rationale: str | None = None
    sub_scores: dict[str, float] = Field(default_factory=dict)
    raw: str = ""
    reason: str | None = None


class RewardBreakdown(Record):
    """Everything a reward model concluded about one reply.

    ``reward`` is ``None`` exactly when ``unscorable`` is true; ``reason`` then
    names the dimension that could not be scored. ``terms`` holds each additive
    part of the reward (e.g. ``r_emp``, ``bystander_penalty``,
    ``length_penalty``) so the total can be checked by hand.
    """

    example_id: str
    reply_id: str
    reward_model: str
    reward: float | None
    unscorable: bool = False
    reason: str | None = None
    dimensions: dict[str, float | None] = Field(default_factory=dict)
    terms: dict[str, float] = Field(default_factory=dict)
    judgements: list[Judgement] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    seconds: float = 0.0
    config: dict[str, Any] = Field(default_factory=dict)
    #: verdict or fence shapes found in the judged text of the reply (the reward rule
    #: ``verdict_in_reply``); empty when there were none
    verdict_in_reply: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> RewardBreakdown:
        if self.unscorable and self.reward is not None:
            raise ValueError("an unscorable breakdown must have reward=None")
        if not self.unscorable and self.reward is None:
            raise ValueError("reward is None but unscorable is false")
        return self
