"""The end-to-end demo: build, answer with two memory modes, score, compare.

It runs the whole method on the bundled example users with one model (the
embedded SmolLM2 by default) and shows the paper's memory ablation in small:
replies written with the user's own memory against replies written with
another user's memory (drawn from the other bundled users), both scored by
PereGRM.

Every step writes into the run folder and resumes, and every model call is
cached, so a second run prints the same table without calling the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from attunement.building.config import BuildConfig
from attunement.jsonl import read_jsonl, write_manifest
from attunement.llm import ChatModel, LLMOptions, load_chat_model
from attunement.records import (EMPATHY_DIMENSIONS, Category, Example, Reply, RewardBreakdown,
                                UserHistory)

DEMO_MODES = ("full", "mismatch")


def example_users_path() -> Path:
    """The bundled example users (written for this project)."""
    return Path(str(resources.files("attunement").joinpath("data/example_users.jsonl")))


@dataclass
class ModeResult:
    mode: str
    replies: int
    unscorable: int
    means: dict[str, float | None] = field(default_factory=dict)  # 1-5 judge scale

    @property
    def average(self) -> float | None:
        vals = [self.means[d] for d in EMPATHY_DIMENSIONS if self.means.get(d) is not None]
        return sum(vals) / len(vals) if len(vals) == len(EMPATHY_DIMENSIONS) else None


@dataclass
class DemoReport:
    out_dir: Path
    users: int
    examples: int
    inspection_passed: int
    results: list[ModeResult]


def summarize_mode(mode: str, breakdowns: list[RewardBreakdown]) -> ModeResult:
    """Mean judge score (1-5 scale) per empathy dimension over the scorable samples."""
    unscorable = sum(1 for b in breakdowns if b.unscorable)
    means: dict[str, float | None] = {}
    for dim in EMPATHY_DIMENSIONS:
        scores = [j.score for b in breakdowns for j in b.judgements
                  if j.dimension == dim and j.score is not None]
        means[dim] = sum(scores) / len(scores) if scores else None
    return ModeResult(mode=mode, replies=len(breakdowns), unscorable=unscorable, means=means)


def load_demo_models(out_dir: Path, model_spec: str = "local", judge_spec: str | None = None,
                     options: LLMOptions | None = None) -> tuple[ChatModel, ChatModel]:
    """The policy/builder model and the judge, caching into the run folder by default."""
    options = options or LLMOptions()
    if options.cache is None:
        options = options.model_copy(update={"cache": Path(out_dir) / "cache.sqlite"})
    model = load_chat_model(model_spec, options)
    judge = model if not judge_spec or judge_spec == model_spec \
        else load_chat_model(judge_spec, options)
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
    show_progress: bool | None = None,
) -> DemoReport:
    """Run the demo with the given models (``judge`` defaults to ``model``).

    ``max_tokens`` caps each policy reply: the embedded model tends to write
    until it is stopped, and PERM's 1024-token budget would make the demo slow.
    """
    from attunement.building import build_dataset
    from attunement.judging import PereGRMConfig, peregrm_reward, score_dataset
    from attunement.policy import generate_replies

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    judge = judge or model

    users = users if users is not None else read_jsonl(example_users_path(), UserHistory)
    data_dir = out_dir / "data"
    config = BuildConfig(categories=[Category.ES], inspection="annotate")
    # One category, and only as many users as the queries wanted, keep the demo to a
    # few minutes on a CPU. A user whose query the builder rejects is replaced by the
    # next one (the build resumes, so finished users cost nothing). The embedded
    # model's inspection verdicts are close to random, so the demo keeps every
    # inspected query and reports how many passed (a real build enforces them).
    deep, shallow = _split_by_filter(users, config)
    take = max_queries
    while True:
        await build_dataset(shallow + deep[:take], data_dir, model, config, seed=seed,
                            concurrency=concurrency, show_progress=show_progress)
        examples = read_jsonl(data_dir / "examples.jsonl", Example)
        if len(examples) >= max_queries or take >= len(deep):
            break
        take += max_queries - len(examples)
    if not examples:
        raise RuntimeError(f"the builder accepted no query; see {data_dir} for the rejections")
    chosen = _spread_by_user(examples, max_queries)

    # short free-text fields keep the tiny model from writing until its token limit
    reward = peregrm_reward(judge, PereGRMConfig(k=k, json_text_chars=120))
    results = []
    for mode in DEMO_MODES:
        replies_path = out_dir / f"replies.{mode}.jsonl"
        await generate_replies(chosen, model, replies_path, memory_mode=mode, n=1, seed=seed,
                               pool=users, concurrency=concurrency, max_tokens=max_tokens,
                               show_progress=show_progress)
        replies = read_jsonl(replies_path, Reply)
        scores_path = out_dir / f"scores.{mode}.jsonl"
        await score_dataset(reward, chosen, replies, scores_path,
                            concurrency=concurrency, show_progress=show_progress)
        results.append(summarize_mode(mode, read_jsonl(scores_path, RewardBreakdown)))

    write_manifest(out_dir / "manifest.json", command="demo", model=model.name,
                   judge=judge.name, max_queries=max_queries, k=k, seed=seed,
                   reward=reward.manifest(), examples=[e.example_id for e in chosen])
    return DemoReport(out_dir=out_dir, users=len({e.user_id for e in chosen}),
                      examples=len(chosen),
                      inspection_passed=sum(1 for e in chosen if e.meta.get("inspection_passed")),
                      results=results)


def _split_by_filter(users: list[UserHistory],
                     config: BuildConfig) -> tuple[list[UserHistory], list[UserHistory]]:
    """(users the depth filter keeps, users it rejects); the filter costs no model call,
    and the rejected users are built too, so the demo shows a rejection."""
    from attunement.building import filter_user

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
