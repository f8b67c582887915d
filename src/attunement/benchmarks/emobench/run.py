"""``attune emobench``: EmoBench's two multiple-choice tasks, accuracy on 0-100.

- **EU** (emotional understanding): the model picks a feeling from
  ``emotion_choices`` *and* its reason from ``cause_choices``; an item is right
  only when both are.
- **EA** (emotional application): the model picks the most effective response
  or action from ``choices``.

Options are shown as letters. By default the answer is constrained: the model
is asked for a JSON object whose fields are enums of the allowed letters, and
the schema, generated from the pydantic model that reads the answer, is sent
with the request (llama.cpp's grammar sampler and vLLM's guided decoding both
enforce it). ``output="text"`` asks for ``Answer: B`` lines instead. Decoding
is greedy (temperature 0), as in the PersonaEmp paper's table 5.

An answer that cannot be read counts as wrong and is counted separately
(``unparsed``), so a model that does not answer cannot look better than one
that answers wrongly. Accuracies come with Wilson intervals, per task, per
EA question type and per category.

Answers are appended to ``OUT/answers.jsonl`` one per item as they finish and
a re-run asks only for the missing ones.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from attunement.benchmarks.emobench.data import EAItem, EUItem, read_ea, read_eu
from attunement.concurrency import run_bounded
from attunement.evaluation.stats import wilson_ci
from attunement.jsonl import (
    JsonlAppender,
    check_settings,
    file_sha256,
    manifest_path,
    read_jsonl,
    write_manifest,
)
from attunement.judging.base import usage_of
from attunement.llm.base import ChatModel, LLMError, Message
from attunement.prompts import load_prompt
from attunement.records import Record, Usage
from attunement.textjson import last_json_object

Task = Literal["EU", "EA"]
AnswerFormat = Literal["json", "text"]
LETTERS = string.ascii_uppercase
PROMPTS = ("eval_emobench_ea", "eval_emobench_eu")


class EmoBenchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output: AnswerFormat = Field(
        "json", description="json: schema-constrained letters; text: 'Answer: B' lines"
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(48, ge=4, description="an answer is a few tokens")
    seed: int = 0
    language: str | None = Field("en", description="keep items of this language (None: all)")
    concurrency: int = Field(4, ge=1)
    level: float = Field(0.95, gt=0.5, lt=1.0)
    examples_shown: int = Field(20, ge=0)


class EmoBenchAnswer(Record):
    """The model's answer to one item and whether it was right."""

    task: Task
    qid: str
    language: str = "en"
    category: str = ""
    subcategory: str = Field("", description="EA: question type; EU: fine-grained category")
    predicted: dict[str, int | None] = Field(description="chosen option per part (0-based)")
    expected: dict[str, int]
    parts_correct: dict[str, bool]
    correct: bool
    raw: str = ""
    reason: str | None = Field(None, description="why the answer could not be read")
    usage: Usage = Field(default_factory=Usage)


# --------------------------------------------------------------------------- items


Item = EAItem | EUItem


def task_of(item: Item) -> Task:
    return "EU" if isinstance(item, EUItem) else "EA"


def item_key(task: str, qid: str, language: str) -> tuple[str, str, str]:
    return (task, qid, language)


