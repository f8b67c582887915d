"""The judge card: is this judge fit to be a reward, before anyone trains on it?

A reward is only as good as its judge. ``attune judge-card`` points the same
reward a trainer would use (PERM or PereGRM, on the judge given) at replies
whose quality is known, and reports what a GRPO policy would meet:

- **discrimination**: EmoBench EA "Response" items, each a scenario with four
  candidate replies of which one is right; the reward should rank the right
  one first (:func:`~attunement.judge_card.checks.discrimination`);
- **personalization**: a good reply judged with its own user's persona and
  memories and with another user's; a personalized judge scores it lower
  with the wrong user;
- **gaming probes**: a good reply altered the ways a policy learns to game a
  judge (:mod:`~attunement.judge_card.probes`); none should gain;
- **stability**: spread across the ``k`` samples and across runs with other
  seeds, parse failures and unscorable replies, the score distribution of
  each dimension (a judge whose empathy dimensions never move is named
  degenerate), and the reward spread inside GRPO-sized groups;
- **cost**: judge calls, tokens and time per scored reply;
- **agreement** with a reference judge (``--reference``), when given.

Every scoring step goes through :func:`attunement.judging.score_dataset` into
its own JSONL file under ``<out>/breakdowns/`` (keyed by example and reply id,
resumable, with a manifest that refuses another reward configuration), and the
figures are computed from those files alone, so a re-run with the completion
cache costs no judge call and a card can be recomputed without a judge.

Which replies count as *good* (the ones the probes alter and the
personalization check moves between users) is stated on every card:
PersonaEmp replies from ``--replies`` (the first sample of each example), or
written by ``--policy`` with the user's full memory, or, without PersonaEmp
data, EmoBench's right answers.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from attunement.benchmarks.emobench.data import EAItem, read_ea
from attunement.jsonl import read_jsonl, write_manifest
from attunement.judge_card import checks
from attunement.judge_card.checks import (
    Agreement,
    ChoiceGroup,
    Cost,
    Discrimination,
    Key,
    Personalization,
    Probes,
    ProbeSet,
    Stability,
    Status,
    key_of,
)
from attunement.judge_card.probes import PROBES
from attunement.judging.base import RewardModel
from attunement.judging.registry import RewardSpec
from attunement.judging.scoring import score_dataset
from attunement.llm.base import ChatModel
from attunement.records import Example, Reply, RewardBreakdown

CheckName = Literal["discrimination", "personalization", "probes", "stability", "cost", "agreement"]
CHECK_NAMES: tuple[CheckName, ...] = get_args(CheckName)
BaseSource = Literal["replies", "policy", "emobench"]
Verdict = Literal["fit", "use with care", "not fit", "incomplete"]
VERDICT_WORDS: dict[str, str] = {
    "fit": "FIT",
    "use with care": "USE WITH CARE",
    "not fit": "NOT FIT",
    "incomplete": "INCOMPLETE",
}
Log = Callable[[str], None]


class CardSettings(BaseModel):
    """What the card runs on. The reward and judge come as a :class:`RewardSpec`."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="folder of the card and its breakdown files")
    emobench: Path | None = Field(None, description="EmoBench EA JSONL (Response items used)")
    data: Path | None = Field(None, description="PersonaEmp examples JSONL")
    replies: Path | None = Field(
        None,
        description="good replies to --data, joined by "
        "example_id (the lowest sample_index of each example)",
    )
    policy: str | None = Field(
        None,
        description="model spec writing the good replies (full memory) when no --replies are given",
    )
    reference: str | None = Field(None, description="reference judge spec")
    limit: int | None = Field(None, ge=1, description="items per check (a stable sample)")
    runs: int = Field(
        2,
        ge=1,
        le=10,
        description="scoring runs of the stability set, each with its own seed (1: no repeat)",
    )
    seed: int = Field(
        0,
        description="chooses the --limit sample, the other user of the "
        "personalization check and the policy's sampling",
    )
    concurrency: int = Field(8, ge=1, description="groups scored at once")
    budget_seconds: float | None = Field(
        None, gt=0, description="judge seconds per reply the cost check allows (none: report only)"
    )
    plots: bool = Field(True, description="PNG plots in card.html (needs matplotlib)")

    @model_validator(mode="after")
    def _sources(self) -> CardSettings:
        if self.emobench is None and self.data is None:
            raise ValueError("give --emobench (EA items) and/or --data (PersonaEmp examples)")
        if self.replies is not None and self.policy is not None:
            raise ValueError("give --replies or --policy, not both")
        if (self.replies is not None or self.policy is not None) and self.data is None:
            raise ValueError("--replies and --policy need --data (the examples they answer)")
        return self


