"""The SAGE benchmark: a policy talks with SAGE's 100 simulated users.

Run as SAGE runs it: the profile's ``first_talk`` opens, the tested model
answers under SAGE's system prompt with the whole talk as chat turns, SAGE's
simulator (its two prompts) reacts and replies, the emotion starts at 40 and
moves by clamped changes, and the talk ends at S or F, on a farewell word, or
after 10 user messages (the reply to the 10th is not assessed). A talk's
score is its final emotion; the benchmark's score is their mean over the
profiles (0-100), the figure of the Sentient leaderboard.

**Comparable only under the same simulator.** The leaderboard's simulator
(DeepSeek-V3 among others) decides every number; :class:`SageResult` names
the simulator and says so. Two more differences are counted, never hidden:
an analysis attunement cannot read after its retries makes the talk
unscorable (SAGE retries forever and reads the first number it finds), and a
change copied from the tested model's reply is refused.

:func:`sage_random_policy` is the floor to read a score against: a policy
that answers with other users' opening lines.

Talks are written by :func:`attunement.dialogue.converse`: resumable per turn,
cached through the models, with a manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from attunement.benchmarks.sage.data import SageData, SageProfile
from attunement.benchmarks.sage.simulator import SageSimulator
from attunement.dialogue import (
    MAX_USER_TURNS,
    ConverseReport,
    ConverseSettings,
    DialogueScore,
    DialogueSummary,
    RandomPolicy,
    SimulatedUser,
    SimulatorSettings,
    SystemPromptAssistant,
    converse,
    max_assessments,
    read_dialogues,
    score_dialogue,
    summarize_dialogues,
)
from attunement.llm import StandInNote, stand_in_note
from attunement.llm.base import ChatModel
from attunement.policy import GenerationSettings
from attunement.records import Example, Persona

SAGE_LANGUAGE = "zh"
#: the number of profiles SAGE publishes; a partial run is not a leaderboard figure
SAGE_PROFILES = 100


def sage_user(profile: SageProfile, data: SageData) -> SimulatedUser:
    """The simulated user of one profile: its first talk opens, its task is the
    hidden need; the assistant side and judges see the profile as the persona."""
    return SimulatedUser(
        user_id=profile.id,
        source="sage",
        language=SAGE_LANGUAGE,
        opening=profile.first_talk,
        hidden_need=profile.task,
        example=Example(
            example_id=profile.id,
            user_id=profile.id,
            query=profile.first_talk,
            persona=Persona(profile=profile.player),
            language=SAGE_LANGUAGE,
        ),
        profile={
            "player": profile.player,
            "scene": profile.scene,
            "character": profile.main_cha,
            "task": profile.task,
        },
        farewells=list(data.reference.farewells),
    )


def sage_users(data: SageData, *, limit: int | None = None) -> list[SimulatedUser]:
    """The simulated users of the first ``limit`` profiles (all by default)."""
    profiles = data.profiles[:limit] if limit else data.profiles
    return [sage_user(p, data) for p in profiles]


def sage_random_policy(data: SageData, *, seed: int = 0) -> RandomPolicy:
    """The random baseline: each reply is another profile's opening line."""
    return RandomPolicy([p.first_talk for p in data.profiles], seed=seed)


class SageSettings(BaseModel):
    """What may vary in a SAGE run: sampling, retries, concurrency, how many profiles.
    The turn cap, thresholds and prompts are SAGE's and are not settings."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0.0, le=2.0, description="tested model temperature")
    max_tokens: int = Field(1024, ge=1, description="tested model token budget per reply")
    seed: int = 0
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    concurrency: int | None = Field(None, ge=1, description="talks in flight")
    limit: int | None = Field(None, ge=1, description="first N profiles only (not comparable)")

    def converse_settings(self) -> ConverseSettings:
        return ConverseSettings(
            policy=GenerationSettings(
                memory_mode="none",
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                seed=self.seed,
            ),
            simulator=self.simulator,
            max_turns=MAX_USER_TURNS,
            assess_last_reply=False,
            concurrency=self.concurrency,
        )


class SageResult(BaseModel):
    """A SAGE run's figures, with what they are comparable with."""

    policy: str
    simulator: str
    profiles: int
    score: float | None = Field(description="mean final emotion over scorable talks (0-100)")
    summary: DialogueSummary
    scores: list[DialogueScore]
    comparable: bool = Field(
        description="all 100 profiles, every talk finished and scorable (same simulator needed too)"
    )
    note: str
    report: ConverseReport
    stand_in_judge: StandInNote = None


def comparability_note(
    *, simulator: str, profiles: int, summary: DialogueSummary, failed: int
) -> str:
    """What a SAGE score can be compared with, in one paragraph."""
    parts = [
        (
            f"SAGE score with simulator {simulator!r}: comparable with the Sentient "
            "leaderboard only under the same simulator model (the leaderboard's used "
            "DeepSeek-V3 among others)."
        )
    ]
    if profiles != SAGE_PROFILES:
        parts.append(f"Only {profiles} of SAGE's {SAGE_PROFILES} profiles were run.")
    if summary.unscorable:
        parts.append(
            f"{summary.unscorable} talk(s) were unscorable (the simulator's analysis could "
            "not be read after its retries) and are left out of the mean."
        )
    if failed:
        parts.append(f"{failed} talk(s) failed (model calls) and will resume on the next run.")
    return " ".join(parts)


async def run_sage(
    data: SageData,
    policy: ChatModel,
    simulator_model: ChatModel,
    out: str | Path,
    settings: SageSettings | None = None,
    *,
    show_progress: bool | None = None,
) -> SageResult:
    """Talk with every SAGE profile (or the first ``settings.limit``) and score."""
    settings = settings or SageSettings()
    users = sage_users(data, limit=settings.limit)
    report = await converse(
        users,
        policy,
        simulator_model,
        out,
        settings.converse_settings(),
        simulator=SageSimulator(data.reference),
        assistant=SystemPromptAssistant(data.reference.npc_system, name="sage-npc"),
        show_progress=show_progress,
    )
    wanted = {u.user_id for u in users}
    steps = max_assessments(MAX_USER_TURNS, assess_last_reply=False)
    scores = [score_dialogue(d, steps=steps) for d in read_dialogues(out) if d.user_id in wanted]
    summary = summarize_dialogues(scores)
    failed = len(report.failed)
    return SageResult(
        policy=policy.name,
        simulator=simulator_model.name,
        profiles=len(users),
        score=summary.mean_final_emotion,
        summary=summary,
        scores=scores,
        comparable=len(users) == SAGE_PROFILES and not failed and not summary.unscorable,
        note=comparability_note(
            simulator=simulator_model.name, profiles=len(users), summary=summary, failed=failed
        ),
        report=report,
        stand_in_judge=stand_in_note(simulator_model),
    )


def sage_manifest(data: SageData) -> dict[str, Any]:
    """The SAGE files a run read, by digest (for a report's provenance line)."""
    return {"folder": str(data.folder), "profiles": len(data.profiles), **data.reference.digests}
