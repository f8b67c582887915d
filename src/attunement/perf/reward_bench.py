"""``attune bench rewards``: how close reward scoring runs to the judge server's bound.

A GRPO-sized batch (``prompts`` examples x ``replies`` replies) is scored by
PERM, PereGRM inline and PereGRM shared against the simulated
OpenAI-compatible server (:mod:`attunement.perf.simserver`), whose latency is
``base + per_output_token * longest sample`` per request with a fixed number
of parallel slots. For each mode the benchmark prints the wall time, the
server's own lower bound for the calls it answered
(``max(longest request, busy seconds / slots)``), their ratio, the judge
calls, and prompt and output tokens per reply; then it scores the same batch
again with the completion cache on and reports the calls that reached the
server (zero when caching works).

The simulated judge (:class:`RealisticJudge`) answers in the format each
prompt asks for, with realistic lengths: a criteria list of ``criteria_items``
weighted items of about ``item_tokens`` tokens, an analysis of about
``analysis_tokens`` tokens, a score line, a bystander assessment with five
sub-score lines. So every answer parses and the token counts mean something.
The lengths are options: the shared-versus-inline saving depends on them.

Its 1-5 scores follow a stated model, so that criteria modes can be compared
on what they do to a GRPO group (:func:`run_variance_bench`): every reply has
a latent quality ``q`` (uniform in [1.5, 4.5], a hash of its text); each
criteria set is a yardstick with its own offset ``b`` (uniform in
``[-criteria_spread, criteria_spread]``, a hash of the criteria text, so two
replies scored against the same criteria get the same offset); each sample
adds noise ``e`` (uniform in ``[-noise, noise]``); the score is
``clip(round(q + b + e), 1, 5)``. Inline criteria are written per sample, so
every inline score has its own ``b``. PERM's fixed rubric has ``b = 0``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

# --------------------------------------------------------------------------- the simulated judge

_WORDS = [
    "the",
    "user",
    "seems",
    "worried",
    "that",
    "their",
    "effort",
    "will",
    "not",
    "be",
    "seen",
    "and",
    "the",
    "reply",
    "should",
    "acknowledge",
    "this",
    "before",
    "offering",
    "any",
    "practical",
    "step",
    "while",
    "keeping",
    "a",
    "calm",
    "and",
    "respectful",
    "tone",
    "that",
    "fits",
    "a",
    "reserved",
    "person",
    "who",
    "values",
    "competence",
    "and",
    "privacy",
]


def _filler(n_tokens: int, salt: str) -> str:
    """About ``n_tokens`` plain words (deterministic for a given salt)."""
    start = int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16) % len(_WORDS)
    return " ".join(_WORDS[(start + i) % len(_WORDS)] for i in range(max(1, n_tokens)))


_RESPONSE = re.compile(r"<response>\n(.*?)\n</response>", re.DOTALL)
_CRITERIA = re.compile(r"<criteria>\n(.*?)\n</criteria>", re.DOTALL)


def _unit(salt: str) -> float:
    """A deterministic number in [0, 1) from a string."""
    return int(hashlib.sha256(salt.encode()).hexdigest()[:12], 16) / 16**12


def latent_quality(response: str) -> float:
    """The simulated judge's hidden quality of a reply, in [1.5, 4.5]."""
    return 1.5 + 3.0 * _unit("quality/" + response.strip())