# --------------------------------------------------------------------------- inputs


def stable_sample(
    items: Sequence[Any], key: Callable[[Any], str], limit: int | None, seed: int
) -> list[Any]:
    """Up to ``limit`` items chosen by a hash of (seed, id), kept in input order.

    The same seed picks the same items, and a larger limit picks a superset,
    so raising ``--limit`` on a finished card only scores the new items.

    >>> stable_sample(list("abcdef"), str, 6, 0) == list("abcdef")
    True
    >>> set(stable_sample(list("abcdef"), str, 2, 0)) <= set(stable_sample(list("abcdef"), str, 4, 0))
    True
    """
    if limit is None or limit >= len(items):
        return list(items)
    rank = sorted(
        range(len(items)),
        key=lambda i: hashlib.sha256(f"{seed}:{key(items[i])}".encode()).hexdigest(),
    )
    chosen = set(rank[:limit])
    return [item for i, item in enumerate(items) if i in chosen]


def strip_quotes(text: str) -> str:
    """EmoBench quotes its candidate replies; the judge should see what is said.

    >>> strip_quotes('"I can help."'), strip_quotes("Call her.")
    ('I can help.', 'Call her.')
    """
    t = text.strip()
    for left, right in (('"', '"'), ("\u201c", "\u201d"), ("'", "'")):
        if len(t) >= 2 and t.startswith(left) and t.endswith(right):
            return t[1:-1].strip()
    return t


def emobench_example(item: EAItem) -> Example:
    """An EA "Response" item as an example a reward can judge.

    The scenario is the person's message; since EmoBench tells it in the
    third person, the message says whose reply is being judged. There is no
    persona, memory or situation: the reply stands or falls on the scenario.
    """
    subject = item.subject.strip() or "the person in the scenario"
    query = f"{item.scenario.strip()}\n\n(The reply below is what {subject} says in this moment.)"
    return Example(
        example_id=f"emobench:{item.qid}",
        query=query,
        language=item.language,
        meta={"source": "emobench", "qid": item.qid, "category": item.category},
    )


def emobench_replies(item: EAItem) -> list[Reply]:
    """The candidates of an item as replies ``c0..c3`` (the right one is ``c{answer}``)."""
    eid = f"emobench:{item.qid}"
    return [
        Reply(example_id=eid, reply_id=f"c{i}", response=strip_quotes(choice), policy="emobench")
        for i, choice in enumerate(item.choices)
    ]


@dataclass
class CardInputs:
    """Everything the card reads, validated before any model is loaded."""

    ea_items: list[EAItem] = field(default_factory=list)
    ea_available: int = 0
    examples: list[Example] = field(default_factory=list)  # the whole PersonaEmp pool
    base_examples: list[Example] = field(default_factory=list)  # chosen, with a reply source
    given_replies: dict[str, Reply] = field(default_factory=dict)
    no_reply: int = 0
    base_source: BaseSource | None = None


def _first_reply_per_example(
    replies: Sequence[Reply], known: set[str], path: Path
) -> dict[str, Reply]:
    unknown = sorted({r.example_id for r in replies} - known)
    if unknown:
        raise ValueError(
            f"{path}: {len(unknown)} example ids have no example in --data "
            f"(e.g. {', '.join(map(repr, unknown[:3]))}); replies join by id"
        )
    chosen: dict[str, Reply] = {}
    for r in replies:
        old = chosen.get(r.example_id)
        if old is None or (r.sample_index, r.reply_id) < (old.sample_index, old.reply_id):
            chosen[r.example_id] = r
    return chosen


