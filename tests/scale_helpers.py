"""Helpers of the verl / serve tests: a scripted judge that answers every judge
prompt in its format (the reward benchmark's RealisticJudge), reachable by a
model spec so code that builds its judge from a RewardSpec can use it."""

from __future__ import annotations

import itertools
import threading

from attunement.llm import ScriptedChatModel
from attunement.llm.base import ChatRequest
from attunement.llm.scripted import Step
from attunement.llm.spec import register_backend
from attunement.perf.judge import RealisticJudge
from attunement.perf.synthetic import bench_batch

_judges: dict[str, ScriptedJudge] = {}
_names = itertools.count()
_lock = threading.Lock()


class ScriptedJudge:
    """A RealisticJudge behind a ScriptedChatModel, with switchable failure modes."""

    def __init__(self, *, delay: float = 0.0):
        self.judge = RealisticJudge()
        self.delay = delay
        self.garble = False  # answer text no parser accepts
        self.criteria_calls = 0
        #: (messages, seed) of every criteria request that reached this judge
        self.criteria_log: list[tuple[tuple[tuple[str, str], ...], int | None]] = []
        with _lock:
            self.name = f"scale-test-{next(_names)}"
            _judges[self.name] = self

    @property
    def spec(self) -> str:
        return f"scaletest:{self.name}"

    def respond(self, request: ChatRequest, index: int):
        params = {
            "seed": request.seed,
            "response_format": {"type": "json_schema"} if request.json_schema else None,
        }
        with _lock:
            before = self.criteria_samples
            text = self.judge(request.message_dicts, index, params)
            if self.criteria_samples > before and index == request.sample_start:
                self.criteria_log.append((request.messages, request.seed))
        if self.garble:
            text = "I would rather not say."
        return Step(text, delay=self.delay) if self.delay else text

    def model(self) -> ScriptedChatModel:
        return ScriptedChatModel(self.respond, name=self.name)

    @property
    def criteria_samples(self) -> int:
        return self.judge.kinds.get("criteria", 0)

    def criteria_requests(self) -> dict[tuple[object, int | None], int]:
        """How often each criteria request (prompt, seed) was sent to this judge."""
        counts: dict[tuple[object, int | None], int] = {}
        for messages, seed in self.criteria_log:
            counts[(messages, seed)] = counts.get((messages, seed), 0) + 1
        return counts


def _make(spec, options) -> ScriptedChatModel:
    return _judges[spec.target].model()


register_backend("scaletest", _make)

__all__ = ["ScriptedJudge", "bench_batch"]
