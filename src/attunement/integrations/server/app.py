"""``attune serve``: attunement's rewards over HTTP, for OpenRLHF and any trainer.

Endpoints (an ASGI app on Starlette, served by uvicorn):

``POST /get_reward``
    OpenRLHF's remote reward protocol (``--reward.remote_url``). Body
    ``{"query": [...], "prompts": [...], "labels": [...]}``: ``query[i]`` is
    the prompt and the policy's response decoded with special tokens,
    ``prompts[i]`` the prompt alone, ``labels[i]`` our example id (resolved
    against the ``--data`` file loaded at start) or the example's JSON.
    Answer ``{"rewards": [...], "scores": [...], "extra_logs": {key: [...]}}``
    with one number per item in every list. OpenRLHF sends one sample per
    request and gives up on the sample after its retries, so a request that
    was accepted is always answered with numbers: an unscorable reply gets the
    fallback (:mod:`attunement.integrations.groups`), flagged in
    ``extra_logs["unscorable"]``, within the deadline.
``POST /v1/score``
    A whole group: ``{"example": {...} | "example_id": "...", "replies":
    [{"response": ..., "analysis": ...} | {"text": ...}], "criteria_round": N}``
    answers one result per reply with its full breakdown.
``GET /healthz``
    ``200 {"status": "ok", ...}``; ``503`` while draining.
``GET /metrics``
    Prometheus text: requests, latency histogram, replies, unscorable, judge
    calls, queue depth.

Safe by default: binds 127.0.0.1; a bearer token (``--token-env`` /
``--token-file``) is required to bind anything else and, when set, is checked
on every endpoint but ``/healthz``. Bodies over ``max_body_bytes`` get 413,
batches over ``max_batch`` 422, malformed JSON 400, invalid fields 422, all
with a message. Admission is bounded: at most ``max_pending`` replies are
accepted and unanswered at once (``max_active`` of them being judged, the rest
queued in arrival order); beyond that the server answers 503 with a
Retry-After estimated from the queue and the recent latency, instead of
piling up work it cannot finish in time. On SIGTERM/SIGINT it stops accepting,
answers new requests on open connections with 503, finishes every accepted
request (each is bounded by the deadline) and then closes the judge.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import math
import os
import socket
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from attunement.integrations.groups import Outcome, ReplyScorer, ScoringPolicy
from attunement.judging.base import RewardModel
from attunement.judging.registry import RewardSpec
from attunement.policy.prompting import parse_reply
from attunement.records import Example, Reply

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
#: latency histogram bucket bounds, seconds
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MIN_TOKEN_CHARS = 16
NOT_LOCATED = "the response could not be located in the query (its prompt is not in it)"
#: how much of the end of a prompt locates the response in a query whose start
#: differs (longest first)
_PROMPT_TAILS = (256, 128, 64, 32)


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


# --------------------------------------------------------------------------- auth


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost")
    (True, True, True)
    >>> is_loopback("0.0.0.0"), is_loopback("10.0.0.5"), is_loopback("judge.internal")
    (False, False, False)
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_token(token_env: str | None = None, token_file: str | Path | None = None) -> str | None:
    """The bearer token from an environment variable or a file (one of them, or none)."""
    if token_env and token_file:
        raise ValueError("give --token-env or --token-file, not both")
    if token_env:
        token = os.environ.get(token_env)
        if token is None:
            raise ValueError(f"--token-env {token_env}: the environment variable is not set")
        where = f"environment variable {token_env}"
    elif token_file:
        path = Path(token_file)
        if not path.is_file():
            raise ValueError(f"--token-file {path}: no such file")
        token = path.read_text(encoding="utf-8")
        where = str(path)
    else:
        return None
    token = token.strip()
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ValueError(
            f"the token in {where} must be at least {MIN_TOKEN_CHARS} characters "
            "without spaces (e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`)"
        )
    return token


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token."""
    if token is None and not is_loopback(host):
        raise ValueError(
            f"refusing to bind {host} without a token: anyone who can reach it "
            "could read prompts and steer training. Give --token-env NAME or "
            "--token-file PATH, or bind 127.0.0.1"
        )


