"""``attune converse`` and ``attune sage``: a policy talks with simulated users.

``converse`` plays a policy against simulated users built from PersonaEmp
examples (``--users data.jsonl``) or SAGE's profiles (``--users sage:FOLDER``)
and writes the talks (resumable per turn); ``sage`` runs the SAGE benchmark
with SAGE's own prompts and a random-policy baseline beside it. The sampling
options are the fields of the settings they set: the policy's of
:class:`~attunement.policy.GenerationSettings`, the simulator's of
:class:`~attunement.dialogue.SimulatorSettings` (as ``--simulator-...``), the
talk's of :class:`~attunement.dialogue.ConverseSettings`. Method and formulas:
docs/multi-turn.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from attunement.benchmarks.sage import (
    SageSettings,
    SageSimulator,
    load_sage,
    run_sage,
    sage_manifest,
    sage_random_policy,
    sage_users,
    write_sage_report,
)
from attunement.cli.common import report_failures, run, say, show
from attunement.cli.options import (
    SPEC_FORMS,
    Bundle,
    ModelRun,
    ShownFlags,
    field_annotation,
    field_option,
    fields_bundle,
    first,
    limit_option,
    model_run,
    option,
    policy_option,
    shown_options,
    verb,
)
from attunement.cli.paths import data_option, out_option
from attunement.cli.policy import GENERATION_HELPS, prompt_choice
from attunement.dialogue import (
    AssistantSide,
    ConverseReport,
    ConverseSettings,
    SimulatedUser,
    SimulatorSettings,
    SystemPromptAssistant,
    UserSimulator,
    converse,
    max_assessments,
    read_dialogues,
    score_dialogue,
    summarize_dialogues,
    unfinished_talks,
    users_from_examples,
)
from attunement.jsonl import read_jsonl
from attunement.llm import ChatModel, load_chat_model, preflight
from attunement.policy import GenerationSettings
from attunement.records import Example

#: how ``--users`` names SAGE's profiles
SAGE_PREFIX = "sage:"

POLICY = fields_bundle(
    GenerationSettings,
    "memory_mode",
    "temperature",
    "max_tokens",
    "seed",
    decls={"memory_mode": ("--memory",)},
    helps=GENERATION_HELPS,
)
TALK = fields_bundle(ConverseSettings, "max_turns", "samples", decls={"samples": ("--talks",)})


def simulator_bundle(*names: str) -> Bundle:
    """The simulator's sampling options (``--simulator-temperature``, ...), read
    into ``{field: value}`` of :class:`SimulatorSettings`."""
    decls = {
        "temperature": "--simulator-temperature",
        "max_tokens": "--simulator-max-tokens",
        "max_resamples": "--max-resamples",
        "output": "--format",
    }
    params = tuple(
        option(
            f"sim_{name}",
            field_annotation(SimulatorSettings, name),
            field_option(SimulatorSettings, name, decls[name]),
        )
        for name in names
    )

    def build(**values: Any) -> dict[str, Any]:
        return {key.removeprefix("sim_"): value for key, value in values.items()}

    return Bundle(params, build)


def simulator_option() -> Any:
    return typer.Option(
        ...,
        "--simulator",
        metavar="SPEC",
        help=f"The model that plays the simulated users ({SPEC_FORMS}).",
    )


def _check_users(value: str) -> str:
    """``--users``: a PersonaEmp examples file, or ``sage:FOLDER``."""
    if value.startswith(SAGE_PREFIX):
        folder = Path(value[len(SAGE_PREFIX) :])
        if not folder.is_dir():
            raise typer.BadParameter(f"{folder}: no such folder", param_hint="'--users'")
        return value
    path = Path(value)
    if not path.exists():
        raise typer.BadParameter(f"{path}: no such file", param_hint="'--users'")
    if path.is_dir():
        raise typer.BadParameter(f"{path}: is a folder; give a file", param_hint="'--users'")
    return value


@dataclass
class Cast:
    """Who talks: the users, and for SAGE profiles SAGE's simulator and assistant."""

    users: list[SimulatedUser]
    simulator: UserSimulator | None = None
    assistant: AssistantSide | None = None

    @property
    def sage(self) -> bool:
        return self.simulator is not None


