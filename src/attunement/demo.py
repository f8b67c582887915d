"""The end-to-end demo: build, answer with two memory modes, evaluate, report.

It runs the whole method on the bundled example users with one model (the
embedded SmolLM2 by default) and shows the paper's memory ablation in small:
replies written with the user's own memory against replies written with
another user's memory (drawn from the other bundled users), both evaluated the
way PersonaEmp's table 1 is (fixed criteria written once, PereGRM scoring
against them) by :func:`attunement.evaluation.run_evaluation`, which ends in
``eval/report.html``.

With ``multi_turn``, the first query's user also talks with the policy for a
few turns (``DEMO_TURNS`` user messages), the same model playing the
simulated user with JSON answers (a model this small never writes the
labelled format), and the talk joins the report's dialogue section: the
emotion trajectory and each reply with the simulator's analysis beside it.

Every step writes into the run folder and resumes, and every model call is
cached, so a second run prints the same table without calling the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from attunement.building import BuildConfig, build_dataset, filter_user
from attunement.dialogue import (
    ConverseSettings,
    SimulatorSettings,
    converse,
    users_from_examples,
)
from attunement.evaluation import (
    DialogueSet,
    EvalInputs,
    EvalRun,
    EvalSettings,
    Row,
    read_dialogue_set,
    run_evaluation,
)
from attunement.jsonl import read_jsonl, write_manifest
from attunement.judging import CriteriaConfig
from attunement.llm import ChatModel, LLMOptions, load_chat_model
from attunement.policy import GenerationSettings, generate_replies
from attunement.records import EMPATHY_DIMENSIONS, Category, Example, Reply, UserHistory

DEMO_MODES = ("full", "mismatch")
#: maxLength of the judge's free-text JSON fields: the tiny model otherwise writes
#: until its token limit
DEMO_TEXT_CHARS = 120
#: user messages of the demo's simulated talk (the opening query included)
DEMO_TURNS = 3
#: token budget of one simulator answer in the demo (a JSON object of short parts)
DEMO_SIMULATOR_TOKENS = 320


def example_users_path() -> Path:
    """The bundled example users (written for this project)."""
    return Path(str(resources.files("attunement").joinpath("data/example_users.jsonl")))


def example_queries_path() -> Path:
    """One PersonaEmp example per bundled user with a history (persona, the user's own
    memories, a situation, a query; written for this project): simulated users for
    ``attune converse`` without building a dataset first."""
    return Path(str(resources.files("attunement").joinpath("data/example_queries.jsonl")))


@dataclass
class ModeResult:
    """One memory mode's row of the evaluation (1-5 judge scale)."""

    mode: str
    replies: int
    unscorable: int
    means: dict[str, float | None] = field(default_factory=dict)
    average: float | None = None
    low: float | None = None  # interval of the average
    high: float | None = None
    note: str | None = None  # why there is no interval ("n too small" below 10 users)

    @classmethod
    def of(cls, row: Row) -> ModeResult:
        return cls(
            mode=row.system,
            replies=row.replies,
            unscorable=row.unscorable,
            means={d: row.columns[d].mean for d in EMPATHY_DIMENSIONS if d in row.columns},
            average=row.avg.mean,
            low=row.avg.low,
            high=row.avg.high,
            note=row.avg.note,
        )


@dataclass
class DemoReport:
    out_dir: Path
    users: int
    examples: int
    inspection_passed: int
    results: list[ModeResult]
    evaluation: EvalRun | None = None
    dialogue: Path | None = None
    #: the simulated talk's end and final emotion (multi-turn only)
    talk: str | None = None

    @property
    def report(self) -> Path | None:
        """The evaluation page (``eval/report.html``)."""
        return self.evaluation.report if self.evaluation else None


def load_demo_models(
    out_dir: Path,
    model_spec: str = "local",
    judge_spec: str | None = None,
    options: LLMOptions | None = None,
) -> tuple[ChatModel, ChatModel]:
    """The policy/builder model and the judge, caching into the run folder by default."""
    options = options or LLMOptions()
    if options.cache is None:
        options = options.model_copy(update={"cache": Path(out_dir) / "cache.sqlite"})
    model = load_chat_model(model_spec, options)
    judge = (
        model
        if not judge_spec or judge_spec == model_spec
        else load_chat_model(judge_spec, options)
    )
    return model, judge


