"""How much the ChatModel interface costs over a raw llama.cpp call.

:func:`bench_local_llm` times the same chat through
:meth:`LocalChatModel.complete` and through ``llama_cpp.Llama.create_chat_completion``
on the *same* loaded model with the same prompt, sampling settings and seed,
alternating the two so that warm caches and CPU frequency favour neither. At
temperature 0 both produce the same tokens, so tokens/s compare like with like.

``overhead_ratio`` is the interface's seconds per token over the raw call's:
1.00 means no overhead, 1.05 means the interface is 5% slower.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from attunement.llm.local import LocalChatModel

DEFAULT_PROMPT = (
    "My best friend forgot my birthday and I am trying not to be hurt. "
    "How can I bring it up without starting a fight?"
)


@dataclass(frozen=True)
class Timing:
    """Seconds and completion tokens of each call of one side of the benchmark."""

    seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens)

    @property
    def tokens_per_second(self) -> float:
        return self.total_tokens / self.total_seconds if self.total_seconds > 0 else 0.0


@dataclass(frozen=True)
class LLMBenchResult:
    model: str
    prompt: str
    max_tokens: int
    repeat: int
    interface: Timing
    raw: Timing

    @property
    def overhead_ratio(self) -> float:
        """Interface seconds per token divided by raw seconds per token."""
        if self.interface.tokens_per_second <= 0:
            return float("inf")
        return self.raw.tokens_per_second / self.interface.tokens_per_second


def bench_local_llm(
    model: LocalChatModel,
    *,
    prompt: str = DEFAULT_PROMPT,
    max_tokens: int = 128,
    repeat: int = 3,
    warmup: bool = True,
) -> LLMBenchResult:
    """Time ``repeat`` calls each way (after one untimed warm-up call each way)."""
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    messages = [{"role": "user", "content": prompt}]
    llama = model.llama  # loads the model once, outside the timings
    seed = 0  # what the interface sends for sample 0 of a request without a seed

    def raw_call() -> int:
        out = llama.create_chat_completion(
            messages=messages, temperature=0.0, max_tokens=max_tokens, seed=seed
        )
        return int((out.get("usage") or {}).get("completion_tokens", 0))

    async def interface_call() -> int:
        [c] = await model.complete(messages, temperature=0.0, max_tokens=max_tokens)
        return c.completion_tokens

    interface, raw = Timing(), Timing()
    with asyncio.Runner() as runner:
        if warmup:
            raw_call()
            runner.run(interface_call())
        for i in range(repeat):
            # alternate which side goes first so neither always runs warmer
            order = ("raw", "interface") if i % 2 == 0 else ("interface", "raw")
            for side in order:
                t0 = time.perf_counter()
                tokens = raw_call() if side == "raw" else runner.run(interface_call())
                elapsed = time.perf_counter() - t0
                timing = raw if side == "raw" else interface
                timing.seconds.append(elapsed)
                timing.tokens.append(tokens)
    return LLMBenchResult(
        model=model.name,
        prompt=prompt,
        max_tokens=max_tokens,
        repeat=repeat,
        interface=interface,
        raw=raw,
    )
