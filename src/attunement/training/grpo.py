"""``attune train grpo``: GRPO with TRL's ``GRPOTrainer`` on one of our rewards.

The steps, each a function below:

1. read and check the examples, and the reward settings against them (before
   any model is loaded or judge called);
2. resolve the policy checkpoint (``smollm2`` is converted once and cached);
3. build the prompts with the policy's reply prompt, leaving out the ones
   longer than ``max_prompt_length``;
4. prepare the run folder (resume check, config);
5. build TRL's ``GRPOConfig`` from the settings, refuse a batch layout that
   would split a prompt's group across processes, build the trainer with a
   :class:`~attunement.training.reward.GRPOReward` (which looks examples up
   by id and feeds the hacking monitor), the run recorder and, with
   ``stop_on_hacking``, the callback that stops on an alert;
6. train (from the last checkpoint when there is one) with TRL's all-None
   warning redacted, close the judge on TRL's event loop, save the merged
   policy to ``final/`` and write the manifest.

A preset (``--preset perm-paper``) is printed at the start, value by value
with its source (:mod:`attunement.training.presets`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import deque
from pathlib import Path
from typing import Any

from attunement.dialogue import users_from_examples
from attunement.judging.registry import parse_reward_name
from attunement.policy import GenerationSettings, reply_prompt_version
from attunement.records import Example
from attunement.training.config import GRPOSettings, resolve_device
from attunement.training.data import build_grpo_rows, read_examples, redacted_trl_warnings
from attunement.training.models import TokenizerCounter, load_model, load_tokenizer, resolve_model
from attunement.training.monitor import MonitorReport, MonitorSettings
from attunement.training.multiturn import DialogueReward, MultiTurnRollout
from attunement.training.presets import preset_lines
from attunement.training.reward import GRPOReward, check_examples, dimension_names
from attunement.training.run import Panel, RunFolder, draw, make_recorder
from attunement.training.trainer import (
    TrainResult,
    start_manifest,
    train_and_save,
    trainer_args,
    trl_config,
)


def grpo_args(
    settings: GRPOSettings, run: RunFolder, *, device: str, show_bar: bool
) -> dict[str, Any]:
    """The keyword arguments of TRL's ``GRPOConfig`` for these settings (paper
    defaults, CPU rules, then the ``trl`` table)."""
    return trainer_args(
        settings,
        run,
        device=device,
        show_bar=show_bar,
        num_generations=settings.num_generations,
        beta=settings.resolved_beta(device),
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        remove_unused_columns=False,
    )


def grpo_config(settings: GRPOSettings, run: RunFolder, *, device: str, show_bar: bool) -> Any:
    """TRL's ``GRPOConfig`` for these settings."""
    from trl import GRPOConfig

    return trl_config(GRPOConfig, grpo_args(settings, run, device=device, show_bar=show_bar))


def check_groups_stay_whole(args: Any, rows: int) -> None:
    """Refuse a batch layout that puts one prompt's completions on two processes.

    Each process scores its own slice of the generation batch; the slice holds
    whole groups only if its size is a multiple of ``num_generations``.
    """
    local = args.generation_batch_size // max(1, args.world_size)
    if local % args.num_generations:
        raise ValueError(
            f"each process generates {local} completions per batch "
            f"(per_device_train_batch_size x steps_per_generation), not a multiple of "
            f"num_generations={args.num_generations}: a prompt's group would be split across "
            "processes and scored in pieces. Make per_device_train_batch_size a multiple of "
            "num_generations."
        )
    prompts_per_batch = args.generation_batch_size // args.num_generations
    if rows < prompts_per_batch:
        raise ValueError(
            f"only {rows} usable prompts, but one generation batch needs "
            f"{prompts_per_batch} (generation batch {args.generation_batch_size} / "
            f"{args.num_generations} generations)"
        )


def plot_panels(kind: str, dimensions: tuple[str, ...]) -> list[tuple[str, str]]:
    scale = {
        "bystander": " (0-100)",
        "profile_match": " (0-1)",
        "would_continue": " (0-1)",
        "final_emotion": " (0-100)",
        "success": " (0-1)",
        "turns": "",
    }
    return (
        [("reward", "reward (mean)")]
        + [(f"rewards/{kind}/{d}", f"{d}{scale.get(d, ' (1-5)')}") for d in dimensions]
        + [
            (f"rewards/{kind}/unscorable_frac", "unscorable fraction"),
            ("completions/mean_length", "completion tokens (mean)"),
        ]
    )


