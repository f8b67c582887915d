"""``attune bench serve``: a load test of ``attune serve`` on loopback.

Three processes, as on a cluster: the simulated judge server
(:mod:`attunement.perf.simserver`, answering every judge prompt in its format
via :class:`~attunement.perf.judge.RealisticJudge`), the reward server
(``attune serve`` with PereGRM on that judge, examples loaded from a file), and
this client, which sends OpenRLHF-shaped requests (one sample each, prompt +
response + end-of-turn marker, the example id as label), ``groups`` replies per
example, all at once up to ``concurrency`` in flight.

Two clients (``client``):

``openrlhf`` (default)
    OpenRLHF's own HTTP client, as its ``SingleTurnAgentExecutor`` posts: at
    most ``tries`` (5) attempts per sample, each given up after
    ``attempt_timeout`` (aiohttp's total 180 s), any status but 2xx a failure,
    ``pause`` (1 s) between attempts whatever Retry-After says; a sample
    whose attempts all fail is lost;
``retry-after``
    a patient client: it waits as a 503's Retry-After asks and retries until
    ``retry_budget`` seconds have passed.

Two phases:

``capacity``
    the server's queue holds the whole burst: every request must be answered
    200 with a number, none lost, none 5xx;
``overload``
    a second server with ``max_pending`` far below the burst (``overload_pending``;
    ``overload_wait`` is how long a request may wait for room there, default the
    server's): the excess waits for room or is refused with 503 + Retry-After,
    and every request must still be answered in the end, none lost, none 5xx.

:func:`run_serve_bench` returns each phase's counts, the failed attempts that
were retried by cause (``HTTP 503``, ``ConnectError``, ...), latencies
(p50/p95/p99, from a request's first attempt to its answer, waits and retries
included) and throughput of the answered requests; :func:`check_results`
holds them against the claims above, and :mod:`attunement.cli.bench` prints
them. Bounded in count and time; talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import httpx2

from attunement.integrations.outcomes import key
from attunement.integrations.server import ServeSettings
from attunement.jsonl import write_jsonl
from attunement.judging import RewardSpec
from attunement.llm import LLMOptions
from attunement.perf.judge import RealisticJudge
from attunement.perf.processes import RewardServerProcess, ServerProcess
from attunement.perf.simserver import SimConfig
from attunement.perf.synthetic import bench_batch
from attunement.policy.prompting import render_reply_messages

_TEMPLATE_USER = "<|im_start|>{role}\n{content}<|im_end|>\n"

Phase = Literal["capacity", "overload"]
PHASES: tuple[Phase, ...] = get_args(Phase)
ClientKind = Literal["openrlhf", "retry-after"]


@dataclass(frozen=True)
class ClientSettings:
    """How the load client retries (the defaults are OpenRLHF's client)."""

    kind: ClientKind = "openrlhf"
    tries: int = 5
    pause: float = 1.0
    attempt_timeout: float = 180.0
    retry_budget: float = 900.0


#: the patient client that honours Retry-After
RETRY_AFTER = ClientSettings(kind="retry-after", tries=0, pause=0.0, attempt_timeout=300.0)


@dataclass
class ServeBenchSettings:
    requests: int = 500
    concurrency: int = 500
    groups: int = 8
    slots: int = 64
    base_latency: float = 0.02
    per_output_token: float = 0.0002
    judge_concurrency: int = 64
    max_active: int = 512
    overload_pending: int = 64
    overload_wait: float | None = None
    deadline: float = 150.0
    retry_budget: float = 900.0
    client: ClientKind = "openrlhf"
    phases: tuple[Phase, ...] = PHASES

    def client_settings(self) -> ClientSettings:
        return ClientSettings() if self.client == "openrlhf" else RETRY_AFTER


@dataclass
class PhaseResult:
    phase: str
    requests: int
    answered: int
    status_counts: dict[int, int]
    refused_503: int
    retries: int
    lost: int
    latencies: list[float] = field(repr=False)
    wall: float = 0.0
    unscorable: int = 0
    retry_after: list[int] = field(default_factory=list, repr=False)
    transport_retries: dict[str, int] = field(default_factory=dict)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    @property
    def throughput(self) -> float:
        return self.answered / self.wall if self.wall > 0 else 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.status_counts.items() if status >= 500 and status != 503)


# --------------------------------------------------------------------------- the client


def chatml(messages: list[dict[str, str]]) -> str:
    """A ChatML-style prompt text, as OpenRLHF's apply_chat_template would make."""
    return "".join(_TEMPLATE_USER.format(**m) for m in messages) + "<|im_start|>assistant\n"