@dataclass
class RealisticJudge:
    """A SimServer responder that answers each judge prompt in its own format."""

    criteria_spread: float = 0.75
    noise: float = 0.5
    criteria_items: int = 5
    item_tokens: int = 34
    inline_analysis_tokens: int = 85  # "three to five sentences"
    score_analysis_tokens: int = 50  # "two or three sentences"
    reason_tokens: int = 50  # PERM: "a short justification"
    assessment_tokens: int = 40
    part_tokens: int = 12
    kinds: dict[str, int] = field(default_factory=dict)

    def _score(self, salt: str, low: int = 2, high: int = 5) -> int:
        return low + int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16) % (high - low + 1)

    def _rating(self, prompt: str, salt: str, yardstick: str | None) -> int:
        """``clip(round(q + b + e), 1, 5)``: see the module docstring."""
        reply = _RESPONSE.search(prompt)
        q = latent_quality(reply.group(1)) if reply else 3.0
        b = (
            0.0
            if yardstick is None
            else self.criteria_spread * (2 * _unit("criteria/" + yardstick) - 1)
        )
        e = self.noise * (2 * _unit("noise/" + salt) - 1)
        return max(1, min(5, round(q + b + e)))

    def _criteria(self, salt: str, *, weighted: bool, as_json: bool) -> Any:
        n = self.criteria_items
        weights = [100 // n + (1 if i < 100 % n else 0) for i in range(n)]
        items = []
        for i in range(n):
            name = f"Criterion {i + 1}"
            desc = _filler(self.item_tokens - 6, f"{salt}/c{i}")
            items.append((name, weights[i], desc))
        if as_json:
            return [
                {"name": a, "weight": w, "description": d} if weighted else f"{a}: {d}"
                for a, w, d in items
            ]
        return "\n".join(
            f"{i + 1}. {a}" + (f" ({w}%)" if weighted else "") + f": {d}"
            for i, (a, w, d) in enumerate(items)
        )

    def __call__(self, messages: list[dict[str, Any]], index: int, params: dict[str, Any]) -> str:
        prompt = str(messages[-1].get("content", "")) if messages else ""
        as_json = params.get("response_format") is not None
        salt = hashlib.sha256(f"{prompt}|{index}|{params.get('seed')}".encode()).hexdigest()
        if "Write the criteria that a reply" in prompt:
            kind = "criteria"
            if as_json:
                text = json.dumps({"criteria": self._criteria(salt, weighted=True, as_json=True)})
            else:
                text = "Specific Criteria:\n" + self._criteria(salt, weighted=True, as_json=False)
        elif "derive criteria specific to this user" in prompt:
            kind = "inline"
            score = self._rating(prompt, salt, yardstick=salt)  # criteria written per sample
            analysis = _filler(self.inline_analysis_tokens, salt + "/a")
            if as_json:
                text = json.dumps(
                    {
                        "criteria": self._criteria(salt, weighted=False, as_json=True),
                        "analysis": analysis,
                        "score": score,
                    }
                )
            else:
                text = (
                    "Specific Criteria:\n"
                    + self._criteria(salt, weighted=False, as_json=False)
                    + f"\nAnalysis: {analysis}\nScores: \\boxed{{{score}}}"
                )
        elif "using the criteria below" in prompt:
            kind = "score"
            given = _CRITERIA.search(prompt)
            score = self._rating(prompt, salt, yardstick=given.group(1) if given else "")
            analysis = _filler(self.score_analysis_tokens, salt + "/a")
            text = (
                json.dumps({"analysis": analysis, "score": score})
                if as_json
                else f"Analysis: {analysis}\nScores: \\boxed{{{score}}}"
            )
        elif "neutral third party" in str(messages[0].get("content", "")):
            kind = "bystander"
            from attunement.judging.parsing import BYSTANDER_PARTS

            parts = {key: 10 + self._score(f"{salt}/{key}", 0, 8) for key, _, _ in BYSTANDER_PARTS}
            assessment = _filler(self.assessment_tokens, salt + "/b")
            if as_json:
                text = json.dumps({"assessment": assessment, **parts})
            else:
                lines = [f"Assessment: {assessment}"]
                lines += [
                    f"{label}: {parts[key]} / 20 - {_filler(self.part_tokens, salt + key)}"
                    for key, label, _ in BYSTANDER_PARTS
                ]
                lines.append(f"Total Score: {sum(parts.values())} / 100")
                text = "\n".join(lines)
        elif "You play a person" in str(messages[0].get("content", "")):
            kind = "continue"  # RLPA: the simulated user's decision
            score = self._rating(prompt, salt, yardstick=None)
            reason = _filler(self.reason_tokens // 2, salt + "/a")
            go_on = score >= 3
            text = (
                json.dumps({"reason": reason, "continue": go_on})
                if as_json
                else f"Reason: {reason}\nDecision: {'continue' if go_on else 'stop'}"
            )
        elif "how personal an AI assistant's reply is" in str(messages[0].get("content", "")):
            kind = "match"  # RLPA: fit to the user's profile
            score = self._rating(prompt, salt, yardstick=None)
            reason = _filler(self.reason_tokens // 2, salt + "/a")
            match = (score - 1) / 4
            text = (
                json.dumps({"reason": reason, "match": match})
                if as_json
                else f"Reason: {reason}\nMatch: {match:g}"
            )
        else:
            kind = "rating"
            score = self._rating(prompt, salt, yardstick=None)
            analysis = _filler(self.reason_tokens, salt + "/a")
            text = (
                json.dumps({"reason": analysis, "score": score})
                if as_json
                else f"Reason: {analysis}\nScore: {score}"
            )
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        return text


# --------------------------------------------------------------------------- a synthetic batch


def bench_batch(prompts: int, replies: int):
    """``prompts`` examples with realistic context and ``replies`` replies each."""
    from attunement.records import Example, MemoryItem, Persona, Reply, Situation

    examples, answers = [], []
    for p in range(prompts):
        memories = [
            MemoryItem(
                memory_id=f"u{p}-m{i}",
                label="States_Experiences/Mental_State",
                value=f"Mentioned (note {i}) that {_filler(14, f'{p}/m{i}')}",
            )
            for i in range(8)
        ]
        ex = Example(
            example_id=f"bench-{p}",
            user_id=f"user-{p}",
            category="ES",
            query=f"I don't know who else to tell. {_filler(45, f'{p}/q')}?",
            persona=Persona(profile=_filler(60, f"{p}/p"), topics=["work", "family"]),
            situation=Situation(
                category="ES", description=_filler(40, f"{p}/s"), emotion="anxious"
            ),
            memories=memories,
        )
        examples.append(ex)
        for r in range(replies):
            answers.append(
                Reply(
                    example_id=ex.example_id,
                    reply_id=f"bench-{p}-r{r}",
                    analysis=_filler(80, f"{p}/{r}/a"),
                    response=_filler(150, f"{p}/{r}/r"),
                )
            )
    return examples, answers


# --------------------------------------------------------------------------- the server process


def _serve(config: Any, conn: Any) -> None:
    """Child process: run a SimServer and answer 'stats' / 'reset' / 'stop' on a pipe."""
    from attunement.perf.simserver import SimServer

    with SimServer(config) as server:
        conn.send(server.base_url)
        while True:
            command = conn.recv()
            if command == "stats":
                conn.send((server.stats(), server.lower_bound_seconds()))
            elif command == "reset":
                server.reset_stats()
                conn.send(None)
            else:
                return


class ServerProcess:
    """The simulated server in its own process, as a real judge server would be.

    In the benchmark's process it would share the interpreter lock with the
    client, and a busy client would delay the server's own timers, so the
    figures would measure that contention rather than the client.
    """

    def __init__(self, config: Any):
        self.config = config
        self.base_url = ""
        self._conn: Any = None
        self._proc: Any = None

    def __enter__(self) -> Self:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(self.config, child), daemon=True, name="attune-simserver"
        )
        self._proc.start()
        if not self._conn.poll(60):
            self._proc.terminate()
            raise RuntimeError("the simulated server did not start within 60 s")
        self.base_url = self._conn.recv()
        return self

    def stats(self) -> tuple[Any, float]:
        """(SimStats, lower bound seconds) since the last reset."""
        self._conn.send("stats")
        return self._conn.recv()

    def reset_stats(self) -> None:
        self._conn.send("reset")
        self._conn.recv()

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.send("stop")
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)


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

    @property
    def ratio(self) -> float:
        return self.wall / self.bound if self.bound > 0 else float("inf")


@dataclass
class BenchSettings:
    prompts: int = 16
    replies: int = 8
    k: int = 4
    slots: int = 16
    base_latency: float = 0.05
    per_output_token: float = 0.0015
    per_prompt_token: float = 0.0
    supports_n: bool = True
    n_shares_slot: bool = False
    client_concurrency: int | None = None
    output: str = "text"
    judge: RealisticJudge = field(default_factory=RealisticJudge)


MODES = ("perm", "peregrm-inline", "peregrm-shared")


def _reward(mode: str, model, settings: BenchSettings):
    from attunement.judging import PereGRMConfig, PermConfig, peregrm_reward, perm_reward

    if mode == "perm":
        return perm_reward(model, PermConfig(k=settings.k, output=settings.output))
    criteria_mode = "inline" if mode == "peregrm-inline" else "shared"
    return peregrm_reward(
        model, PereGRMConfig(k=settings.k, criteria_mode=criteria_mode, output=settings.output)
    )


async def _run_mode(mode: str, settings: BenchSettings, workdir: Path) -> ModeResult:
    from attunement.judging import score_dataset
    from attunement.llm import LLMOptions, load_chat_model
    from attunement.perf.simserver import SimConfig

    examples, replies = bench_batch(settings.prompts, settings.replies)
    sim = SimConfig(
        slots=settings.slots,
        base_latency=settings.base_latency,
        per_output_token=settings.per_output_token,
        per_prompt_token=settings.per_prompt_token,
        supports_n=settings.supports_n,
        n_shares_slot=settings.n_shares_slot,
        responder=settings.judge,
    )
    cache = workdir / f"{mode}.sqlite"
    options = LLMOptions(
        concurrency=settings.client_concurrency or 4 * settings.slots,
        cache=cache,
        max_retries=2,
        timeout=60,
    )
    with ServerProcess(sim) as server:
        spec = f"openai:{server.base_url}#{sim.model_name}"
        model = load_chat_model(spec, options)
        try:
            await model.ensure_ready()
            reward = _reward(mode, model, settings)
            started = time.perf_counter()
            summary = await score_dataset(
                reward,
                examples,
                replies,
                workdir / f"{mode}.jsonl",
                concurrency=len(examples),
                show_progress=False,
            )
            wall = time.perf_counter() - started
            stats, bound = server.stats()
            server.reset_stats()
            again = _reward(mode, model, settings)
            started = time.perf_counter()
            await score_dataset(
                again,
                examples,
                replies,
                workdir / f"{mode}.cached.jsonl",
                concurrency=len(examples),
                show_progress=False,
            )
            cached_wall = time.perf_counter() - started
            cached_requests = server.stats()[0].requests
        finally:
            await model.aclose()
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
    )