def load_inputs(settings: CardSettings) -> CardInputs:
    """Read and check every input file; fail with file:line: field before any call."""
    inputs = CardInputs()
    if settings.emobench is not None:
        items = read_ea(settings.emobench, question_type="Response")
        if not items:
            raise ValueError(f"{settings.emobench}: no EA items of question type 'Response'")
        qids = [i.qid for i in items]
        if len(set(qids)) != len(qids):
            dup = sorted({q for q in qids if qids.count(q) > 1})
            raise ValueError(f"{settings.emobench}: qid {dup[0]!r} appears twice")
        inputs.ea_available = len(items)
        inputs.ea_items = stable_sample(items, lambda i: i.qid, settings.limit, settings.seed)
    if settings.data is not None:
        examples = read_jsonl(settings.data, Example)
        ids = [e.example_id for e in examples]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"{settings.data}: example id {dup[0]!r} appears twice")
        inputs.examples = examples
        pool = examples
        if settings.replies is not None:
            inputs.given_replies = _first_reply_per_example(
                read_jsonl(settings.replies, Reply), set(ids), settings.replies
            )
            pool = [e for e in examples if e.example_id in inputs.given_replies]
            inputs.no_reply = len(examples) - len(pool)
            inputs.base_source = "replies"
        elif settings.policy is not None:
            inputs.base_source = "policy"
        if inputs.base_source is not None:
            inputs.base_examples = stable_sample(
                pool, lambda e: e.example_id, settings.limit, settings.seed
            )
    if inputs.base_source is None and inputs.ea_items:
        inputs.base_source = "emobench"
    return inputs


def base_description(inputs: CardInputs, settings: CardSettings) -> str:
    """One sentence saying which replies the card treats as good."""
    if inputs.base_source == "replies":
        return (
            f"PersonaEmp replies from {settings.replies} (the lowest sample_index of each "
            f"example; {inputs.no_reply} examples had no reply)"
        )
    if inputs.base_source == "policy":
        return (
            f"replies written by the policy {settings.policy} with the user's full memory "
            "(the card trusts them to be good; check a few in the breakdown files)"
        )
    if inputs.base_source == "emobench":
        extra = (
            " (--data was given without --replies or --policy, so no PersonaEmp reply was judged)"
            if settings.data is not None
            else ""
        )
        return (
            "EmoBench's right answers, as replies to their scenarios; they have no user "
            "persona or memories, so the personalization check and the memory probe do "
            "not apply" + extra
        )
    return "none (no EmoBench items and no PersonaEmp replies)"


def other_user(example: Example, pool: Sequence[Example], seed: int) -> Example | None:
    """Another user's example, chosen by a hash of (seed, example id) among the pool's
    examples with a different user (or example, when no user ids are set) that
    carry a persona or memories."""
    me = example.user_id or example.example_id
    candidates = sorted(
        (
            e
            for e in pool
            if (e.user_id or e.example_id) != me and (e.persona is not None or e.memories)
        ),
        key=lambda e: e.example_id,
    )
    if not candidates:
        return None
    h = int(hashlib.sha256(f"{seed}:{example.example_id}".encode()).hexdigest(), 16)
    return candidates[h % len(candidates)]


def with_other_user(example: Example, other: Example) -> Example:
    """The example as if asked by ``other``'s user: persona and memories swapped,
    query and situation kept."""
    who = other.user_id or other.example_id
    return example.model_copy(
        update={
            "example_id": f"{example.example_id}~as~{who}",
            "user_id": other.user_id,
            "persona": other.persona,
            "memories": list(other.memories),
        }
    )


def judged_copy(
    reply: Reply,
    *,
    example_id: str | None = None,
    reply_id: str | None = None,
    response: str | None = None,
) -> Reply:
    """A copy of a reply to judge. ``completion_tokens`` is cleared so the reward
    measures the original and every altered copy with the same token counter."""
    return reply.model_copy(
        update={
            "example_id": example_id or reply.example_id,
            "reply_id": reply_id or reply.reply_id,
            "response": reply.response if response is None else response,
            "completion_tokens": None,
        }
    )


# --------------------------------------------------------------------------- the card


class CheckSummary(BaseModel):
    name: CheckName
    status: Status
    verdict: str


class DataInfo(BaseModel):
    emobench: str | None
    emobench_items: int = Field(description="EA Response items judged (after --limit)")
    emobench_available: int
    data: str | None
    examples_available: int
    base_source: BaseSource | None
    base_replies: int
    base_description: str
    limit: int | None
    seed: int
    runs: int


class JudgeCard(BaseModel):
    """Everything the card says, as written to ``card.json``."""

    judge: str
    reward: str
    reference: str | None
    verdict: Verdict
    summary: str
    checks: list[CheckSummary]
    data: DataInfo
    discrimination: Discrimination
    personalization: Personalization
    probes: Probes
    stability: Stability
    cost: Cost
    agreement: Agreement
    reward_manifest: dict[str, Any]
    files: dict[str, str] = Field(description="breakdown files, by name")
    created: str
    seconds: float