async def run_demo(
    out_dir: Path,
    model: ChatModel,
    judge: ChatModel | None = None,
    *,
    users: list[UserHistory] | None = None,
    max_queries: int = 3,
    k: int = 1,
    seed: int = 0,
    max_tokens: int = 128,
    concurrency: int = 1,
    judge_label: str = "judge",
    show_progress: bool | None = None,
    multi_turn: bool = False,
) -> DemoReport:
    """Run the demo with the given models (``judge`` defaults to ``model``).

    ``max_tokens`` caps each policy reply: the embedded model tends to write
    until it is stopped, and PERM's 1024-token budget would make the demo slow.
    ``k > 1`` adds PereGRM's k scaling (criteria per sample, k = 1, 2, 4, ..., k)
    to the report; scoring under fixed criteria is greedy, so its samples would
    all agree.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    judge = judge or model

    users = users if users is not None else read_jsonl(example_users_path(), UserHistory)
    chosen = _spread_by_user(
        await _build_queries(
            users, out_dir / "data", model, max_queries, seed, concurrency, show_progress
        ),
        max_queries,
    )
    replies = {
        mode: await _write_replies(
            chosen,
            model,
            out_dir / f"replies.{mode}.jsonl",
            mode,
            pool=users,
            seed=seed,
            concurrency=concurrency,
            max_tokens=max_tokens,
            show_progress=show_progress,
        )
        for mode in DEMO_MODES
    }

    # the PersonaEmp protocol: criteria written once, every reply scored against them
    settings = EvalSettings(
        overrides={"json_text_chars": DEMO_TEXT_CHARS},
        concurrency=concurrency,
        seed=seed,
        criteria=CriteriaConfig(json_text_chars=DEMO_TEXT_CHARS, seed=seed),
        k_scaling=k if k > 1 else None,
        examples_shown=len(chosen),
    )
    talks = []
    if multi_turn:
        talks = [await _talk(chosen[0], model, out_dir, seed=seed, max_tokens=max_tokens)]
    evaluation = await run_evaluation(
        EvalInputs(splits={"demo": chosen}, replies=replies, dialogues=talks),
        {judge_label: judge},
        out_dir / "eval",
        settings,
        show_progress=show_progress,
    )
    results = [ModeResult.of(r) for r in evaluation.results.table]

    write_manifest(
        out_dir / "manifest.json",
        command="demo",
        model=model.name,
        judge=judge.name,
        max_queries=max_queries,
        k=k,
        seed=seed,
        evaluation=str(out_dir / "eval" / "results.json"),
        reward=evaluation.results.judges[0]["reward"],
        examples=[e.example_id for e in chosen],
        dialogues=str(talks[0].path) if talks else None,
    )
    return DemoReport(
        out_dir=out_dir,
        users=len({e.user_id for e in chosen}),
        examples=len(chosen),
        inspection_passed=sum(1 for e in chosen if e.meta.get("inspection_passed")),
        results=results,
        evaluation=evaluation,
        dialogue=Path(talks[0].path) if talks else None,
        talk=_talk_line(talks[0]) if talks else None,
    )


async def _talk(
    example: Example, model: ChatModel, out_dir: Path, *, seed: int, max_tokens: int
) -> DialogueSet:
    """One short simulated talk with the user of ``example`` (resuming)."""
    path = out_dir / "dialogues.jsonl"
    settings = ConverseSettings(
        policy=GenerationSettings(memory_mode="full", max_tokens=max_tokens, seed=seed),
        simulator=SimulatorSettings(
            output="json", max_tokens=DEMO_SIMULATOR_TOKENS, max_resamples=1, seed=seed
        ),
        max_turns=DEMO_TURNS,
        concurrency=1,
    )
    await converse(
        users_from_examples([example]), model, model, path, settings, show_progress=False
    )
    return read_dialogue_set("full", path)


def _talk_line(talks: DialogueSet) -> str:
    [talk] = talks.dialogues
    final = "none (unscorable)" if talk.final_emotion is None else str(talk.final_emotion)
    turns = sum(1 for t in talk.turns if t.role == "user")
    return f"{turns} user turns, ended {talk.end}, final emotion {final}"


async def _build_queries(
    users: list[UserHistory],
    data_dir: Path,
    model: ChatModel,
    max_queries: int,
    seed: int,
    concurrency: int,
    show_progress: bool | None,
) -> list[Example]:
    """Build queries for the first users until ``max_queries`` are accepted (or no
    user is left); every accepted example of the build folder."""
    config = BuildConfig(categories=[Category.ES], inspection="annotate")
    # One category, and only as many users as the queries wanted, keep the demo to a
    # few minutes on a CPU. A user whose query the builder rejects is replaced by the
    # next one (the build resumes, so finished users cost nothing). The embedded
    # model's inspection verdicts are close to random, so the demo keeps every
    # inspected query and reports how many passed (a real build enforces them).
    deep, shallow = _split_by_filter(users, config)
    take = max_queries
    while True:
        await build_dataset(
            shallow + deep[:take],
            data_dir,
            model,
            config,
            seed=seed,
            concurrency=concurrency,
            show_progress=show_progress,
        )
        examples = read_jsonl(data_dir / "examples.jsonl", Example)
        if len(examples) >= max_queries or take >= len(deep):
            break
        take += max_queries - len(examples)
    if not examples:
        raise RuntimeError(f"the builder accepted no query; see {data_dir} for the rejections")
    return examples


async def _write_replies(
    examples: list[Example],
    model: ChatModel,
    path: Path,
    mode: str,
    *,
    pool: list[UserHistory],
    seed: int,
    concurrency: int,
    max_tokens: int,
    show_progress: bool | None,
) -> list[Reply]:
    """One reply per example with the given memory mode (resuming ``path``)."""
    await generate_replies(
        examples,
        model,
        path,
        memory_mode=mode,
        n=1,
        seed=seed,
        pool=pool,
        concurrency=concurrency,
        max_tokens=max_tokens,
        show_progress=show_progress,
    )
    return read_jsonl(path, Reply)


def _split_by_filter(
    users: list[UserHistory], config: BuildConfig
) -> tuple[list[UserHistory], list[UserHistory]]:
    """(users the depth filter keeps, users it rejects); the filter costs no model call,
    and the rejected users are built too, so the demo shows a rejection."""
    deep, shallow = [], []
    for user in users:
        (deep if filter_user(user, config.filter_rules).keep else shallow).append(user)
    return deep, shallow


def _spread_by_user(examples: list[Example], limit: int) -> list[Example]:
    """Up to ``limit`` examples, taking users in turn so several users appear."""
    by_user: dict[str | None, list[Example]] = {}
    for ex in examples:
        by_user.setdefault(ex.user_id, []).append(ex)
    chosen: list[Example] = []
    while len(chosen) < limit and any(by_user.values()):
        for user in list(by_user):
            if by_user[user] and len(chosen) < limit:
                chosen.append(by_user[user].pop(0))
    return chosen