# --------------------------------------------------------------------------- admission


class Admission:
    """At most ``max_pending`` replies accepted, ``max_active`` of them judged, FIFO."""

    def __init__(self, max_active: int, max_pending: int):
        self.max_active = max_active
        self.max_pending = max_pending
        self.active = 0
        self.pending = 0
        self._waiters: deque[Ticket] = deque()

    @property
    def queued(self) -> int:
        return self.pending - self.active

    def admit(self, n: int) -> Ticket | None:
        if self.pending + n > self.max_pending:
            return None
        self.pending += n
        return Ticket(self, n)

    def _wake(self) -> None:
        while self._waiters and self.active + self._waiters[0].n <= self.max_active:
            ticket = self._waiters.popleft()
            self.active += ticket.n
            ticket.held = True
            if ticket.future is not None and not ticket.future.done():
                ticket.future.set_result(None)


@dataclass(eq=False)
class Ticket:
    admission: Admission
    n: int
    held: bool = False
    released: bool = False
    future: asyncio.Future[None] | None = None

    async def acquire(self) -> None:
        adm = self.admission
        if not adm._waiters and adm.active + self.n <= adm.max_active:
            adm.active += self.n
            self.held = True
            return
        self.future = asyncio.get_running_loop().create_future()
        adm._waiters.append(self)
        try:
            await self.future
        except asyncio.CancelledError:
            if not self.held:
                adm._waiters.remove(self)
                adm._wake()
            raise

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        adm = self.admission
        adm.pending -= self.n
        if self.held:
            adm.active -= self.n
        adm._wake()


# --------------------------------------------------------------------------- metrics


