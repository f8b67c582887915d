"""EmoBench asked as the official EmoBench code asks it, so that a number sits next to
the paper's (``attune emobench --prompts official --official-prompts DIR``).

The project's own prompts (:mod:`~attunement.benchmarks.emobench.prompts`)
differ from upstream's in ways that move accuracy: another system prompt and
wording, EU asked as one question, options lettered ``A.``, answers
constrained by a schema. Here the prompts are upstream's own files, read as
data from the folder the user gives (``src/configs`` of the EmoBench
repository: ``prompts.yaml`` and ``response.yaml``; nothing of theirs is
bundled), and used the way upstream uses them:

- the system message is the task's instructions (``sys``) followed by the
  answer format: the base statement (``base``; no chain of thought) and the
  task's JSON fields (``EA``: ``answer``; ``EU``: ``answer_q1`` and
  ``answer_q2``) inside a fenced ``json`` block laid out as upstream lays it
  out; a model whose name contains "qwen" gets ``/no_think`` first, as there;
- the user message is the task's template: EU asks two questions (the
  feeling, then its reason), EA asks for the most effective ``{q_type}``
  (the item's question type as written, ``Response`` or ``Action``); options
  are lettered ``A) text``;
- the answer is free text (no schema). It is read as upstream reads it: the
  first fenced ``json`` block if the text has one, else the whole text, must
  be a JSON object; its ``answer`` (EU: ``answer_q1``, ``answer_q2``) must
  equal the right letter exactly. Anything else is wrong, with the reason kept.

Upstream's API runs sample at temperature 0.6; the number here is only as
comparable as the sampling settings are (``--temperature``).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attunement.benchmarks.emobench.data import EUItem, Item, task_of
from attunement.jsonl import file_sha256
from attunement.llm import Message

LETTERS = string.ascii_uppercase
FILES = ("prompts.yaml", "response.yaml")
#: the answer's JSON fields per task, in upstream's order, and the part each reads
FIELDS: dict[str, dict[str, str]] = {
    "EA": {"answer": "answer"},
    "EU": {"answer_q1": "emotion", "answer_q2": "cause"},
}
_FENCED_JSON = re.compile(r"```json\s*([\s\S]*?)```")


@dataclass(frozen=True)
class OfficialPrompts:
    """Upstream's two prompt files, read: the instructions, templates and answer parts."""

    folder: Path
    system: Mapping[str, str]  # language -> instructions
    templates: Mapping[str, Mapping[str, str]]  # task -> language -> user template
    statement: Mapping[str, str]  # language -> the "base" answer statement
    fields: Mapping[str, Mapping[str, str]]  # task -> language -> JSON field lines
    hashes: Mapping[str, str]

    def system_message(self, task: str, language: str, model_name: str) -> str:
        """The instructions and the answer format, as upstream builds its system prompt."""
        text = self.system[language] + answer_format(
            self.statement[language], self.fields[task][language]
        )
        return "/no_think\n\n" + text if "qwen" in model_name.lower() else text

    def messages(self, item: Item, model_name: str) -> list[Message]:
        """The system and user messages that ask one item."""
        task, language = task_of(item), item.language
        if language not in self.system:
            raise ValueError(
                f"{self.folder}: no prompts for language {language!r} "
                f"(the files have {', '.join(sorted(self.system))})"
            )
        template = self.templates[task][language]
        if isinstance(item, EUItem):
            user = template.format(
                scenario=item.scenario,
                subject=item.subject,
                emo_choices=lettered(item.emotion_choices),
                cause_choices=lettered(item.cause_choices),
            )
        else:
            user = template.format(
                scenario=item.scenario,
                subject=item.subject,
                choices=lettered(item.choices),
                q_type=item.question_type,
            )
        return [
            {"role": "system", "content": self.system_message(task, language, model_name)},
            {"role": "user", "content": user},
        ]


def lettered(choices: Sequence[str]) -> str:
    """Options lettered as upstream letters them.

    >>> print(lettered(["calm", "angry"]))
    A) calm
    B) angry
    """
    return "\n".join(f"{LETTERS[i]}) {c}" for i, c in enumerate(choices))


