"""The random policy: a floor to read a simulator's scores against.

A score from a simulated user means something only next to what the same
simulator gives a policy that does not listen. :class:`RandomPolicy` answers
every turn with a line drawn at random from a pool (for SAGE: the other
users' opening lines, so it speaks the users' language and is about somebody
else's trouble). Its final emotion shows how far a simulator drifts upward,
or how harsh it is, on its own.

It is a :class:`~attunement.llm.ChatModel`, so it runs through the same loop,
cache and manifests as any policy. The draw is seeded by the seed, the
sample number and the request, so a run repeats exactly and a resumed talk
gets the same lines; a pool line that already appears in the request (the
user's own opening line, a line used earlier in the talk) is not drawn.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from attunement.judging import approx_tokens
from attunement.llm.base import ChatModel, ChatRequest, Completion


class RandomPolicy(ChatModel):
    """Answers with a random line of ``pool`` (never one the request already holds)."""

    max_concurrency = 64

    def __init__(self, pool: Sequence[str], *, seed: int = 0, name: str = "random-policy"):
        super().__init__()
        lines = list(dict.fromkeys(line.strip() for line in pool if line.strip()))
        if len(lines) < 2:
            raise ValueError("a random policy needs a pool of at least two distinct lines")
        self.pool = lines
        self.seed = seed
        digest = hashlib.sha256("\x1e".join(lines).encode("utf-8")).hexdigest()[:8]
        self.name = f"{name}@{seed}:{digest}"

    def draw(self, request: ChatRequest, index: int) -> str:
        """The line for sample ``index`` of ``request``."""
        shown = {content.strip() for _, content in request.messages}
        choices = [line for line in self.pool if line not in shown] or self.pool
        key = "\x1f".join(content for _, content in request.messages)
        digest = hashlib.sha256(f"{self.seed}\x00{index}\x00{key}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big")).choice(choices)

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        prompt_tokens = sum(approx_tokens(content) for _, content in request.messages)
        out = []
        for j in range(request.n):
            index = request.sample_start + j
            text = self.draw(request, index)
            out.append(
                Completion(
                    text=text,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=approx_tokens(text),
                    sample_index=index,
                    finish_reason="stop",
                )
            )
        return out
