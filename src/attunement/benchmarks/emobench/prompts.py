"""What EmoBench asks a model and how its answer is read: the one place of its prompts.

Options are shown as letters. By default the answer is constrained: the model
is asked for a JSON object whose fields are enums of the allowed letters, and
the schema, generated from the pydantic model that reads the answer
(:func:`answer_model`), is sent with the request (llama.cpp's grammar sampler
and vLLM's guided decoding both enforce it). ``output="text"`` asks for
``Answer: B`` lines instead. The prompt texts are files in
``attunement/prompts/`` (``eval_emobench_*``); :func:`prompt_names` lists the
ones a run uses, for its manifest. Another prompt wording (EmoBench's own, say)
changes :func:`item_messages` and :func:`prompt_names` here and nothing else.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from attunement.benchmarks.emobench.data import EAItem, EUItem, Item, Task, parts_of, task_of
from attunement.llm import Message
from attunement.prompts import load_prompt
from attunement.textjson import last_json_object

AnswerFormat = Literal["json", "text"]
LETTERS = string.ascii_uppercase
PROMPTS = ("eval_emobench_ea", "eval_emobench_eu")


def format_prompt(task: Task, output: AnswerFormat) -> str:
    """The name of the prompt file that states the answer format.

    >>> format_prompt("EU", "json")
    'eval_emobench_format_eu_json'
    """
    return f"eval_emobench_format_{task.lower()}_{output}"


def prompt_names(output: AnswerFormat) -> list[str]:
    """Every prompt a run with this answer format renders (its manifest records them)."""
    return [*PROMPTS, *(format_prompt(t, output) for t in ("EA", "EU"))]


def lettered(choices: Sequence[str]) -> str:
    """Options as lettered lines.

    >>> print(lettered(["calm", "angry"]))
    A. calm
    B. angry
    """
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def question(item: EAItem) -> str:
    """The EA question, asked of the scenario's subject."""
    who = "me" if item.subject.strip().lower() == "i" else (item.subject or "the person")
    kind = "thing to say" if item.question_type == "Response" else "action to take"
    return f"In this situation, what is the most effective {kind} for {who}?"


def item_messages(item: Item, output: AnswerFormat) -> list[Message]:
    """The messages asking one item: the task's prompt, its lettered options and
    the answer format."""
    task = task_of(item)
    fmt = load_prompt(format_prompt(task, output)).messages[0][1].strip()
    if isinstance(item, EUItem):
        return load_prompt("eval_emobench_eu").render(
            scenario=item.scenario,
            subject=item.subject or "the person",
            emotion_choices=lettered(item.emotion_choices),
            cause_choices=lettered(item.cause_choices),
            answer_format=fmt,
        )
    return load_prompt("eval_emobench_ea").render(
        scenario=item.scenario,
        question=question(item),
        choices=lettered(item.choices),
        answer_format=fmt,
    )


@lru_cache(maxsize=64)
def answer_model(parts: tuple[tuple[str, int], ...]) -> type[BaseModel]:
    """The pydantic model of an answer: each part one of its allowed letters."""
    fields: dict[str, Any] = {name: (Literal[tuple(LETTERS[:n])], ...) for name, n in parts}
    return create_model(
        "EmoBenchAnswer" + "".join(f"_{n}{k}" for n, k in parts),
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )


def answer_schema(item: Item) -> dict[str, Any]:
    """The JSON schema sent with the request (from :func:`answer_model`).

    >>> s = answer_schema(EAItem.model_validate({"qid": "1", "question type": "Action",
    ...     "scenario": "s", "choices": ["a", "b", "c"], "label": "b"}))
    >>> s["properties"]["answer"]["enum"], s["required"], s["additionalProperties"]
    (['A', 'B', 'C'], ['answer'], False)
    """
    return answer_model(tuple(parts_of(item).items())).model_json_schema()


_LINE = {"answer": r"answer", "emotion": r"(?:emotion|feeling)", "cause": r"(?:cause|reason)"}


def parse_answer(
    text: str, parts: dict[str, int], output: AnswerFormat = "json"
) -> tuple[dict[str, int | None], str | None]:
    """The chosen option of each part (0-based) and, if some part is unreadable, why.

    JSON answers are validated with :func:`answer_model`; text answers are read
    from their last ``Part: X`` line (a lone letter also answers a one-part item).

    >>> parse_answer('{"emotion": "B", "cause": "A"}', {"emotion": 6, "cause": 4})
    ({'emotion': 1, 'cause': 0}, None)
    >>> parse_answer("Answer: (C)", {"answer": 4}, "text")
    ({'answer': 2}, None)
    >>> parse_answer('{"answer": "E"}', {"answer": 4})[1]
    "answer: 'E' is not one of A-D"
    """
    chosen: dict[str, int | None] = dict.fromkeys(parts)
    problems: list[str] = []
    found = last_json_object(text)
    obj = found.value if found is not None else None
    if obj is not None:
        model = answer_model(tuple(parts.items()))
        try:
            parsed = model.model_validate(obj)
            return {k: LETTERS.index(getattr(parsed, k)) for k in parts}, None
        except ValidationError:
            pass
        for k, n in parts.items():
            v = obj.get(k)
            letter = v.strip().strip("().").upper() if isinstance(v, str) else ""
            if len(letter) == 1 and letter in LETTERS[:n]:
                chosen[k] = LETTERS.index(letter)
            elif k in obj:
                problems.append(f"{k}: {v!r} is not one of A-{LETTERS[n - 1]}")
            else:
                problems.append(f"{k}: missing")
        return chosen, "; ".join(problems) or None
    for k, n in parts.items():
        found = re.findall(rf"\b{_LINE[k]}\s*[:=]\s*\(?\s*([A-Za-z])\b", text, re.IGNORECASE)
        letter = found[-1].upper() if found else None
        if letter is None and len(parts) == 1:
            lone = re.fullmatch(r"\s*\(?([A-Za-z])[).]?\s*", text)
            letter = lone.group(1).upper() if lone else None
        if letter is not None and letter in LETTERS[:n]:
            chosen[k] = LETTERS.index(letter)
        else:
            problems.append(
                f"{k}: no letter A-{LETTERS[n - 1]} found"
                if letter is None
                else f"{k}: {letter!r} is not one of A-{LETTERS[n - 1]}"
            )
    return chosen, "; ".join(problems) or None
