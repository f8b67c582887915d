"""Scripted judges for the judge-card tests: one built to pass every check, and
variants each built to fail one check; and two bad judges that know nothing,
one scoring at random and one by length.

The judge knows the test fixtures (it is an oracle, not a model): it finds the
judged text in the prompt (the ``<response>`` or ``<analysis>`` fence), looks
it up among the fixture replies and the card's probe variants of them, and
scores by a :class:`Behaviour`. It answers in JSON and tells requests apart by
their JSON schema (criteria, 1-5 rating, bystander), never by prompt wording.
A personalized oracle lowers a good reply judged with another user's persona
(the user's profile is not in the prompt) or another user's memories (some
other fixture user's memory is in the prompt and none of this user's are).
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
    reads: frozenset[str] = frozenset({"persona", "memories"})  # what of the context it reads
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
    memories: tuple[str, ...] = ()  # the memory values of that user


@dataclass
class Oracle:
    behaviour: Behaviour = field(default_factory=Behaviour)
    table: dict[str, Info] = field(default_factory=dict)
    all_memories: frozenset[str] = frozenset()

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
        oracle.all_memories = frozenset(
            m.value for e in examples.values() for m in e.memories if m.value.strip()
        )
        for r in read_jsonl(REPLIES, Reply):
            ex = examples[r.example_id]
            profile = ex.persona.profile if ex.persona else None
            mems = tuple(m.value for m in ex.memories)
            oracle.table[shown(r.response)] = Info("good", profile, memories=mems)
            oracle.table[shown(r.analysis)] = Info("good", profile, memories=mems)
            oracle._add_probes(r.response, ex, profile, base="good", memories=mems)
        return oracle

    def _add_probes(
        self,
        text: str,
        example: Example,
        profile: str | None,
        *,
        base: str,
        memories: tuple[str, ...] = (),
    ) -> None:
        for name, probe in PROBES.items():
            altered = probe.apply(text, example)
            if altered is not None:
                self.table.setdefault(shown(altered), Info(name, profile, base, memories))

    def wrong_user(self, info: Info, prompt: str) -> bool:
        """Whether the prompt shows another user's persona or memories, as far as this
        judge reads them."""
        reads = self.behaviour.reads
        if "persona" in reads and info.profile is not None and info.profile not in prompt:
            return True
        if "memories" in reads and info.memories:
            others = any(m in prompt for m in self.all_memories - set(info.memories))
            return others and not any(m in prompt for m in info.memories)
        return False

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
        if b.personalized and self.wrong_user(info, prompt):
            score -= 2  # judged with another user's persona or memories
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


# --------------------------------------------------------------------------- judges that know nothing


def _judged(request: ChatRequest) -> str:
    fenced = _FENCE.findall("\n".join(text for _, text in request.messages))
    return fenced[-1][1].replace("\u200b", "") if fenced else ""


def _answer(request: ChatRequest, score: int, total: int) -> str:
    """A rating or bystander answer in JSON, told apart by the schema."""
    props = (request.json_schema or {}).get("properties", {})
    if "assessment" in props:
        keys = [k for k in props if k != "assessment"]
        return json.dumps({"assessment": "as judged", **{k: total // len(keys) for k in keys}})
    return json.dumps({"reason": "as judged", "analysis": "as judged", "score": score})


def random_judge(seed: int, name: str = "random") -> ScriptedChatModel:
    """Scores every (prompt, judged text) at random, the same way every time it is
    asked (so repeated runs cannot expose it): it reads nothing."""

    def answer(request: ChatRequest, index: int) -> str:
        prompt = "\n".join(text for _, text in request.messages)
        draw = int(hashlib.sha256(f"{seed}:{index}:{prompt}".encode()).hexdigest(), 16)
        return _answer(request, 1 + draw % 5, (draw // 5) % 101)

    return ScriptedChatModel(answer, name=name)


def length_judge(name: str = "length") -> ScriptedChatModel:
    """Scores a reply by its length alone: longer is better, on every dimension."""

    def answer(request: ChatRequest, index: int) -> str:
        n = len(_judged(request))
        return _answer(request, 1 + min(4, n // 40), min(100, n // 2))

    return ScriptedChatModel(answer, name=name)


def synthetic_ea(
    path: Path, items: int = 24, seed: int = 0, right: tuple[int, int] = (45, 170)
) -> Path:
    """EA Response items whose texts mean nothing but whose lengths are like EmoBench's:
    with the default ``right`` length range the right reply is the longer one in about
    60% of pairs. For judges that do not read (random, length); the oracle does not
    know them."""
    import random

    rng = random.Random(seed)
    lines = []
    for i in range(items):
        lengths = [rng.randint(25, 150) for _ in range(4)]
        lengths[0] = rng.randint(*right)
        choices = [f"Reply {i}.{j}: " + "word " * (n // 5) for j, n in enumerate(lengths)]
        rng.shuffle(choices)
        label = next(c for c in choices if c.startswith(f"Reply {i}.0:"))
        lines.append(
            json.dumps(
                {
                    "qid": f"s{i}",
                    "question type": "Response",
                    "scenario": f"Scenario {i}: a friend shares some hard news.",
                    "subject": "Sam",
                    "choices": choices,
                    "label": label,
                }
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path
