"""The settings of ``attune serve``: one pydantic model, built at the edge.

:class:`ServeSettings` extends the per-sample scoring policy
(:class:`~attunement.integrations.groups.ScoringPolicy`: grouping, deadline,
fallback) with what only a server has: where it listens, its limits
(body size, batch size, replies judged and accepted at once), how long a
refused client is told to wait at most, and the shutdown grace period. The
defaults sit below OpenRLHF's client timeout (docs/scale-out.md).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from attunement.integrations.groups import ScoringPolicy
from attunement.integrations.server.protocol import END_MARKERS


class ServeSettings(ScoringPolicy):
    """Limits and behaviour of the reward server."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    deadline: float = Field(
        150.0,
        gt=0,
        description="seconds from acceptance to answer; below OpenRLHF's 180 s client timeout",
    )
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_batch: int = Field(256, ge=1, description="items per request")
    max_active: int = Field(512, ge=1, description="replies judged at once")
    max_pending: int = Field(
        8192, ge=1, description="replies accepted and unanswered (judged + queued); more get 503"
    )
    retry_after_max: int = Field(60, ge=1)
    end_markers: tuple[str, ...] = END_MARKERS
    shutdown_grace: float | None = Field(
        None,
        gt=0,
        description="seconds to finish accepted requests on shutdown (default: deadline + 10)",
    )
    access_log: bool = False
    log_level: str = "info"

    @model_validator(mode="after")
    def _limits(self) -> ServeSettings:
        if self.max_batch > self.max_active:
            raise ValueError(
                f"max_batch ({self.max_batch}) must not exceed max_active "
                f"({self.max_active}): such a batch could never start"
            )
        if self.max_active > self.max_pending:
            raise ValueError(
                f"max_active ({self.max_active}) must not exceed max_pending ({self.max_pending})"
            )
        return self

    @property
    def grace(self) -> float:
        return self.shutdown_grace if self.shutdown_grace is not None else self.deadline + 10
