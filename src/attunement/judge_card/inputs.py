"""What the judge card reads: its settings, the input files, and the replies it judges.

Every input is read and checked before any model is loaded (a bad line fails
as ``file:line: field: message``). Which replies count as *good* (the ones the
probes alter and the personalization check moves between users) is decided
here and stated on every card: PersonaEmp replies from ``--replies`` (the
first sample of each example), or written by ``--policy`` with the user's full
memory, or, without PersonaEmp data, EmoBench's right answers. The helpers
that turn an EmoBench item into an example and its candidates into replies,
and a reply into a copy judged with another user, live here too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from attunement.benchmarks.emobench import EAItem, read_ea
from attunement.jsonl import read_jsonl
from attunement.judge_card.card import BaseSource
from attunement.records import Example, Reply


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
    simulator_turns: int | None = Field(
        None,
        ge=1,
        description="play the simulator check (the judge plays the users of --data) "
        "with talks of N user messages; none: skip it",
    )

    @model_validator(mode="after")
    def _sources(self) -> CardSettings:
        if self.emobench is None and self.data is None:
            raise ValueError("give --emobench (EA items) and/or --data (PersonaEmp examples)")
        if self.replies is not None and self.policy is not None:
            raise ValueError("give --replies or --policy, not both")
        if (self.replies is not None or self.policy is not None) and self.data is None:
            raise ValueError("--replies and --policy need --data (the examples they answer)")
        if self.data is not None and self.replies is None and self.policy is None:
            raise ValueError(
                "--data needs good replies to judge: --replies FILE (replies you trust, e.g. "
                "a strong model's from 'attune generate --memory full') or --policy SPEC "
                "(a model writes them with the user's full memory)"
            )
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
        return (
            "EmoBench's right answers, as replies to their scenarios; they have no user "
            "persona or memories, so the personalization check and the memory probe do "
            "not apply"
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


def with_other_part(example: Example, other: Example, part: str) -> Example | None:
    """The example with one part of ``other``'s context, ``"memories"`` or
    ``"persona"``, and everything else its own; ``None`` when that part is missing
    on either side or the same on both (the swap would change nothing)."""
    mine, theirs = getattr(example, part), getattr(other, part)
    if not mine or not theirs or mine == theirs:
        return None
    who = other.user_id or other.example_id
    value = list(theirs) if part == "memories" else theirs
    return example.model_copy(
        update={"example_id": f"{example.example_id}~{part}~{who}", part: value}
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