def read_cast(spec: str, limit: int | None) -> Cast:
    """The simulated users of ``--users`` (every line checked before any model call)."""
    if spec.startswith(SAGE_PREFIX):
        data = load_sage(spec[len(SAGE_PREFIX) :])
        return Cast(
            sage_users(data, limit=limit),
            SageSimulator(data.reference),
            SystemPromptAssistant(data.reference.npc_system, name="sage-npc"),
        )
    return Cast(users_from_examples(first(read_jsonl(Path(spec), Example), limit)))


async def _open_pair(policy: str, simulator: str, options: Any) -> tuple[ChatModel, ChatModel]:
    """The policy and the simulator (one model object when the specs are the same),
    each checked before any talk starts (up, and serving the model)."""
    tested = load_chat_model(policy, options)
    other = tested if simulator == policy else load_chat_model(simulator, options)
    try:
        await preflight(tested, "policy" if other is not tested else "model")
        if other is not tested:
            await preflight(other, "simulator")
    except BaseException:
        await _close_pair(tested, other)
        raise
    return tested, other


async def _close_pair(a: ChatModel, b: ChatModel) -> None:
    await a.aclose()
    if b is not a:
        await b.aclose()


def _default_cache(out: Path) -> Path:
    stem = out.stem if out.suffix == ".jsonl" else out.name
    return out.with_name(f"{stem}.cache.sqlite")


@verb(
    generation=POLICY,
    shown=shown_options(),
    talk=TALK,
    sim=simulator_bundle("temperature", "max_tokens", "max_resamples", "output"),
    llm=model_run(concurrency=(ConverseSettings, "concurrency")),
)
def converse_verb(
    users: str = typer.Option(
        ...,
        "--users",
        metavar="PATH|sage:FOLDER",
        callback=_check_users,
        help="PersonaEmp examples (JSONL), or sage:FOLDER for SAGE's profiles.",
    ),
    policy: str = policy_option(),
    simulator: str = simulator_option(),
    out_path: Path = out_option("Dialogues JSONL (a re-run resumes every unfinished talk)."),
    limit: int | None = limit_option(),
    *,
    generation: dict[str, Any],
    shown: ShownFlags,
    talk: dict[str, Any],
    sim: dict[str, Any],
    llm: ModelRun,
) -> None:
    """Let --policy talk with simulated users played by --simulator and write the talks:
    every turn with its emotion and the simulator's analysis (docs/multi-turn.md).
    A killed run resumes at the last finished turn of every talk."""
    cast = read_cast(users, limit)
    policy, chosen, line = prompt_choice(policy, shown)
    if not cast.sage:
        say(line)
    settings = ConverseSettings(
        policy=GenerationSettings(
            **generation, with_persona=chosen["persona"], with_situation=chosen["situation"]
        ),
        simulator=SimulatorSettings(**sim),
        assess_last_reply=not cast.sage,
        concurrency=llm.concurrency,
        **talk,
    )
    if cast.sage and settings.policy.memory_mode != "none":
        say("note: SAGE's tested model sees SAGE's system prompt only; --memory is not used")

    async def go() -> ConverseReport:
        policy_model, simulator_model = await _open_pair(
            policy, simulator, llm.options(default_cache=_default_cache(out_path))
        )
        try:
            return await converse(
                cast.users,
                policy_model,
                simulator_model,
                out_path,
                settings,
                simulator=cast.simulator,
                assistant=cast.assistant,
                retriever=_retriever(settings.policy.memory_mode),
            )
        finally:
            await _close_pair(policy_model, simulator_model)

    report = run(go())
    steps = max_assessments(settings.max_turns, settings.assess_last_reply)
    wanted = {u.user_id for u in cast.users}
    scores = [
        score_dialogue(d, steps=steps) for d in read_dialogues(out_path) if d.user_id in wanted
    ]
    summary = summarize_dialogues(scores)
    ends = ", ".join(f"{k} {v}" for k, v in report.ends.items()) or "none"
    say(
        f"{report.finished} talks finished now ({report.resumed} resumed, "
        f"{report.already_done} already done); ends: {ends}; leaks: {report.leaks}; "
        f"{report.seconds:.0f} s. Manifest: {report.manifest}"
    )
    final = summary.mean_final_emotion
    show(
        f"{summary.dialogues} talks: mean final emotion "
        f"{'-' if final is None else f'{final:.1f}'} / 100, success {summary.success}, "
        f"failure {summary.failure}, unscorable {summary.unscorable}"
    )
    show(f"dialogues: {out_path}")
    report_failures(report.failed, "talk", unfinished=unfinished_talks([report]))