def read_items(paths: Sequence[Path | str]) -> list[Item]:
    """EA and EU items from files or folders; each file's task is read from its fields."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(
                f
                for f in p.iterdir()
                if f.suffix == ".jsonl" and not f.name.endswith(".rejects.jsonl")
            )
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    items: list[Item] = []
    for f in files:
        kind = _file_task(f)
        items += read_eu(f) if kind == "EU" else read_ea(f)
    keys = [item_key(task_of(i), i.qid, i.language) for i in items]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"items appear twice: {dupes[:3]}")
    return items


def _file_task(path: Path) -> Task:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    raise ValueError(f"{path}:1: not valid JSON") from None
                if "emotion_choices" in first:
                    return "EU"
                if "choices" in first:
                    return "EA"
                raise ValueError(
                    f"{path}: neither an EU file (emotion_choices) nor an EA file (choices)"
                )
    raise ValueError(f"{path}: empty file")


# --------------------------------------------------------------------------- prompts


def lettered(choices: Sequence[str]) -> str:
    """Options as lettered lines.

    >>> print(lettered(["calm", "angry"]))
    A. calm
    B. angry
    """
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def _question(item: EAItem) -> str:
    who = "me" if item.subject.strip().lower() == "i" else (item.subject or "the person")
    kind = "thing to say" if item.question_type == "Response" else "action to take"
    return f"In this situation, what is the most effective {kind} for {who}?"


def item_messages(item: Item, output: AnswerFormat) -> list[Message]:
    task = task_of(item)
    fmt = load_prompt(f"eval_emobench_format_{task.lower()}_{output}").messages[0][1].strip()
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
        question=_question(item),
        choices=lettered(item.choices),
        answer_format=fmt,
    )


def parts_of(item: Item) -> dict[str, int]:
    """Each answer part with its number of options."""
    if isinstance(item, EUItem):
        return {"emotion": len(item.emotion_choices), "cause": len(item.cause_choices)}
    return {"answer": len(item.choices)}


def expected_of(item: Item) -> dict[str, int]:
    if isinstance(item, EUItem):
        return {"emotion": item.emotion_index, "cause": item.cause_index}
    return {"answer": item.answer_index}


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

    >>> from attunement.benchmarks.emobench.data import EAItem
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


def grade(item: Item, predicted: dict[str, int | None]) -> tuple[dict[str, bool], bool]:
    """Per-part correctness and the item's verdict (EU: both parts right).

    >>> from attunement.benchmarks.emobench.data import EUItem
    >>> eu = EUItem.model_validate({"qid": "1", "scenario": "s", "emotion_choices": ["a", "b"],
    ...     "emotion_label": "b", "cause_choices": ["x", "y"], "cause_label": "x"})
    >>> grade(eu, {"emotion": 1, "cause": 1})
    ({'emotion': True, 'cause': False}, False)
    """
    expected = expected_of(item)
    parts = {k: predicted.get(k) == v for k, v in expected.items()}
    return parts, all(parts.values())


# --------------------------------------------------------------------------- running


async def answer_item(item: Item, model: ChatModel, settings: EmoBenchSettings) -> EmoBenchAnswer:
    parts = parts_of(item)
    schema = answer_schema(item) if settings.output == "json" else None
    raw, reason, usage = "", None, Usage()
    try:
        completions = await model.complete(
            item_messages(item, settings.output),
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            json_schema=schema,
            seed=settings.seed,
        )
        raw = completions[0].text
        usage = usage_of(completions)
        predicted, reason = parse_answer(raw, parts, settings.output)
    except LLMError as exc:
        predicted, reason = dict.fromkeys(parts), f"model call failed: {exc}"
    by_part, correct = grade(item, predicted)
    if isinstance(item, EUItem):
        category, sub = item.coarse_category, item.finegrained_category
    else:
        category, sub = item.category, item.question_type
    return EmoBenchAnswer(
        task=task_of(item),
        qid=item.qid,
        language=item.language,
        category=category,
        subcategory=sub,
        predicted=predicted,
        expected=expected_of(item),
        parts_correct=by_part,
        correct=correct,
        raw=raw,
        reason=reason,
        usage=usage,
    )


def emobench_manifest(
    model: ChatModel, settings: EmoBenchSettings, files: Sequence[Path | str]
) -> dict[str, Any]:
    names = [*PROMPTS, *(f"eval_emobench_format_{t}_{settings.output}" for t in ("ea", "eu"))]
    return {
        "model": model.name,
        "settings": settings.model_dump(mode="json"),
        "prompts": {n: load_prompt(n).version for n in names},
        "data": {str(f): file_sha256(f) for f in files if Path(f).is_file()},
    }


async def run_emobench(
    items: Sequence[Item],
    model: ChatModel,
    out: Path,
    settings: EmoBenchSettings | None = None,
    *,
    data_files: Sequence[Path | str] = (),
    show_progress: bool | None = None,
) -> EmoBenchResults:
    """Answer every item not yet in ``OUT/answers.jsonl``, then score all of them."""
    settings = settings or EmoBenchSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = [i for i in items if settings.language is None or i.language == settings.language]
    if not chosen:
        raise ValueError(f"no EmoBench item in language {settings.language!r}")
    path = out / "answers.jsonl"
    manifest = emobench_manifest(model, settings, data_files)
    check_settings(
        manifest_path(path),
        manifest,
        keys=("model", "settings", "prompts"),
        outputs=[path],
        fix="use a new --out folder",
    )
    done = {
        item_key(a.task, a.qid, a.language): a
        for a in (read_jsonl(path, EmoBenchAnswer) if path.exists() else [])
    }
    todo = [i for i in chosen if item_key(task_of(i), i.qid, i.language) not in done]
    write_manifest(manifest_path(path), command="emobench", **manifest)
    with JsonlAppender(path) as sink:

        def keep(_: Item, answer: EmoBenchAnswer) -> None:
            sink.write(answer)
            done[item_key(answer.task, answer.qid, answer.language)] = answer

        await run_bounded(
            todo,
            lambda i: answer_item(i, model, settings),
            limit=settings.concurrency,
            on_result=keep,
            description="emobench",
            show_progress=show_progress,
        )
    answers = [done[item_key(task_of(i), i.qid, i.language)] for i in chosen]
    results = score_answers(answers, level=settings.level)
    results.model = model.name
    results.settings = settings.model_dump(mode="json")
    results.answered_now = len(todo)
    return results


# --------------------------------------------------------------------------- scoring


class Accuracy(BaseModel):
    """Share of items right, on 0-100, with a Wilson interval."""

    group: dict[str, str] = Field(default_factory=dict)
    n: int
    correct: int
    unparsed: int = 0
    accuracy: float | None
    low: float | None = None
    high: float | None = None


class EmoBenchResults(BaseModel):
    model: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)
    answered_now: int = 0
    tasks: list[Accuracy] = Field(default_factory=list, description="EU and EA (table 5)")
    parts: list[Accuracy] = Field(
        default_factory=list, description="EU emotion alone and cause alone"
    )
    question_types: list[Accuracy] = Field(default_factory=list)
    categories: list[Accuracy] = Field(default_factory=list)


def accuracy(
    answers: Sequence[EmoBenchAnswer],
    *,
    group: dict[str, str] | None = None,
    part: str | None = None,
    level: float = 0.95,
) -> Accuracy:
    """Accuracy (0-100) of some answers, of the whole item or of one part of it."""
    right = sum(1 for a in answers if (a.parts_correct.get(part, False) if part else a.correct))
    ci = wilson_ci(right, len(answers), level=level)
    pct = lambda x: None if x is None else 100 * x
    return Accuracy(
        group=dict(group or {}),
        n=len(answers),
        correct=right,
        unparsed=sum(1 for a in answers if a.reason),
        accuracy=pct(ci.estimate),
        low=pct(ci.low),
        high=pct(ci.high),
    )


def score_answers(answers: Sequence[EmoBenchAnswer], *, level: float = 0.95) -> EmoBenchResults:
    res = EmoBenchResults()
    for task in ("EU", "EA"):
        mine = [a for a in answers if a.task == task]
        if not mine:
            continue
        res.tasks.append(accuracy(mine, group={"task": task}, level=level))
        if task == "EU":
            for part in ("emotion", "cause"):
                res.parts.append(
                    accuracy(mine, group={"task": task, "part": part}, part=part, level=level)
                )
        else:
            for qt in sorted({a.subcategory for a in mine}):
                res.question_types.append(
                    accuracy(
                        [a for a in mine if a.subcategory == qt],
                        group={"task": task, "question_type": qt},
                        level=level,
                    )
                )
        for cat in sorted({a.category for a in mine}):
            res.categories.append(
                accuracy(
                    [a for a in mine if a.category == cat],
                    group={"task": task, "category": cat or "-"},
                    level=level,
                )
            )
    return res


# --------------------------------------------------------------------------- report


def _acc(a: Accuracy) -> str:
    if a.accuracy is None:
        return "-"
    return f"{a.accuracy:.1f} [{a.low:.1f}, {a.high:.1f}]"


def _acc_rows(rows: Sequence[Accuracy], keys: Sequence[str]) -> tuple[list[str], list[list]]:
    header = [k.replace("_", " ") for k in keys] + ["accuracy [CI]", "right / n", "unparsed"]
    return header, [
        [a.group.get(k, "") for k in keys] + [_acc(a), f"{a.correct} / {a.n}", a.unparsed]
        for a in rows
    ]


def emobench_markdown(results: EmoBenchResults) -> str:
    from attunement.evaluation.reporting import md_table

    level = round(100 * results.settings.get("level", 0.95))
    by_task = {a.group["task"]: a for a in results.tasks}
    parts = [
        "# EmoBench results",
        "",
        (
            f"Model `{results.model}`; accuracy on 0-100 with {level}% Wilson intervals. "
            "EU counts an item right only when the feeling and its reason are both right."
        ),
        "",
        "## Table 5 layout",
        "",
        md_table(
            ["Model", "EU", "EA"],
            [
                [
                    results.model,
                    *(
                        f"{by_task[t].accuracy:.1f}"
                        if t in by_task and by_task[t].accuracy is not None
                        else "-"
                        for t in ("EU", "EA")
                    ),
                ]
            ],
        ),
        "",
        "## Per task",
        "",
        md_table(*_acc_rows(results.tasks, ["task"])),
        "",
    ]
    if results.parts:
        parts += ["## EU parts", "", md_table(*_acc_rows(results.parts, ["task", "part"])), ""]
    if results.question_types:
        parts += [
            "## EA question types",
            "",
            md_table(*_acc_rows(results.question_types, ["task", "question_type"])),
            "",
        ]
    if results.categories:
        parts += [
            "## Categories",
            "",
            md_table(*_acc_rows(results.categories, ["task", "category"])),
            "",
        ]
    return "\n".join(parts)


def _choices_html(choices: Sequence[str], expected: int, picked: int | None) -> str:
    from attunement.evaluation import html as H

    rows = []
    for i, c in enumerate(choices):
        marks = ("✓ right answer" if i == expected else "") + (
            ("; " if i == expected else "") + "model's choice" if i == picked else ""
        )
        rows.append([LETTERS[i], c, marks])
    return H.table(["", "option", ""], rows, text_columns=3)


def _item_html(item: Item, answer: EmoBenchAnswer) -> str:
    from attunement.evaluation import html as H

    body = [f"<p><b>Situation</b></p>{H.pre(item.scenario)}"]
    if isinstance(item, EUItem):
        body.append(
            f"<p><b>Feeling</b> of {H.esc(item.subject)}</p>"
            + _choices_html(
                item.emotion_choices, item.emotion_index, answer.predicted.get("emotion")
            )
        )
        body.append(
            "<p><b>Reason</b></p>"
            + _choices_html(item.cause_choices, item.cause_index, answer.predicted.get("cause"))
        )
    else:
        body.append(
            f"<p><b>{H.esc(_question(item))}</b></p>"
            + _choices_html(item.choices, item.answer_index, answer.predicted.get("answer"))
        )
    body.append(f"<p><b>Model's answer</b></p>{H.pre(answer.raw or '(none)')}")
    if answer.reason:
        body.append(f'<p class="warn">unread: {H.esc(answer.reason)}</p>')
    return "".join(body)


def write_emobench_report(
    results: EmoBenchResults,
    items: Sequence[Item],
    answers: Sequence[EmoBenchAnswer],
    out: Path,
    shown: int = 20,
) -> Path:
    """results.json, results.md, plots/emobench.png and report.html in ``out``."""
    from attunement.evaluation import html as H
    from attunement.evaluation import plots
    from attunement.evaluation.reporting import write_json
    from attunement.evaluation.stats import Stat

    out = Path(out)
    write_json(out / "results.json", results.model_dump(mode="json"))
    (out / "results.md").write_text(emobench_markdown(results), encoding="utf-8")
    bars = [*results.tasks, *results.parts, *results.question_types]
    labels = [" ".join(a.group.values()) for a in bars]  # "EU", "EU emotion", "EA Action"
    png = plots.bars(
        labels,
        [Stat(mean=a.accuracy, low=a.low, high=a.high) for a in bars],
        ylabel="accuracy (0-100)",
        title=f"EmoBench: {results.model}",
        ylim=(0, 100),
    )
    (out / "plots").mkdir(exist_ok=True)
    (out / "plots" / "emobench.png").write_bytes(png)
    by_key = {item_key(a.task, a.qid, a.language): a for a in answers}
    pairs = [
        (i, by_key[item_key(task_of(i), i.qid, i.language)])
        for i in items
        if item_key(task_of(i), i.qid, i.language) in by_key
    ]
    # wrong answers first, then right ones, so the sample shows what went wrong
    pairs.sort(key=lambda p: p[1].correct)
    blocks = [
        H.details(
            f"{a.task} {a.qid} · {'right' if a.correct else 'wrong'} · {item.scenario[:80]}",
            _item_html(item, a),
        )
        for item, a in pairs[:shown]
    ]
    by_task = {a.group["task"]: a for a in results.tasks}
    summary = "; ".join(f"{t} {_acc(by_task[t])}" for t in ("EU", "EA") if t in by_task)
    page = H.page(
        "EmoBench report",
        [
            H.section(
                "Accuracy",
                H.table(*_acc_rows(results.tasks, ["task"]))
                + (
                    H.table(*_acc_rows(results.parts, ["task", "part"]), text_columns=2)
                    if results.parts
                    else ""
                )
                + (
                    H.table(
                        *_acc_rows(results.question_types, ["task", "question_type"]),
                        text_columns=2,
                    )
                    if results.question_types
                    else ""
                ),
                id="accuracy",
                lead="Accuracy on 0-100 with Wilson intervals (PersonaEmp "
                "table 5); EU needs the feeling and its reason both right.",
            ),
            H.section(
                "Categories",
                H.table(*_acc_rows(results.categories, ["task", "category"]), text_columns=2),
                id="categories",
            ),
            H.section("Plot", H.figure(png, "accuracy per task and part"), id="plot"),
            H.section(
                "Items",
                "".join(blocks),
                id="items",
                lead=f"{len(blocks)} of {len(pairs)} items, wrong answers first.",
            ),
        ],
        subtitle=f"attune emobench · model {results.model}",
        summary=summary,
        nav=[
            ("accuracy", "Accuracy"),
            ("categories", "Categories"),
            ("plot", "Plot"),
            ("items", "Items"),
        ],
    )
    report = out / "report.html"
    report.write_text(page, encoding="utf-8")
    return report
