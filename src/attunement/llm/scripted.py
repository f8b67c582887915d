"""A deterministic chat model for tests and dry runs.

It answers from a script instead of a network, and can be told to be slow, to
fail, or to return malformed text, so every failure path of the code above the
LLM layer can be tested without a server::

    model = ScriptedChatModel(rules=[
        ("Resonation", "Reason: feels heard.\\nScore: 4"),
        ("Bystander", "Total Score: 80 / 100"),
    ])

    def answer(request, index):          # or a function of the request
        return f"sample {index}"
    model = ScriptedChatModel(answer)

A script step may be a string, an exception instance (raised), or a
:class:`Step` with a delay and an explicit token count.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from attunement.llm.base import ChatModel, ChatRequest, Completion


@dataclass(frozen=True)
class Step:
    """One scripted answer with optional latency and token count."""

    text: str | BaseException
    delay: float = 0.0
    completion_tokens: int | None = None


Answer = str | BaseException | Step
Responder = Callable[[ChatRequest, int], Answer]


def count_tokens(text: str) -> int:
    """A crude, deterministic token count (words and punctuation runs)."""
    return len(re.findall(r"\w+|[^\w\s]", text))


class ScriptedChatModel(ChatModel):
    """Answers from a responder function, an ordered list, or keyword rules.

    Exactly one of ``responder``, ``outputs`` or ``rules`` is used:

    - ``responder(request, sample_index)`` is called for every sample;
    - ``outputs`` are returned in order, one per sample (error when exhausted);
    - ``rules`` is a list of ``(regex, answer)``: the first regex found in the
      concatenated messages wins, else ``default``.

    ``calls`` records every request; ``peak_in_flight`` the largest number of
    requests served at the same moment (to check concurrency bounds).
    """

    max_concurrency = 64

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        outputs: Iterable[Answer] | None = None,
        rules: Sequence[tuple[str, Answer]] | None = None,
        default: Answer | None = None,
        name: str = "scripted",
        delay: float = 0.0,
    ):
        super().__init__()
        given = [x is not None for x in (responder, outputs, rules)]
        if sum(given) != 1:
            raise ValueError("give exactly one of responder, outputs or rules")
        self.name = name
        self.delay = delay
        self._responder = responder
        self._outputs = list(outputs) if outputs is not None else None
        self._rules = [(re.compile(p, re.DOTALL), a) for p, a in (rules or [])]
        self._default = default
        self.calls: list[ChatRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0

    def _answer(self, request: ChatRequest, index: int) -> Answer:
        if self._responder is not None:
            return self._responder(request, index)
        if self._outputs is not None:
            if not self._outputs:
                raise AssertionError("ScriptedChatModel ran out of scripted outputs")
            return self._outputs.pop(0)
        text = "\n".join(c for _, c in request.messages)
        for pattern, answer in self._rules:
            if pattern.search(text):
                return answer
        if self._default is None:
            raise AssertionError(f"no scripted rule matches request: {text[:200]!r}")
        return self._default

    async def _complete(self, request: ChatRequest) -> list[Completion]:
        self.calls.append(request)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            prompt_tokens = sum(count_tokens(c) for _, c in request.messages)
            out = []
            for j in range(request.n):
                index = request.sample_start + j
                answer = self._answer(request, index)
                delay = self.delay
                tokens = None
                if isinstance(answer, Step):
                    delay += answer.delay
                    tokens = answer.completion_tokens
                    answer = answer.text
                if delay:
                    await asyncio.sleep(delay)
                if isinstance(answer, BaseException):
                    raise answer
                out.append(
                    Completion(
                        text=answer,
                        prompt_tokens=prompt_tokens,
                        completion_tokens=tokens if tokens is not None else count_tokens(answer),
                        sample_index=index,
                        finish_reason="stop",
                    )
                )
            return out
        finally:
            self.in_flight -= 1