def overall(statuses: Sequence[Status]) -> Verdict:
    """``not fit`` if a check fails, ``use with care`` if one warns, ``fit`` when
    every judged check passes; ``incomplete`` when none could be judged.

    >>> overall(["pass", "info", "n/a"]), overall(["pass", "warn"]), overall(["warn", "fail"])
    ('fit', 'use with care', 'not fit')
    """
    judged = [s for s in statuses if s in ("pass", "warn", "fail")]
    if not judged:
        return "incomplete"
    if "fail" in judged:
        return "not fit"
    if "warn" in judged:
        return "use with care"
    return "fit"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def summary_line(card: JudgeCard) -> str:
    """The card in one line, naming plainly what makes a judge unfit."""
    parts = []
    d = card.discrimination
    reward = d.row("reward")
    if reward is not None and reward.pairs:
        p = reward.pairwise_tie_split
        parts.append(
            f"discrimination {d.verdict} (pairwise {_pct(p.estimate)} "
            f"[{_pct(p.low)}, {_pct(p.high)}] vs 50% chance, ties as half; top-1 "
            f"{_pct(reward.top1_tie_split.estimate)} vs {_pct(d.chance_top1)})"
        )
    elif d.status != "n/a":
        parts.append(f"discrimination: {d.verdict}")
    s = card.stability
    if s.degenerate:
        parts.append(f"DEGENERATE: {s.degenerate_reason}")
    elif s.status in ("warn", "fail"):
        parts.append(f"stability: {s.verdict}")
    pz = card.personalization
    if pz.status != "n/a" and pz.rows:
        c = pz.rows[0].change
        drop = None if c.estimate is None else 0.0 - c.estimate
        parts.append(
            f"personalization {pz.verdict.split(':')[0]} (mean drop "
            f"{'-' if drop is None else f'{drop:+.3f}'} with another user's context)"
        )
    pr = card.probes
    if pr.status != "n/a":
        parts.append(pr.verdict)
    a = card.agreement
    if a.status != "n/a":
        parts.append(f"agreement with {a.reference}: {a.verdict}")
    if card.cost.status == "fail":
        parts.append(f"cost: {card.cost.verdict}")
    head = f"{VERDICT_WORDS[card.verdict]} as a reward: {card.judge} with {card.reward}"
    return head + (": " + "; ".join(parts) if parts else "") + "."


@dataclass
class _Scoring:
    """Runs score_dataset per check into its own file and remembers what this run did."""

    out: Path
    concurrency: int
    show_progress: bool | None
    log: Log
    scored_now: int = 0
    seconds_now: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)

    async def __call__(
        self, name: str, reward: RewardModel, examples: Sequence[Example], replies: Sequence[Reply]
    ) -> list[RewardBreakdown]:
        path = self.out / "breakdowns" / f"{name}.jsonl"
        self.files[name] = path
        if not replies:
            return []
        self.log(f"{name}: {len(replies)} replies to {len(examples)} examples -> {path}")
        summary = await score_dataset(
            reward,
            list(examples),
            list(replies),
            path,
            concurrency=self.concurrency,
            show_progress=self.show_progress,
        )
        self.scored_now += summary.scored_now
        self.seconds_now += summary.seconds
        wanted = {(r.example_id, r.reply_id) for r in replies}
        return [b for b in read_jsonl(path, RewardBreakdown) if key_of(b) in wanted]


def _by_key(rows: Sequence[RewardBreakdown]) -> dict[Key, RewardBreakdown]:
    return {key_of(b): b for b in rows}


def _keys(replies: Sequence[Reply]) -> list[Key]:
    return [(r.example_id, r.reply_id) for r in replies]


