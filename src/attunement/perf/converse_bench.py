"""``attune bench converse``: simulated talks per minute, and what a prefix cache saves.

A simulated talk costs, per user turn, one policy reply and two simulator
calls (the assessment and the next message). The simulator's prompts put what
does not change during a talk first (the role and the user's whole record),
so a server with a prefix cache (vLLM, SGLang, llama.cpp) computes it once per
user and step, not once per turn. This benchmark measures that on the
simulated server (:mod:`attunement.perf.simserver`, answering as
:class:`attunement.perf.simuser.TalkResponder`), with synthetic users of
realistic length (:func:`attunement.perf.synthetic.bench_batch`):

- **dialogues per minute**: talks finished divided by the wall time of the
  run (``converse`` itself: its concurrency, journal and manifest included);
- **prompt tokens per turn** and **uncached prompt tokens per turn**, per
  kind of call (policy, assess, speak): an ideal prefix cache is modelled
  on the requests the server received
  (:class:`~attunement.perf.prefix_cache.PrefixCache`: the prompt cut into
  blocks of ``block`` tokens, a block cached when the same chain of
  blocks was seen before, nothing evicted, as vLLM's automatic prefix
  caching), so the uncached share is what the prompt layout lets a server
  skip, not a guess of one server's eviction policy.

The server's timing charges decoding and a fixed latency per request; prefill
is not timed (``per_prompt_token``, default 0), so the token figures, not the
wall time, show the cache's effect.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attunement.dialogue import (
    ConverseSettings,
    SimulatorSettings,
    converse,
    read_dialogues,
    users_from_examples,
)
from attunement.llm import LLMOptions, load_chat_model
from attunement.perf.prefix_cache import PrefixCache
from attunement.perf.simserver import SimConfig, SimServer
from attunement.perf.simuser import TalkResponder
from attunement.perf.synthetic import bench_batch
from attunement.policy import GenerationSettings

_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass
class ConverseBenchSettings:
    """The benchmark's load and server."""

    users: int = 16
    max_turns: int = 6
    concurrency: int = 16
    slots: int = 8
    base_latency: float = 0.05
    per_output_token: float = 0.002
    per_prompt_token: float = 0.0
    block: int = 16
    output: str = "text"


@dataclass
class StepFigures:
    """Prompt tokens of one kind of call."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0

    @property
    def uncached_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens


@dataclass
class ConverseBenchResult:
    settings: ConverseBenchSettings
    dialogues: int
    wall: float
    user_turns: int
    ends: dict[str, int]
    steps: dict[str, StepFigures] = field(default_factory=dict)

    @property
    def dialogues_per_minute(self) -> float:
        return 60.0 * self.dialogues / self.wall if self.wall > 0 else 0.0

    def per_turn(self, kind: str, attr: str) -> float:
        """``attr`` of the calls of ``kind`` per user turn of the talks."""
        figures = self.steps.get(kind, StepFigures())
        return getattr(figures, attr) / self.user_turns if self.user_turns else 0.0


def run_converse_bench(settings: ConverseBenchSettings) -> ConverseBenchResult:
    """Play ``settings.users`` talks on the simulated server and measure them."""
    cache = PrefixCache(settings.block)
    steps: dict[str, StepFigures] = {}
    responder = TalkResponder()

    def observe(messages: list[dict[str, Any]]) -> None:
        kind = responder.step_of(messages)
        total, cached = cache.serve(messages)
        figures = steps.setdefault(kind, StepFigures())
        figures.requests += 1
        figures.prompt_tokens += total
        figures.cached_tokens += cached

    responder.on_request = observe
    config = SimConfig(
        slots=settings.slots,
        base_latency=settings.base_latency,
        per_output_token=settings.per_output_token,
        per_prompt_token=settings.per_prompt_token,
        responder=responder,
        model_name="simulated-user",
    )
    examples, _ = bench_batch(settings.users, 1)
    users = users_from_examples(examples)
    with SimServer(config) as server, tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        dialogues = asyncio.run(_talks(server.base_url, users, Path(tmp), settings))
        wall = time.perf_counter() - started
    return ConverseBenchResult(
        settings=settings,
        dialogues=len(dialogues),
        wall=wall,
        user_turns=sum(sum(1 for t in d.turns if t.role == "user") for d in dialogues),
        ends=dict(Counter(d.end for d in dialogues)),
        steps=steps,
    )


async def _talks(url: str, users: list[Any], folder: Path, settings: ConverseBenchSettings):
    options = LLMOptions(concurrency=settings.concurrency)
    talk = ConverseSettings(
        policy=GenerationSettings(memory_mode="full", max_tokens=256),
        simulator=SimulatorSettings(max_tokens=256, output=settings.output),
        max_turns=settings.max_turns,
        concurrency=settings.concurrency,
    )
    async with (
        load_chat_model(f"openai:{url}#policy", options) as policy,
        load_chat_model(f"openai:{url}#simulator", options) as simulator,
    ):
        out = folder / "dialogues.jsonl"
        await converse(users, policy, simulator, out, talk, show_progress=False)
        return read_dialogues(out)