@dataclass
class Metrics:
    """Counters, a latency histogram and gauges, rendered as Prometheus text."""

    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    latency: dict[str, list[int]] = field(default_factory=dict)
    latency_sum: dict[str, float] = field(default_factory=dict)
    latency_count: dict[str, int] = field(default_factory=dict)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=256))

    def request(self, path: str, status: int) -> None:
        key = (path, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def observe(self, path: str, seconds: float) -> None:
        buckets = self.latency.setdefault(path, [0] * (len(LATENCY_BUCKETS) + 1))
        buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum[path] = self.latency_sum.get(path, 0.0) + seconds
        self.latency_count[path] = self.latency_count.get(path, 0) + 1
        self.recent.append(seconds)

    def typical_seconds(self) -> float:
        return sorted(self.recent)[len(self.recent) // 2] if self.recent else 1.0

    def render(self, service: RewardService) -> str:
        c = service.scorer.counts
        adm = service.admission
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: Sequence[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {_fmt(value)}" for labels, value in samples)

        metric(
            "attune_requests_total",
            "counter",
            "HTTP requests by path and status.",
            [(f'{{path="{p}",code="{s}"}}', v) for (p, s), v in sorted(self.requests.items())],
        )
        metric(
            "attune_rejected_total",
            "counter",
            "Requests refused with 503, by reason.",
            [(f'{{reason="{r}"}}', v) for r, v in sorted(self.rejected.items())],
        )
        hist: list[tuple[str, float]] = []
        for path in sorted(self.latency):
            running = 0
            for bound, n in zip((*LATENCY_BUCKETS, math.inf), self.latency[path], strict=True):
                running += n
                le = "+Inf" if bound == math.inf else _fmt(bound)
                hist.append((f'_bucket{{path="{path}",le="{le}"}}', running))
            hist.append((f'_sum{{path="{path}"}}', self.latency_sum[path]))
            hist.append((f'_count{{path="{path}"}}', self.latency_count[path]))
        lines.append("# HELP attune_request_seconds Latency of accepted scoring requests.")
        lines.append("# TYPE attune_request_seconds histogram")
        lines.extend(f"attune_request_seconds{suffix} {_fmt(v)}" for suffix, v in hist)
        metric(
            "attune_replies_total",
            "counter",
            "Replies scored (fallbacks included).",
            [("", c.replies)],
        )
        metric(
            "attune_unscorable_total",
            "counter",
            "Replies answered with the fallback.",
            [("", c.unscorable)],
        )
        metric(
            "attune_timed_out_total",
            "counter",
            "Replies whose deadline passed first.",
            [("", c.timed_out)],
        )
        metric(
            "attune_judge_calls_total",
            "counter",
            "Judge requests sent (cache misses).",
            [("", c.judge_calls)],
        )
        metric(
            "attune_judge_cached_calls_total",
            "counter",
            "Judge samples served by the cache.",
            [("", c.cached_judge_calls)],
        )
        metric(
            "attune_groups_opened_total",
            "counter",
            "Reply groups (criteria rounds) opened.",
            [("", service.scorer.tracker.opened)],
        )
        metric(
            "attune_queue_depth",
            "gauge",
            "Replies accepted and waiting to be judged.",
            [("", adm.queued)],
        )
        metric("attune_in_flight_replies", "gauge", "Replies being judged.", [("", adm.active)])
        metric("attune_draining", "gauge", "1 while shutting down.", [("", service.draining)])
        return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


# --------------------------------------------------------------------------- requests


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

    query: list[str] = Field(min_length=1)
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


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e["loc"]) or "(body)"
        parts.append(f"{where}: {e['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


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


# --------------------------------------------------------------------------- the service


class RewardService:
    """The server's work, independent of the HTTP framework."""

    def __init__(
        self,
        reward: RewardModel,
        settings: ServeSettings | None = None,
        *,
        examples: Mapping[str, Example] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings or ServeSettings()
        self.reward = reward
        policy = ScoringPolicy.model_validate(
            self.settings.model_dump(include=set(ScoringPolicy.model_fields))
        )
        self.scorer = ReplyScorer(reward, policy, clock=clock)
        self.examples = dict(examples or {})
        self.admission = Admission(self.settings.max_active, self.settings.max_pending)
        self.metrics = Metrics()
        self.clock = clock
        self.draining = False
        self._ids = count()

    # ------------------------------------------------------------------ helpers

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the queue ahead at the recent pace."""
        s = self.settings
        waves = (self.admission.pending / max(1, s.max_active)) + 1
        return max(1, min(s.retry_after_max, math.ceil(waves * self.metrics.typical_seconds())))

    def overloaded(self, reason: str) -> HTTPProblem:
        self.metrics.reject(reason)
        message = (
            "the server is shutting down"
            if reason == "draining"
            else f"over capacity: {self.admission.pending} replies pending (limit "
            f"{self.settings.max_pending}); retry later"
        )
        return HTTPProblem(503, message, {"Retry-After": str(self.retry_after())})

    def example_for(self, label: str | dict[str, Any], where: str) -> Example:
        try:
            if isinstance(label, dict):
                return Example.model_validate(label)
            text = label.strip()
            if text.startswith("{"):
                return Example.model_validate_json(text)
        except ValidationError as exc:
            raise HTTPProblem(
                422, f"{where}: not a valid example: {_validation_message(exc)}"
            ) from None
        found = self.examples.get(text)
        if found is None:
            known = f"{len(self.examples)} examples loaded" if self.examples else "no --data loaded"
            raise HTTPProblem(422, f"{where}: unknown example id {text!r} ({known})")
        return found

    def _check(self, example: Example, where: str) -> None:
        try:
            self.scorer.check(example)
        except ValueError as exc:
            raise HTTPProblem(422, f"{where}: {exc}") from None

    async def _admitted(self, n: int, work: Callable[[float], Any]) -> Any:
        """Run ``work(seconds_left)`` for ``n`` replies once admitted (or raise 503)."""
        if self.draining:
            raise self.overloaded("draining")
        ticket = self.admission.admit(n)
        if ticket is None:
            raise self.overloaded("overload")
        accepted = self.clock()
        try:
            try:
                await asyncio.wait_for(ticket.acquire(), timeout=self.settings.deadline)
            except TimeoutError:
                pass  # the deadline passed in the queue: work() answers with fallbacks
            return await work(self.settings.deadline - (self.clock() - accepted))
        finally:
            ticket.release()

    # ------------------------------------------------------------------ OpenRLHF

    async def get_reward(self, body: Any) -> dict[str, Any]:
        try:
            req = OpenRLHFRequest.model_validate(body)
        except ValidationError as exc:
            raise HTTPProblem(422, _validation_message(exc)) from None
        if len(req.query) > self.settings.max_batch:
            raise HTTPProblem(
                422,
                f"{len(req.query)} items in one request; the limit is "
                f"{self.settings.max_batch} (--max-batch)",
            )
        request_no = next(self._ids)
        groups: dict[str, tuple[Example, list[Reply]]] = {}
        order: list[str] = []
        unplaced: set[str] = set()
        for i, (query, prompt, label) in enumerate(
            zip(req.query, req.prompts, req.labels, strict=True)
        ):
            example = self.example_for(label, f"labels[{i}]")
            self._check(example, f"labels[{i}]")
            response = split_query(query, prompt, self.settings.end_markers)
            reply_id = f"{example.example_id}#r{request_no}.{i}"
            if response is None:
                unplaced.add(reply_id)
                response = ""
            parsed = parse_reply(response)
            reply = Reply(
                example_id=example.example_id,
                reply_id=reply_id,
                raw=response,
                response=parsed.response,
                analysis=parsed.analysis,
                format_ok=parsed.format_ok,
                policy="openrlhf",
            )
            key = example.example_id
            if key in groups and groups[key][0] != example:
                raise HTTPProblem(
                    422,
                    f"labels[{i}]: example {key!r} differs from an earlier "
                    "item of this request with the same id",
                )
            groups.setdefault(key, (example, []))[1].append(reply)
            order.append(reply_id)

        async def work(seconds_left: float) -> list[Outcome]:
            results = await asyncio.gather(
                *(
                    self._score_placed(example, replies, unplaced, seconds_left)
                    for example, replies in groups.values()
                )
            )
            return [o for outcomes in results for o in outcomes]

        outcomes = await self._admitted(len(order), work)
        by_reply = {o.reply_id: o for o in outcomes}
        rows = [by_reply[rid].metrics(self.scorer.keys) for rid in order]
        rewards = [row["score"] for row in rows]
        extra_logs = {key: [row[key] for row in rows] for key in self.scorer.keys if key != "score"}
        return {"rewards": rewards, "scores": rewards, "extra_logs": extra_logs}

    async def _score_placed(
        self, example: Example, replies: list[Reply], unplaced: set[str], seconds_left: float
    ) -> list[Outcome]:
        """Score a group; replies whose response was not found are unscorable."""
        failed = {r.reply_id: NOT_LOCATED for r in replies if r.reply_id in unplaced}
        return await self.scorer.score(example, replies, deadline=seconds_left, failed=failed)

    # ------------------------------------------------------------------ groups

    async def score_group(self, body: Any) -> dict[str, Any]:
        try:
            req = GroupRequest.model_validate(body)
        except ValidationError as exc:
            raise HTTPProblem(422, _validation_message(exc)) from None
        if len(req.replies) > self.settings.max_batch:
            raise HTTPProblem(
                422,
                f"{len(req.replies)} replies in one request; the limit is "
                f"{self.settings.max_batch} (--max-batch)",
            )
        example = (
            req.example
            if req.example is not None
            else self.example_for(req.example_id or "", "example_id")
        )
        self._check(example, "example")
        request_no = next(self._ids)
        replies, seen = [], set()
        for i, r in enumerate(req.replies):
            reply_id = r.reply_id or f"{example.example_id}#g{request_no}.{i}"
            if reply_id in seen:
                raise HTTPProblem(422, f"replies[{i}].reply_id {reply_id!r} appears twice")
            seen.add(reply_id)
            if r.text is not None:
                parsed = parse_reply(r.text)
                response, analysis, format_ok, raw = (
                    parsed.response,
                    parsed.analysis,
                    parsed.format_ok,
                    r.text,
                )
            else:
                response, analysis, format_ok, raw = r.response or "", r.analysis, True, ""
            replies.append(
                Reply(
                    example_id=example.example_id,
                    reply_id=reply_id,
                    response=response,
                    analysis=analysis,
                    raw=raw,
                    format_ok=format_ok,
                    completion_tokens=r.completion_tokens,
                )
            )

        async def work(seconds_left: float) -> list[Outcome]:
            return await self.scorer.score(
                example,
                replies,
                split=req.split,
                criteria_round=req.criteria_round,
                deadline=seconds_left,
                whole_group=True,
            )

        outcomes = await self._admitted(len(replies), work)
        exclude = None if req.judgements else {"judgements"}
        return {
            "reward_model": self.reward.name,
            "example_id": example.example_id,
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

    def health(self) -> dict[str, Any]:
        return {
            "status": "draining" if self.draining else "ok",
            "reward_model": self.reward.name,
            "examples": len(self.examples),
            "in_flight": self.admission.active,
            "queued": self.admission.queued,
        }


# --------------------------------------------------------------------------- the ASGI app


def create_app(
    source: RewardSpec | RewardModel,
    settings: ServeSettings | None = None,
    *,
    token: str | None = None,
    examples: Mapping[str, Example] | None = None,
    on_ready: Callable[[RewardService], None] | None = None,
):
    """The Starlette app. ``source`` is a spec (judge opened at startup, closed at
    shutdown) or a ready reward model (left open)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    settings = settings or ServeSettings()
    check_bind(settings.host, token)
    expected = token.encode() if token is not None else None
    holder: dict[str, RewardService] = {}

    def service() -> RewardService:
        return holder["service"]

    @asynccontextmanager
    async def lifespan(app: Any):
        async with AsyncExitStack() as stack:
            if isinstance(source, RewardSpec):
                reward = await stack.enter_async_context(source.open())
            else:
                reward = source
            svc = holder["service"] = RewardService(reward, settings, examples=examples)
            app.state.service = svc
            if on_ready is not None:
                on_ready(svc)
            yield

    def problem(exc: HTTPProblem) -> JSONResponse:
        kind = {
            400: "bad_request",
            401: "unauthorized",
            404: "not_found",
            413: "too_large",
            415: "unsupported_media_type",
            422: "invalid",
            503: "unavailable",
        }.get(exc.status, "error")
        return JSONResponse(
            {"error": {"message": exc.message, "type": kind}},
            status_code=exc.status,
            headers=exc.headers,
        )

    def authorize(request: Request) -> None:
        if expected is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise HTTPProblem(
                401,
                "missing or wrong bearer token (Authorization: Bearer ...)",
                {"WWW-Authenticate": 'Bearer realm="attune"'},
            )

    async def read_json(request: Request) -> Any:
        limit = settings.max_body_bytes
        ctype = request.headers.get("content-type", "application/json").lower()
        if "json" not in ctype:
            raise HTTPProblem(415, f"send JSON (Content-Type: application/json), not {ctype!r}")
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise HTTPProblem(400, "bad Content-Length") from None
            if size > limit:
                raise HTTPProblem(
                    413, f"body of {size} bytes exceeds the limit of {limit} (--max-body-bytes)"
                )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise HTTPProblem(
                    413, f"body exceeds the limit of {limit} bytes (--max-body-bytes)"
                )
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPProblem(400, f"body is not valid JSON: {exc}") from None

    def scoring(path: str, handler: Callable[[RewardService, Any], Any]):
        async def endpoint(request: Request) -> Response:
            started = time.monotonic()
            try:
                authorize(request)
                body = await read_json(request)
                result = await handler(service(), body)
            except HTTPProblem as exc:
                service().metrics.request(path, exc.status)
                return problem(exc)
            svc = service()
            svc.metrics.request(path, 200)
            svc.metrics.observe(path, time.monotonic() - started)
            return JSONResponse(_finite(result))

        return endpoint

    async def healthz(request: Request) -> Response:
        svc = service()
        svc.metrics.request("/healthz", 503 if svc.draining else 200)
        return JSONResponse(svc.health(), status_code=503 if svc.draining else 200)

    async def metrics(request: Request) -> Response:
        try:
            authorize(request)
        except HTTPProblem as exc:
            service().metrics.request("/metrics", exc.status)
            return problem(exc)
        svc = service()
        svc.metrics.request("/metrics", 200)
        return PlainTextResponse(
            svc.metrics.render(svc), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    routes = [
        Route("/get_reward", scoring("/get_reward", RewardService.get_reward), methods=["POST"]),
        Route("/v1/score", scoring("/v1/score", RewardService.score_group), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.holder = holder
    return app


def _finite(value: Any) -> Any:
    """JSON has no NaN: a missing value is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# --------------------------------------------------------------------------- running


def _uvicorn_server(app: Any, settings: ServeSettings, on_exit: Callable[[], None]):
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            on_exit()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=math.ceil(settings.grace),
        timeout_keep_alive=30,
    )
    return Server(config)


def serve(
    source: RewardSpec | RewardModel,
    settings: ServeSettings,
    *,
    token: str | None = None,
    examples: Mapping[str, Example] | None = None,
) -> None:
    """Run the server in this thread until SIGINT/SIGTERM (then drain and stop)."""
    holder: dict[str, RewardService] = {}
    app = create_app(
        source,
        settings,
        token=token,
        examples=examples,
        on_ready=lambda svc: holder.__setitem__("service", svc),
    )

    def draining() -> None:
        if "service" in holder:
            holder["service"].draining = True

    _uvicorn_server(app, settings, draining).run()


class ServerThread:
    """The server on a loopback port in a background thread (tests, benchmarks).

    ``with ServerThread(reward, settings) as server: server.url`` ... leaving
    the block drains it like a SIGTERM would.
    """

    def __init__(
        self,
        source: RewardSpec | RewardModel,
        settings: ServeSettings | None = None,
        *,
        token: str | None = None,
        examples: Mapping[str, Example] | None = None,
    ):
        self.settings = (settings or ServeSettings()).model_copy(update={"port": 0})
        if not is_loopback(self.settings.host):
            raise ValueError("ServerThread binds loopback addresses only")
        self.service: RewardService | None = None
        self._ready = threading.Event()
        app = create_app(
            source, self.settings, token=token, examples=examples, on_ready=self._on_ready
        )
        self._server = _uvicorn_server(app, self.settings, self._drain)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def _on_ready(self, service: RewardService) -> None:
        self.service = service
        self._ready.set()

    def _drain(self) -> None:
        if self.service is not None:
            self.service.draining = True

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    def start(self) -> ServerThread:
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.settings.host.strip("[]"), 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="attune-serve", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 60
        while not (self._ready.is_set() and self._server.started):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the reward server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Drain: refuse new work, finish what was accepted, close."""
        if self._thread is None:
            return
        self._drain()
        self._server.should_exit = True
        self._thread.join(timeout=self.settings.grace + 30)
        if self._socket is not None:
            self._socket.close()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def load_examples(paths: Sequence[str | Path]) -> dict[str, Example]:
    """Examples by id from JSONL files (a duplicate id is an error)."""
    from attunement.jsonl import read_jsonl

    out: dict[str, Example] = {}
    for path in paths:
        for example in read_jsonl(path, Example):
            if example.example_id in out:
                raise ValueError(f"{path}: example id {example.example_id!r} appears twice")
            out[example.example_id] = example
    return out
