"""What a build reports: per-stage counts, the cost estimate, the summary.

:class:`BuildReport` is what :func:`~attunement.building.build_dataset`
returns and what its manifest stores; :class:`BuildEstimate` is known after
the filter, before the first model call (upper bounds on calls and tokens).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from attunement.records import Usage


class StageCount(BaseModel):
    """How one stage went: keys it saw, outcomes, and how many were new this run."""

    model_config = ConfigDict(extra="forbid")

    input: int = 0
    ok: int = 0
    rejected: int = 0
    new: int = 0
    resumed: int = 0
    redone: int = 0  # of the new ones, keys that had a record before (redo or stale)
    pending: int = 0  # eligible keys not done because the stage was not selected
    trimmed: int = 0  # accepted answers with a value trimmed to its length limit
    usage: Usage = Field(default_factory=Usage)


class StageEstimate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calls: int = 0  # at most, one attempt per key, every earlier key passing
    prompt_tokens: int = 0  # rough: characters / 4
    max_completion_tokens: int = 0


class BuildEstimate(BaseModel):
    """What a build may cost, known before the first call (upper bounds)."""

    model_config = ConfigDict(extra="forbid")

    users: int = 0  # users the filter keeps
    stages: dict[str, StageEstimate] = Field(default_factory=dict)

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.stages.values())


class BuildReport(BaseModel):
    """The summary :func:`build_dataset` returns (also stored in the manifest)."""

    model_config = ConfigDict(extra="forbid")

    out_dir: str
    users: int
    stages: dict[str, StageCount] = Field(default_factory=dict)
    accepted: int = 0  # examples exported
    accepted_users: int = 0
    inspection_passed: int = 0  # exported examples that passed every inspection gate
    rejected: int = 0  # rejection records over all stages
    rejection_reasons: dict[str, int] = Field(default_factory=dict)
    languages: dict[str, int] = Field(default_factory=dict)  # examples per query language
    user_languages: dict[str, int] = Field(default_factory=dict)  # examples per user language
    draws: dict[str, float | int | None] = Field(default_factory=dict)  # verdicts.DrawStats
    scrubbed: dict[str, int] = Field(default_factory=dict)  # personal data replaced at import
    import_warnings: int = 0
    estimate: BuildEstimate | None = None
    paths: dict[str, str] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    seconds: float = 0.0
    prompt_renderer: str | None = None


def usage_delta(before: Usage, after: Usage) -> Usage:
    return Usage(
        calls=after.calls - before.calls,
        cached_calls=after.cached_calls - before.cached_calls,
        prompt_tokens=after.prompt_tokens - before.prompt_tokens,
        completion_tokens=after.completion_tokens - before.completion_tokens,
    )
