"""The authors' training recipes as presets: ``attune train grpo --preset perm-paper``.

attunement's own defaults are chosen for one machine (one prompt's group per
step, no warmup); the papers trained with other launch settings. A preset
sets every hyperparameter of an author's launch script that has a meaning on
TRL, each with the file and line it comes from, so a reproduction is one flag
and the printout says where every number came from. Values a launch script
does not set are marked as such, with the default that then applied, and
values that cannot be known from the published code are said to be unknown
rather than filled in.

Layering, lowest first: attunement's defaults, the preset, ``--config FILE``,
the options. A preset's reward settings apply only to its own reward kind
(``--preset peregrm-paper --reward rlpa`` trains the RLPA baseline on the
PereGRM recipe, with RLPA's own settings). A preset's LoRA values apply only
when ``--lora`` is given: both authors trained all weights.

Step layout on one process: the authors spread 8 prompts x 8 completions = 64
completions per optimizer step over 4 GPUs of 4 completions each (PERM: 4
accumulation steps; PereGRM: verl's mini-batch of 8 prompts, one update per
batch). Here that is 4 completions per device step and 16 accumulation
steps, so one generation batch of 64 completions (whole groups) feeds one
optimizer step, as theirs did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

PresetName = Literal["perm-paper", "peregrm-paper"]
PRESET_NAMES: tuple[PresetName, ...] = get_args(PresetName)

PERM_REPO = "github.com/ZhengWwwq/PERM"
PEREGRM_REPO = "github.com/ZhengWwwq/PersonalizedEmpathy"


@dataclass(frozen=True)
class Setting:
    """One value of a preset and where it comes from (``value`` None: not set)."""

    field: str
    value: Any
    source: str


@dataclass(frozen=True)
class Preset:
    """A recipe: training settings, the reward and its settings, LoRA values, and what
    the published code leaves unknown."""

    name: PresetName
    title: str
    files: str
    settings: tuple[Setting, ...]
    reward: str
    reward_settings: tuple[Setting, ...]
    lora: tuple[Setting, ...] = ()
    unknown: tuple[str, ...] = field(default_factory=tuple)

    def document(self) -> dict[str, Any]:
        """The preset as a settings document (the layer under ``--config``)."""
        doc: dict[str, Any] = {"preset": self.name}
        doc.update({s.field: s.value for s in self.settings})
        doc["reward"] = {
            "reward": self.reward,
            "overrides": {s.field: s.value for s in self.reward_settings},
        }
        return doc

    def lora_defaults(self) -> dict[str, Any]:
        return {s.field: s.value for s in self.lora}


_ONE_PROCESS = (
    "8 prompts x 8 completions = 64 per optimizer step, as 4 per device step x 16 "
    "accumulation steps on one process"
)

PERM_PAPER = Preset(
    name="perm-paper",
    title="PERM (Qwen2.5-7B, TRL GRPOTrainer)",
    files=(
        f"{PERM_REPO}: perm/grpo_train.sh (launch), perm/grpo.py (defaults, reward terms), "
        "perm/empathy_judge.py (judge calls)"
    ),
    settings=(
        Setting("learning_rate", 1e-6, "grpo_train.sh --learning_rate 1e-6"),
        Setting("num_generations", 8, "grpo.py --num_generations default 8 (not overridden)"),
        Setting("per_device_train_batch_size", 4, "grpo_train.sh --per_device_train_batch_size 4"),
        Setting(
            "gradient_accumulation_steps",
            16,
            "grpo_train.sh: 4 GPUs x --gradient_accumulation_steps 4; " + _ONE_PROCESS,
        ),
        Setting("warmup_ratio", 0.1, "grpo_train.sh --warmup_ratio 0.1"),
        Setting("lr_scheduler_type", "linear", "not set: transformers' default schedule"),
        Setting("beta", 0.01, "grpo_train.sh --beta 0.01"),
        Setting("num_train_epochs", 1.0, "grpo_train.sh --epochs 1"),
        Setting("max_prompt_length", 1024, "grpo.py GRPOConfig(max_prompt_length=1024)"),
        Setting("max_completion_length", 1024, "grpo_train.sh --max_completion_length 1024"),
        Setting("temperature", 1.0, "not set: TRL's GRPOConfig default"),
        Setting("seed", 42, "grpo.py --seed default 42"),
        Setting("save_steps", 200, "grpo_train.sh --save_steps 200"),
        Setting("save_total_limit", 5, "grpo_train.sh --save_total_limit 5"),
    ),
    reward="perm",
    reward_settings=(
        Setting("aggregation", "harmonic", "grpo_train.sh --calculate_score_mode harmonic"),
        Setting("lambda_bys", 0.5, "grpo_train.sh --standby_reward_coef 0.5"),
        Setting("length_penalty", True, "grpo_train.sh --use_length_penalty"),
        Setting("length_limit", 768, "grpo_train.sh --length_penalty_limit 768"),
        Setting("length_coef", 0.001, "grpo_train.sh --length_penalty_coef 0.001"),
        Setting(
            "length_on",
            "completion",
            "grpo.py length_penalty_reward_func counts completion_ids (analysis included)",
        ),
        Setting("temperature", 0.3, "empathy_judge.py batch_generate_oai(temperature=0.3)"),
    ),
    lora=(
        Setting("r", 16, "grpo_train.sh --peft_r 16"),
        Setting("alpha", 32, "grpo_train.sh --peft_alpha 32"),
        Setting(
            "dropout",
            0.0,
            "grpo.py builds LoraConfig without --peft_dropout, so peft's default 0.0 applies",
        ),
        Setting(
            "target_modules",
            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            "grpo.py --target_modules default",
        ),
    ),
    unknown=(
        (
            "LoRA: grpo_train.sh does not pass --use_lora, so the authors' run trained all "
            "weights (DeepSpeed ZeRO-3); the LoRA values above apply only with --lora"
        ),
        "precision: deepspeed_zero3.yaml is not in the repository (bf16 or not is unknown)",
        "data: --num_train_samples 3000 (the first 3,000 training examples): give such a file",
        "judge: gpt-4o-mini in the launch script; give yours with --judge",
    ),
)

PEREGRM_PAPER = Preset(
    name="peregrm-paper",
    title="PereGRM (Qwen3-8B, verl GRPO)",
    files=(
        f"{PEREGRM_REPO}: train/train_llm.sh (launch), "
        "train/verl/utils/reward_score/peregrm_reward.py (reward)"
    ),
    settings=(
        Setting("learning_rate", 1e-6, "train_llm.sh actor.optim.lr=1e-6"),
        Setting("num_generations", 8, "train_llm.sh rollout.n=8"),
        Setting(
            "per_device_train_batch_size", 4, "train_llm.sh actor.ppo_micro_batch_size_per_gpu=4"
        ),
        Setting(
            "gradient_accumulation_steps",
            16,
            "train_llm.sh data.train_batch_size=8, ppo_mini_batch_size=8 (one update per "
            "batch); " + _ONE_PROCESS,
        ),
        Setting("warmup_ratio", 0.1, "train_llm.sh actor.optim.lr_warmup_steps_ratio=0.1"),
        Setting(
            "lr_scheduler_type",
            "constant_with_warmup",
            "not set: verl's default schedule, constant after the warmup (verl 0.9.1)",
        ),
        Setting(
            "beta",
            0.001,
            "train_llm.sh use_kl_loss=True, kl_loss_coef=0.001, kl_loss_type=low_var_kl "
            "(the k3 estimator TRL's KL term uses)",
        ),
        Setting("num_train_epochs", 1.0, "train_llm.sh trainer.total_epochs=1"),
        Setting(
            "max_prompt_length",
            512,
            "train_llm.sh data.max_prompt_length=512, filter_overlong_prompts=True (longer "
            "prompts left out, as here)",
        ),
        Setting("max_completion_length", 1024, "train_llm.sh data.max_response_length=1024"),
        Setting("temperature", 1.0, "not set: verl's rollout default (1.0 in verl 0.9.1)"),
        Setting("save_steps", 100, "train_llm.sh trainer.save_freq=100"),
    ),
    reward="peregrm@4",
    reward_settings=(
        Setting("lambda_bys", 0.5, "peregrm_reward.py STANDBY_COEFF default 0.5"),
        Setting("temperature", 0.3, "peregrm_reward.py judge calls at temperature 0.3"),
    ),
    unknown=(
        "k=4 judge samples per dimension: train_llm.sh exports GRM_TRIAL=4",
        (
            "LoRA: none, the authors trained all weights (FSDP); with --lora the adapter values "
            "are attunement's own"
        ),
        (
            "loss: verl's token-mean aggregation and clip 0.2 match TRL 1.16's defaults "
            "(loss_type 'dapo', epsilon 0.2); entropy_coeff=0 is TRL's behaviour"
        ),
        (
            "criteria: the authors' reward writes criteria inside each scoring call "
            "(--set criteria_mode=inline); attunement keeps one shared set per group and step"
        ),
        "seed: not set in train_llm.sh (verl's default applies); attunement's seed 0 is kept",
        "model: Qwen3-8B in the paper; judge: the JUDGE_MODEL variable; give --model and --judge",
    ),
)

PRESETS: dict[PresetName, Preset] = {p.name: p for p in (PERM_PAPER, PEREGRM_PAPER)}


def apply_preset(name: PresetName, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (the config file and options) over the preset ``name``.

    >>> out = apply_preset("perm-paper", {"learning_rate": 1e-5, "lora": {"r": 8}})
    >>> out["learning_rate"], out["warmup_ratio"], out["lora"]["r"], out["lora"]["dropout"]
    (1e-05, 0.1, 8, 0.0)
    """
    preset = PRESETS[name]
    out = preset.document()
    reward = dict(out.pop("reward"))
    out.update({k: v for k, v in doc.items() if k != "reward"})
    given = doc.get("reward") or {}
    if given.get("reward", reward["reward"]) == reward["reward"]:
        overrides = {**reward["overrides"], **(given.get("overrides") or {})}
        out["reward"] = {**reward, **given, "overrides": overrides}
    else:
        out["reward"] = dict(given)
    if doc.get("lora") is not None:
        out["lora"] = {**preset.lora_defaults(), **doc["lora"]}
    return out


def shown(value: Any) -> str:
    """A value as the printout and docs/training.md show it."""
    return ",".join(value) if isinstance(value, list) else str(value)


def preset_lines(name: PresetName, settings: Any) -> list[str]:
    """The printout of a preset at the start of a run: each value in effect, where the
    preset's value came from, and which ones the options changed."""
    preset = PRESETS[name]
    lines = [f"preset {name}: {preset.title}", f"  from {preset.files}"]
    config = settings.reward.config()
    rows = [("", s, getattr(settings, s.field)) for s in preset.settings]
    if settings.reward.reward == preset.reward:
        rows += [("reward.", s, getattr(config, s.field)) for s in preset.reward_settings]
    if settings.lora is not None:
        rows += [("lora.", s, getattr(settings.lora, s.field)) for s in preset.lora]
    for prefix, s, now in rows:
        changed = "" if now == s.value else f"  [changed from {shown(s.value)}]"
        lines.append(f"  {prefix}{s.field} = {shown(now)}  ({s.source}){changed}")
    lines.append(f"  reward = {settings.reward.reward}  (preset: {preset.reward})")
    lines += [f"  note: {text}" for text in preset.unknown]
    return lines