async def run_reward_bench(
    settings: BenchSettings, modes: tuple[str, ...] = MODES
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
    model,
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
    from attunement.judging import PereGRMConfig, peregrm_reward

    examples, answers = bench_batch(prompts, replies)
    by_example: dict[str, list] = {}
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
    from attunement.llm import LLMOptions, load_chat_model
    from attunement.perf.simserver import SimConfig

    sim = SimConfig(
        slots=slots, base_latency=0.0, per_output_token=0.0, responder=judge or RealisticJudge()
    )
    with ServerProcess(sim) as server:
        options = LLMOptions(concurrency=4 * slots, max_retries=2, timeout=60)
        async with load_chat_model(f"openai:{server.base_url}#{sim.model_name}", options) as model:
            return await measure_groups(model, prompts=prompts, replies=replies, ks=ks, modes=modes)


def check_targets(
    results: list[ModeResult], *, max_ratio: float = 1.1, min_saving: float = 2.5
) -> list[tuple[str, bool, str]]:
    """The issue's targets: (what, met, figures)."""
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
    if "peregrm-inline" in by and "peregrm-shared" in by:
        inline, shared = by["peregrm-inline"], by["peregrm-shared"]
        saving = (inline.completion_tokens / inline.replies) / max(
            1e-9, shared.completion_tokens / shared.replies
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
    return checks
