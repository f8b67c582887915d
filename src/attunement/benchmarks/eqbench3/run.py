"""``attune eqbench3``: EQ-Bench 3's rubric pass on its published scenarios.

EQ-Bench 3 (Paech, MIT licence) tests emotional intelligence with scripted
multi-turn role-plays. The package: :mod:`~attunement.benchmarks.eqbench3.data`
(the published files), :mod:`~attunement.benchmarks.eqbench3.records` (settings,
transcripts, verdicts), :mod:`~attunement.benchmarks.eqbench3.rubric` (the
judge's prompt, reading its answer, the score) and
:mod:`~attunement.benchmarks.eqbench3.report`. Here, the model calls.

**Running.** Each scenario is one conversation: every scripted user turn is
wrapped by its master prompt and sent with the whole history, then (except
for analysis) the debrief. Scenarios run concurrently; turns within one run in
order. A transcript is appended when its scenario is done, so a killed run
resumes per scenario, and completed turns come back from the cache.

**Judging.** The rubric prompt of each transcript goes to the judge at
temperature 0; an unreadable answer is re-drawn with fresh samples
(:class:`~attunement.judging.base.JudgeSampler`), and a transcript whose
answers all stay unreadable is reported without a score.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

from attunement.benchmarks.eqbench3.baseline import comparability, random_judge_baseline
from attunement.benchmarks.eqbench3.data import EQBenchData, Scenario
from attunement.benchmarks.eqbench3.records import (
    TRANSCRIPTS,
    VERDICTS,
    EQBenchSettings,
    JudgeFormat,
    RubricVerdict,
    Transcript,
    read_transcripts,
    read_verdicts,
)
from attunement.benchmarks.eqbench3.rubric import (
    EQBenchResults,
    ParsedRubric,
    parse_rubric,
    rubric_prompt,
    score_verdicts,
    verdict_schema,
)
from attunement.concurrency import run_bounded
from attunement.jsonl import JsonlAppender, check_settings, write_manifest
from attunement.judging import JudgeSampler
from attunement.judging.base import usage_of
from attunement.llm import ChatModel, LLMError, Message, stand_in_fields, stand_in_note
from attunement.records import Turn, Usage

# --------------------------------------------------------------------------- playing

#: how a scenario whose role-play call failed is listed in ``failed`` (the
#: command line ends such a run with exit 1; the rerun plays it again)
PLAY_FAILED = "model: "


def wrap(template: str, prompt: str) -> str:
    """A user turn wrapped by its master prompt (``{scenario_prompt}`` replaced once)."""
    return template.replace("{scenario_prompt}", prompt, 1)


def user_turn(data: EQBenchData, scenario: Scenario, prompt: str) -> str:
    kind = scenario.kind
    return prompt if kind == "no_rp" else wrap(data.master[kind], prompt)


async def play(
    scenario: Scenario, data: EQBenchData, model: ChatModel, settings: EQBenchSettings
) -> Transcript:
    """Run one scenario: each wrapped user turn with the history, then the debrief."""
    started = time.perf_counter()
    turns: list[Turn] = []
    usage = Usage()
    for prompt in scenario.prompts:
        turns.append(Turn(role="user", text=user_turn(data, scenario, prompt)))
        reply, used = await _reply(model, turns, settings.temperature, settings)
        turns.append(Turn(role="assistant", text=reply))
        usage = usage + used
    debrief: list[Turn] = []
    if scenario.kind != "analysis":
        debrief.append(Turn(role="user", text=data.debrief))
        reply, used = await _reply(model, turns + debrief, settings.debrief_temperature, settings)
        debrief.append(Turn(role="assistant", text=reply.strip()))
        usage = usage + used
    return Transcript(
        scenario_id=scenario.id,
        kind=scenario.kind,
        category=scenario.category,
        title=scenario.title,
        model=model.name,
        turns=turns,
        debrief=debrief,
        usage=usage,
        seconds=round(time.perf_counter() - started, 3),
    )


async def _reply(
    model: ChatModel, turns: Sequence[Turn], temperature: float, settings: EQBenchSettings
) -> tuple[str, Usage]:
    messages: list[Message] = [{"role": t.role, "content": t.text} for t in turns]
    completions = await model.complete(
        messages, temperature=temperature, max_tokens=settings.max_tokens, seed=settings.seed
    )
    return completions[0].text, usage_of(completions)


# --------------------------------------------------------------------------- judging and the run


def select_scenarios(data: EQBenchData, scenario_ids: Collection[str] | None) -> list[Scenario]:
    """The scenarios asked for (all by default), in file order; an unknown id is an error."""
    scenarios = data.scenarios
    if scenario_ids:
        unknown = sorted(set(scenario_ids) - {s.id for s in scenarios})
        if unknown:
            raise ValueError(f"unknown scenario id(s) {unknown}")
        scenarios = [s for s in scenarios if s.id in set(scenario_ids)]
    return scenarios


def _resolve_format(fmt: JudgeFormat, judge: ChatModel) -> Literal["text", "json"]:
    if fmt == "auto":
        return "json" if judge.enforces_json_schema else "text"
    return fmt


async def judge_transcript(
    transcript: Transcript,
    data: EQBenchData,
    sampler: JudgeSampler,
    settings: EQBenchSettings,
    fmt: str,
) -> tuple[RubricVerdict | None, str | None]:
    """The judge's verdict on one transcript, or why there is none."""
    asked = data.asked_criteria(transcript.kind)
    scored = data.scored_criteria(transcript.kind)
    messages = [{"role": "user", "content": rubric_prompt(transcript, data, settings)}]
    schema = verdict_schema(asked, settings.reasoning_chars) if fmt == "json" else None
    samples, usage = await sampler.sample(
        messages,
        k=1,
        temperature=settings.judge_temperature,
        schema=schema,
        parse=lambda text: parse_rubric(text, asked, scored),
    )
    good = [s for s in samples if s.ok]
    if not good:
        reasons = sorted({s.reason or "unreadable" for s in samples})
        return None, f"judge: {'; '.join(reasons)}"
    s = good[0]
    p: ParsedRubric = s.verdict
    return RubricVerdict(
        scenario_id=transcript.scenario_id,
        kind=transcript.kind,
        judge=sampler.judge.name,
        scores=p.scores,
        reasoning=p.reasoning,
        missing=list(p.missing),
        dropped=p.dropped,
        raw=s.raw,
        attempts=len(samples),
        usage=usage,
    ), None