def openrlhf_bodies(n_requests: int, groups: int):
    """(examples, request bodies): ``groups`` single-sample requests per example."""
    n_examples = max(1, -(-n_requests // groups))
    examples, replies = bench_batch(n_examples, groups)
    prompts = {e.example_id: chatml(render_reply_messages(e, None)) for e in examples}
    bodies = []
    for reply in replies[:n_requests]:
        prompt = prompts[reply.example_id]
        query = f"{prompt}# Analysis\n{reply.analysis}\n\n# Response\n{reply.response}<|im_end|>"
        bodies.append({"query": [query], "prompts": [prompt], "labels": [reply.example_id]})
    return examples, bodies


@dataclass
class _Tally:
    """What the client saw while sending one phase's requests."""

    status_counts: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    retry_after: list[int] = field(default_factory=list)
    transport: dict[str, int] = field(default_factory=dict)
    answered: int = 0
    refused: int = 0
    retries: int = 0
    lost: int = 0
    unscorable: int = 0

    def result(self, phase: str, requests: int, wall: float) -> PhaseResult:
        return PhaseResult(
            phase=phase,
            requests=requests,
            answered=self.answered,
            status_counts=self.status_counts,
            refused_503=self.refused,
            retries=self.retries,
            lost=self.lost,
            latencies=self.latencies,
            wall=wall,
            unscorable=self.unscorable,
            retry_after=self.retry_after,
            transport_retries=self.transport,
        )


#: failures of a request that never reached the app: a pooled keep-alive
#: connection the server had just closed, or a refused connect
_TRANSPORT_ERRORS = (
    httpx2.ConnectError,
    httpx2.RemoteProtocolError,
    httpx2.ReadError,
    httpx2.WriteError,
)


class _LoadClient:
    """Sends OpenRLHF bodies, at most ``concurrency`` in flight, and tallies the answers."""

    def __init__(
        self,
        client: httpx2.AsyncClient,
        *,
        concurrency: int,
        settings: ClientSettings,
        transport_budget: int,
    ):
        self.client = client
        self.gate = asyncio.Semaphore(concurrency)
        self.settings = settings
        #: transport failures (summed over all requests) after which a request is lost
        self.transport_budget = transport_budget
        self.tally = _Tally()

    def _failed(self, cause: str) -> None:
        """Count one failed attempt by its cause."""
        t = self.tally
        t.transport[cause] = t.transport.get(cause, 0) + 1

    async def _post(self, body: dict[str, Any]) -> httpx2.Response | None:
        """One attempt; no response: it failed before an answer (counted by cause)."""
        async with self.gate:
            try:
                return await self.client.post(
                    "/get_reward", json=body, timeout=self.settings.attempt_timeout
                )
            except (*_TRANSPORT_ERRORS, httpx2.TimeoutException) as exc:
                self._failed(type(exc).__name__)
                return None

    async def send(self, body: dict[str, Any]) -> None:
        """Send ``body`` until it is answered or lost, as the chosen client does."""
        if self.settings.kind == "openrlhf":
            await self._send_like_openrlhf(body)
        else:
            await self._send_honouring_retry_after(body)

    async def _send_like_openrlhf(self, body: dict[str, Any]) -> None:
        """OpenRLHF: ``tries`` attempts, any non-2xx a failure, ``pause`` s between."""
        t, s = self.tally, self.settings
        started = time.monotonic()
        for attempt in range(s.tries):
            response = await self._post(body)
            if response is not None:
                t.status_counts[response.status_code] = (
                    t.status_counts.get(response.status_code, 0) + 1
                )
                if response.status_code == 503:
                    t.refused += 1
                if 200 <= response.status_code < 300:
                    self._answered(body, response, time.monotonic() - started)
                    return
                self._failed(f"HTTP {response.status_code}")
            if attempt + 1 < s.tries:
                t.retries += 1
            await asyncio.sleep(s.pause)  # OpenRLHF sleeps after the last failure too
        t.lost += 1

    async def _send_honouring_retry_after(self, body: dict[str, Any]) -> None:
        t = self.tally
        started = time.monotonic()
        while True:
            try:
                response = await self._post(body)
            except httpx2.HTTPError:
                t.lost += 1
                return
            if response is None:
                if sum(t.transport.values()) > self.transport_budget:
                    t.lost += 1
                    return
                continue
            t.status_counts[response.status_code] = t.status_counts.get(response.status_code, 0) + 1
            if response.status_code == 503:
                t.refused += 1
                wait = int(response.headers.get("retry-after", "1"))
                t.retry_after.append(wait)
                if time.monotonic() - started + wait > self.settings.retry_budget:
                    t.lost += 1
                    return
                t.retries += 1
                await asyncio.sleep(wait)
                continue
            self._answered(body, response, time.monotonic() - started)
            return

    def _answered(self, body: dict[str, Any], response: httpx2.Response, seconds: float) -> None:
        """Count a final answer: numbers for every item, or a lost request."""
        t = self.tally
        doc = response.json() if response.status_code == 200 else {}
        rewards = doc.get("rewards")
        if not (
            isinstance(rewards, list)
            and len(rewards) == len(body["query"])
            and all(isinstance(r, (int, float)) for r in rewards)
        ):
            t.lost += 1
            return
        t.answered += 1
        t.unscorable += int(sum(doc["extra_logs"][key("unscorable")]))
        t.latencies.append(seconds)


async def fire(
    url: str,
    bodies: list[dict[str, Any]],
    *,
    concurrency: int,
    retry_budget: float,
    phase: str,
    token: str | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    client: ClientSettings = RETRY_AFTER,
) -> PhaseResult:
    """Send every body once, in parallel up to ``concurrency``; retry as ``client`` does
    (by default: 503s after their Retry-After, until ``retry_budget``).

    ``transport`` replaces the network (tests pass an ``httpx2.MockTransport``).
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx2.Timeout(300.0, connect=30.0)
    async with httpx2.AsyncClient(
        base_url=url, limits=limits, headers=headers, timeout=timeout, transport=transport
    ) as http:
        load = _LoadClient(
            http,
            concurrency=concurrency,
            settings=dataclasses.replace(client, retry_budget=retry_budget),
            transport_budget=5 * len(bodies),
        )
        started = time.monotonic()
        await asyncio.gather(*(load.send(b) for b in bodies))
        wall = time.monotonic() - started
    return load.tally.result(phase, len(bodies), wall)


# --------------------------------------------------------------------------- the benchmark


def _phase_settings(settings: ServeBenchSettings, phase: Phase) -> ServeSettings:
    """The reward server of a phase: a queue that holds the whole burst, or one far
    below it."""
    pending = (
        max(settings.max_active, settings.requests) * 2
        if phase == "capacity"
        else settings.overload_pending
    )
    active = min(settings.max_active, pending)
    return ServeSettings(
        deadline=settings.deadline,
        max_active=active,
        max_pending=pending,
        max_wait=settings.overload_wait if phase == "overload" else None,
        max_batch=min(256, active),
        group_size=settings.groups,
        log_level="warning",
        retry_after_max=5,
    )


def run_serve_bench(settings: ServeBenchSettings) -> list[PhaseResult]:
    examples, bodies = openrlhf_bodies(settings.requests, settings.groups)
    sim = SimConfig(
        slots=settings.slots,
        base_latency=settings.base_latency,
        per_output_token=settings.per_output_token,
        responder=RealisticJudge(),
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="attune-serve-bench-") as tmp:
        data = Path(tmp) / "examples.jsonl"
        write_jsonl(data, examples)
        with ServerProcess(sim) as judge:
            spec = RewardSpec(
                reward="peregrm",
                judge=f"openai:{judge.base_url}#{sim.model_name}",
                options=LLMOptions(
                    concurrency=settings.judge_concurrency, timeout=30, max_retries=2
                ),
                overrides={"output": "text"},
            )
            for phase in settings.phases:
                serve_settings = _phase_settings(settings, phase)
                with RewardServerProcess(spec, serve_settings, data) as server:
                    results.append(
                        asyncio.run(
                            fire(
                                server.url,
                                bodies,
                                concurrency=settings.concurrency,
                                retry_budget=settings.retry_budget,
                                phase=phase,
                                client=settings.client_settings(),
                            )
                        )
                    )
    return results


def check_results(results: list[PhaseResult]) -> list[tuple[str, bool, str]]:
    """(what, met, figure) for each claim of the load test."""
    checks = []
    for r in results:
        checks.append(
            (
                f"{r.phase}: every request answered with numbers",
                r.answered == r.requests,
                f"{r.answered}/{r.requests}",
            )
        )
        checks.append((f"{r.phase}: none lost", r.lost == 0, f"{r.lost} lost"))
        checks.append(
            (f"{r.phase}: no 5xx but 503", r.server_errors == 0, f"{r.server_errors} other 5xx")
        )
        if r.phase == "overload" and r.retry_after:
            checks.append(
                (
                    "overload: every refusal carried a Retry-After",
                    len(r.retry_after) == r.refused_503,
                    f"{r.refused_503} refusals",
                )
            )
        if r.phase == "capacity":
            checks.append(
                ("capacity: nothing refused", r.refused_503 == 0, f"{r.refused_503} refusals")
            )
    return checks
