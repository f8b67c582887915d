"""The judge card's scoring steps: each check's replies scored into its own
resumable file (:class:`Scoring`), and the good replies the probes and the
personalization check start from (:func:`good_replies`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from attunement.jsonl import read_jsonl
from attunement.judge_card.checks import key_of
from attunement.judge_card.inputs import (
    CardInputs,
    CardSettings,
    emobench_example,
    emobench_replies,
    judged_copy,
)
from attunement.judging import RewardModel, score_dataset, unfinished
from attunement.llm import ChatModel
from attunement.policy import generate_replies
from attunement.records import Example, Reply, RewardBreakdown

Log = Callable[[str], None]


@dataclass
class Scoring:
    """Runs score_dataset per check into its own file and remembers what this run did.

    Replies whose judge calls failed end the card at once with the one-line
    :class:`~attunement.llm.CallsFailedError` (no card is written: a judge that
    was down is not an unfit judge); the same command resumes and retries them.
    """

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
        failed = unfinished(summary)
        if failed is not None:  # a card over the replies that got through would mislead
            raise failed
        wanted = {(r.example_id, r.reply_id) for r in replies}
        return [b for b in read_jsonl(path, RewardBreakdown) if key_of(b) in wanted]


async def good_replies(
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
