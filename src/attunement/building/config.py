"""Settings of a dataset build, built once at the edge and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from attunement.building.filters import FilterRules
from attunement.building.llm_io import StageSettings
from attunement.building.reading import ImportOptions, settings_file
from attunement.records import Category

#: the stages of a build, in order
STAGES: tuple[str, ...] = (
    "extract",
    "filter",
    "persona",
    "bigfive",
    "situations",
    "queries",
    "inspect",
    "export",
)
#: the stages that call a model, in order, each with its prompt template
#: (``prompts/<name>.txt``; the versions go into the manifest). A stage's name
#: is also the title of its answer's JSON schema and its settings' field below.
STAGE_PROMPTS: dict[str, str] = {
    "extract": "build_extract",
    "persona": "build_persona",
    "bigfive": "build_bigfive",
    "situations": "build_situations",
    "queries": "build_query",
    "inspect": "build_inspect",
}
LLM_STAGES: tuple[str, ...] = tuple(STAGE_PROMPTS)

#: the checks the inspector answers true or false: the authors' gate, a query is
#: kept when all three pass
JudgedCheck = Literal["emotional_support", "logical_consistency", "role_awareness"]
DEFAULT_GATES: tuple[str, ...] = get_args(JudgedCheck)
#: every check of a query; ``language`` compares the inspector's label of the
#: query's language with the user's language
InspectionCheck = Literal[JudgedCheck, "language"]
INSPECTION_CHECKS: tuple[str, ...] = get_args(InspectionCheck)

InspectionMode = Literal["enforce", "annotate"]


class BuildConfig(BaseModel):
    """Everything that shapes a build besides the model, the seed and the source.

    Stage settings bound the sampling of each LLM stage; ``max_tokens`` is
    raised to the floor each stage's schema needs (the longest answer it
    allows).
    """

    model_config = ConfigDict(extra="forbid")

    import_options: ImportOptions = Field(default_factory=ImportOptions)
    filter_rules: FilterRules = Field(default_factory=FilterRules)
    categories: list[Category] = Field(default_factory=lambda: list(Category))
    situations_per_category: int = Field(
        default=1,
        ge=1,
        le=5,
        description="at most this many situations (hence queries) per category and user, "
        "where the evidence supports them",
    )
    inspection: InspectionMode = Field(
        default="enforce",
        description="enforce: export only queries that pass every gate (the paper); "
        "annotate: export every inspected query with its verdict in "
        "meta['inspection_passed'] (for audits, and for demos on a tiny model "
        "whose inspector rejects nearly everything)",
    )
    inspection_gates: list[InspectionCheck] = Field(
        default_factory=lambda: list(DEFAULT_GATES),
        description="checks a query must pass to be kept; the others are recorded only",
    )
    big_five_in_prompts: bool = Field(
        default=False,
        description="show the Big Five levels to the situation, query and inspection "
        "stages (off: the text is not written to express the labels that later "
        "define the OOD clusters)",
    )
    export_evidence: bool = Field(
        default=False, description="keep the quoted evidence text of memories in exports"
    )
    keep_dialogues: bool = Field(
        default=False, description="write the (scrubbed) dialogues into users.jsonl"
    )
    split_by_language: bool = Field(
        default=False, description="also write examples.<lang>.jsonl and prompts.<lang>.jsonl"
    )

    extract: StageSettings = Field(
        default_factory=lambda: StageSettings(temperature=0.2, max_tokens=900)
    )
    persona: StageSettings = Field(
        default_factory=lambda: StageSettings(temperature=0.3, max_tokens=450)
    )
    bigfive: StageSettings = Field(
        default_factory=lambda: StageSettings(temperature=0.0, max_tokens=450)
    )
    situations: StageSettings = Field(
        default_factory=lambda: StageSettings(temperature=0.7, max_tokens=700)
    )
    queries: StageSettings = Field(
        default_factory=lambda: StageSettings(temperature=0.7, max_tokens=300)
    )
    inspect: StageSettings = Field(
        default_factory=lambda: StageSettings(temperature=0.0, max_tokens=200)
    )

    max_prompt_memories: int = Field(default=30, ge=1, description="memory items shown in a prompt")
    user_text_chars: int = Field(
        default=1500, ge=0, description="budget of the user's own words quoted in prompts"
    )
    turn_chars: int = Field(default=300, ge=20, description="longest excerpt of one turn")
    persona_turns: int = Field(
        default=12,
        ge=0,
        description="the user's last turns quoted to the persona stage (the authors: 12)",
    )
    query_turns: int = Field(
        default=5,
        ge=0,
        description="the user's last turns quoted to the query and inspection stages "
        "(the authors: 5)",
    )
    extract_conversation_chars: int = Field(
        default=6000, ge=200, description="budget of the conversation shown to memory extraction"
    )
    extract_max_items: int = Field(default=8, ge=1, le=30)
    min_quote_chars: int = Field(
        default=12, ge=1, description="shortest evidence quote extraction may use"
    )
    query_min_words: int = Field(
        default=4,
        ge=1,
        description="shortest query, in words (characters of "
        "scripts without spaces count as words)",
    )

    def stage_settings(self, stage: str) -> StageSettings:
        return getattr(self, stage)

    @classmethod
    def from_file(cls, path: str | Path) -> BuildConfig:
        """Defaults overridden by the fields of a JSON file."""
        return settings_file(cls, path, "build config")
