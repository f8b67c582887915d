"""``attune bench train``: what a GRPO step costs, split into generation, reward and
optimisation.

It trains the embedded policy (``smollm2``, SmolLM2-135M on the CPU) for a few
GRPO steps with TRL, exactly as ``attune train grpo`` does, against the
simulated OpenAI-compatible judge server (:mod:`attunement.perf.simserver`,
in its own process) answering like a real judge would
(:class:`~attunement.perf.judge.RealisticJudge`: criteria lists,
analyses, score lines, bystander sub-scores of realistic length) at a
realistic latency (default: 50 ms per request plus 1.5 ms per output token,
16 sequences decoded at once: a 30B-class judge on one GPU with vLLM).

Per step it reports

- **generation**: the policy writing the completions (TRL's ``_generate``);
- **reward**: scoring the batch, i.e. the judge (``GRPOReward``'s wall time);
- **optimisation**: the rest of the step: log-probabilities, loss, backward
  pass and optimiser update;

and the judge server's own lower bound for the calls of the step, so a user
sees what the reward costs a step and how much of it is the judge's decoding.
The first step also pays one-off costs (loading the judge client, warming
torch); it is shown but left out of the means.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attunement.jsonl import write_jsonl
from attunement.judging import RewardSpec
from attunement.judging.registry import parse_reward_name
from attunement.llm import LLMOptions
from attunement.perf.judge import RealisticJudge
from attunement.perf.processes import ServerProcess
from attunement.perf.simserver import SimConfig
from attunement.perf.synthetic import bench_batch
from attunement.records import Example
from attunement.training.config import GRPOSettings, LoraSettings, resolve_device
from attunement.training.data import build_grpo_rows
from attunement.training.grpo import build_trainer, close_reward, grpo_config
from attunement.training.models import load_tokenizer, resolve_model
from attunement.training.reward import dimension_names
from attunement.training.run import RunFolder


@dataclass
class StepTiming:
    step: int
    total: float = 0.0
    generation: float = 0.0
    reward: float = 0.0
    judge_calls: int = 0
    judge_output_tokens: int = 0
    bound: float = 0.0

    @property
    def optimisation(self) -> float:
        return max(0.0, self.total - self.generation - self.reward)


@dataclass
class TrainBenchSettings:
    reward: str = "peregrm"
    steps: int = 3
    prompts: int = 1
    generations: int = 4
    completion_tokens: int = 32
    lora: bool = False
    slots: int = 16
    base_latency: float = 0.05
    per_output_token: float = 0.0015
    concurrency: int = 64
    model: str = "smollm2"
    overrides: dict[str, Any] = field(default_factory=dict)


def _settings(bench: TrainBenchSettings, data: Path, judge: str) -> GRPOSettings:
    return GRPOSettings(
        data=data,
        model=bench.model,
        device="cpu",
        reward=RewardSpec(
            reward=bench.reward,
            judge=judge,
            options=LLMOptions(concurrency=bench.concurrency, timeout=120, max_retries=2),
            overrides={"output": "text", **bench.overrides},
        ),
        num_generations=bench.generations,
        per_device_train_batch_size=bench.prompts * bench.generations,
        max_completion_length=bench.completion_tokens,
        max_steps=bench.steps,
        learning_rate=1e-6,
        lora=LoraSettings() if bench.lora else None,
        record_breakdowns=False,
        plot=False,
    )


def _trainer(bench: TrainBenchSettings, examples: list[Example], workdir: Path, judge: str):
    """The GRPO trainer and its reward, built exactly as ``attune train grpo`` builds them."""
    data = workdir / "examples.jsonl"
    write_jsonl(data, examples)
    settings = _settings(bench, data, judge)
    run = RunFolder(workdir / "run")
    model_path = resolve_model(settings.model)
    tokenizer = load_tokenizer(model_path)
    rows, _ = build_grpo_rows(
        examples,
        tokenizer,
        memory="full",
        persona=True,
        situation=True,
        seed=0,
        max_prompt_length=4096,
    )
    args = grpo_config(settings, run, device=resolve_device(settings.device), show_bar=False)
    args.save_strategy = "no"  # the benchmark times steps, not checkpoint writing
    run.prepare(settings.model_dump(mode="json"))
    kind, _ = parse_reward_name(settings.reward.reward)
    return build_trainer(
        settings,
        args,
        run,
        model_path,
        tokenizer,
        rows,
        examples,
        kind=kind,
        dims=dimension_names(settings.reward.config()),
        print_progress=False,
    )


class _StepTimer:
    """Times every step of a trainer: the whole step, the policy's generation
    (TRL's ``_generate``), the reward (the seconds its ``on_batch`` reports), and
    the judge server's calls and lower bound."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.timings: list[StepTiming] = []
        self._step = StepTiming(step=0)
        self._started = 0.0
        self._reward_seconds: list[float] = []

    def attach(self, trainer: Any, reward: Any) -> None:
        from transformers import TrainerCallback  # heavy: only when a benchmark runs

        timer = self
        reward.on_batch = lambda metrics: self._reward_seconds.append(metrics["seconds"])
        generate = trainer._generate

        def timed_generate(prompts):
            t0 = time.perf_counter()
            try:
                return generate(prompts)
            finally:
                self._step.generation += time.perf_counter() - t0

        trainer._generate = timed_generate

        class Clock(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer.begin(state.global_step + 1)

            def on_step_end(self, args, state, control, **kwargs):
                timer.end()

        trainer.add_callback(Clock())

    def begin(self, step: int) -> None:
        self.server.reset_stats()
        self._reward_seconds.clear()
        self._step = StepTiming(step=step)
        self._started = time.perf_counter()

    def end(self) -> None:
        t = self._step
        t.total = time.perf_counter() - self._started
        t.reward = sum(self._reward_seconds)
        stats, t.bound = self.server.stats()
        t.judge_calls, t.judge_output_tokens = stats.requests, stats.completion_tokens
        self.timings.append(t)


def run_train_bench(bench: TrainBenchSettings) -> list[StepTiming]:
    """Train ``bench.steps`` GRPO steps on the simulated judge; time each step."""
    examples, _ = bench_batch(bench.prompts * bench.steps, 0)
    sim = SimConfig(
        slots=bench.slots,
        base_latency=bench.base_latency,
        per_output_token=bench.per_output_token,
        responder=RealisticJudge(),
    )
    with (
        tempfile.TemporaryDirectory(prefix="attune-train-bench-") as tmp,
        ServerProcess(sim) as server,
    ):
        judge = f"openai:{server.base_url}#{sim.model_name}"
        trainer, reward = _trainer(bench, examples, Path(tmp), judge)
        timer = _StepTimer(server)
        timer.attach(trainer, reward)
        try:
            trainer.train()
        finally:
            close_reward(trainer, reward)
    return timer.timings


def mean_of(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