def eqbench_manifest(
    data: EQBenchData, model: ChatModel, judge: ChatModel, settings: EQBenchSettings
) -> dict[str, Any]:
    return {
        "model": model.name,
        "judge": judge.name,
        **stand_in_fields(judge),
        "data": str(data.folder),
        "files": data.hashes,
        "settings": settings.model_dump(mode="json"),
    }


async def run_eqbench3(
    data: EQBenchData,
    model: ChatModel,
    judge: ChatModel,
    out: Path,
    settings: EQBenchSettings | None = None,
    *,
    scenario_ids: Collection[str] | None = None,
    show_progress: bool | None = None,
) -> EQBenchResults:
    """Play every scenario (resuming), judge every transcript (resuming), score."""
    settings = settings or EQBenchSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scenarios = select_scenarios(data, scenario_ids)
    tpath, vpath = out / TRANSCRIPTS, out / VERDICTS
    manifest = eqbench_manifest(data, model, judge, settings)
    check_settings(
        out / "manifest.json",
        manifest,
        keys=("model", "judge", "files", "settings"),
        outputs=[tpath, vpath],
        fix="use a new --out folder",
    )
    write_manifest(out / "manifest.json", command="eqbench3", **manifest)
    transcripts, verdicts = read_transcripts(out), read_verdicts(out)
    fmt = _resolve_format(settings.judge_format, judge)
    sampler = JudgeSampler(
        judge,
        fmt=fmt,
        max_tokens=settings.judge_max_tokens,
        max_resamples=settings.max_resamples,
        seed=settings.seed,
    )
    failed: dict[str, str] = {}
    counts = {"played": 0, "judged": 0}

    with JsonlAppender(tpath) as tsink, JsonlAppender(vpath) as vsink:

        async def one(scenario: Scenario) -> None:
            transcript = transcripts.get(scenario.id)
            if transcript is None:
                try:
                    transcript = await play(scenario, data, model, settings)
                except LLMError as exc:
                    failed[scenario.id] = f"{PLAY_FAILED}{exc}"  # a call failed: no result
                    return
                tsink.write(transcript)
                transcripts[scenario.id] = transcript
                counts["played"] += 1
            if scenario.id in verdicts:
                return
            verdict, why = await judge_transcript(transcript, data, sampler, settings, fmt)
            if verdict is None:
                failed[scenario.id] = why or "judge: no verdict"
                return
            vsink.write(verdict)
            verdicts[scenario.id] = verdict
            counts["judged"] += 1

        await run_bounded(
            scenarios,
            one,
            limit=settings.concurrency,
            description="eqbench3 scenarios",
            show_progress=show_progress,
        )
    chosen = [verdicts[s.id] for s in scenarios if s.id in verdicts]
    results = score_verdicts(chosen, scenarios, data, settings)
    results.model, results.judge = model.name, judge.name
    results.stand_in_judge = stand_in_note(judge)
    results.comparable = comparability(judge.name)
    counted = [
        [c for c in data.asked_criteria(t.kind) if c in data.scored_criteria(t.kind)]
        for t in results.tasks
        if t.score is not None
    ]
    results.random_judge = random_judge_baseline(
        [c for c in counted if c], level=settings.level, seed=settings.seed
    )
    results.data = {"folder": str(data.folder), "files": data.hashes}
    results.settings = settings.model_dump(mode="json")
    results.scenarios = len(scenarios)
    results.failed = failed
    results.played_now, results.judged_now = counts["played"], counts["judged"]
    return results
