"""``attune bench serve``: a load test of ``attune serve`` on loopback.

Three processes, as on a cluster: the simulated judge server
(:mod:`attunement.perf.simserver`, answering every judge prompt in its format
via :class:`~attunement.perf.reward_bench.RealisticJudge`), the reward server
(``attune serve`` with PereGRM on that judge, examples loaded from a file), and
this client, which sends OpenRLHF-shaped requests (one sample each, prompt +
response + end-of-turn marker, the example id as label), ``groups`` replies per
example, all at once up to ``concurrency`` in flight.

Two phases:

``capacity``
    the server's queue holds the whole burst: every request must be answered
    200 with a number, none lost, none 5xx;
``overload``
    a second server with ``max_pending`` far below the burst: the excess is
    refused with 503 + Retry-After; the client counts the refusals, waits as
    told and retries (bounded), so every request is still answered in the end
    and none gets a 5xx.

It prints p50/p95/p99 latency and throughput of the answered requests. Bounded
in count and time; talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

_TEMPLATE_USER = "<|im_start|>{role}\n{content}<|im_end|>\n"


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
    deadline: float = 150.0
    retry_budget: float = 900.0
    phases: tuple[str, ...] = ("capacity", "overload")


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


# --------------------------------------------------------------------------- processes


def _serve_child(spec_json: str, settings_json: str, data: str, conn: Any) -> None:
    """Child process: run the reward server; send its URL; drain on 'stop'."""
    from attunement.integrations.server.app import ServerThread, ServeSettings, load_examples
    from attunement.judging.registry import RewardSpec

    spec = RewardSpec.model_validate_json(spec_json)
    settings = ServeSettings.model_validate_json(settings_json)
    with ServerThread(spec, settings, examples=load_examples([data])) as server:
        conn.send(server.url)
        conn.recv()


class RewardServerProcess:
    """``attune serve`` in its own process (so the client does not share its GIL)."""

    def __init__(self, spec: Any, settings: Any, data: Path):
        self.args = (spec.model_dump_json(), settings.model_dump_json(), str(data))
        self.url = ""
        self._conn: Any = None
        self._proc: Any = None

    def __enter__(self) -> Self:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve_child, args=(*self.args, child), daemon=True, name="attune-serve-bench"
        )
        self._proc.start()
        if not self._conn.poll(120):
            self._proc.terminate()
            raise RuntimeError("the reward server did not start within 120 s")
        self.url = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.send("stop")
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(120)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(10)


# --------------------------------------------------------------------------- the client


def chatml(messages: list[dict[str, str]]) -> str:
    """A ChatML-style prompt text, as OpenRLHF's apply_chat_template would make."""
    return "".join(_TEMPLATE_USER.format(**m) for m in messages) + "<|im_start|>assistant\n"


