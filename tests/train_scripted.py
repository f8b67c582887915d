"""A scripted judge for the training tests, and tiny training data.

The judge answers every judge prompt of PERM, PereGRM and RLPA in JSON,
recognising the prompt by the JSON schema it asks for (never by wording).
Scores are derived from a hash of the prompt, so different replies get
different rewards (GRPO needs spread within a group to learn anything) and
the same prompt always gets the same answer. Criteria name the seed they
were drawn with, so a test can tell criteria rounds apart.

``install(judge)`` makes the spec ``scripted`` build that judge, which is how
a :class:`~attunement.judging.RewardSpec` reaches it inside the trainer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

from attunement.judging.parsing import BYSTANDER_KEYS
from attunement.llm import ChatRequest, ScriptedChatModel, register_backend
from attunement.records import Example, MemoryItem, Persona, Situation

#: reward overrides that make every judge answer in JSON (the schema routes the answer)
JSON_JUDGE = {"output": "json", "bystander_output": "json"}

_RESPONSE = re.compile(r"<response>\n(.*?)\n</response>", re.DOTALL)


def judged_response(request: ChatRequest) -> str | None:
    """The fenced response a judge prompt shows (None for criteria prompts)."""
    found = _RESPONSE.search(request.messages[-1][1])
    return found.group(1) if found else None


def _hash(*parts: object) -> int:
    return int(hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def kind_of(request: ChatRequest) -> str:
    props = set((request.json_schema or {}).get("properties", {}))
    if not props:
        raise AssertionError("the training tests ask every judge for JSON")
    if set(BYSTANDER_KEYS) <= props:
        return "bystander"
    if props == {"criteria"}:
        return "criteria"
    if "match" in props:
        return "match"
    if "continue" in props:
        return "continue"
    if "score" in props:
        return "score"
    raise AssertionError(f"unknown judge schema {sorted(props)}")


def judge_answer(request: ChatRequest, index: int) -> str:
    h = _hash(request.messages[-1][1], index, request.seed)
    kind = kind_of(request)
    if kind == "criteria":
        return json.dumps(
            {
                "criteria": [
                    {
                        "name": f"Criterion {i}",
                        "weight": 25,
                        "description": f"drawn with seed {request.seed} sample {index}",
                    }
                    for i in range(4)
                ]
            }
        )
    if kind == "bystander":
        return json.dumps(
            {"assessment": "clear", **{k: 8 + (h >> i) % 13 for i, k in enumerate(BYSTANDER_KEYS)}}
        )
    if kind == "match":
        return json.dumps({"reason": "fits", "match": (h % 11) / 10})
    if kind == "continue":
        return json.dumps({"reason": "felt heard", "continue": bool(h % 2)})
    props = request.json_schema["properties"]
    answer: dict[str, object] = {"score": 1 + h % 5}
    for field in ("reason", "analysis"):
        if field in props:
            answer[field] = "ok"
    if "criteria" in props:
        answer["criteria"] = ["one", "two", "three"]
    return json.dumps(answer)


def scripted_judge(
    fail: Callable[[ChatRequest], Exception | None] | None = None, **kw
) -> ScriptedChatModel:
    """The judge; ``fail(request)`` may return an exception to raise instead."""

    def respond(request: ChatRequest, index: int):
        if fail is not None:
            error = fail(request)
            if error is not None:
                return error
        return judge_answer(request, index)

    return ScriptedChatModel(respond, **kw)


def install(judge: ScriptedChatModel) -> str:
    """Make the model spec ``scripted`` build ``judge``; returns the spec."""
    judge.max_concurrency = 8
    register_backend("scripted", lambda spec, options: judge)
    return "scripted"


def examples(n: int = 4) -> list[Example]:
    """Small but complete PersonaEmp-style examples (short prompts for a tiny policy)."""
    topics = [
        ("my manager took credit for my report", "Quiet engineer, avoids conflict."),
        ("my best friend forgot my birthday", "Loyal, keeps score privately."),
        ("I failed my driving test again", "Compares herself with her brother."),
        ("my cat is sick and I can't afford the vet", "Lives alone, cat is family."),
        ("nobody came to my art show", "Shy painter, first exhibition."),
        ("my son won't talk to me", "Single father of a teenager."),
    ]
    out = []
    for i in range(n):
        query, profile = topics[i % len(topics)]
        out.append(
            Example(
                example_id=f"ex{i}",
                user_id=f"u{i}",
                category="ES",
                query=f"Honestly, {query}.",
                persona=Persona(profile=profile),
                memories=[MemoryItem(memory_id=f"u{i}-m1", value=f"Mentioned before: {profile}")],
                situation=Situation(category="ES", description=query.capitalize() + "."),
            )
        )
    return out


def write_examples(path, n: int = 4) -> None:
    path.write_text("".join(e.model_dump_json() + "\n" for e in examples(n)), encoding="utf-8")