async def _good_replies(
    inputs: CardInputs,
    settings: CardSettings,
    policy: ChatModel | None,
    show_progress: bool | None,
    log: Log,
) -> tuple[list[Example], list[Reply]]:
    """The examples and good replies the probes and personalization start from."""
    if inputs.base_source == "replies":
        examples = inputs.base_examples
        return examples, [judged_copy(inputs.given_replies[e.example_id]) for e in examples]
    if inputs.base_source == "policy":
        if policy is None:
            raise ValueError(
                "the card was asked to write replies with --policy, but no policy model was given"
            )
        from attunement.policy.generate import generate_replies

        path = settings.out / "policy_replies.jsonl"
        log(f"policy: writing {len(inputs.base_examples)} replies with {policy.name} -> {path}")
        await generate_replies(
            inputs.base_examples,
            policy,
            path,
            memory_mode="full",
            n=1,
            seed=settings.seed,
            pool=inputs.examples,
            show_progress=show_progress,
        )
        wanted = {e.example_id for e in inputs.base_examples}
        written = {
            r.example_id: r
            for r in read_jsonl(path, Reply)
            if r.example_id in wanted and r.sample_index == 0 and r.format_ok
        }
        examples = [e for e in inputs.base_examples if e.example_id in written]
        if len(examples) < len(inputs.base_examples):
            log(
                f"policy: {len(inputs.base_examples) - len(examples)} replies ignored "
                "(the policy did not follow the reply format)"
            )
        return examples, [judged_copy(written[e.example_id]) for e in examples]
    if inputs.base_source == "emobench":
        examples = [emobench_example(i) for i in inputs.ea_items]
        replies = [emobench_replies(i)[i.answer_index] for i in inputs.ea_items]
        return examples, replies
    return [], []


@dataclass
class Scored:
    """One scored set of the card: what was judged and the breakdowns."""

    examples: list[Example] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    rows: list[RewardBreakdown] = field(default_factory=list)


