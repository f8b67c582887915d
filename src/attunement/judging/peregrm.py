"""PereGRM: personalised criteria first, then a score against them (seed 000).

For each of resonation, expression and reception the judge writes criteria
for *this* user (persona, memories, situation, query) and scores the reply
against them on 1-5; ``k`` independent samples are averaged (PereGRM@k).
The bystander penalty is PERM's.

Criteria modes (``PereGRMConfig.criteria_mode``):

``shared`` (default; this project's design, not the paper's procedure)
    Criteria are written once per (example, dimension, sample ``j``, criteria
    round), with ``n=k`` in one request, and every reply of the group is
    scored against criteria set ``j`` for ``j = 0..k-1``. It judges all
    replies of a GRPO group by the same yardsticks and writes the criteria
    once instead of once per reply. Concurrent ``score`` calls for the same
    example and round share one in-flight criteria request; cancelling one of
    them never cancels the request the others wait for (``asyncio.shield``).
    ``criteria_round`` (a trainer passes its step) draws fresh criteria, so the
    policy never faces the same frozen yardstick twice.
``per_reply``
    Criteria written without the reply in view, as in ``shared``, but one
    independent set per reply (sample numbers of reply ``p`` start at
    ``p * k * (1 + max_resamples)``, so no two replies share a draw or a
    cache entry). The paper's equations read this way too; it costs a
    criteria request per reply and dimension.
``inline``
    One call per (reply, dimension) writes criteria, analysis and score
    together, ``n=k`` samples per call (the authors' training code).
``fixed``
    Criteria prepared ahead of time (:func:`attunement.judging.prepare_criteria`)
    and stored in ``Example.criteria``; scoring at ``fixed_temperature`` (0).
    This is the authors' evaluation protocol.

The judges read PereGRM's dimension definitions in one of two versions
(``definitions``): ``training`` (the authors' training reward: personality
detection, personalised strategy adaptation, reception judged in the user's
place) or ``evaluation`` (the definitions the authors' fixed criteria are
written from).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from attunement.judging.answers import CRITERIA_ITEMS, InlineAnswer, ScoreAnswer, criteria_answer
from attunement.judging.base import add_usage, to_judgements
from attunement.judging.criteria_lists import TEXT_CRITERIA_ITEMS, ParsedCriteria, parse_criteria
from attunement.judging.kinds import register_reward
from attunement.judging.peregrm_prompts import (
    definition,
    write_or_score,
)
from attunement.judging.perm import EmpathyReward, RewardConfig
from attunement.judging.ratings import parse_rating
from attunement.judging.sampler import Sample, round_seed
from attunement.judging.settings import (
    JUDGE_TEMPERATURE,
    CriteriaMode,
    Definitions,
    ResonationOn,
    SetsShown,
    Temperature,
    Unformatted,
)
from attunement.judging.templates import (
    fenced_judged,
    named_dimension,
    named_set,
    prompt_piece,
    render_criteria_sets,
    render_message,
    render_piece,
    render_prompt,
    schema,
)
from attunement.judging.tokens import TokenCounter
from attunement.judging.verdicts import Parsed
from attunement.llm.base import ChatModel, Message
from attunement.records import Dimension, Example, Judgement, Reply, Usage
from attunement.render import fence

#: how many finished criteria sets are remembered across score() calls
CRITERIA_MEMO_SIZE = 512
#: what the bystander is told about the user in the authors' setting
BYSTANDER_NO_CONTEXT = "(none: rate the exchange on its own)"
#: temperature of scoring against fixed criteria (the authors' evaluation)
FIXED_TEMPERATURE = 0.0


class PereGRMConfig(RewardConfig):
    """PereGRM (seed 000): personalised criteria, then a score against them."""

    criteria_mode: CriteriaMode = Field(
        "shared",
        description="'shared': criteria once per example/dimension/sample and round, "
        "reused by the whole group; 'per_reply': criteria written without the reply in view, "
        "one set per reply; 'inline': one call writes criteria+analysis+score per reply (the "
        "authors' code); 'fixed': example.criteria prepared in advance, scored at "
        "fixed_temperature",
    )
    definitions: Definitions = Field(
        "training",
        description="dimension definitions the judges read: 'training' (the "
        "authors' training reward: personality detection, personalised strategy, the user's "
        "own reception) or 'evaluation' (the authors' criteria-writing definitions); default "
        "'evaluation' in fixed mode, 'training' otherwise",
    )
    sets_shown: SetsShown = Field(
        "all",
        description="criteria sets a scoring prompt shows in shared and per_reply mode: "
        "'all' (every scored dimension's k sets: a reply's 3k calls differ only in their "
        "last line, so a prefix cache prefills the reply once) or 'dimension' (the named "
        "dimension's k sets: prompts about 2k sets shorter, for judges with a small "
        "context window, the reply prefilled once per dimension)",
    )
    criteria_temperature: Temperature = Field(
        JUDGE_TEMPERATURE, description="temperature of criteria writing"
    )
    fixed_temperature: Temperature = Field(
        FIXED_TEMPERATURE, description="scoring temperature in fixed mode"
    )
    resonation_on: ResonationOn = Field(
        "response", description="the authors' code judges the response for every dimension"
    )
    include_memories: bool = Field(True, description="show the user's memories to the judges")
    unformatted: Unformatted = Field(
        "judge_whole",
        description="the PereGRM authors' code judges the whole completion "
        "when it has no reasoning block",
    )

    @model_validator(mode="before")
    @classmethod
    def _definitions_follow_mode(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("definitions") is None:
            data = {k: v for k, v in data.items() if k != "definitions"}
            if data.get("criteria_mode") == "fixed":
                data["definitions"] = "evaluation"
        return data


@dataclass(frozen=True)
class CriteriaSet:
    """The k criteria samples of one (example, dimension); failed slots have text None."""

    slots: tuple[Sample, ...]
    usage: Usage

    def text(self, j: int) -> str | None:
        s = self.slots[j]
        return s.verdict.text if s.ok else None

    def failure(self, j: int) -> str:
        """Why slot ``j`` holds no criteria (a failed sample always has a reason)."""
        return str(self.slots[j].reason)


@register_reward("peregrm", config=PereGRMConfig)
class PereGRMReward(EmpathyReward):
    """PereGRM's judges: criteria for this user, then a score against them."""

    config: PereGRMConfig

    def __init__(
        self, judge: ChatModel, config: PereGRMConfig, *, token_counter: TokenCounter | None = None
    ):
        super().__init__(judge, config, token_counter=token_counter)
        self._memo: OrderedDict[str, asyncio.Task[CriteriaSet]] = OrderedDict()
        self._memo_loop: asyncio.AbstractEventLoop | None = None
        #: criteria requests actually started (for tests and benchmarks)
        self.criteria_requests = 0

    def check_examples(self, examples: Sequence[Example]) -> None:
        if self.config.criteria_mode != "fixed":
            return
        missing = [
            f"{e.example_id} ({', '.join(d for d in self.config.empathy_dimensions if not e.criteria.get(d, '').strip())})"
            for e in examples
            if any(not e.criteria.get(d, "").strip() for d in self.config.empathy_dimensions)
        ]
        if missing:
            shown = "; ".join(missing[:5]) + (
                f"; and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise ValueError(
                f"criteria_mode='fixed' needs Example.criteria for every scored "
                f"dimension; missing for {len(missing)} example(s): {shown}. "
                "Prepare them with `attune criteria` first."
            )

    # ------------------------------------------------------------------ prompts

    def _judged(self, reply: Reply, dimension: Dimension) -> tuple[str, str]:
        analysis, response = self.judged_texts(reply)
        if dimension == "resonation" and self.config.resonation_on == "analysis":
            return "analysis", fenced_judged("analysis", analysis)
        return "response", fenced_judged("response", response)

    def criteria_messages(self, example: Example, dimension: Dimension) -> list[Message]:
        """The prompt asking for criteria on ``dimension``: the scoring prompts'
        start (the same user record), then the line naming the dimension."""
        if dimension not in self.config.empathy_dimensions:
            raise ValueError(f"{dimension} is not among the scored dimensions")
        return self._write_or_score(example, named_dimension(dimension))

    def inline_messages(
        self, example: Example, reply: Reply, dimension: Dimension
    ) -> list[Message]:
        label, judged = self._judged(reply, dimension)
        return render_prompt(
            "peregrm_inline",
            dimension=dimension,
            definition=definition(dimension, self.config.definitions),
            context=self.context(example),
            message=render_message(example),
            judged_label=label,
            judged=judged,
            output_format=prompt_piece(f"peregrm_format_inline_{self.fmt}"),
        )

    def score_messages(
        self, example: Example, reply: Reply, dimension: Dimension, criteria: str
    ) -> list[Message]:
        """The prompt scoring a reply against one criteria set (``fixed`` mode)."""
        label, judged = self._judged(reply, dimension)
        return render_prompt(
            "peregrm_score",
            dimension=dimension,
            definition=definition(dimension, self.config.definitions),
            criteria=fence("criteria", criteria.strip()),
            context=self.context(example),
            message=render_message(example),
            judged_label=label,
            judged=judged,
            output_format=prompt_piece(f"peregrm_format_score_{self.fmt}"),
        )

    def score_sets_messages(
        self,
        example: Example,
        reply: Reply,
        sets: Mapping[Dimension, Sequence[tuple[int, str]]],
        dimension: Dimension,
        number: int,
    ) -> list[Message]:
        """The prompt scoring a reply on ``dimension`` against its criteria set
        ``number`` (``shared`` and ``per_reply`` modes).

        ``sets`` maps each dimension judged on the same text to its ``(number,
        text)`` sets; the definitions of every scored dimension come before the
        user's record (every group shares them), then the sets, dimension by
        dimension, then the reply; the last line names the dimension and set to
        score by. The calls for one reply then differ only in that line and the
        replies of a group only from the reply on, so a server's prefix cache
        prefills the reply once for all its verdicts and the group's part once
        per group.
        """
        if number not in {n for n, _ in sets.get(dimension, ())}:
            raise ValueError(f"{dimension} criteria set {number} is not among the sets shown")
        label, judged = self._judged(reply, dimension)
        task = "\n\n".join(
            [
                render_criteria_sets(sets),
                render_piece("peregrm_judged", judged_label=label, judged=judged),
                named_set(dimension, number),
            ]
        )
        return self._write_or_score(example, task)

    def _write_or_score(self, example: Example, task: str) -> list[Message]:
        return write_or_score(
            example,
            self.fmt,
            definitions=self.config.definitions,
            context=self.context(example),
            dimensions=self.config.empathy_dimensions,
            task=task,
        )

    def probe_prompts(self, example: Example, reply: Reply) -> Iterator[list[Message]]:
        mode = self.config.criteria_mode
        dims = self.config.empathy_dimensions
        if mode in ("shared", "per_reply"):
            for dim in dims:
                yield self.criteria_messages(example, dim)
            shown = {d: [(1, example.criteria[d])] for d in dims}
            for group in self._together(reply, shown).values():
                for dim in group:
                    yield self.score_sets_messages(example, reply, group, dim, 1)
        for dim in dims:
            if mode == "inline":
                yield self.inline_messages(example, reply, dim)
            elif mode == "fixed":
                yield self.score_messages(example, reply, dim, example.criteria[dim])
        if self.config.use_bystander:
            yield self.bystander_messages(example, reply)

    def bystander_context(self, example: Example) -> str:
        """The PereGRM authors' bystander read the exchange alone; ``full`` adds the
        persona and situation (PERM's bystander prompt)."""
        if self.config.judge_context == "authors":
            return BYSTANDER_NO_CONTEXT
        return super().bystander_context(example)

    def _parser(self, example: Example, reply: Reply, answer: type):
        untrusted = self.untrusted(example, reply)

        def parse(text: str) -> Parsed:
            return parse_rating(text, fmt=self.fmt, answer=answer, untrusted=untrusted)

        return parse

    # ------------------------------------------------------------------ criteria

    def _criteria_task(
        self, example: Example, dimension: Dimension, criteria_round: int
    ) -> tuple[asyncio.Task[CriteriaSet], bool]:
        """The (possibly in-flight) shared criteria of one example, dimension and round.

        Returns the task and whether this call created it. Keyed by the exact
        prompt and sampling parameters, so two examples that share an id but
        not their content never share criteria.
        """
        loop = asyncio.get_running_loop()
        if self._memo_loop is not loop:
            self._memo.clear()
            self._memo_loop = loop
        messages = self.criteria_messages(example, dimension)
        seed = round_seed(self.config.seed, criteria_round)
        key = hashlib.sha256(
            json.dumps(
                [
                    messages,
                    self.config.k,
                    self.config.criteria_temperature,
                    seed,
                    self.config.max_tokens,
                    self.fmt,
                    self.judge.name,
                ],
                sort_keys=True,
            ).encode()
        ).hexdigest()
        task = self._memo.get(key)
        if task is not None and not (task.done() and (task.cancelled() or task.exception())):
            self._memo.move_to_end(key)
            return task, False
        task = loop.create_task(self._write_criteria(messages, seed))
        self._memo[key] = task
        task.add_done_callback(lambda t, key=key: self._forget_failed(key, t))
        while len(self._memo) > CRITERIA_MEMO_SIZE:
            oldest = next(iter(self._memo))
            if not self._memo[oldest].done():
                break
            self._memo.pop(oldest)
        return task, True

    def _forget_failed(self, key: str, task: asyncio.Task[CriteriaSet]) -> None:
        """A criteria set with a failed slot is not reused by later calls (they retry)."""
        if task.cancelled() or task.exception() is not None:
            self._memo.pop(key, None)
            return
        result = task.result()
        if any(s is None or not s.ok for s in result.slots) and self._memo.get(key) is task:
            self._memo.pop(key, None)

    def _parse_criteria(self, text: str) -> ParsedCriteria:
        """A criteria sample: held to 4-6 items in JSON (its schema says so), to the
        looser count of a text list otherwise."""
        low, high = CRITERIA_ITEMS if self.fmt == "json" else TEXT_CRITERIA_ITEMS
        return parse_criteria(text, fmt=self.fmt, min_items=low, max_items=high)

    async def _write_criteria(
        self, messages: list[Message], seed: int | None, *, first_index: int = 0
    ) -> CriteriaSet:
        self.criteria_requests += 1
        k = self.config.k
        samples, usage = await self.sample(
            messages,
            k=k,
            temperature=self.config.criteria_temperature,
            seed=seed,
            schema=schema(criteria_answer(*CRITERIA_ITEMS), self.config.json_text_chars),
            parse=self._parse_criteria,
            first_index=first_index,
        )
        # slot j takes the j-th valid sample; the remaining slots the latest failures
        # (a sample failed is re-drawn or kept, so there are always k samples at least)
        valid = [s for s in samples if s.ok]
        failed = [s for s in samples if not s.ok]
        slots = valid[:k] + failed[len(failed) - (k - len(valid[:k])) :]
        return CriteriaSet(slots=tuple(slots), usage=usage)

    # ------------------------------------------------------------------ judging

    async def _score_against(
        self,
        example: Example,
        reply: Reply,
        dimension: Dimension,
        messages: list[Message],
        criteria: str,
        *,
        k: int,
        temperature: float,
        index: int | None,
    ) -> tuple[list[Judgement], Usage]:
        """``k`` verdicts of ``messages``, a prompt scoring against ``criteria``."""
        samples, usage = await self.sample(
            messages,
            k=k,
            temperature=temperature,
            schema=schema(ScoreAnswer, self.config.json_text_chars),
            parse=self._parser(example, reply, ScoreAnswer),
        )
        judgements = to_judgements(
            dimension, samples, self.normalize_rating, criteria=criteria, index=index
        )
        return judgements, usage

    async def _against_sets(
        self, example: Example, reply: Reply, criteria: Mapping[Dimension, CriteriaSet]
    ) -> tuple[list[Judgement], Usage]:
        """Score the reply against each of the k criteria samples of every dimension
        (slot j -> sample j), one call per (dimension, slot); every call shows the
        usable sets of all dimensions judged on the same text and names its own."""
        failures: list[Judgement] = []
        shown: dict[Dimension, list[tuple[int, str]]] = {}
        for dim, cset in criteria.items():
            shown[dim] = []
            for j in range(self.config.k):
                text = cset.text(j)
                if text is None:
                    failures.append(
                        Judgement(
                            dimension=dim,
                            score=None,
                            sample_index=j,
                            reason=f"criteria sample {j} unusable: {cset.failure(j)}",
                        )
                    )
                else:
                    shown[dim].append((j + 1, text))
        together = self._together(reply, shown)
        jobs = [
            self._score_against(
                example,
                reply,
                dim,
                self.score_sets_messages(example, reply, group, dim, number),
                text,
                k=1,
                temperature=self.config.temperature,
                index=number - 1,
            )
            for group in together.values()
            for dim, sets in group.items()
            for number, text in sets
        ]
        judgements, usage = add_usage(await asyncio.gather(*jobs))
        return failures + judgements, usage

    def _together(
        self, reply: Reply, shown: Mapping[Dimension, list[tuple[int, str]]]
    ) -> dict[tuple[str, str], dict[Dimension, list[tuple[int, str]]]]:
        """The dimensions' sets grouped by the text they judge (the analysis or the
        response) and, with ``sets_shown="dimension"``, by dimension: the
        dimensions of one group are scored with one prompt layout."""
        alone = self.config.sets_shown == "dimension"
        together: dict[tuple[str, str], dict[Dimension, list[tuple[int, str]]]] = {}
        for dim, sets in shown.items():
            key = (self._judged(reply, dim)[0], dim if alone else "")
            together.setdefault(key, {})[dim] = sets
        return together

    async def _shared_sets(
        self, example: Example, reply: Reply, tasks: Mapping[Dimension, asyncio.Task[CriteriaSet]]
    ) -> tuple[list[Judgement], Usage]:
        # shielded: cancelling this score() must not cancel criteria others wait for
        sets = await asyncio.gather(*(asyncio.shield(t) for t in tasks.values()))
        return await self._against_sets(example, reply, dict(zip(tasks, sets)))

    async def _per_reply_sets(
        self, example: Example, reply: Reply, position: int, criteria_round: int
    ) -> tuple[list[Judgement], Usage]:
        block = self.config.k * (1 + self.config.max_resamples)
        dims = self.config.empathy_dimensions
        sets = await asyncio.gather(
            *(
                self._write_criteria(
                    self.criteria_messages(example, dim),
                    round_seed(self.config.seed, criteria_round),
                    first_index=position * block,
                )
                for dim in dims
            )
        )
        judgements, usage = await self._against_sets(example, reply, dict(zip(dims, sets)))
        for cset in sets:
            usage = usage + cset.usage
        return judgements, usage

    async def _inline_dim(
        self, example: Example, reply: Reply, dimension: Dimension
    ) -> tuple[list[Judgement], Usage]:
        samples, usage = await self.sample(
            self.inline_messages(example, reply, dimension),
            k=self.config.k,
            temperature=self.config.temperature,
            schema=schema(InlineAnswer, self.config.json_text_chars),
            parse=self._parser(example, reply, InlineAnswer),
        )
        return to_judgements(dimension, samples, self.normalize_rating), usage

    async def _judge_reply(
        self,
        example: Example,
        reply: Reply,
        position: int,
        tasks: dict[str, asyncio.Task[CriteriaSet]],
        criteria_round: int,
    ) -> tuple[list[Judgement], Usage]:
        mode = self.config.criteria_mode
        jobs = []
        if mode == "shared":
            jobs.append(self._shared_sets(example, reply, tasks))
        elif mode == "per_reply":
            jobs.append(self._per_reply_sets(example, reply, position, criteria_round))
        for dim in self.config.empathy_dimensions:
            if mode == "inline":
                jobs.append(self._inline_dim(example, reply, dim))
            elif mode == "fixed":
                jobs.append(
                    self._score_against(
                        example,
                        reply,
                        dim,
                        self.score_messages(example, reply, dim, example.criteria[dim]),
                        example.criteria[dim],
                        k=self.config.k,
                        temperature=self.config.fixed_temperature,
                        index=None,
                    )
                )
        if self.config.use_bystander:
            jobs.append(self.judge_bystander(example, reply))
        return add_usage(await asyncio.gather(*jobs))

    async def judge_group(
        self, example: Example, replies: Sequence[Reply], *, criteria_round: int = 0
    ) -> dict[str, tuple[list[Judgement], Usage]]:
        tasks: dict[str, asyncio.Task[CriteriaSet]] = {}
        created: list[asyncio.Task[CriteriaSet]] = []
        if self.config.criteria_mode == "shared":
            for dim in self.config.empathy_dimensions:
                tasks[dim], new = self._criteria_task(example, dim, criteria_round)
                if new:
                    created.append(tasks[dim])
        results = await asyncio.gather(
            *(
                self._judge_reply(example, r, p, tasks, criteria_round)
                for p, r in enumerate(replies)
            )
        )
        out = {r.reply_id: res for r, res in zip(replies, results)}
        # work shared by the group is booked on its first reply, so totals add up
        if created:
            first = replies[0].reply_id
            judgements, usage = out[first]
            for task in created:
                usage = usage + task.result().usage
            out[first] = (judgements, usage)
        return out


def peregrm_reward(
    judge: ChatModel,
    config: PereGRMConfig | None = None,
    *,
    token_counter: TokenCounter | None = None,
) -> PereGRMReward:
    """PereGRM with ``judge`` writing criteria and scores (``config.k`` samples)."""
    return PereGRMReward(judge, config or PereGRMConfig(), token_counter=token_counter)
