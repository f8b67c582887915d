"""``attune emobench``: EmoBench's two multiple-choice tasks, accuracy on 0-100.

- **EU** (emotional understanding): the model picks a feeling from
  ``emotion_choices`` *and* its reason from ``cause_choices``; an item is right
  only when both are.
- **EA** (emotional application): the model picks the most effective response
  or action from ``choices``.

The modules of the run: :mod:`~attunement.benchmarks.emobench.data` (the
published items), :mod:`~attunement.benchmarks.emobench.prompts` (what the
model is asked, how its answer is read), :mod:`~attunement.benchmarks.emobench.scoring`
(grading and accuracies) and :mod:`~attunement.benchmarks.emobench.report`.
Here: the settings, asking the model and resuming. Decoding is greedy
(temperature 0), as in the PersonaEmp paper's table 5. Answers are appended to
``OUT/answers.jsonl`` one per item as they finish and a re-run asks only for
the missing ones. ``prompts="official"`` asks with the official EmoBench
prompt files instead (:mod:`~attunement.benchmarks.emobench.official`), whose
numbers are the ones comparable with the paper's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from attunement.benchmarks.emobench.data import (
    EUItem,
    Item,
    expected_of,
    item_key,
    parts_of,
    task_of,
)
from attunement.benchmarks.emobench.official import OfficialPrompts, parse_official
from attunement.benchmarks.emobench.prompts import (
    AnswerFormat,
    answer_schema,
    item_messages,
    parse_answer,
    prompt_names,
)
from attunement.benchmarks.emobench.scoring import (
    EmoBenchAnswer,
    EmoBenchResults,
    grade,
    score_answers,
)
from attunement.concurrency import run_bounded
from attunement.jsonl import (
    JsonlAppender,
    check_settings,
    drop_records,
    file_sha256,
    manifest_path,
    read_jsonl,
    write_manifest,
)
from attunement.judging.base import usage_of
from attunement.llm import (
    ChatModel,
    LLMError,
    Message,
    call_failure_in,
    calls_failed,
    failure_cause,
    stand_in_fields,
    stand_in_note,
)
from attunement.prompts import load_prompt

PromptSet = Literal["attune", "official"]
#: what the report says each prompt set makes the number comparable with
PROMPT_SETS: dict[str, str] = {
    "attune": "attunement's own prompts: not the paper's, so not comparable with its numbers",
    "official": "the official EmoBench prompt files, asked and read as upstream does: "
    "comparable with the paper's numbers under the same sampling",
}


class EmoBenchSettings(BaseModel):
    """How the items are asked and summarised (a resume with other settings is refused)."""

    model_config = ConfigDict(extra="forbid")

    prompts: PromptSet = Field(
        "attune",
        description="official: EmoBench's own prompt files (--official-prompts), free JSON "
        "answers read as upstream reads them; attune: this project's prompts",
    )
    output: AnswerFormat = Field(
        "json",
        description="json: schema-constrained letters; text: 'Answer: B' lines "
        "(attune prompts only)",
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(48, ge=4, description="an answer is a few tokens")
    seed: int = 0
    language: str | None = Field("en", description="keep items of this language (None: all)")
    concurrency: int = Field(4, ge=1)
    level: float = Field(0.95, gt=0.5, lt=1.0)
    examples_shown: int = Field(20, ge=0)


Reader = Callable[[str], tuple[dict[str, int | None], str | None]]


def asking(
    item: Item, model: ChatModel, settings: EmoBenchSettings, official: OfficialPrompts | None
) -> tuple[list[Message], dict[str, Any] | None, Reader]:
    """The messages, the JSON schema (if any) and the answer reader of one item."""
    parts = parts_of(item)
    if settings.prompts == "official":
        if official is None:
            raise ValueError("prompts='official' needs the official prompt files")
        return official.messages(item, model.name), None, lambda t: parse_official(t, item, parts)
    schema = answer_schema(item) if settings.output == "json" else None
    return (
        item_messages(item, settings.output),
        schema,
        lambda t: parse_answer(t, parts, settings.output),
    )


async def answer_item(
    item: Item,
    model: ChatModel,
    settings: EmoBenchSettings,
    official: OfficialPrompts | None = None,
) -> EmoBenchAnswer:
    messages, schema, read = asking(item, model, settings, official)
    # a failed call raises (LLMError): it is no answer, and run_emobench asks again next run
    completions = await model.complete(
        messages,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        json_schema=schema,
        seed=settings.seed,
    )
    raw = completions[0].text
    usage = usage_of(completions)
    predicted, reason = read(raw)
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
    model: ChatModel,
    settings: EmoBenchSettings,
    files: Sequence[Path | str],
    official: OfficialPrompts | None = None,
) -> dict[str, Any]:
    if settings.prompts == "official" and official is not None:
        prompts = {f"official:{name}": sha for name, sha in official.hashes.items()}
    else:
        prompts = {n: load_prompt(n).version for n in prompt_names(settings.output)}
    return {
        "model": model.name,
        **stand_in_fields(model),
        "settings": settings.model_dump(mode="json"),
        "prompts": prompts,
        "data": {str(f): file_sha256(f) for f in files if Path(f).is_file()},
    }


async def run_emobench(
    items: Sequence[Item],
    model: ChatModel,
    out: Path,
    settings: EmoBenchSettings | None = None,
    *,
    data_files: Sequence[Path | str] = (),
    official: OfficialPrompts | None = None,
    show_progress: bool | None = None,
) -> EmoBenchResults:
    """Answer every item not yet in ``OUT/answers.jsonl``, then score all of them.

    ``official`` is the official prompt files, needed with ``prompts="official"``."""
    settings = settings or EmoBenchSettings()
    if settings.prompts == "official" and official is None:
        raise ValueError("prompts='official' needs the official prompt files (--official-prompts)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = [i for i in items if settings.language is None or i.language == settings.language]
    if not chosen:
        raise ValueError(f"no EmoBench item in language {settings.language!r}")
    path = out / "answers.jsonl"
    manifest = emobench_manifest(model, settings, data_files, official)
    check_settings(
        manifest_path(path),
        manifest,
        keys=("model", "settings", "prompts"),
        outputs=[path],
        fix="use a new --out folder",
    )
    # answers an older version wrote for failed calls are no answers: asked again
    drop_records(path, lambda rec: call_failure_in(rec.get("reason")) is not None)
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

        failures: list[str] = []
        broken: list[BaseException] = []

        def failed(_: Item, exc: BaseException) -> None:
            if isinstance(exc, LLMError):
                failures.append(failure_cause(exc))
            else:
                broken.append(exc)

        await run_bounded(
            todo,
            lambda i: answer_item(i, model, settings, official),
            limit=settings.concurrency,
            on_result=keep,
            on_failure=failed,
            description="emobench",
            show_progress=show_progress,
        )
    if broken:
        raise broken[0]
    if failures:  # scores over the items that got through would not be EmoBench's
        raise calls_failed(
            failures, len(failures), len(todo), role="policy", what="items not answered"
        )
    answers = [done[item_key(task_of(i), i.qid, i.language)] for i in chosen]
    results = score_answers(answers, level=settings.level, items=chosen)
    results.model, results.stand_in_judge = model.name, stand_in_note(model)
    results.settings = settings.model_dump(mode="json")
    results.prompts = PROMPT_SETS[settings.prompts] + (
        f" ({official.folder}: {', '.join(f'{n} {h[:12]}' for n, h in official.hashes.items())})"
        if settings.prompts == "official" and official is not None
        else ""
    )
    results.answered_now = len(todo)
    return results