class _CardRun:
    """The card's stages in order; each scores one set (resuming) and keeps it."""

    def __init__(
        self,
        settings: CardSettings,
        inputs: CardInputs,
        spec: RewardSpec,
        judge: ChatModel,
        *,
        reference: ChatModel | None,
        policy: ChatModel | None,
        show_progress: bool | None,
        log: Log,
    ):
        self.settings, self.inputs, self.spec, self.judge = settings, inputs, spec, judge
        self.reference, self.policy, self.show_progress, self.log = (
            reference,
            policy,
            show_progress,
            log,
        )
        self.reward = spec.load(judge)
        self.config = spec.config()
        if getattr(self.config, "criteria_mode", None) == "fixed":
            raise ValueError(
                "criteria_mode='fixed' needs criteria prepared for every example, "
                "and the card's EmoBench items, other-user copies and probes have "
                "none; run the card with the shared or inline criteria mode"
            )
        self.score = _Scoring(Path(settings.out), settings.concurrency, show_progress, log)
        self.measures = ["reward", *self.config.dimensions]
        self.reads_analysis = self.config.use_resonation and self.config.resonation_on == "analysis"
        self.choice_groups: list[ChoiceGroup] = []
        self.disc, self.base, self.swapped, self.probes = Scored(), Scored(), Scored(), Scored()
        self.pz_pairs: list[tuple[Key, Key]] = []
        self.pz_skipped = 0
        self.probe_pairs: dict[str, list[tuple[Key, Key]]] = defaultdict(list)
        self.not_applicable: dict[str, int] = defaultdict(int)
        self.runs: list[dict[Key, RewardBreakdown]] = []
        self.stability_set = Scored()
        self.run_rows: dict[str, list[RewardBreakdown]] = {}
        self.ref_rows: list[RewardBreakdown] = []

    async def discrimination(self) -> None:
        """Every candidate of every EA Response item, one group per item."""
        items = self.inputs.ea_items
        examples = [emobench_example(i) for i in items]
        replies = [r for i in items for r in emobench_replies(i)]
        rows = await self.score("discrimination", self.reward, examples, replies)
        self.disc = Scored(examples, replies, rows)
        self.choice_groups = [
            ChoiceGroup(
                example_id=f"emobench:{i.qid}",
                reply_ids=tuple(f"c{j}" for j in range(len(i.choices))),
                correct=f"c{i.answer_index}",
            )
            for i in items
        ]

    @property
    def own_context(self) -> bool:
        """Whether the good replies are PersonaEmp replies (else EmoBench's answers,
        already scored in the discrimination set)."""
        return self.inputs.base_source in ("replies", "policy")

    async def good_replies(self) -> None:
        """The good replies, judged in their own context."""
        examples, replies = await _good_replies(
            self.inputs, self.settings, self.policy, self.show_progress, self.log
        )
        if self.own_context:
            rows = await self.score("base", self.reward, examples, replies)
        else:
            wanted = set(_keys(replies))
            rows = [b for b in self.disc.rows if key_of(b) in wanted]
        self.base = Scored(examples, replies, rows)

    async def personalization(self) -> None:
        """The same good replies with another user's persona and memories."""
        swapped = Scored()
        if self.own_context:
            for ex, rep in zip(self.base.examples, self.base.replies):
                other = other_user(ex, self.inputs.examples, self.settings.seed)
                if (ex.persona is None and not ex.memories) or other is None:
                    self.pz_skipped += 1
                    continue
                copy = with_other_user(ex, other)
                swapped.examples.append(copy)
                swapped.replies.append(judged_copy(rep, example_id=copy.example_id))
                self.pz_pairs.append(
                    ((ex.example_id, rep.reply_id), (copy.example_id, rep.reply_id))
                )
        swapped.rows = await self.score(
            "personalization", self.reward, swapped.examples, swapped.replies
        )
        self.swapped = swapped

    async def gaming_probes(self) -> None:
        """Each good reply altered the ways a policy learns to game a judge."""
        altered: list[Reply] = []
        for ex, rep in zip(self.base.examples, self.base.replies):
            for name, probe in PROBES.items():
                text = probe.apply(rep.response, ex)
                if text is None:
                    self.not_applicable[name] += 1
                    continue
                copy = judged_copy(rep, reply_id=f"{rep.reply_id}~{name}", response=text)
                altered.append(copy)
                self.probe_pairs[name].append(
                    ((ex.example_id, rep.reply_id), (ex.example_id, copy.reply_id))
                )
        rows = await self.score("probes", self.reward, self.base.examples, altered)
        self.probes = Scored(self.base.examples, altered, rows)

    async def repeat_runs(self) -> None:
        """The stability set (the EmoBench candidates, else the good replies) scored
        again with other seeds."""
        self.stability_set = self.disc if self.disc.replies else self.base
        self.runs = [_by_key(self.stability_set.rows)]
        base_seed = self.config.seed or 0
        for r in range(1, self.settings.runs):
            overrides = {**self.spec.overrides, "seed": base_seed + r}
            seeded = self.spec.model_copy(update={"overrides": overrides}).load(self.judge)
            name = f"stability.run{r}"
            rows = await self.score(
                name, seeded, self.stability_set.examples, self.stability_set.replies
            )
            self.run_rows[name] = rows
            self.runs.append(_by_key(rows))

    async def agreement_runs(self) -> None:
        """The discrimination, good and probe replies judged by the reference."""
        if self.reference is None:
            return
        ref = self.spec.load(self.reference)
        sets = [("discrimination", self.disc), ("probes", self.probes)]
        if self.own_context:
            sets.insert(1, ("base", self.base))
        for name, scored in sets:
            self.ref_rows += await self.score(
                f"reference.{name}", ref, scored.examples, scored.replies
            )

    # ------------------------------------------------------------------ figures

    def groups(self) -> list[list[Key]]:
        """GRPO-sized groups: an item's candidates, else a good reply and its probes."""
        if self.choice_groups:
            return [[(g.example_id, rid) for rid in g.reply_ids] for g in self.choice_groups]
        by_example: dict[str, list[Key]] = defaultdict(list)
        for b in [*self.base.rows, *self.probes.rows]:
            by_example[b.example_id].append(key_of(b))
        return list(by_example.values())

    def figures(self) -> dict[str, Any]:
        files = {
            "discrimination": self.disc.rows,
            "base": self.base.rows if self.own_context else [],
            "personalization": self.swapped.rows,
            "probes": self.probes.rows,
            **self.run_rows,
        }
        scored = _by_key([*self.disc.rows, *self.base.rows, *self.swapped.rows, *self.probes.rows])
        disc = checks.discrimination(
            self.choice_groups,
            scored,
            [m for m in self.measures if not (self.reads_analysis and m == "resonation")],
        )
        if self.reads_analysis and self.choice_groups:
            disc.note = (
                "resonation is left out: this reward rates the analysis for resonation, "
                "and EmoBench candidates have none (the judge sees the same placeholder "
                "for all four)"
            )
        probe_sets = [
            ProbeSet(
                name=p.name,
                title=p.title,
                what=p.what,
                pairs=tuple(self.probe_pairs[p.name]),
                not_applicable=self.not_applicable[p.name],
            )
            for p in PROBES.values()
        ]
        judged = [
            *self.disc.replies,
            *self.base.replies,
            *self.swapped.replies,
            *self.probes.replies,
        ]
        no_analysis = (
            {(r.example_id, r.reply_id) for r in judged if not r.analysis.strip()}
            if self.reads_analysis
            else set()
        )
        return {
            "discrimination": disc,
            "personalization": checks.personalization(
                self.pz_pairs,
                scored,
                self.measures,
                skipped=self.pz_skipped,
                seed=self.settings.seed,
            ),
            "probes": checks.probes(
                probe_sets,
                scored,
                self.measures,
                base_replies=len(self.base.replies),
                seed=self.settings.seed,
            ),
            "stability": checks.stability(
                [b for rows in files.values() for b in rows],
                k=self.config.k,
                dimensions=list(self.config.dimensions),
                empathy_dimensions=list(self.config.empathy_dimensions),
                groups=self.groups(),
                runs=self.runs,
                run_keys=_keys(self.stability_set.replies),
                skip={"resonation": no_analysis},
                group_runs=[scored, *self.runs[1:]],
            ),
            "cost": checks.cost(
                files,
                scored_now=self.score.scored_now,
                wall_seconds_now=self.score.seconds_now,
                budget_seconds=self.settings.budget_seconds,
            ),
            "agreement": checks.agreement(
                _by_key([*self.disc.rows, *self.base.rows, *self.probes.rows]),
                _by_key(self.ref_rows),
                self.measures,
                reference_name=self.reference.name if self.reference is not None else None,
            ),
        }

    def card(self, started: float) -> JudgeCard:
        results = self.figures()
        check_list = [
            CheckSummary(name=n, status=results[n].status, verdict=results[n].verdict)
            for n in CHECK_NAMES
        ]
        settings, inputs = self.settings, self.inputs
        data = DataInfo(
            emobench=str(settings.emobench) if settings.emobench else None,
            emobench_items=len(inputs.ea_items),
            emobench_available=inputs.ea_available,
            data=str(settings.data) if settings.data else None,
            examples_available=len(inputs.examples),
            base_source=inputs.base_source,
            base_replies=len(self.base.replies),
            base_description=base_description(inputs, settings),
            limit=settings.limit,
            seed=settings.seed,
            runs=settings.runs,
        )
        card = JudgeCard(
            judge=self.judge.name,
            reward=self.reward.name,
            reference=self.reference.name if self.reference else None,
            verdict=overall([c.status for c in check_list]),
            summary="",
            checks=check_list,
            data=data,
            reward_manifest=self.reward.manifest(),
            files={n: str(p) for n, p in self.score.files.items() if p.exists()},
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            seconds=round(time.perf_counter() - started, 3),
            **results,
        )
        card.summary = summary_line(card)
        return card