def openrlhf_bodies(n_requests: int, groups: int):
    """(examples, request bodies): ``groups`` single-sample requests per example."""
    from attunement.perf.reward_bench import bench_batch
    from attunement.policy.prompting import render_reply_messages

    n_examples = max(1, -(-n_requests // groups))
    examples, replies = bench_batch(n_examples, groups)
    prompts = {e.example_id: chatml(render_reply_messages(e, None)) for e in examples}
    bodies = []
    for reply in replies[:n_requests]:
        prompt = prompts[reply.example_id]
        query = f"{prompt}# Analysis\n{reply.analysis}\n\n# Response\n{reply.response}<|im_end|>"
        bodies.append({"query": [query], "prompts": [prompt], "labels": [reply.example_id]})
    return examples, bodies


async def fire(
    url: str,
    bodies: list[dict[str, Any]],
    *,
    concurrency: int,
    retry_budget: float,
    phase: str,
    token: str | None = None,
) -> PhaseResult:
    """Send every body once, in parallel up to ``concurrency``; retry 503s as told."""
    import httpx2

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    status_counts: dict[int, int] = {}
    latencies: list[float] = []
    retry_after: list[int] = []
    counters = {"answered": 0, "refused": 0, "retries": 0, "lost": 0, "unscorable": 0}
    transport: dict[str, int] = {}
    gate = asyncio.Semaphore(concurrency)

    async with httpx2.AsyncClient(
        base_url=url, limits=limits, headers=headers, timeout=httpx2.Timeout(300.0, connect=30.0)
    ) as client:

        async def one(body: dict[str, Any]) -> None:
            started = time.monotonic()
            while True:
                async with gate:
                    sent = time.monotonic()
                    try:
                        response = await client.post("/get_reward", json=body)
                    except (
                        httpx2.ConnectError,
                        httpx2.RemoteProtocolError,
                        httpx2.ReadError,
                        httpx2.WriteError,
                    ) as exc:
                        # a pooled keep-alive connection the server had just closed, or
                        # a refused connect: the request never reached the app; retry
                        # as any HTTP client does (OpenRLHF's: 5 tries)
                        transport[type(exc).__name__] = transport.get(type(exc).__name__, 0) + 1
                        if sum(transport.values()) > 5 * len(bodies):
                            counters["lost"] += 1
                            return
                        continue
                    except httpx2.HTTPError:
                        counters["lost"] += 1
                        return
                status_counts[response.status_code] = status_counts.get(response.status_code, 0) + 1
                if response.status_code == 503:
                    counters["refused"] += 1
                    wait = int(response.headers.get("retry-after", "1"))
                    retry_after.append(wait)
                    if time.monotonic() - started + wait > retry_budget:
                        counters["lost"] += 1
                        return
                    counters["retries"] += 1
                    await asyncio.sleep(wait)
                    continue
                if response.status_code != 200:
                    counters["lost"] += 1
                    return
                doc = response.json()
                rewards = doc.get("rewards")
                if not (
                    isinstance(rewards, list)
                    and len(rewards) == len(body["query"])
                    and all(isinstance(r, (int, float)) for r in rewards)
                ):
                    counters["lost"] += 1
                    return
                counters["answered"] += 1
                counters["unscorable"] += int(sum(doc["extra_logs"]["unscorable"]))
                latencies.append(time.monotonic() - sent)
                return

        started = time.monotonic()
        await asyncio.gather(*(one(b) for b in bodies))
        wall = time.monotonic() - started
    return PhaseResult(
        phase=phase,
        requests=len(bodies),
        answered=counters["answered"],
        status_counts=status_counts,
        refused_503=counters["refused"],
        retries=counters["retries"],
        lost=counters["lost"],
        latencies=latencies,
        wall=wall,
        unscorable=counters["unscorable"],
        retry_after=retry_after,
    )


# --------------------------------------------------------------------------- the benchmark


def run_serve_bench(settings: ServeBenchSettings) -> list[PhaseResult]:
    from attunement.integrations.server.app import ServeSettings
    from attunement.jsonl import write_jsonl
    from attunement.judging.registry import RewardSpec
    from attunement.llm import LLMOptions
    from attunement.perf.reward_bench import RealisticJudge, ServerProcess
    from attunement.perf.simserver import SimConfig

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
                pending = (
                    max(settings.max_active, settings.requests) * 2
                    if phase == "capacity"
                    else settings.overload_pending
                )
                active = min(settings.max_active, pending)
                serve_settings = ServeSettings(
                    deadline=settings.deadline,
                    max_active=active,
                    max_pending=pending,
                    max_batch=min(256, active),
                    group_size=settings.groups,
                    log_level="warning",
                    retry_after_max=5,
                )
                with RewardServerProcess(spec, serve_settings, data) as server:
                    results.append(
                        asyncio.run(
                            fire(
                                server.url,
                                bodies,
                                concurrency=settings.concurrency,
                                retry_budget=settings.retry_budget,
                                phase=phase,
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
        if r.phase == "overload":
            checks.append(
                (
                    "overload: excess refused with 503 + Retry-After",
                    r.refused_503 > 0 and len(r.retry_after) == r.refused_503,
                    f"{r.refused_503} refusals",
                )
            )
        if r.phase == "capacity":
            checks.append(
                ("capacity: nothing refused", r.refused_503 == 0, f"{r.refused_503} refusals")
            )
    return checks
