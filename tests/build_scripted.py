"""A scripted stand-in for an LLM that answers every builder stage with valid JSON.

Used by the tests of attunement.building: it recognises the stage from the
JSON schema of the request, reads memory ids from the schema's enums, and lets
a test override any stage's answer (``overrides[stage](request, index)``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from attunement.llm import ChatRequest, ScriptedChatModel

BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")


def stage_of(request: ChatRequest) -> str:
    props = (request.json_schema or {}).get("properties", {})
    if "profile" in props:
        return "persona"
    if "openness" in props:
        return "bigfive"
    if {"ES", "HEQ", "SS"} & set(props):
        return "situations"
    if "query" in props:
        return "queries"
    if "emotional_need" in props:
        return "inspect"
    if "memories" in props:
        return "extract"
    if "scenario" in props:
        return "augment"
    raise AssertionError(f"unknown stage schema: {sorted(props)}")


def _ids(request: ChatRequest, path: tuple[str, ...]) -> list[str]:
    node = request.json_schema
    for p in path:
        node = node[p]
    return list(node["enum"])


def default_answer(request: ChatRequest, index: int) -> str:
    stage = stage_of(request)
    text = "\n".join(c for _, c in request.messages)
    if stage == "persona":
        return json.dumps({"profile": "A caring person under strain who values close ties [m1].",
                           "topics": ["family", "work"], "is_deep": True,
                           "gate_reason": "Clear emotional context in the memories."})
    if stage == "bigfive":
        return json.dumps({t: {"level": "high" if t in ("agreeableness", "neuroticism")
                               else "medium", "reason": f"{t} evidence from m1"}
                           for t in BIG_FIVE})
    if stage == "situations":
        props = request.json_schema["properties"]
        out = {}
        for cat in props:
            ids = _ids(request, ("properties", cat, "anyOf", 0, "properties",
                                 "relevant_memory_ids", "items"))
            out[cat] = {"supported": True, "emotion": "worried",
                        "description": f"A {cat} moment: something happened today that reminds "
                                       "them of what they carry, and they feel it strongly.",
                        "relevant_memory_ids": ids[:1]}
        return json.dumps(out)
    if stage == "queries":
        ids = _ids(request, ("properties", "relevant_memory_ids", "items"))
        cat = "ES" if "Emotional Support" in text else "HEQ" if "High-EQ" in text else "SS"
        return json.dumps({"query": f"I really need some help with this ({cat}), I feel stuck.",
                           "relevant_memory_ids": ids[:1], "reasoning": "It follows from m1."})
    if stage == "inspect":
        return json.dumps({"reason": "Fits the user.", "emotional_need": True,
                           "logical_consistency": True, "role_awareness": True,
                           "language": True})
    if stage == "extract":
        return json.dumps({"memories": []})
    if stage == "augment":
        return json.dumps({"scenario": "Sam found an old photo album and remembered a close "
                                       "friend who moved away years ago.",
                           "name": "Sam", "age": 34, "gender": "male",
                           "occupation": "teacher"})
    raise AssertionError(stage)


def scripted_builder(overrides: dict[str, Callable[[ChatRequest, int], object]] | None = None,
                     *, fail_after: int | None = None, name: str = "scripted-builder"
                     ) -> ScriptedChatModel:
    """A ScriptedChatModel answering every stage; ``fail_after`` raises on call N+1."""
    overrides = overrides or {}
    counter = {"n": 0}

    def respond(request: ChatRequest, index: int):
        counter["n"] += 1
        if fail_after is not None and counter["n"] > fail_after:
            return RuntimeError(f"simulated crash at call {counter['n']}")
        stage = stage_of(request)
        if stage in overrides:
            return overrides[stage](request, index)
        return default_answer(request, index)

    return ScriptedChatModel(respond, name=name)
