"""A scripted stand-in for an LLM that answers every builder stage with valid JSON.

Used by the tests of attunement.building: it recognises the stage from the
JSON schema of the request, reads memory ids from the schema's enums, and lets
a test override any stage's answer (``overrides[stage](request, index)``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from attunement.llm import ChatRequest, ScriptedChatModel

BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")


def stage_of(request: ChatRequest) -> str:
    """The stage of a request, from its schema's title (the answer model's name)."""
    title = (request.json_schema or {}).get("title")
    if title not in (
        "persona",
        "bigfive",
        "situations",
        "queries",
        "inspect",
        "extract",
        "augment",
    ):
        raise AssertionError(f"unknown stage schema: {title!r}")
    return title


def _ids(request: ChatRequest, path: tuple[str, ...]) -> list[str]:
    node = request.json_schema
    for p in path:
        node = node[p]
    return list(node["enum"])


def language_asked(request: ChatRequest) -> str:
    """The language code a query request asks for ("in Spanish (es)")."""
    m = re.search(
        r"in [A-Z][\w ]+ \((\w+(?:-\w+)?)\), in the first person", request.messages[-1][1]
    )
    return m.group(1) if m else "en"


def default_answer(request: ChatRequest, index: int) -> str:
    stage = stage_of(request)
    text = "\n".join(c for _, c in request.messages)
    if stage == "persona":
        return json.dumps(
            {
                "profile": "A caring person under strain who values close ties [m1].",
                "topics": ["family", "work"],
                "is_deep": True,
                "gate_reason": "Clear emotional context in the memories.",
            }
        )
    if stage == "bigfive":
        return json.dumps(
            {
                t: {
                    "level": "high" if t in ("agreeableness", "neuroticism") else "medium",
                    "reason": f"{t} evidence from m1",
                }
                for t in BIG_FIVE
            }
        )
    if stage == "situations":
        props = request.json_schema["properties"]
        out = {}
        for cat in props:
            ids = _ids(
                request,
                (
                    "properties",
                    cat,
                    "properties",
                    "situations",
                    "items",
                    "properties",
                    "relevant_memory_ids",
                    "items",
                ),
            )
            out[cat] = {
                "supported": True,
                "why_not": "",
                "situations": [
                    {
                        "emotion": "worried",
                        "description": f"A {cat} moment: something happened today that reminds "
                        "them of what they carry, and they feel it strongly.",
                        "relevant_memory_ids": ids[:1],
                    }
                ],
            }
        return json.dumps(out)
    if stage == "queries":
        ids = _ids(request, ("properties", "relevant_memory_ids", "items"))
        cat = "ES" if "Emotional Support" in text else "HEQ" if "High-EQ" in text else "SS"
        return json.dumps(
            {
                "query": QUERIES[language_asked(request)].format(cat=cat),
                "relevant_memory_ids": ids[:1],
                "reasoning": "It follows from m1.",
            }
        )
    if stage == "inspect":
        return json.dumps(
            {
                "reason": "Fits the user.",
                "emotional_support": True,
                "logical_consistency": True,
                "role_awareness": True,
                "language": language_written(text),
            }
        )
    if stage == "extract":
        return json.dumps({"memories": []})
    if stage == "augment":
        return json.dumps(
            {
                "scenario": "Sam found an old photo album and remembered a close "
                "friend who moved away years ago.",
                "name": "Sam",
                "age": 34,
                "gender": "male",
                "occupation": "teacher",
            }
        )
    raise AssertionError(stage)


def language_written(prompt: str) -> str:
    """The language of the query an inspection prompt shows (the inspector is given
    no hint: it reads the message), as a code of :data:`QUERIES`; else ``en``."""
    m = re.search(r"<message>(.*?)</message>", prompt, re.DOTALL)
    query = m.group(1) if m else prompt
    for lang, template in QUERIES.items():
        if re.split(r"[(\uff08]", template)[0].strip()[:12] in query:
            return lang
    return "en"


#: a query per language, as a multilingual model would write it
QUERIES = {
    "en": "I really need some help with this ({cat}), I feel stuck.",
    "es": "De verdad necesito ayuda con esto ({cat}), me siento atascada y no sé qué hacer.",
    "zh": "我真的需要一些帮助（{cat}），我觉得自己被困住了，不知道该怎么办。",
    "ja": "本当に助けが必要です（{cat}）。どうしたらいいのか分かりません。",
    "fr": "J'ai vraiment besoin d'aide avec ça ({cat}), je me sens bloquée.",
    "it": "Ho davvero bisogno di aiuto con questo ({cat}), mi sento bloccata.",
    "ru": "Мне очень нужна помощь с этим ({cat}), я чувствую, что застряла.",
}


def scripted_builder(
    overrides: dict[str, Callable[[ChatRequest, int], object]] | None = None,
    *,
    fail_after: int | None = None,
    name: str = "scripted-builder",
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


#: a sentence a verbose model adds to every text it writes
PADDING = " She has carried this for a long time and it still weighs on her every day."


def _pad(value: object, times: int) -> object:
    if isinstance(value, str) and len(value) > 3 and value not in ("low", "medium", "high"):
        return value + PADDING * times
    if isinstance(value, list):
        return [_pad(v, times) for v in value]
    if isinstance(value, dict):
        keep = ("language", "relevant_memory_ids")
        return {k: v if k in keep else _pad(v, times) for k, v in value.items()}
    return value


def verbose_responder(times: int = 8) -> Callable[[list[dict], int, dict], str]:
    """A :class:`~attunement.perf.simserver.SimServer` responder that answers every
    builder stage with JSON of the right shape and far too much text: each text
    value gets ``times`` more sentences, memory ids and levels stay as they are.
    It reads the stage's prompt, not the follow-up a re-ask adds, so it ignores
    length limits whatever it is told."""

    def respond(messages: list[dict], index: int, params: dict) -> str:
        schema = params["response_format"]["json_schema"]["schema"]
        first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
        request = ChatRequest(
            messages=tuple((m["role"], m["content"]) for m in messages[: first_user + 1]),
            json_schema=schema,
            sample_start=index,
        )
        data = json.loads(default_answer(request, index))
        if stage_of(request) in ("inspect",):
            return json.dumps(_pad(data, 1))
        return json.dumps(_pad(data, times), ensure_ascii=False)

    return respond