def answer_format(statement: str, fields: str) -> str:
    """The answer format upstream appends to its instructions: the statement, then the
    JSON fields inside a fenced block, with upstream's line breaks and indents.

    >>> answer_format("Answer in JSON:\\n", '"answer": "<letter>"\\n')
    '\\nAnswer in JSON:\\n\\n```json\\n    {\\n    "answer": "<letter>"\\n\\n    }\\n``` \\n    '
    """
    return f"\n{statement}\n```json\n    {{\n    {fields}\n    }}\n``` \n    "


def _pick(data: Any, path: Sequence[str], where: Path) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            raise ValueError(f"{where}: missing {'.'.join(path)}")
        data = data[key]
    return data


def load_official_prompts(folder: Path | str) -> OfficialPrompts:
    """Read ``prompts.yaml`` and ``response.yaml`` from ``folder``; a missing file or
    key fails here, before any model is loaded."""
    import yaml

    folder = Path(folder)
    loaded = {}
    for name in FILES:
        path = folder / name
        if not path.is_file():
            raise ValueError(
                f"{path}: not found; --official-prompts takes the folder holding EmoBench's "
                "prompts.yaml and response.yaml (src/configs in the EmoBench repository)"
            )
        try:
            loaded[name] = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
    prompts, response = loaded["prompts.yaml"], loaded["response.yaml"]
    p_path, r_path = folder / "prompts.yaml", folder / "response.yaml"
    languages = sorted(_pick(prompts, ["sys"], p_path))
    text = lambda data, path, where: str(_pick(data, path, where))
    return OfficialPrompts(
        folder=folder,
        system={lang: text(prompts, ["sys", lang], p_path) for lang in languages},
        templates={
            task: {lang: text(prompts, [task, lang], p_path) for lang in languages}
            for task in FIELDS
        },
        statement={lang: text(response, ["base", lang], r_path) for lang in languages},
        fields={
            task: {lang: text(response, [task, lang], r_path) for lang in languages}
            for task in FIELDS
        },
        hashes={name: file_sha256(folder / name) for name in FILES},
    )


def read_official_answer(text: str) -> dict[str, Any] | None:
    """The JSON object of an answer, found as upstream finds it: inside the first
    fenced ``json`` block when there is one, else the whole text.

    >>> read_official_answer('Sure.\\n```json\\n{"answer": "B"}\\n```')
    {'answer': 'B'}
    >>> read_official_answer('{"answer": "B"} because...') is None
    True
    """
    found = _FENCED_JSON.search(text) if "```json" in text else None
    body = found.group(1) if found else text
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def parse_official(
    text: str, item: Item, parts: Mapping[str, int]
) -> tuple[dict[str, int | None], str | None]:
    """The chosen option of each part (0-based) as upstream grades it: the field must be
    exactly one of the option letters; else the part is wrong and the reason says why.

    >>> from attunement.benchmarks.emobench.data import EAItem
    >>> it = EAItem.model_validate({"qid": "1", "question type": "Action", "scenario": "s",
    ...     "choices": ["a", "b", "c", "d"], "label": "b"})
    >>> parse_official('```json\\n{"answer": "B"}\\n```', it, {"answer": 4})
    ({'answer': 1}, None)
    >>> parse_official('{"answer": "B)"}', it, {"answer": 4})
    ({'answer': None}, "answer: 'B)' is not one of A-D")
    """
    chosen: dict[str, int | None] = dict.fromkeys(parts)
    obj = read_official_answer(text)
    if obj is None:
        return chosen, "no JSON object (upstream: a fenced json block or the whole answer)"
    problems = []
    for field, part in FIELDS[task_of(item)].items():
        value, n = obj.get(field, ""), parts[part]
        if isinstance(value, str) and len(value) == 1 and value in LETTERS[:n]:
            chosen[part] = LETTERS.index(value)
        else:
            problems.append(f"{field}: {value!r} is not one of A-{LETTERS[n - 1]}")
    return chosen, "; ".join(problems) or None
