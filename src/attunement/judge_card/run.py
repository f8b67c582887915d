"""The judge card: is this judge fit to be a reward, before anyone trains on it?

A reward is only as good as its judge. ``attune judge-card`` points the same
reward a trainer would use (PERM or PereGRM, on the judge given) at replies
whose quality is known, and reports what a GRPO policy would meet:

- **discrimination**: EmoBench EA "Response" items, each a scenario with four
  candidate replies of which one is right; the reward should rank the right
  one first (:func:`~attunement.judge_card.checks.discrimination`);
- **personalization**: a good reply judged with its own user's persona and
  memories, with another user's, and with the other user's memories alone and
  persona alone; a personalized judge scores every swapped copy lower. The
  judges are shown the memories for this check even when the reward hides
  them (PERM's default), and the card says so;
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

The package: :mod:`~attunement.judge_card.inputs` (settings, input files,
which replies count as good), :mod:`~attunement.judge_card.checks` (the
figures and verdicts), :mod:`~attunement.judge_card.probes` (the gaming
edits), :mod:`~attunement.judge_card.card` (the card as data) and
:mod:`~attunement.judge_card.sections` and :mod:`~attunement.judge_card.report`
(``card.md``, ``card.html``), :mod:`~attunement.judge_card.scoring` (one
resumable file per check; the good replies). This module runs the scoring
steps in order and assembles the card.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attunement.jsonl import write_manifest
from attunement.judge_card import checks
from attunement.judge_card.card import (
    CHECK_NAMES,
    CheckSummary,
    DataInfo,
    JudgeCard,
    overall,
    summary_line,
)
from attunement.judge_card.checks import (
    ChoiceGroup,
    Discrimination,
    Key,
    ProbeSet,
    Stability,
    key_of,
)
from attunement.judge_card.inputs import (
    CardInputs,
    CardSettings,
    base_description,
    emobench_example,
    emobench_replies,
    judged_copy,
    other_user,
    with_other_part,
    with_other_user,
)
from attunement.judge_card.probes import PROBES
from attunement.judge_card.report import write_card
from attunement.judge_card.scoring import Scoring, good_replies
from attunement.judge_card.simulator import SimulatorCheck, run_simulator_check
from attunement.judging import RewardModel, RewardSpec
from attunement.llm import ChatModel
from attunement.records import Example, Reply, RewardBreakdown

Log = Callable[[str], None]


def _by_key(rows: Sequence[RewardBreakdown]) -> dict[Key, RewardBreakdown]:
    return {key_of(b): b for b in rows}


def _keys(replies: Sequence[Reply]) -> list[Key]:
    return [(r.example_id, r.reply_id) for r in replies]


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
        # the card measures the judge, so every probe reply reaches it: the reward rule
        # verdict_in_reply (which would give a forged verdict the minimum unjudged) is off
        spec = spec.model_copy(
            update={"overrides": {**spec.overrides, "verdict_in_reply": "judge"}}
        )
        self.spec = spec
        self.reward = spec.load(judge)
        self.config = spec.config()
        if getattr(self.config, "criteria_mode", None) == "fixed":
            raise ValueError(
                "criteria_mode='fixed' needs criteria prepared for every example, "
                "and the card's EmoBench items, other-user copies and probes have "
                "none; run the card with the shared or inline criteria mode"
            )
        self.score = Scoring(Path(settings.out), settings.concurrency, show_progress, log)
        self.measures = ["reward", *self.config.dimensions]
        self.reads_analysis = self.config.use_resonation and self.config.resonation_on == "analysis"
        self.choice_groups: list[ChoiceGroup] = []
        self.disc, self.base, self.swapped, self.probes = Scored(), Scored(), Scored(), Scored()
        self.pz_pairs: list[tuple[Key, Key]] = []
        self.pz_skipped = 0
        self.pz_swaps: dict[str, list[tuple[Key, Key]]] = {"memories": [], "persona": []}
        self.pz_swap_skipped: dict[str, int] = {"memories": 0, "persona": 0}
        self.pz_sets: dict[str, Scored] = {}  # the other scorings of the check, by file
        self.pz_scored: dict[Key, RewardBreakdown] = {}
        self.probe_pairs: dict[str, list[tuple[Key, Key]]] = defaultdict(list)
        self.not_applicable: dict[str, int] = defaultdict(int)
        self.runs: list[dict[Key, RewardBreakdown]] = []
        self.stability_set = Scored()
        self.run_rows: dict[str, list[RewardBreakdown]] = {}
        self.ref_rows: list[RewardBreakdown] = []
        self.simulator: SimulatorCheck | None = None

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
                lengths=tuple(len(r.response) for r in emobench_replies(i)),
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
        examples, replies = await good_replies(
            self.inputs, self.settings, self.policy, self.show_progress, self.log
        )
        if self.own_context:
            rows = await self.score("base", self.reward, examples, replies)
        else:
            wanted = set(_keys(replies))
            rows = [b for b in self.disc.rows if key_of(b) in wanted]
        self.base = Scored(examples, replies, rows)

    @property
    def shows_memories(self) -> bool:
        """Whether the reward under test shows the user's memories to its judges."""
        return bool(getattr(self.config, "include_memories", True))

    def personalization_reward(self) -> RewardModel:
        """The reward of the personalization check: the one under test, with the
        memories shown to the judges when it hides them (else no memory swap could
        register)."""
        if self.shows_memories:
            return self.reward
        overrides = {**self.spec.overrides, "include_memories": True}
        return self.spec.model_copy(update={"overrides": overrides}).load(self.judge)

    def personalization_note(self) -> str | None:
        if self.shows_memories or not self.pz_pairs:
            return None
        return (
            f"{self.reward.name} hides the user's memories from its judges "
            "(include_memories=false); this check showed them (include_memories=true) so "
            "that a memory swap can register at all. A trainer on this reward as configured "
            "gives the policy no reason to use memories: set include_memories=true "
            "(--set include_memories=true) to train on one that reads them"
        )

    async def personalization(self) -> None:
        """The same good replies with another user's persona and memories, and with
        that user's memories alone and persona alone, all judged with memories shown."""
        swapped = Scored()
        singles = {part: Scored() for part in self.pz_swaps}
        if self.own_context:
            for ex, rep in zip(self.base.examples, self.base.replies):
                other = other_user(ex, self.inputs.examples, self.settings.seed)
                if (ex.persona is None and not ex.memories) or other is None:
                    self.pz_skipped += 1
                    continue
                own = (ex.example_id, rep.reply_id)
                copy = with_other_user(ex, other)
                swapped.examples.append(copy)
                swapped.replies.append(judged_copy(rep, example_id=copy.example_id))
                self.pz_pairs.append((own, (copy.example_id, rep.reply_id)))
                for part, into in singles.items():
                    alone = with_other_part(ex, other, part)
                    if alone is None:
                        self.pz_swap_skipped[part] += 1
                        continue
                    into.examples.append(alone)
                    into.replies.append(judged_copy(rep, example_id=alone.example_id))
                    self.pz_swaps[part].append((own, (alone.example_id, rep.reply_id)))
        reward = self.personalization_reward()
        swapped.rows = await self.score(
            "personalization", reward, swapped.examples, swapped.replies
        )
        self.swapped = swapped
        own_rows = self.base.rows
        if reward is not self.reward and self.pz_pairs:
            judged = {k for k, _ in self.pz_pairs}
            mine = [r for r in self.base.replies if (r.example_id, r.reply_id) in judged]
            own = Scored(self.base.examples, mine)
            own.rows = await self.score("personalization.own", reward, own.examples, mine)
            self.pz_sets["personalization.own"] = own
            own_rows = own.rows
        for part, into in singles.items():
            into.rows = await self.score(
                f"personalization.{part}", reward, into.examples, into.replies
            )
            self.pz_sets[f"personalization.{part}"] = into
        self.pz_scored = _by_key([*own_rows, *swapped.rows])
        for into in singles.values():
            self.pz_scored.update(_by_key(into.rows))

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

    def files(self) -> dict[str, list[RewardBreakdown]]:
        """The judge under test's breakdowns, by breakdown file."""
        return {
            "discrimination": self.disc.rows,
            "base": self.base.rows if self.own_context else [],
            "personalization": self.swapped.rows,
            **{name: scored.rows for name, scored in self.pz_sets.items()},
            "probes": self.probes.rows,
            **self.run_rows,
        }

    def figures(self) -> dict[str, Any]:
        """Every check's result, from the scored sets alone."""
        files = self.files()
        scored = _by_key([*self.disc.rows, *self.base.rows, *self.swapped.rows, *self.probes.rows])
        probe_sets = [
            ProbeSet(
                name=p.name,
                title=p.title,
                what=p.what,
                pairs=tuple(self.probe_pairs[p.name]),
                not_applicable=self.not_applicable[p.name],
                effect=p.effect,
            )
            for p in PROBES.values()
        ]
        return {
            "discrimination": self.discrimination_figures(scored),
            "personalization": checks.personalization(
                self.pz_pairs,
                self.pz_scored,
                self.measures,
                skipped=self.pz_skipped,
                swaps=self.pz_swaps if self.pz_pairs else None,
                swap_skipped=self.pz_swap_skipped,
                note=self.personalization_note(),
            ),
            "probes": checks.probes(
                probe_sets,
                scored,
                self.measures,
                base_replies=len(self.base.replies),
            ),
            "stability": self.stability_figures(files, scored),
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

    def discrimination_figures(self, scored: dict[Key, RewardBreakdown]) -> Discrimination:
        """Discrimination on every measure the EmoBench candidates can be judged on."""
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
        return disc

    def stability_figures(
        self, files: dict[str, list[RewardBreakdown]], scored: dict[Key, RewardBreakdown]
    ) -> Stability:
        """Stability over every breakdown of the judge under test."""
        judged = [
            *self.disc.replies,
            *self.base.replies,
            *self.swapped.replies,
            *(r for scored in self.pz_sets.values() for r in scored.replies),
            *self.probes.replies,
        ]
        no_analysis = (
            {(r.example_id, r.reply_id) for r in judged if not r.analysis.strip()}
            if self.reads_analysis
            else set()
        )
        return checks.stability(
            [b for rows in files.values() for b in rows],
            k=self.config.k,
            dimensions=list(self.config.dimensions),
            empathy_dimensions=list(self.config.empathy_dimensions),
            groups=self.groups(),
            runs=self.runs,
            run_keys=_keys(self.stability_set.replies),
            skip={"resonation": no_analysis},
            group_runs=[scored, *self.runs[1:]],
        )

    async def simulator_check(self) -> None:
        """The judge model as a simulated user: scripted good vs bad assistant."""
        turns = self.settings.simulator_turns
        if turns is None:
            return
        examples = self.inputs.examples[: self.settings.limit]
        self.simulator = await run_simulator_check(
            examples,
            self.judge,
            self.settings.out,
            max_turns=turns,
            seed=self.settings.seed,
            show_progress=self.show_progress,
        )

    def card(self, started: float) -> JudgeCard:
        results = self.figures()
        check_list = [
            CheckSummary(name=n, status=results[n].status, verdict=results[n].verdict)
            for n in CHECK_NAMES
        ]
        if self.simulator is not None:
            results["simulator"] = self.simulator
            check_list.append(
                CheckSummary(
                    name="simulator", status=self.simulator.status, verdict=self.simulator.verdict
                )
            )
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
            verdict=overall(
                [c.status for c in check_list], personalization=results["personalization"].status
            ),
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
    await run.simulator_check()
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
