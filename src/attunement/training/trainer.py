"""What GRPO and SFT runs share: TRL's config, the run's manifest, train-then-save.

Both trainers build TRL's config from the same settings (:func:`trainer_args`:
the optimiser schedule, checkpoints every ``save_steps``, logging every step,
the CPU rules, then the ``trl`` table, which may set anything attunement does
not manage), record the same facts about a run (:func:`start_manifest`) and end
the same way (:func:`train_and_save`: train from the last checkpoint, write
the manifest whatever happened, save the merged policy under ``final/``).
Each trainer adds only what is its own (GRPO: groups, the reward; SFT: the
completion-only loss).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attunement.jsonl import file_sha256, write_manifest
from attunement.training.config import TrainSettings, checkpointing, resolved_bf16, warmup
from attunement.training.models import save_policy
from attunement.training.run import RunFolder, read_metrics


@dataclass(frozen=True)
class TrainResult:
    """Where a finished run put things, and what it did."""

    out: Path
    final: Path
    steps: int
    resumed_from: Path | None
    metrics: Path
    left_out: list[str]


def package_versions() -> dict[str, str]:
    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def trainer_args(
    settings: TrainSettings, run: RunFolder, *, device: str, show_bar: bool, **own: Any
) -> dict[str, Any]:
    """The keyword arguments of a TRL config: the shared settings, the trainer's
    ``own`` ones, the device's rules, then the ``trl`` table."""
    kwargs: dict[str, Any] = {
        "output_dir": str(run.checkpoints),
        "learning_rate": settings.learning_rate,
        "per_device_train_batch_size": settings.per_device_train_batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "num_train_epochs": settings.num_train_epochs,
        "max_steps": settings.max_steps,
        "lr_scheduler_type": settings.lr_scheduler_type,
        **warmup(settings),
        **own,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": settings.save_steps,
        "save_total_limit": settings.save_total_limit,
        "seed": settings.seed,
        "use_cpu": device == "cpu",
        "bf16": resolved_bf16(settings, device),
        "report_to": settings.report_to or "none",
        "disable_tqdm": not show_bar,
    }
    kwargs.update(checkpointing(settings, device))
    kwargs.update(settings.trl)
    return kwargs


def trl_config(config_class: type, kwargs: dict[str, Any]) -> Any:
    """``config_class(**kwargs)``; an unknown field (from the ``trl`` table) is a
    settings error, not a crash."""
    try:
        return config_class(**kwargs)
    except TypeError as exc:
        raise ValueError(f"trl settings: {exc}") from None


def start_manifest(
    command: str,
    settings: TrainSettings,
    run: RunFolder,
    *,
    model_path: Path,
    device: str,
    bf16: bool,
    checkpoint: Path | None,
    **own: Any,
) -> dict[str, Any]:
    """Write the manifest of a run as it starts (``status: running``, with the
    trainer's ``own`` facts) and return it for :func:`train_and_save` to complete."""
    manifest = {
        "command": command,
        "status": "running",
        "out": str(run.root),
        "data": str(settings.data),
        "data_sha256": file_sha256(settings.data),
        **own,
        "model": settings.model,
        "model_path": str(model_path),
        "device": device,
        "bf16": bf16,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "packages": package_versions(),
    }
    write_manifest(run.manifest, **manifest)
    return manifest


def train_and_save(
    trainer: Any,
    tokenizer: Any,
    run: RunFolder,
    manifest: dict[str, Any],
    *,
    lora: bool,
    checkpoint: Path | None,
    left_out: list[str],
    on_stop: Callable[[], dict[str, Any]] | None = None,
) -> TrainResult:
    """Train (resuming from ``checkpoint``), then save the policy under ``run.final``.

    The manifest is written when training stops, finished or not (with what
    ``on_stop`` adds, e.g. the reward's manifest), and again with the saved
    policy's spec once it is saved.
    """
    status = "failed"
    extra: dict[str, Any] = {}
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        status = "finished"
    finally:
        if on_stop is not None:
            extra = on_stop()
        state = {**manifest, "status": status, **extra, "steps": trainer.state.global_step}
        write_manifest(run.manifest, **state)
    model = trainer.accelerator.unwrap_model(trainer.model)
    final = save_policy(model, tokenizer, run.final, adapter_out=run.adapter if lora else None)
    write_manifest(
        run.manifest,
        **state,
        final=str(final),
        policy_spec=f"hf:{final}",
        metric_rows=len(read_metrics(run.metrics)),
    )
    return TrainResult(
        out=run.root,
        final=final,
        steps=trainer.state.global_step,
        resumed_from=checkpoint,
        metrics=run.metrics,
        left_out=left_out,
    )
