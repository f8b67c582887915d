"""The settings of ``attune serve``: one pydantic model, built at the edge.

:class:`ServeSettings` extends the per-sample scoring policy
(:class:`~attunement.integrations.groups.ScoringPolicy`: grouping, deadline,
fallback) with what only a server has: where it listens, its limits
(body size, batch size, replies judged and accepted at once), how long a
request waits for room before it is refused, how long a refused client is
told to wait at most, and the shutdown grace period. Every answer and every
refusal comes before the client's own timeout (``client_timeout``, OpenRLHF's
180 s): a request is held for room up to ``max_wait`` (by default 20 s short
of it) and, once accepted, answered within ``deadline`` of acceptance and
:data:`ANSWER_MARGIN` seconds before the client's timeout (docs/scale-out.md).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from attunement.integrations.groups import ScoringPolicy
from attunement.integrations.server.protocol import END_MARKERS

#: seconds between the last possible answer and the client's timeout
ANSWER_MARGIN = 10.0
#: seconds a request may still wait for room, short of the client's timeout
WAIT_MARGIN = 20.0


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
        8192,
        ge=1,
        description="replies accepted and unanswered (judged + queued); more wait for room",
    )
    client_timeout: float = Field(
        180.0,
        gt=WAIT_MARGIN,
        description="the client's own timeout per request (OpenRLHF: 180 s); every answer "
        "and refusal comes before it",
    )
    max_wait: float | None = Field(
        None,
        ge=0,
        description="seconds a request waits for room when max_pending replies are "
        "accepted, before a 503 (default: client_timeout - 20)",
    )
    max_waiting: int | None = Field(
        None, ge=0, description="replies waiting for room at most (default: 4 x max_pending)"
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
    def wait_seconds(self) -> float:
        """How long a request waits for room before it is refused."""
        if self.max_wait is not None:
            return min(self.max_wait, self.client_timeout - WAIT_MARGIN)
        return self.client_timeout - WAIT_MARGIN

    @property
    def waiting_room(self) -> int:
        return self.max_waiting if self.max_waiting is not None else 4 * self.max_pending

    @property
    def answer_within(self) -> float:
        """Seconds from a request's arrival by which it is answered."""
        return self.client_timeout - ANSWER_MARGIN

    @property
    def grace(self) -> float:
        return self.shutdown_grace if self.shutdown_grace is not None else self.deadline + 10