def _retriever(memory_mode: str) -> Any:
    if memory_mode != "rag":
        return None
    from attunement.policy.retrieval import make_retriever

    return make_retriever("bm25")


SAGE = fields_bundle(
    SageSettings,
    "temperature",
    "max_tokens",
    "seed",
    helps={"seed": "Sampling seed of the tested model and of the random baseline."},
)


@verb(
    settings=SAGE,
    sim=simulator_bundle("temperature", "max_tokens", "max_resamples"),
    llm=model_run(concurrency=(SageSettings, "concurrency")),
)
def sage(
    policy: str = policy_option(help="The model under test (a model spec)."),
    simulator: str = simulator_option(),
    data: Path = data_option(
        "SAGE's folder (profiles.jsonl and its reference scripts).", kind="folder"
    ),
    out_dir: Path = out_option("Output folder (resumable).", kind="new folder"),
    baseline: bool = typer.Option(
        True,
        "--baseline/--no-baseline",
        help="Also run the random-policy baseline under the same simulator.",
    ),
    limit: int | None = limit_option(),
    *,
    settings: dict[str, Any],
    sim: dict[str, Any],
    llm: ModelRun,
) -> None:
    """Run the SAGE benchmark (Sentient Agent as a Judge) with SAGE's own prompts: the
    mean final emotion of SAGE's simulated users, beside a random-policy baseline.
    Comparable with the Sentient leaderboard only under the same simulator model."""
    config = SageSettings(
        **settings,
        simulator=SimulatorSettings(**sim),
        concurrency=llm.concurrency,
        limit=limit,
    )
    sage_data = load_sage(data)  # files checked before a model is loaded

    async def go():
        tested, sim_model = await _open_pair(
            policy, simulator, llm.options(default_cache=out_dir / "cache.sqlite")
        )
        try:
            result = await run_sage(
                sage_data, tested, sim_model, out_dir / "dialogues.jsonl", config
            )
            floor = None
            if baseline:
                floor = await run_sage(
                    sage_data,
                    sage_random_policy(sage_data, seed=config.seed),
                    sim_model,
                    out_dir / "random.jsonl",
                    config,
                )
        finally:
            await _close_pair(tested, sim_model)
        return result, floor

    if not out_dir.exists():
        out_dir.mkdir(parents=True)
    result, floor = run(go())
    reports = [result.report, *([floor.report] if floor else [])]
    failed = [f for r in reports for f in r.failed]
    unfinished = unfinished_talks(reports)
    if unfinished is not None:  # a score over the talks that happened to finish is none
        report_failures(failed, "talk", unfinished=unfinished)
    report = write_sage_report(result, floor, out_dir, provenance=sage_manifest(sage_data))
    score = "-" if result.score is None else f"{result.score:.1f}"
    show(f"SAGE score {score} / 100 ({result.policy}, simulator {result.simulator})")
    if floor is not None:
        base = "-" if floor.score is None else f"{floor.score:.1f}"
        show(f"random-policy baseline {base} / 100 (same simulator)")
    say(result.note)
    show(f"report: {report}")
    report_failures(failed, "talk")
