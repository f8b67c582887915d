"""``attune generate`` and ``attune distill``: policy replies and SFT data.

Both verbs answer examples under one memory mode and share every option but
their output, as one bundle (:func:`answering`): the input, the policy, the
output, ``--limit``; the sampling options, which are the fields of
:class:`~attunement.policy.GenerationSettings` (:data:`SETTINGS`); the memory
sources (``--pool``, ``--retriever``, ``--summarizer``: :data:`SOURCES`); and
how to run the models. What the prompt shows besides memories and query is the
shared ``--persona``/``--situation`` pair (:func:`~attunement.cli.options.shown_options`):
a flag wins; otherwise a policy from a training run (``hf:RUN`` or
``hf:RUN/final``) is shown the prompt it was trained on, and anything else the
defaults; one line says which (:func:`prompt_choice`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import typer

from attunement.cli.common import fail, report_failures, run, say
from attunement.cli.options import (
    MEMORY_HELP,
    SHOWN_RENAMED,
    Bundle,
    ModelRun,
    ShownFlags,
    compose,
    fields_bundle,
    first,
    limit_option,
    model_run,
    option,
    policy_option,
    shown_options,
    verb,
)
from attunement.cli.paths import data_option, out_option, path_option
from attunement.jsonl import read_jsonl
from attunement.llm import CachedChatModel, CompletionCache, load_chat_model
from attunement.policy import (
    SHOW_PERSONA,
    SHOW_SITUATION,
    GenerationSettings,
    nothing_distilled,
)
from attunement.policy.distill import RowFormat
from attunement.records import Example

#: the help of the GenerationSettings fields whose descriptions do not fit an option
#: (``attune converse`` sets the same fields)
GENERATION_HELPS = {
    "memory_mode": MEMORY_HELP,
    "temperature": "Sampling temperature of the replies.",
    "max_tokens": "Token budget of one reply.",
    "seed": "Sampling seed; also picks the other user in mismatch mode.",
}
SETTINGS = fields_bundle(
    GenerationSettings,
    "memory_mode",
    "n",
    "temperature",
    "max_tokens",
    "seed",
    "k",
    "summary_max_tokens",
    decls={"memory_mode": ("--memory",), "n": ("-n",), "k": ("--top-k",)},
    helps=GENERATION_HELPS,
)


@dataclass(frozen=True)
class MemorySources:
    """Where the memory modes find what they show: other users (mismatch), a
    retriever (rag), a summariser (summary)."""

    pool: Path | None
    retriever: Literal["bm25", "embed"]
    summarizer: str | None


SOURCES = Bundle(
    (
        option(
            "pool",
            Path | None,
            path_option(
                "file",
                "mismatch: examples whose users' memories may be lent (--data when not given).",
                "--pool",
                default=None,
            ),
        ),
        option(
            "retriever",
            Literal["bm25", "embed"],
            typer.Option(
                "bm25", "--retriever", help="rag: how memories are ranked against the query."
            ),
        ),
        option(
            "summarizer",
            str | None,
            typer.Option(
                None,
                "--summarizer",
                metavar="SPEC",
                help="summary: the model writing the user summaries (the policy when not given).",
            ),
        ),
    ),
    MemorySources,
)


def prompt_choice(policy: str, flags: ShownFlags) -> tuple[str, dict[str, bool], str]:
    """The policy spec to load, the persona and situation switches, and one line
    saying where they came from: the flag when given, else what the policy's
    training run recorded (``hf:RUN`` loads ``RUN/final``), else the default."""
    from attunement.training.run import run_prompt

    given = flags.given()
    found = run_prompt(policy.removeprefix("hf:")) if policy.startswith("hf:") else None
    recorded = found.context if found else None
    chosen, said = {}, []
    for name, default in (("persona", SHOW_PERSONA), ("situation", SHOW_SITUATION)):
        if name in given:
            value, why = given[name], "given"
        elif recorded is not None:
            value, why = getattr(recorded, name), "as trained"
        else:
            value, why = default, "default"
        chosen[name] = value
        said.append(f"{name} {'on' if value else 'off'} ({why})")
    line = f"policy prompt: {', '.join(said)}"
    if found is not None and recorded is not None:
        line += f"; run {found.run} trained with --memory {recorded.memory_mode}"
    elif found is not None:
        line += f"; run {found.run} records no prompt settings ({found.missing})"
    return (f"hf:{found.policy}" if found else policy), chosen, line


def _summary_cache(out: Path) -> Path:
    stem = out.stem if out.suffix == ".jsonl" else out.name
    return out.with_name(f"{stem}.cache.sqlite")


def _models(spec: str, sources: MemorySources, memory: str, out: Path, llm: ModelRun):
    """The answering model and (summary mode only) the summariser.

    Summaries are cached on disk next to the output unless ``--cache`` or
    ``--no-cache`` says otherwise, so a resumed run does not summarise the same
    users again. Without ``--summarizer`` the policy itself summarises (the
    same loaded model, wrapped in that cache).
    """
    options = llm.options()
    model = load_chat_model(spec, options)
    if memory != "summary":
        return model, None
    summary = load_chat_model(sources.summarizer, options) if sources.summarizer else model
    if options.cache is None and not llm.no_cache:
        summary = CachedChatModel(summary, CompletionCache(_summary_cache(out)))
    return model, summary


@dataclass(frozen=True)
class Answering:
    """What a generate or distill run answers, with which model, into which file."""

    data: Path
    policy: str
    out: Path
    limit: int | None
    settings: dict[str, Any]
    shown: ShownFlags
    sources: MemorySources
    llm: ModelRun

    async def run(self, job: Callable[..., Awaitable[Any]], **extra: Any) -> Any:
        """Read the examples, open the models, run ``job`` (generate or distill), close."""
        from attunement.policy.retrieval import make_retriever

        examples = first(read_jsonl(self.data, Example), self.limit)
        pool = read_jsonl(self.sources.pool, Example) if self.sources.pool else None
        spec, shown, line = prompt_choice(self.policy, self.shown)
        say(line)
        config = GenerationSettings(
            **self.settings,
            with_persona=shown["persona"],
            with_situation=shown["situation"],
            concurrency=self.llm.concurrency,
        )
        rag = make_retriever(self.sources.retriever) if config.memory_mode == "rag" else None
        model, summary = _models(spec, self.sources, config.memory_mode, self.out, self.llm)
        try:
            return await job(
                examples,
                model,
                self.out,
                config,
                pool=pool,
                summarizer=summary,
                retriever=rag,
                **extra,
            )
        finally:
            await model.aclose()
            if summary is not None and summary is not model:
                await summary.aclose()


def answering(policy_help: str | None, out_help: str) -> Bundle:
    """The options of :class:`Answering` (the policy's and the output's help per verb)."""
    return compose(
        Answering,
        option("data", Path, data_option("Examples (JSONL of Example records).")),
        option("policy", str, policy_option(help=policy_help)),
        option("out", Path, out_option(out_help)),
        option("limit", int | None, limit_option()),
        settings=SETTINGS,
        shown=shown_options(),
        sources=SOURCES,
        llm=model_run(),
    )


@verb(
    renamed={"-k": "--top-k", **SHOWN_RENAMED},
    job=answering(None, "Replies JSONL (appended to; a re-run resumes)."),
)
def generate(*, job: Answering) -> None:
    """Answer every example with a policy under one memory mode (n replies each)."""
    from attunement.policy.generate import generate_replies

    report = run(job.run(generate_replies))
    say(
        f"{report.replies_written} replies written to {report.out} "
        f"({report.already_done} already there; {report.format_failures} did not follow the "
        f"format); {report.usage.calls} calls, {report.usage.cached_calls} cached, "
        f"{report.seconds:.0f} s. Manifest: {report.manifest}"
    )
    report_failures(report.failed)


@verb(
    renamed={"-k": "--top-k", "--teacher": "--policy", "--format": "--row-format", **SHOWN_RENAMED},
    job=answering(
        "The stronger model whose replies are distilled (a model spec).",
        "SFT rows JSONL (TRL conversational format).",
    ),
)
def distill(
    *,
    job: Answering,
    row_format: RowFormat = typer.Option(
        "prompt-completion",
        "--row-format",
        help="prompt-completion (loss on the reply only) or messages.",
    ),
    raw: bool = typer.Option(
        False,
        "--raw",
        help="Keep the teacher's text as written instead of re-writing it under the two headings.",
    ),
) -> None:
    """Write SFT rows from a stronger model's well-formed replies (the SFT baseline)."""
    from attunement.policy.distill import distill as run_distill

    report = run(job.run(run_distill, row_format=row_format, raw=raw))
    say(
        f"{report.rows} SFT rows written to {report.out}; {report.skipped_format} replies "
        f"skipped for not following the format. Teacher replies: {report.replies}"
    )
    report_failures(report.generation.failed)
    if (empty := nothing_distilled(report)) is not None:
        raise fail(empty)
