"""A small scripted evaluation shared by the evaluation tests.

Four examples in two splits, two reply files (full memory and mismatched
memory), and a judge whose score for each (reply, dimension) is written in the
reply itself as ``[r4 e3 c5]``, so every table number can be computed by hand:

==========  ========  ===========  =====  ========  ===============
example     split     category     O      base      mism
==========  ========  ===========  =====  ========  ===============
e1          random    ES           high   4 4 5     3 3 3
e2          random    HEQ          low    3 4 2     2 4 1
e3          random    ES           low    5 5 5     4 5 5
e4          ood       SS           medium 2 3 4     1 1 1
==========  ========  ===========  =====  ========  ===============

(O = openness; columns are Res, Exp, Rec.) In shared-criteria mode the judge
writes criteria numbered by their sample, and scores slot ``j`` one point
lower than slot 0 (never below 1), so PereGRM@2 is each score minus 0.5.
"""

from __future__ import annotations

import re

from attunement.judging import named_criteria, named_task
from attunement.llm import ScriptedChatModel
from attunement.llm.base import ChatRequest
from attunement.records import BigFive, Example, MemoryItem, Persona, Reply, Situation

SCORES = {
    "base": {"e1": (4, 4, 5), "e2": (3, 4, 2), "e3": (5, 5, 5), "e4": (2, 3, 4)},
    "mism": {"e1": (3, 3, 3), "e2": (2, 4, 1), "e3": (4, 5, 5), "e4": (1, 1, 1)},
}
MODES = {"base": "full", "mism": "mismatch"}
SPLITS = {"random": ["e1", "e2", "e3"], "ood": ["e4"]}
CATEGORY = {"e1": "ES", "e2": "HEQ", "e3": "ES", "e4": "SS"}
OPENNESS = {"e1": "high", "e2": "low", "e3": "low", "e4": "medium"}
DIMS = ("resonation", "expression", "reception")


def example(eid: str) -> Example:
    big_five = BigFive(
        openness=OPENNESS[eid],
        conscientiousness="medium",
        extraversion="low",
        agreeableness="high",
        neuroticism="high",
    )
    return Example(
        example_id=eid,
        user_id=f"u-{eid}",
        category=CATEGORY[eid],
        query=f"Query of {eid}: my sister <b>ignored</b> my message and I feel small.",
        situation=Situation(category=CATEGORY[eid], description=f"Situation of {eid}."),
        persona=Persona(profile=f"Persona of {eid}.", big_five=big_five),
        memories=[MemoryItem(memory_id="m1", value=f"Memory of {eid}.")],
    )


def split_examples() -> dict[str, list[Example]]:
    return {split: [example(e) for e in ids] for split, ids in SPLITS.items()}


def replies(system: str) -> list[Reply]:
    out = []
    for eid, (r, e, c) in SCORES[system].items():
        out.append(
            Reply(
                example_id=eid,
                reply_id=f"{eid}:{MODES[system]}:0",
                analysis=f"analysis of {eid} by {system}",
                response=f"[r{r} e{e} c{c}] reply of {system} to {eid} <script>alert(1)</script>",
                memory_mode=MODES[system],
                policy="scripted-policy",
            )
        )
    return out


def _dimension(user: str) -> str:
    task = named_task(user)
    if task is not None:
        return task[1]
    return next(d for d in DIMS if re.search(rf"on the {d} dimension", user, re.IGNORECASE))


def judge(fail: tuple[str, str, str] | None = None, name: str = "judge-a") -> ScriptedChatModel:
    """The scripted judge; ``fail=(example text, system, dimension)`` never parses there."""

    def respond(request: ChatRequest, index: int) -> str:
        user = request.messages[-1][1]
        if (named_task(user) or ("",))[0] == "criteria":
            return "Specific Criteria:\n" + "\n".join(
                f"{i}. slot{index} point {i} (25%): detail" for i in range(1, 5)
            )
        dim = _dimension(user)
        m = re.search(r"\[r(\d) e(\d) c(\d)\] reply of (\w+) to (\w+)", user)
        assert m, user[-500:]
        if fail and (m.group(5), m.group(4), dim) == fail:
            return "I would rather not say."
        score = int(m.group(1 + DIMS.index(dim)))
        slot = re.search(r"slot(\d+) point", named_criteria(user) or user)
        if slot:
            score = max(1, score - min(1, int(slot.group(1))))
        return f"Analysis: {dim} of {m.group(4)} on {m.group(5)} <i>fine</i>\nScores: \\boxed{{{score}}}"

    return ScriptedChatModel(respond, name=name)