async def run_judge_card(
    settings: CardSettings,
    inputs: CardInputs,
    spec: RewardSpec,
    judge: ChatModel,
    *,
    reference: ChatModel | None = None,
    policy: ChatModel | None = None,
    show_progress: bool | None = None,
    log: Log | None = None,
) -> JudgeCard:
    """Score everything the card needs (resuming), compute the figures, write the card.

    ``spec`` names the reward and its settings; it is built on ``judge`` (and on
    ``reference`` for the agreement check, and with other seeds for the
    stability runs). Writes ``card.json``, ``card.md``, ``card.html`` and
    ``card.manifest.json`` into ``settings.out`` and returns the card.
    """
    from attunement.judge_card.report import write_card

    started = time.perf_counter()
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    run = _CardRun(
        settings,
        inputs,
        spec,
        judge,
        reference=reference,
        policy=policy,
        show_progress=show_progress,
        log=log or (lambda _msg: None),
    )
    await run.discrimination()
    await run.good_replies()
    await run.personalization()
    await run.gaming_probes()
    await run.repeat_runs()
    await run.agreement_runs()
    card = run.card(started)
    write_card(card, out, plots=settings.plots)
    write_manifest(
        out / "card.manifest.json",
        command="judge-card",
        settings=settings.model_dump(mode="json"),
        reward=run.reward.manifest(),
        reference=card.reference,
        policy=policy.name if policy else None,
        verdict=card.verdict,
    )
    return card