def monitor_panels(monitor: MonitorSettings) -> list[Panel]:
    """The panels of ``monitor.png``: shares of replies, the correlation, probe gains."""
    shares = tuple(f"monitor/{k}" for k in ("verdict_share", "fence_share", "recital_share")) + (
        "monitor/format_break_rate",
    )
    panels: list[Panel] = [
        (shares, "share of replies"),
        ("monitor/reward_length_corr", "reward-length correlation (within groups)"),
    ]
    if monitor.samples and monitor.probes:
        probes = tuple(f"monitor/probe/{p}" for p in monitor.probes)
        panels.append((probes, "probe gain (reward)"))
    panels.append(("monitor/hacking", "alert (1: a check trips)"))
    return panels


def progress_fields(kind: str, dimensions: tuple[str, ...]) -> list[tuple[str, str, int]]:
    return (
        [("reward", "reward", 3)]
        + [(f"rewards/{kind}/{d}", d, 2) for d in dimensions]
        + [
            (f"rewards/{kind}/unscorable_frac", "unscorable", 2),
            (f"rewards/{kind}/seconds", "judge s", 1),
        ]
    )


def prompt_rows(
    settings: GRPOSettings, examples: list[Example], tokenizer: Any
) -> tuple[list[dict], list[str]]:
    """Step 3: the GRPO rows that fit ``max_prompt_length`` and the ids left out (said
    on the terminal too)."""
    rows, too_long = build_grpo_rows(
        examples,
        tokenizer,
        memory=settings.memory,
        persona=settings.persona,
        situation=settings.situation,
        seed=settings.seed,
        max_prompt_length=settings.max_prompt_length,
    )
    if too_long:
        print(
            f"note: {len(too_long)} of {len(examples)} prompts are longer than "
            f"max_prompt_length={settings.max_prompt_length} tokens and are left out "
            f"(e.g. {', '.join(too_long[:3])}); the full list is in manifest.json",
            file=sys.stderr,
        )
    return rows, too_long


def train_grpo(
    settings: GRPOSettings,
    out: str | Path,
    *,
    progress: bool | None = None,
    cache_dir: Path | None = None,
) -> TrainResult:
    """Train a policy with GRPO on ``settings.reward``; see the module docstring."""
    run = RunFolder(Path(out))
    examples = read_examples(settings.data)
    if settings.multi_turn is None or settings.multi_turn.turn_weight > 0:
        check_examples(settings.reward, examples)
    kind, _ = parse_reward_name(settings.reward.reward)
    dims = dimension_names(settings.reward.config())
    if settings.multi_turn is not None:
        users_from_examples(examples)  # every example must be a user (a category): fail now
        kind, dims = "dialogue", ("final_emotion", "success", "turns")

    if settings.preset is not None:
        for line in preset_lines(settings.preset, settings):
            print(line, file=sys.stderr)
    device = resolve_device(settings.device)
    model_path = resolve_model(settings.model, cache_dir=cache_dir)
    tokenizer = load_tokenizer(model_path)
    rows, too_long = prompt_rows(settings, examples, tokenizer)
    show_bar = sys.stderr.isatty() if progress is None else progress
    args = grpo_config(settings, run, device=device, show_bar=show_bar)
    check_groups_stay_whole(args, len(rows))
    checkpoint = run.prepare(json.loads(settings.model_dump_json()))
    manifest = start_manifest(
        "train grpo",
        settings,
        run,
        model_path=model_path,
        device=device,
        bf16=args.bf16,
        checkpoint=checkpoint,
        examples=len(examples),
        prompts=len(rows),
        left_out_long_prompts=too_long,
        beta=args.beta,
        reply_prompt=reply_prompt_version(),
        policy_prompt=settings.prompt_context().model_dump(mode="json"),
        reward_spec=json.loads(settings.reward.model_dump_json()),
        preset=settings.preset,
    )

    watch = MonitorLog(settings.monitor)
    trainer, reward = build_trainer(
        settings,
        args,
        run,
        model_path,
        tokenizer,
        rows,
        examples,
        kind=kind,
        dims=dims,
        print_progress=not show_bar,
        watch=watch,
    )

    def stopped() -> dict[str, Any]:
        reward_manifest = reward.manifest()
        close_reward(trainer, reward)
        if settings.plot:
            draw(run, panels=plot_panels(kind, dims), title=f"GRPO on {settings.reward.reward}")
            if settings.monitor.every:
                draw(
                    run,
                    panels=monitor_panels(settings.monitor),
                    title="hacking monitor",
                    png=run.monitor_plot,
                )
        return {"reward": reward_manifest, **watch.manifest()}

    with redacted_trl_warnings():
        return train_and_save(
            trainer,
            tokenizer,
            run,
            manifest,
            lora=bool(settings.lora),
            checkpoint=checkpoint,
            left_out=too_long,
            on_stop=stopped,
        )


