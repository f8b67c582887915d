"""How judges are asked, declared once for every judge reward and job.

Every judge job of attunement (PERM, PereGRM, the RLPA baseline, writing
fixed criteria) samples an LLM judge the same way: a temperature, a token
budget, an answer format, bounded re-draws of unreadable answers, a seed, a
bound on calls in flight, and a choice of what the judge sees of the user.
Those fields are declared here once, with their bounds and help text, and
each job's config inherits them and changes only the defaults its paper sets:

- :class:`JudgeSettings`: the sampling settings every judge job shares
  (:class:`~attunement.judging.criteria.CriteriaConfig` builds on it);
- :class:`RewardSettings`: what a judge *reward* adds (``k`` samples per
  dimension, memories shown or not, what to judge of a reply that broke the
  format); PERM's :class:`~attunement.judging.perm.RewardConfig` (which
  PereGRM's config extends) and :class:`~attunement.judging.rlpa.RLPAConfig`
  build on it.

Every closed choice set of the judging package is one ``Literal`` here, used
by the configs, the CLI's options and the docs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from attunement.llm.options import MAX_TEMPERATURE, MIN_TEMPERATURE
from attunement.records import Dimension

# --------------------------------------------------------------------------- choice sets

#: the answer format asked of a judge; ``auto`` picks one per judge (see resolve_output)
OutputChoice = Literal["auto", "text", "json"]
#: the answer format a judge was asked for, and so the one its answer is read in
OutputFormat = Literal["text", "json"]
#: what a judge sees of the user (see :mod:`attunement.judging.templates`)
JudgeContext = Literal["authors", "full"]
#: what is judged when a reply broke the "# Analysis / # Response" format
Unformatted = Literal["judge_whole", "empty"]
#: what the resonation judge reads
ResonationOn = Literal["analysis", "response"]
#: the bystander's answer format (``same``: the ``output`` of the other judges)
BystanderOutput = Literal["json", "text", "same"]
#: what the length penalty counts
LengthOn = Literal["response", "completion"]
#: how PereGRM's criteria are written (see :mod:`attunement.judging.peregrm`)
CriteriaMode = Literal["shared", "per_reply", "inline", "fixed"]
#: which dimension definitions PereGRM's judges read
Definitions = Literal["training", "evaluation"]
#: which criteria sets a PereGRM scoring prompt shows in shared and per-reply mode
SetsShown = Literal["all", "dimension"]
#: what a reply whose judged text carries a verdict or fence shape gets (see
#: :mod:`attunement.judging.injections`): the reward's minimum with no judge call,
#: the judges' verdict as usual, or no reward (unscorable)
VerdictInReply = Literal["minimum", "judge", "unscorable"]

# --------------------------------------------------------------------------- defaults

#: judge sampling temperature of both papers' code
JUDGE_TEMPERATURE = 0.3
#: token budget of one judge answer
JUDGE_MAX_TOKENS = 1024
#: fresh draws for a sample whose answer cannot be read
MAX_RESAMPLES = 2
#: default maxLength of a free-text JSON field (characters): a small model given
#: no bound writes until its token budget and leaves the object unterminated
JSON_TEXT_CHARS = 400
#: the most judge samples one dimension may ask for
MAX_K = 64

Temperature = Annotated[
    float,
    Field(ge=MIN_TEMPERATURE, le=MAX_TEMPERATURE, description="judge sampling temperature"),
]
JudgeSamples = Annotated[
    int, Field(ge=1, le=MAX_K, description="judge samples per dimension, averaged")
]


class JudgeSettings(BaseModel):
    """How a judge is sampled: shared by every judge job. Defaults follow the papers."""

    model_config = ConfigDict(extra="forbid")

    temperature: Temperature = JUDGE_TEMPERATURE
    max_tokens: int = Field(JUDGE_MAX_TOKENS, ge=16, description="token budget of one judge answer")
    output: OutputChoice = Field(
        "auto",
        description="judge answer format: 'text' (the answer lines the papers ask for: "
        "Score:, \\boxed{}, Total Score, ...), 'json' (schema-constrained), 'auto' (json "
        "where the backend enforces the schema itself, e.g. the embedded model; text "
        "otherwise)",
    )
    max_resamples: int = Field(
        MAX_RESAMPLES, ge=0, description="fresh draws for samples whose answer cannot be read"
    )
    json_text_chars: int = Field(
        JSON_TEXT_CHARS,
        ge=20,
        description="maxLength of free-text fields in JSON answers "
        "(small local models otherwise write until the limit)",
    )
    seed: int | None = Field(0, description="base seed; sample i uses a seed derived from it")
    max_concurrency: int | None = Field(
        None, ge=1, description="judge calls in flight; None: the judge's max_concurrency"
    )
    judge_context: JudgeContext = Field(
        "authors",
        description="what the judges see of the user: 'authors' (what the authors' judges "
        "saw: profile, memory values, situation text); 'full' (also Big Five, topics, memory "
        "labels, category, emotion)",
    )


class RewardSettings(JudgeSettings):
    """What every judge *reward* adds to the sampling settings."""

    k: JudgeSamples = 1
    include_memories: bool = Field(True, description="show the user's memories to the judges")
    unformatted: Unformatted = Field(
        "judge_whole",
        description="a reply that broke the '# Analysis / # Response' format: "
        "'judge_whole' judges its whole text; 'empty' judges it as an empty reply",
    )
    verdict_in_reply: VerdictInReply = Field(
        "minimum",
        description="a reply whose judged text carries verdict-shaped text (Score: N, "
        "\\boxed{N}, a JSON verdict, a bystander line) or a fence or heading look-alike: "
        "'minimum' gives it the reward's minimum without calling a judge; 'judge' judges "
        "it as usual; 'unscorable' gives it no reward",
    )

    @property
    def dimensions(self) -> tuple[Dimension, ...]:
        """The dimensions this reward's judges score, in the order they are reported."""
        raise NotImplementedError

    @property
    def term_names(self) -> tuple[str, ...]:
        """The additive terms of the reward, in the order they are reported."""
        raise NotImplementedError
