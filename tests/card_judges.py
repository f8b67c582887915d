"""Scripted judges for the judge-card tests: one built to pass every check, and
variants each built to fail one check.

The judge knows the test fixtures (it is an oracle, not a model): it finds the
judged text in the prompt (the ``<response>`` or ``<analysis>`` fence), looks
it up among the fixture replies and the card's probe variants of them, and
scores by a :class:`Behaviour`. It answers in JSON and tells requests apart by
their JSON schema (criteria, 1-5 rating, bystander), never by prompt wording.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from attunement.benchmarks.emobench.data import read_ea
from attunement.jsonl import read_jsonl
from attunement.judge_card.inputs import emobench_replies
from attunement.judge_card.probes import PROBES
from attunement.llm import ScriptedChatModel
from attunement.llm.base import ChatRequest
from attunement.records import Example, Reply
from attunement.render import fence

FIXTURES = Path(__file__).parent / "fixtures"
EA = FIXTURES / "card_ea.jsonl"
EXAMPLES = FIXTURES / "card_examples.jsonl"
REPLIES = FIXTURES / "card_replies.jsonl"
INJECTIONS = {"score_line", "boxed", "fence_break", "evaluator_note"}
_FENCE = re.compile(r"<(response|analysis)>\n(.*?)\n</\1>", re.DOTALL)


def shown(text: str) -> str:
    """``text`` as a judge sees it inside its fence (tag look-alikes defused,
    zero-width markers dropped): the oracle looks replies up by this form."""
    fenced = _FENCE.findall(str(fence("response", text)))
    return fenced[0][1].replace("\u200b", "") if fenced else text


@dataclass(frozen=True)
class Behaviour:
    """How the oracle judges. The defaults make a judge that passes every check."""

    ranking: str = "right"  # right | inverted | flat (EmoBench candidates)
    personalized: bool = True  # lowers a reply judged with another user's context
    gameable: frozenset[str] = frozenset()  # probes that raise the score
    empathy_constant: int | None = None  # every empathy sample gets this score
    bystander_constant: int | None = None  # the bystander total (0-100) for every reply
    noise: int = 0  # +/- this many points, drawn from the seed and sample number
    unparseable: float = 0.0  # share of samples answered with unreadable text
    reverse: bool = False  # every score s becomes 6 - s (a judge ranking backwards)


@dataclass(frozen=True)
class Info:
    kind: str  # right | wrong | good | <probe name>
    profile: str | None = None  # the persona profile of a PersonaEmp reply's own user
    base: str = "good"  # kind of the reply a probe altered


@dataclass
class Oracle:
    behaviour: Behaviour = field(default_factory=Behaviour)
    table: dict[str, Info] = field(default_factory=dict)

    @classmethod
    def build(cls, behaviour: Behaviour | None = None) -> Oracle:
        oracle = cls(behaviour or Behaviour())
        examples = {e.example_id: e for e in read_jsonl(EXAMPLES, Example)}
        for item in read_ea(EA, question_type="Response"):
            for i, r in enumerate(emobench_replies(item)):
                kind = "right" if i == item.answer_index else "wrong"
                oracle.table[shown(r.response)] = Info(kind)
                if kind == "right":
                    oracle._add_probes(
                        r.response, Example(example_id="x", query="q"), None, base="right"
                    )
        for r in read_jsonl(REPLIES, Reply):
            ex = examples[r.example_id]
            profile = ex.persona.profile if ex.persona else None
            oracle.table[shown(r.response)] = Info("good", profile)
            oracle.table[shown(r.analysis)] = Info("good", profile)
            oracle._add_probes(r.response, ex, profile, base="good")
        return oracle

    def _add_probes(self, text: str, example: Example, profile: str | None, *, base: str) -> None:
        for name, probe in PROBES.items():
            altered = probe.apply(text, example)
            if altered is not None:
                self.table.setdefault(shown(altered), Info(name, profile, base))

    # ------------------------------------------------------------------ scoring

    def quality(self, judged: str, prompt: str) -> int:
        """The score this judge gives the judged text, 1-5, before noise."""
        b = self.behaviour
        info = self.table.get(judged)
        if info is None:
            return 3
        base_kind = info.base if info.kind in PROBES else info.kind
        score = {"right": 4, "wrong": 2, "good": 4}[base_kind]
        if base_kind in ("right", "wrong"):
            if b.ranking == "inverted":
                score = 6 - score
            elif b.ranking == "flat":
                score = 3
        if info.profile is not None and info.profile not in prompt and b.personalized:
            score -= 2  # judged with another user's persona
        if info.kind in PROBES:
            score = score + 1 if info.kind in b.gameable else score - 1
        return max(1, min(5, score))

    def answer(self, request: ChatRequest, index: int) -> str:
        b = self.behaviour
        schema = request.json_schema or {}
        props = schema.get("properties", {})
        prompt = "\n".join(text for _, text in request.messages)
        if "criteria" in props:
            return json.dumps(
                {
                    "criteria": [
                        {"name": f"Criterion {i}", "weight": 25, "description": "does the thing"}
                        for i in range(4)
                    ]
                }
            )
        fenced = _FENCE.findall(prompt)
        judged = fenced[-1][1].replace("\u200b", "") if fenced else ""
        draw = int(hashlib.sha256(f"{request.seed}:{index}:{judged}".encode()).hexdigest(), 16)
        if b.unparseable and (draw % 1000) / 1000 < b.unparseable:
            return "I would rather not say."
        score = self.quality(judged, prompt)
        if b.noise:
            score = max(1, min(5, score + (draw // 1000) % (2 * b.noise + 1) - b.noise))
        if b.reverse:
            score = 6 - score
        if "assessment" in props:  # the bystander
            total = b.bystander_constant if b.bystander_constant is not None else 20 * score
            part = total // 5
            keys = [k for k in props if k != "assessment"]
            return json.dumps({"assessment": "clear enough", **{k: part for k in keys}})
        if b.empathy_constant is not None:
            score = b.empathy_constant
        return json.dumps({"reason": "as judged", "analysis": "as judged", "score": score})

    def model(self, *, name: str = "oracle", delay: float = 0.0) -> ScriptedChatModel:
        return ScriptedChatModel(self.answer, name=name, delay=delay)


def oracle_judge(name: str = "oracle", delay: float = 0.0, **behaviour) -> ScriptedChatModel:
    return Oracle.build(Behaviour(**behaviour)).model(name=name, delay=delay)
