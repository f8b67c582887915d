"""``attune bench rewards``: how close reward scoring runs to the judge server's bound.

A GRPO-sized batch (``prompts`` examples x ``replies`` replies) is scored by
PERM, PereGRM inline, PereGRM shared and PereGRM as the authors' training code
runs it (``peregrm-authors``: criteria written inside every scoring call, and
the ``k`` trials of a dimension sent as ``k`` separate one-sample calls, as its
``GRM_TRIAL`` loop does) against the simulated OpenAI-compatible server
(:mod:`attunement.perf.simserver`, in its own process). Each sample holds one
of a fixed number of slots for ``base + per_prompt_token * uncached prompt
tokens + per_output_token * its tokens``, the uncached tokens being what the
server's prefix cache (64-character blocks) cannot serve. For each mode
:func:`run_reward_bench` returns the wall time, the server's own lower bound
for the calls it answered (``max(longest request, busy seconds / slots)``),
their ratio, where the busy seconds go (fixed latency, prefill, decoding), the
judge calls and samples, and prompt, uncached prompt and output tokens; then it
scores the same batch again with the completion cache on and counts the calls
that reached the server (zero when caching works). :func:`check_targets` holds
the figures against the targets; :mod:`attunement.cli.bench` prints them.

Shared PereGRM sends ``k`` scoring calls per reply and dimension; each shows
the ``k`` criteria sets of every dimension before the reply and names its
dimension and set in a last line, so the ``3k`` calls of one reply share
everything up to that line, and its criteria requests and scoring calls share
everything up to the task (one prompt for both, ending in the line that says
which): a prefix cache serves it (see docs/rewards.md, *Prompt layout and the
prefix cache*).

The authors' layout here is their *procedure* sent with this project's prompts
(which put the reply last); their own prompt order, with the dimension named
before the user's record and the answer format and the bystander's rubric after
the reply, would leave a prefix cache less to serve than this.

The judge is :class:`~attunement.perf.judge.RealisticJudge` (answers of
realistic length, scores from a stated model); :func:`run_variance_bench`
measures what each criteria mode does to the rewards of a GRPO group.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from attunement.judging import (
    PereGRMConfig,
    PermConfig,
    RewardModel,
    ScoreSummary,
    peregrm_reward,
    perm_reward,
    score_dataset,
)
from attunement.llm import ChatModel, ChatRequest, Completion, LLMOptions, load_chat_model
from attunement.perf.judge import RealisticJudge, latent_quality
from attunement.perf.processes import ServerProcess
from attunement.perf.simserver import SimConfig
from attunement.perf.synthetic import bench_batch
from attunement.records import Example, Reply, Usage

Mode = Literal["perm", "peregrm-inline", "peregrm-shared", "peregrm-authors"]
MODES: tuple[Mode, ...] = get_args(Mode)
#: the modes this project runs (the authors' procedure is run for comparison)
OWN_MODES: tuple[Mode, ...] = ("perm", "peregrm-inline", "peregrm-shared")

# --------------------------------------------------------------------------- the benchmark


@dataclass
class ModeResult:
    mode: str
    replies: int
    wall: float
    bound: float
    requests: int
    samples: int
    prompt_tokens: int
    completion_tokens: int
    unscorable: int
    cached_requests: int
    cached_wall: float
    cached_prompt_tokens: int = 0
    base_seconds: float = 0.0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def ratio(self) -> float:
        return self.wall / self.bound if self.bound > 0 else float("inf")

    @property
    def uncached_prompt_tokens(self) -> int:
        return self.prompt_tokens - self.cached_prompt_tokens

    def per_reply(self, attr: str) -> float:
        """``attr`` (a count or seconds) divided by the replies scored."""
        return getattr(self, attr) / self.replies if self.replies else 0.0


@dataclass
class BenchSettings:
    prompts: int = 16
    replies: int = 8
    k: int = 4
    slots: int = 32
    base_latency: float = 0.05
    per_output_token: float = 0.004
    per_prompt_token: float = 0.00005
    supports_n: bool = True
    n_shares_slot: bool = False
    client_concurrency: int | None = None
    output: str = "text"
    judge: RealisticJudge = field(default_factory=RealisticJudge)

    def sim_config(self) -> SimConfig:
        """The simulated server these settings describe, answering with :attr:`judge`."""
        return SimConfig(
            slots=self.slots,
            base_latency=self.base_latency,
            per_output_token=self.per_output_token,
            per_prompt_token=self.per_prompt_token,
            supports_n=self.supports_n,
            n_shares_slot=self.n_shares_slot,
            responder=self.judge,
        )


class OneSampleCalls(ChatModel):
    """Sends each sample of a request as its own one-sample call, as the authors'
    reward code sends its ``k`` trials (same prompt, same numbering of samples)."""

    def __init__(self, inner: ChatModel):
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.max_concurrency = inner.max_concurrency
        self.enforces_json_schema = inner.enforces_json_schema
        self.stand_in = inner.stand_in

    async def _complete_with_usage(self, request: ChatRequest) -> tuple[list[Completion], Usage]:
        singles = [
            dataclasses.replace(request, n=1, sample_start=request.sample_start + i)
            for i in range(request.n)
        ]
        answers = await asyncio.gather(*(self.inner.complete_with_usage(r) for r in singles))
        usage = sum((u for _, u in answers), Usage())
        return [c for out, _ in answers for c in out], usage

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        return (await self._complete_with_usage(request))[0]


def _reward(mode: str, model: ChatModel, settings: BenchSettings) -> RewardModel:
    if mode == "perm":
        return perm_reward(model, PermConfig(k=settings.k, output=settings.output))
    if mode == "peregrm-authors":
        model = OneSampleCalls(model)
    criteria_mode = "shared" if mode == "peregrm-shared" else "inline"
    return peregrm_reward(
        model, PereGRMConfig(k=settings.k, criteria_mode=criteria_mode, output=settings.output)
    )


async def _timed_score(
    reward: RewardModel, examples: list[Example], replies: list[Reply], out: Path
) -> tuple[ScoreSummary, float]:
    """Score the batch into ``out``; (summary, wall seconds)."""
    started = time.perf_counter()
    summary = await score_dataset(
        reward, examples, replies, out, concurrency=len(examples), show_progress=False
    )
    return summary, time.perf_counter() - started


async def _run_mode(mode: str, settings: BenchSettings, workdir: Path) -> ModeResult:
    examples, replies = bench_batch(settings.prompts, settings.replies)
    sim = settings.sim_config()
    options = LLMOptions(
        concurrency=settings.client_concurrency or 4 * settings.slots,
        cache=workdir / f"{mode}.sqlite",
        max_retries=2,
        timeout=60,
    )
    with ServerProcess(sim) as server:
        async with load_chat_model(f"openai:{server.base_url}#{sim.model_name}", options) as model:
            await model.ensure_ready()
            summary, wall = await _timed_score(
                _reward(mode, model, settings), examples, replies, workdir / f"{mode}.jsonl"
            )
            stats, bound = server.stats()
            server.reset_stats()
            _, cached_wall = await _timed_score(
                _reward(mode, model, settings), examples, replies, workdir / f"{mode}.cached.jsonl"
            )
            cached_requests = server.stats()[0].requests
    return ModeResult(
        mode=mode,
        replies=len(replies),
        wall=wall,
        bound=bound,
        requests=stats.requests,
        samples=stats.samples,
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        unscorable=summary.unscorable,
        cached_requests=cached_requests,
        cached_wall=cached_wall,
        cached_prompt_tokens=stats.cached_prompt_tokens,
        base_seconds=stats.base_seconds,
        prefill_seconds=stats.prefill_seconds,
        decode_seconds=stats.decode_seconds,
    )


async def run_reward_bench(
    settings: BenchSettings, modes: tuple[str, ...] = OWN_MODES
) -> list[ModeResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="attune-bench-") as tmp:
        for mode in modes:
            results.append(await _run_mode(mode, settings, Path(tmp)))
    return results


# --------------------------------------------------------------------------- group variance

VARIANCE_MODES = ("inline", "shared", "per_reply")


@dataclass
class VarianceResult:
    """What a criteria mode does to GRPO groups: spread, ties and signal."""

    mode: str
    k: int
    groups: int
    replies: int
    unscorable: int
    group_std: float  # mean over groups of the within-group reward std
    tie_rate: float  # share of reply pairs in a group with exactly equal rewards
    flat_groups: float  # share of groups whose rewards are all equal (zero advantage)
    quality_corr: float  # within-group correlation of reward with the latent quality
    criteria_calls: int


def group_statistics(
    rewards: dict[str, list[float]], quality: dict[str, list[float]]
) -> tuple[float, float, float, float]:
    """(mean within-group std, tie rate, flat-group share, within-group correlation
    of reward with quality) over groups keyed alike.

    >>> group_statistics({"a": [1.0, 1.0, 0.0]}, {"a": [2.0, 2.0, 1.0]})[1:3]
    (0.3333333333333333, 0.0)
    """
    stds, ties, pairs, flat = [], 0, 0, 0
    dr, dq = [], []
    for key, values in rewards.items():
        if len(values) < 2:
            continue
        stds.append(statistics.pstdev(values))
        flat += len(set(values)) == 1
        for i in range(len(values)):
            for j in range(i + 1, len(values)):
                pairs += 1
                ties += abs(values[i] - values[j]) < 1e-12
        mr, mq = statistics.fmean(values), statistics.fmean(quality[key])
        dr += [v - mr for v in values]
        dq += [q - mq for q in quality[key]]
    num = sum(a * b for a, b in zip(dr, dq))
    den = (sum(a * a for a in dr) * sum(b * b for b in dq)) ** 0.5
    return (
        statistics.fmean(stds) if stds else 0.0,
        ties / pairs if pairs else 0.0,
        flat / len(stds) if stds else 0.0,
        num / den if den else 0.0,
    )


async def measure_groups(
    model: ChatModel,
    *,
    prompts: int = 16,
    replies: int = 8,
    ks: tuple[int, ...] = (1, 4),
    modes: tuple[str, ...] = VARIANCE_MODES,
) -> list[VarianceResult]:
    """Score one synthetic batch with PereGRM in each criteria mode and k on
    ``model`` (a :class:`RealisticJudge` behind any ChatModel) and measure the groups.

    The bystander is left out so the figures isolate the empathy judges, which
    are what the criteria mode changes.
    """
    examples, answers = bench_batch(prompts, replies)
    by_example: dict[str, list[Reply]] = {}
    for r in answers:
        by_example.setdefault(r.example_id, []).append(r)
    quality = {
        eid: [latent_quality(r.response) for r in group] for eid, group in by_example.items()
    }
    results = []
    for k in ks:
        for mode in modes:
            reward = peregrm_reward(
                model, PereGRMConfig(k=k, criteria_mode=mode, output="text", use_bystander=False)
            )
            rewards: dict[str, list[float]] = {}
            unscorable = 0
            for ex in examples:
                for b in await reward.score(ex, by_example[ex.example_id]):
                    unscorable += b.reward is None
                    rewards.setdefault(ex.example_id, []).append(
                        b.reward if b.reward is not None else math.nan
                    )
            rewards = {key: v for key, v in rewards.items() if not any(math.isnan(x) for x in v)}
            std, ties, flat, corr = group_statistics(rewards, quality)
            results.append(
                VarianceResult(
                    mode=mode,
                    k=k,
                    groups=len(rewards),
                    replies=len(answers),
                    unscorable=unscorable,
                    group_std=std,
                    tie_rate=ties,
                    flat_groups=flat,
                    quality_corr=corr,
                    criteria_calls=reward.criteria_requests,
                )
            )
    return results


async def run_variance_bench(
    *,
    prompts: int = 16,
    replies: int = 8,
    ks: tuple[int, ...] = (1, 4),
    modes: tuple[str, ...] = VARIANCE_MODES,
    judge: RealisticJudge | None = None,
    slots: int = 32,
) -> list[VarianceResult]:
    """:func:`measure_groups` against the simulated server in its own process (no
    latency: only the judge's answers matter here)."""
    sim = SimConfig(
        slots=slots, base_latency=0.0, per_output_token=0.0, responder=judge or RealisticJudge()
    )
    with ServerProcess(sim) as server:
        options = LLMOptions(concurrency=4 * slots, max_retries=2, timeout=60)
        async with load_chat_model(f"openai:{server.base_url}#{sim.model_name}", options) as model:
            return await measure_groups(model, prompts=prompts, replies=replies, ks=ks, modes=modes)


def check_targets(
    results: list[ModeResult],
    *,
    max_ratio: float = 1.1,
    min_saving: float = 2.5,
    min_speedup: float = 2.3,
) -> list[tuple[str, bool, str]]:
    """The issues' targets: (what, met, figures)."""
    checks = []
    for r in results:
        checks.append(
            (f"{r.mode}: wall <= {max_ratio}x bound", r.ratio <= max_ratio, f"{r.ratio:.2f}x")
        )
        checks.append(
            (
                f"{r.mode}: cached re-run makes no calls",
                r.cached_requests == 0,
                f"{r.cached_requests} calls",
            )
        )
    by = {r.mode: r for r in results}
    shared = by.get("peregrm-shared")
    if shared is not None and "peregrm-inline" in by:
        inline = by["peregrm-inline"]
        saving = inline.per_reply("completion_tokens") / max(
            1e-9, shared.per_reply("completion_tokens")
        )
        checks.append(
            (
                f"shared: >= {min_saving}x fewer output tokens/reply than inline",
                saving >= min_saving,
                f"{saving:.2f}x",
            )
        )
        checks.append(
            (
                "shared vs inline wall time",
                shared.wall <= inline.wall,
                f"{inline.wall / max(shared.wall, 1e-9):.2f}x faster",
            )
        )
    if shared is not None and "peregrm-authors" in by:
        authors = by["peregrm-authors"]
        mine, theirs = (r.per_reply("uncached_prompt_tokens") for r in (shared, authors))
        checks.append(
            (
                "shared: uncached prompt tokens/reply <= the authors' procedure",
                mine <= theirs,
                f"{mine:.0f} against {theirs:.0f}",
            )
        )
        speedup = authors.wall / max(shared.wall, 1e-9)
        checks.append(
            (
                f"shared: >= {min_speedup}x faster than the authors' procedure",
                speedup >= min_speedup,
                f"{speedup:.2f}x",
            )
        )
        # the same on the server's bound: what the layout allows, without the client's
        # own time per call (which a busy machine inflates)
        bound_speedup = authors.bound / max(shared.bound, 1e-9)
        checks.append(
            (
                f"shared: server bound >= {min_speedup}x shorter than the authors' procedure",
                bound_speedup >= min_speedup,
                f"{bound_speedup:.2f}x",
            )
        )
    return checks
