"""``attune train sft``: the SFT baseline, TRL's ``SFTTrainer`` on ``attune distill`` rows.

The rows are conversational prompt-completion pairs (``messages`` rows are
split into the same), and the loss is on the completion only
(``completion_only_loss=True``): the student learns the teacher's reply, not
the prompt. A row longer than ``max_length`` tokens is left out and reported
rather than truncated (TRL keeps the start, which would cut the reply).

The run folder is the one GRPO uses (``config.json``, ``manifest.json``,
``metrics.jsonl``, ``checkpoints/``, ``final/``, ``adapter/``), and a re-run
resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from attunement.training.config import SFTSettings, resolve_device
from attunement.training.data import prompt_record, read_sft_rows
from attunement.training.models import load_model, load_tokenizer, resolve_model
from attunement.training.run import RunFolder, make_recorder
from attunement.training.trainer import (
    TrainResult,
    start_manifest,
    train_and_save,
    trainer_args,
    trl_config,
)


def row_tokens(tokenizer: Any, row: dict[str, list[dict[str, str]]]) -> int:
    encoded = tokenizer.apply_chat_template(
        row["prompt"] + row["completion"], tokenize=True, return_dict=True
    )
    return len(encoded["input_ids"])


def sft_args(
    settings: SFTSettings, run: RunFolder, *, device: str, show_bar: bool
) -> dict[str, Any]:
    """The keyword arguments of TRL's ``SFTConfig`` for these settings."""
    return trainer_args(
        settings,
        run,
        device=device,
        show_bar=show_bar,
        max_length=settings.max_length,
        completion_only_loss=True,
    )


def sft_config(settings: SFTSettings, run: RunFolder, *, device: str, show_bar: bool) -> Any:
    """TRL's ``SFTConfig`` for these settings."""
    from trl import SFTConfig

    return trl_config(SFTConfig, sft_args(settings, run, device=device, show_bar=show_bar))


def train_sft(
    settings: SFTSettings,
    out: str | Path,
    *,
    progress: bool | None = None,
    cache_dir: Path | None = None,
) -> TrainResult:
    """Fine-tune a policy on SFT rows; see the module docstring."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTTrainer

    run = RunFolder(Path(out))
    rows = read_sft_rows(settings.data)
    device = resolve_device(settings.device)
    model_path = resolve_model(settings.model, cache_dir=cache_dir)
    tokenizer = load_tokenizer(model_path)
    kept: list[dict] = []
    too_long: list[int] = []  # line numbers
    for line, row in enumerate(rows, start=1):
        if row_tokens(tokenizer, row) <= settings.max_length:
            kept.append(row)
        else:
            too_long.append(line)
    if not kept:
        raise ValueError(
            f"{settings.data}: every row is longer than max_length={settings.max_length} tokens"
        )
    if too_long:
        print(
            f"note: {len(too_long)} of {len(rows)} rows are longer than max_length="
            f"{settings.max_length} tokens and are left out (lines "
            f"{', '.join(map(str, too_long[:5]))}{', ...' if len(too_long) > 5 else ''})",
            file=sys.stderr,
        )

    show_bar = sys.stderr.isatty() if progress is None else progress
    args = sft_config(settings, run, device=device, show_bar=show_bar)
    checkpoint = run.prepare(json.loads(settings.model_dump_json()))
    manifest = start_manifest(
        "train sft",
        settings,
        run,
        model_path=model_path,
        device=device,
        bf16=args.bf16,
        checkpoint=checkpoint,
        rows=len(rows),
        rows_used=len(kept),
        left_out_long_rows=too_long,
        **prompt_record(settings.data),
    )
    recorder = make_recorder(
        run,
        panels=[("loss", "loss"), ("mean_token_accuracy", "token accuracy")],
        title="SFT",
        progress_fields=[("loss", "loss", 4), ("mean_token_accuracy", "acc", 3)],
        print_progress=not show_bar,
        plot=True,
    )
    trainer = SFTTrainer(
        model=load_model(model_path, bf16=bool(args.bf16)),
        args=args,
        train_dataset=Dataset.from_list(kept),
        processing_class=tokenizer,
        callbacks=[recorder],
        peft_config=settings.lora.peft_config() if settings.lora else None,
    )
    if not show_bar:
        trainer.remove_callback(PrinterCallback)
    return train_and_save(
        trainer,
        tokenizer,
        run,
        manifest,
        lora=bool(settings.lora),
        checkpoint=checkpoint,
        left_out=[str(i) for i in too_long],
    )