class MonitorLog:
    """The monitor's side of a run: warning lines waiting for ``metrics.jsonl``, every
    warning of the run for the manifest, and whether a stop was asked for."""

    def __init__(self, settings: MonitorSettings):
        self.settings = settings
        self.pending: deque[str] = deque()
        self.warnings: list[str] = []
        self.stopped_at: int | None = None

    def on_report(self, report: MonitorReport) -> None:
        """Called by the reward (on TRL's event loop thread) with each report."""
        self.pending.extend(report.warnings)
        self.warnings.extend(report.warnings)

    def row_extra(self) -> dict[str, Any]:
        """What the recorder adds to the step's row in ``metrics.jsonl``."""
        lines = []
        while self.pending:
            lines.append(self.pending.popleft())
        return {"monitor_warnings": lines} if lines else {}

    def manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"monitor_warnings": self.warnings}
        if self.stopped_at is not None:
            out["status"] = "stopped_on_hacking"
            out["stopped_at_step"] = self.stopped_at
        return out


def stop_on_hacking(watch: MonitorLog) -> Any:
    """A ``TrainerCallback`` that saves a checkpoint and stops when a step's logs carry
    ``monitor/hacking`` above 0. TRL averages the value over processes before any
    callback sees it, so every process decides the same."""
    from transformers import TrainerCallback

    class StopOnHacking(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and (logs.get("monitor/hacking") or 0) > 0:
                control.should_save = True
                control.should_training_stop = True
                watch.stopped_at = state.global_step

    return StopOnHacking()


def build_trainer(
    settings: GRPOSettings,
    args: Any,
    run: RunFolder,
    model_path: Path,
    tokenizer: Any,
    rows: list[dict],
    examples: list[Example],
    *,
    kind: str,
    dims: tuple[str, ...],
    print_progress: bool,
    watch: MonitorLog | None = None,
) -> tuple[Any, Any]:
    """The ``GRPOTrainer`` with our reward and run recorder (printer callback removed when
    progress goes to plain lines); with ``multi_turn``, TRL's rollout plays talks with
    simulated users and the reward is each talk's (:mod:`attunement.training.multiturn`);
    the hacking stop when asked for."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOTrainer

    model = load_model(model_path, bf16=bool(args.bf16))
    watch = watch or MonitorLog(settings.monitor)
    reward, rollout = grpo_reward(settings, run, model_path, tokenizer, rows, examples, watch)
    recorder = make_recorder(
        run,
        panels=plot_panels(kind, dims),
        title=f"GRPO on {settings.reward.reward}",
        progress_fields=progress_fields(kind, dims),
        print_progress=print_progress,
        plot=settings.plot,
        row_extra=watch.row_extra,
    )
    callbacks = [recorder]
    if settings.monitor.every and settings.monitor.stop_on_hacking:
        callbacks.append(stop_on_hacking(watch))
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=callbacks,
        peft_config=settings.lora.peft_config() if settings.lora else None,
        rollout_func=rollout,
    )
    if print_progress:
        trainer.remove_callback(PrinterCallback)
    return trainer, reward


def grpo_reward(
    settings: GRPOSettings,
    run: RunFolder,
    model_path: Path,
    tokenizer: Any,
    rows: list[dict],
    examples: list[Example],
    watch: MonitorLog,
) -> tuple[Any, Any]:
    """The reward function and TRL's rollout function (None: TRL's own generation)."""
    if settings.multi_turn is not None:
        rollout = MultiTurnRollout(
            rows,
            settings.multi_turn,
            GenerationSettings(
                memory_mode=settings.memory,
                temperature=settings.temperature,
                max_tokens=settings.max_completion_length,
                seed=settings.seed,
            ),
            tokenizer,
            num_generations=settings.num_generations,
            reward_spec=settings.reward,
            record=run.root / "dialogues.jsonl",
            abort_after=settings.abort_after,
            examples=examples,
        )
        return DialogueReward(rollout), rollout
    reward = GRPOReward(
        settings.reward,
        num_generations=settings.num_generations,
        examples=examples,
        token_counter=TokenizerCounter(tokenizer, model_path.name),
        deadline=settings.judge_deadline,
        abort_after=settings.abort_after,
        policy=f"hf:{model_path.name}",
        record=run.breakdowns if settings.record_breakdowns else None,
        monitor=settings.monitor,
        on_report=watch.on_report,
    )
    return reward, None


def close_reward(trainer: Any, reward: Any) -> None:
    """Close the judge on the event loop TRL ran the reward on."""
    loop = getattr(trainer, "async_loop", None)
    if loop is not None and loop.is_running():
        asyncio.run_coroutine_threadsafe(reward.aclose(), loop).result(timeout=60)
    else:
        asyncio.run(reward.aclose())
