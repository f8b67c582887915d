"""``converse``: many simulated talks, resumable per turn, with a manifest.

Files, for ``out = dialogues.jsonl``:

- ``dialogues.jsonl``: one finished :class:`~attunement.dialogue.records.Dialogue`
  per line (what scoring and evaluation read);
- ``dialogues.turns.jsonl``: the journal, one
  :class:`~attunement.dialogue.records.TurnLine` per finished turn of every talk,
  appended and flushed as each turn finishes;
- ``dialogues.manifest.json``: the policy, the simulator and its prompt
  versions, the assistant's setting and every setting of the run.

A run skips the talks already in ``out``, rebuilds each unfinished talk from
its journal lines and continues it from its last finished turn, so a killed
run, or one whose model calls failed, loses no finished turn and asks for none
twice. Resuming with other settings is refused (one output, one
configuration). A talk whose policy or simulator call failed (server down,
HTTP 4xx/5xx after the retries, deadline) is not a result: it is not written
to ``out``, only its finished turns stay in the journal, and it is listed in
the report with the reason (``policy call failed: <cause>``); the run goes on
with the others and :func:`unfinished_talks` is the one line that ends it.
An answer the simulator wrote but that cannot be read is a result (the talk
ends ``unscorable`` with the reason).

Talks run concurrently, up to the larger of the two models' limits (each
backend also bounds its own requests in flight), with progress on long runs.
The ``samples`` talks of one user are independent draws (``{user_id}:{i}``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from attunement.concurrency import FailedItem, reason_of, run_bounded
from attunement.dialogue.assistant import AssistantSide, MemoryAssistant
from attunement.dialogue.converse import Conversation, ConverseSettings, dialogue_id
from attunement.dialogue.records import Dialogue, DialogueTurn, SimulatedUser, TurnLine
from attunement.dialogue.simulator import PersonaEmpSimulator, UserModel, UserSimulator
from attunement.jsonl import (
    JsonlAppender,
    check_settings,
    manifest_path,
    read_done_keys,
    read_jsonl,
    write_manifest,
)
from attunement.llm import (
    CallsFailedError,
    ChatModel,
    LLMError,
    call_failed_reason,
    calls_failed,
    failure_cause,
    stand_in_fields,
)
from attunement.policy import GenerationSettings, Retriever, memory_strategy
from attunement.records import Example, Usage, UserHistory


def journal_path(out: str | Path) -> Path:
    """Where the turn journal of ``out`` lives: ``a/dialogues.jsonl`` ->
    ``a/dialogues.turns.jsonl``.

    >>> journal_path("runs/a/dialogues.jsonl").as_posix()
    'runs/a/dialogues.turns.jsonl'
    """
    out = Path(out)
    return out.with_name((out.stem if out.suffix == ".jsonl" else out.name) + ".turns.jsonl")


def read_journal(path: str | Path) -> dict[str, list[DialogueTurn]]:
    """Each talk's finished turns, in order, from a journal.

    A turn written twice with the same content counts once; two different
    turns at one index, or a gap, mean the journal was written by something
    else than one run at a time, and are an error naming the talk.
    """
    path = Path(path)
    if not path.exists():
        return {}
    talks: dict[str, dict[int, DialogueTurn]] = {}
    for line in read_jsonl(path, TurnLine):
        turns = talks.setdefault(line.dialogue_id, {})
        seen = turns.get(line.turn.index)
        if seen is not None and seen != line.turn:
            raise ValueError(
                f"{path}: dialogue {line.dialogue_id!r} has two different turns at index "
                f"{line.turn.index}; was it written by two runs at once?"
            )
        turns[line.turn.index] = line.turn
    out: dict[str, list[DialogueTurn]] = {}
    for did, turns in talks.items():
        if sorted(turns) != list(range(len(turns))):
            raise ValueError(f"{path}: dialogue {did!r} has a gap in its turns ({sorted(turns)})")
        out[did] = [turns[i] for i in range(len(turns))]
    return out


def read_dialogues(path: str | Path) -> list[Dialogue]:
    """The finished talks of a ``converse`` output."""
    return read_jsonl(path, Dialogue)


def memory_assistant(
    settings: GenerationSettings,
    *,
    pool: Sequence[Example] | Sequence[UserHistory],
    model: ChatModel,
    retriever: Retriever | None = None,
) -> MemoryAssistant:
    """attunement's reply prompt under ``settings.memory_mode``; ``pool`` is where
    ``mismatch`` finds other users, ``model`` writes ``summary`` descriptions."""
    strategy = memory_strategy(
        settings.memory_mode,
        pool=pool,
        model=model,
        retriever=retriever,
        k=settings.k,
        seed=settings.seed,
        summary_max_tokens=settings.summary_max_tokens,
    )
    return MemoryAssistant(
        strategy, with_persona=settings.with_persona, with_situation=settings.with_situation
    )


class ConverseReport(BaseModel):
    """What a ``converse`` run did."""

    out: Path
    journal: Path
    manifest: Path
    dialogues: int = Field(description="talks asked for (users x samples)")
    finished: int = Field(description="talks finished by this run")
    already_done: int = Field(description="talks already in the output")
    resumed: int = Field(description="talks continued from their journal turns")
    ends: dict[str, int] = Field(default_factory=dict, description="how this run's talks ended")
    unscorable: int = 0
    leaks: int = Field(0, description="user messages that gave the hidden need away")
    failed: list[FailedItem] = Field(
        default_factory=list,
        description="talks whose model call failed in this run, with the reason; "
        "their finished turns are journaled and a re-run resumes them",
    )
    policy_usage: Usage = Field(default_factory=Usage)
    simulator_usage: Usage = Field(
        default_factory=Usage,
        description="what the simulator model spent (when one model object plays both "
        "sides, both usages are its total)",
    )
    seconds: float = 0.0


def _since(model: ChatModel, before: Usage) -> Usage:
    """What ``model`` spent since ``before`` (a snapshot of its meter)."""
    now, then = model.usage.snapshot().model_dump(), before.model_dump()
    return Usage(**{key: now[key] - then[key] for key in now})


def _check_users(users: Sequence[SimulatedUser], simulator: UserSimulator) -> None:
    seen: set[str] = set()
    for user in users:
        if user.user_id in seen:
            raise ValueError(f"user id {user.user_id!r} appears twice: talks are joined by id")
        seen.add(user.user_id)
        simulator.check_user(user)


def talk_failure(talk: Conversation, key: str, exc: BaseException) -> FailedItem:
    """A talk whose job raised: a failed model call names its side (policy,
    simulator, or model when one object plays both) and its cause."""
    if not isinstance(exc, LLMError):
        return FailedItem(key=key, reason=reason_of(exc))
    policy, simulator = talk.policy, talk.users.model
    role = "model"
    if policy is not simulator:
        role = "simulator" if exc.source == simulator.name else "policy"
    return FailedItem(key=key, reason=call_failed_reason(exc, role), cause=failure_cause(exc))


def unfinished_talks(reports: Sequence[ConverseReport]) -> CallsFailedError | None:
    """The one line that ends a run whose talks were left by failed model calls,
    e.g. ``policy unreachable at URL (connection refused): 3 of 3 talks not
    finished; run again to retry`` (None when no call failed)."""
    calls = [f for r in reports for f in r.failed if f.cause is not None]
    if not calls:
        return None
    roles = Counter(f.reason.partition(" call failed: ")[0] for f in calls)
    role = roles.most_common(1)[0][0]
    return calls_failed(
        [f.cause for f in calls if f.reason.startswith(f"{role} call failed: ") and f.cause],
        len(calls),
        sum(r.dialogues - r.already_done for r in reports),
        role=role,
        what="talks not finished",
    )


@dataclass
class _Played:
    """What one pass over the talks did."""

    finished: list[Dialogue] = field(default_factory=list)
    failed: list[FailedItem] = field(default_factory=list)
    todo: int = 0
    resumed: int = 0


async def _play_all(
    talk: Conversation,
    users: Sequence[SimulatedUser],
    out: Path,
    journal: Path,
    *,
    limit: int,
    description: str,
    show_progress: bool | None,
    on_dialogue: Callable[[Dialogue], None] | None,
) -> _Played:
    """Every talk not in ``out`` yet, resumed from its journal turns."""
    played = _Played()
    with JsonlAppender(out) as sink, JsonlAppender(journal) as log:
        done = read_done_keys(out, lambda r: r["dialogue_id"])
        journaled = read_journal(journal)
        jobs = [
            (user, i)
            for user in users
            for i in range(talk.settings.samples)
            if dialogue_id(user.user_id, i) not in done
        ]
        played.todo = len(jobs)
        played.resumed = sum(1 for u, i in jobs if dialogue_id(u.user_id, i) in journaled)

        async def play(job: tuple[SimulatedUser, int]) -> Dialogue:
            user, i = job
            did = dialogue_id(user.user_id, i)

            def journal_turn(turn: DialogueTurn) -> None:
                log.write(
                    TurnLine(dialogue_id=did, user_id=user.user_id, sample_index=i, turn=turn)
                )

            return await talk.play(
                user, sample_index=i, turns=journaled.get(did, ()), on_turn=journal_turn
            )

        def keep(_: tuple[SimulatedUser, int], dialogue: Dialogue) -> None:
            sink.write(dialogue)
            played.finished.append(dialogue)
            if on_dialogue is not None:
                on_dialogue(dialogue)

        def failed(job: tuple[SimulatedUser, int], exc: BaseException) -> None:
            played.failed.append(talk_failure(talk, dialogue_id(job[0].user_id, job[1]), exc))

        await run_bounded(
            jobs,
            play,
            limit=limit,
            on_result=keep,
            on_failure=failed,
            description=description,
            show_progress=show_progress,
        )
    return played


async def converse(
    users: Sequence[SimulatedUser],
    policy: ChatModel,
    simulator_model: ChatModel,
    out: str | Path,
    settings: ConverseSettings | None = None,
    *,
    simulator: UserSimulator | None = None,
    assistant: AssistantSide | None = None,
    pool: Sequence[Example] | Sequence[UserHistory] | None = None,
    summarizer: ChatModel | None = None,
    retriever: Retriever | None = None,
    show_progress: bool | None = None,
    on_dialogue: Callable[[Dialogue], None] | None = None,
) -> ConverseReport:
    """Play ``settings.samples`` talks per user, resuming what earlier runs left.

    ``simulator`` plays the users (default :class:`PersonaEmpSimulator`);
    ``assistant`` builds the policy's prompts (default: attunement's reply
    prompt under ``settings.policy.memory_mode``, with ``pool`` (default: the
    users' examples) for ``mismatch``, ``summarizer`` (default: the policy)
    for ``summary`` and ``retriever`` for ``rag``).
    """
    settings = settings or ConverseSettings()
    simulator = simulator or PersonaEmpSimulator()
    _check_users(users, simulator)
    if assistant is None:
        assistant = memory_assistant(
            settings.policy,
            pool=pool if pool is not None else [u.example for u in users],
            model=summarizer or policy,
            retriever=retriever,
        )
    out = Path(out)
    journal, manifest = journal_path(out), manifest_path(out)
    user_model = UserModel(simulator_model, simulator, settings.simulator)
    recorded: dict[str, Any] = {
        "policy": policy.name,
        "assistant": assistant.settings(),
        "simulator": user_model.settings_record(),
        "converse": settings.model_dump(mode="json", exclude={"concurrency"}),
    }
    check_settings(manifest, {"settings": recorded}, outputs=[out, journal])
    # the simulated user rates every reply (its emotion): the stand-in's note travels
    noted = stand_in_fields(simulator_model)
    write_manifest(
        manifest, command="converse", out=str(out), settings=recorded, status="running", **noted
    )
    before = (policy.usage.snapshot(), simulator_model.usage.snapshot())
    started = time.perf_counter()
    played = await _play_all(
        Conversation(policy, assistant, user_model, settings),
        users,
        out,
        journal,
        limit=settings.concurrency
        or max(1, policy.max_concurrency, simulator_model.max_concurrency),
        description=f"converse ({simulator.kind} users)",
        show_progress=show_progress,
        on_dialogue=on_dialogue,
    )
    ends = Counter(d.end for d in played.finished)
    wanted = len(users) * settings.samples
    report = ConverseReport(
        out=out,
        journal=journal,
        manifest=manifest,
        dialogues=wanted,
        finished=len(played.finished),
        already_done=wanted - played.todo,
        resumed=played.resumed,
        ends=dict(sorted(ends.items())),
        unscorable=ends.get("unscorable", 0),
        leaks=sum(d.leaks for d in played.finished),
        failed=played.failed,
        policy_usage=_since(policy, before[0]),
        simulator_usage=_since(simulator_model, before[1]),
        seconds=round(time.perf_counter() - started, 3),
    )
    write_manifest(
        manifest,
        command="converse",
        out=str(out),
        settings=recorded,
        status="incomplete" if played.failed else "complete",
        report=report.model_dump(mode="json", exclude={"out", "journal", "manifest"}),
        **noted,
    )
    return report
