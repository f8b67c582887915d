"""``attune train grpo|sft|merge``: train a policy on one machine with TRL.

Settings come from the defaults of :mod:`attunement.training.config` (the
papers'), then ``--config FILE`` (JSON or TOML, the fields of
``GRPOSettings``/``SFTSettings``; a run's own ``config.json`` works), then the
options. So every option that sets a field is built from that field, shows
the field's default, and counts only when given. The reward is configured
with the options every reward verb shares (:mod:`attunement.cli.reward_options`);
they override the ``reward`` table of the config file. ``--preset NAME`` puts an
author's recipe under the file and the options (:mod:`attunement.training.presets`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from attunement.cli.common import show, usage
from attunement.cli.options import (
    MEMORY_HELP,
    Bundle,
    ModelRun,
    ShownFlags,
    compose,
    field_option,
    fields_bundle,
    model_run,
    option,
    shown_options,
    verb,
    warn_if_stand_in,
)
from attunement.cli.paths import out_option, path_option
from attunement.cli.reward_options import RewardFlags, check_spec, reward_bundle
from attunement.configfile import parse_assignments, read_config_file
from attunement.judging import RewardSpec
from attunement.training.config import (
    GRPOSettings,
    LoraSettings,
    MultiTurnSettings,
    SFTSettings,
)
from attunement.training.monitor import MonitorSettings
from attunement.training.presets import apply_preset

HELP = "Train a policy: GRPO on a reward, SFT on distilled replies, LoRA merge."

#: the fields both trainers set from options, with their option names
_SHARED = (
    "data",
    "model",
    "max_steps",
    "num_train_epochs",
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "save_steps",
    "seed",
    "device",
    "report_to",
)
_DECLS = {
    "model": ("--model", "-m"),
    "num_train_epochs": ("--epochs",),
    "learning_rate": ("--lr", "--learning-rate"),
    "per_device_train_batch_size": ("--batch-size",),
    "gradient_accumulation_steps": ("--grad-accum",),
    "num_generations": ("--num-generations", "-G"),
    "preset": ("--preset",),
}
_HELPS = {
    "memory": MEMORY_HELP,
    "num_train_epochs": "Epochs over the training data.",
    "max_steps": "Stop after N steps (> 0 overrides --epochs).",
    "per_device_train_batch_size": "Completions (GRPO) or rows (SFT) per device and step.",
    "gradient_accumulation_steps": "Steps whose gradients are summed before an update.",
    "seed": "Seed of the data order, sampling and initialisation.",
    "max_completion_length": "Token budget of one completion.",
}


def _fields(model: type, *extra: str) -> Bundle:
    return fields_bundle(
        model,
        *_SHARED,
        *extra,
        unset=True,
        decls=_DECLS,
        helps=_HELPS,
        extra={"report_to": {"metavar": "LOGGER"}, "model": {"metavar": "SPEC"}},
    )


def _lora(**v: Any) -> dict[str, Any] | None:
    """The ``lora`` table the options ask for (None: no LoRA option given)."""
    fields = {k: v[k] for k in ("r", "alpha") if v[k] is not None}
    if v["targets"] is not None:
        names = [t.strip() for t in v["targets"].split(",") if t.strip()]
        fields["target_modules"] = "all-linear" if names == ["all-linear"] else names
    return fields if v["lora"] or fields else None


LORA = Bundle(
    (
        option(
            "lora",
            bool,
            typer.Option(False, "--lora", help="Train a LoRA adapter (merged on save)."),
        ),
        option("r", int | None, field_option(LoraSettings, "r", "--lora-r", unset=True)),
        option(
            "alpha", int | None, field_option(LoraSettings, "alpha", "--lora-alpha", unset=True)
        ),
        option(
            "targets",
            str | None,
            field_option(
                LoraSettings,
                "target_modules",
                "--lora-targets",
                unset=True,
                help="Comma-separated module names to adapt, or all-linear.",
            ),
        ),
    ),
    _lora,
)


MONITOR = fields_bundle(
    MonitorSettings,
    "every",
    "samples",
    "stop_on_hacking",
    unset=True,
    decls={
        "every": ("--monitor-every",),
        "samples": ("--monitor-samples",),
        "stop_on_hacking": ("--stop-on-hacking/--no-stop-on-hacking",),
    },
    extra={"every": {"metavar": "N"}, "samples": {"metavar": "N"}},
)


def _multi_turn(**v: Any) -> dict[str, Any] | None:
    """The ``multi_turn`` table the options ask for (None: none given)."""
    fields = {k: v[k] for k in ("simulator", "max_turns", "turn_weight") if v[k] is not None}
    if fields and not v["multi_turn"]:
        raise usage("--simulator, --max-turns and --turn-weight need --multi-turn")
    return fields if v["multi_turn"] else None


MULTI_TURN = Bundle(
    (
        option(
            "multi_turn",
            bool,
            typer.Option(
                False,
                "--multi-turn",
                help="Train on talks with simulated users: the reward is the talk's "
                "(docs/multi-turn.md).",
            ),
        ),
        option(
            "simulator",
            str | None,
            typer.Option(
                None,
                "--simulator",
                metavar="SPEC",
                help="The model that plays the simulated users (a model spec).",
            ),
        ),
        option(
            "max_turns",
            int | None,
            field_option(MultiTurnSettings, "max_turns", "--max-turns", unset=True),
        ),
        option(
            "turn_weight",
            float | None,
            field_option(MultiTurnSettings, "turn_weight", "--turn-weight", unset=True),
        ),
    ),
    _multi_turn,
)


def _document(
    config: Path | None,
    trl: list[str] | None,
    fields: dict[str, Any],
    lora: dict[str, Any] | None,
    monitor: dict[str, Any] | None = None,
    shown: ShownFlags | None = None,
) -> dict[str, Any]:
    """The settings as a document: the preset, the file, then the options given."""
    doc = read_config_file(config) if config else {}
    doc.update(fields)
    doc.update(shown.given() if shown is not None else {})
    if trl:
        doc["trl"] = {**(doc.get("trl") or {}), **parse_assignments(trl)}
    if lora is not None:
        doc["lora"] = {**(doc.get("lora") or {}), **lora}
    if monitor:
        doc["monitor"] = {**(doc.get("monitor") or {}), **monitor}
    if doc.get("preset"):
        doc = apply_preset(doc["preset"], doc)
    return doc


def settings_document(
    model: type, *extra: str, monitor: bool = False, prompt: bool = False
) -> Bundle:
    """``--config FILE``, the options of ``model``'s fields, LoRA and ``--trl`` (and the
    monitor's options, and with ``prompt`` the policy prompt's ``--persona`` and
    ``--situation``), read into one settings document (flags over the file)."""
    parts = {"fields": _fields(model, *extra), "lora": LORA}
    if monitor:
        parts["monitor"] = MONITOR
    if prompt:
        parts["shown"] = shown_options()
    return compose(
        _document,
        option(
            "config",
            Path | None,
            path_option(
                "file",
                "JSON or TOML file of training settings (a run's config.json works).",
                "--config",
                default=None,
            ),
        ),
        option(
            "trl",
            list[str] | None,
            typer.Option(
                None,
                "--trl",
                metavar="FIELD=VALUE",
                help="A field of the TRL config (GRPOConfig/SFTConfig), repeatable.",
            ),
        ),
        **parts,
    )


def _reward(base_doc: dict[str, Any], flags: RewardFlags, llm: ModelRun) -> RewardSpec:
    """The reward spec: the config file's ``reward`` table, then the reward options.

    ``--reward-config``, the ablation flags and ``--set`` override the file's
    reward settings; a ``--reward`` of another kind starts from that kind's
    defaults instead.
    """
    base = RewardSpec.model_validate(base_doc)
    name = flags.reward or base.reward
    runtime = base.options.model_copy(update=llm.given())
    given = RewardFlags(
        name, flags.judge or base.judge, flags.config_file, flags.assignments, flags.ablations
    )
    spec = given.spec(runtime)
    inherited = base.overrides if name == base.reward else {}
    spec = spec.model_copy(update={"overrides": {**inherited, **spec.overrides}})
    check_spec(spec)
    return spec


def _report(result: Any, verb_name: str) -> None:
    resumed = f" (resumed from {result.resumed_from.name})" if result.resumed_from else ""
    show(f"{verb_name}: {result.steps} steps{resumed}")
    show(f"policy:  hf:{result.final}")
    show(f"metrics: {result.metrics}")
    if result.left_out:
        show(f"left out (too long): {len(result.left_out)}")


RUN_FOLDER = "Run folder (re-run to resume)."


@verb(
    renamed={"--generations": "--num-generations"},
    doc=settings_document(
        GRPOSettings,
        "num_generations",
        "beta",
        "max_prompt_length",
        "max_completion_length",
        "temperature",
        "memory",
        "judge_deadline",
        "preset",
        monitor=True,
        prompt=True,
    ),
    reward=reward_bundle(None),
    talks=MULTI_TURN,
    llm=model_run(unset=True),
)
def grpo(
    out_dir: Path = out_option(RUN_FOLDER, kind="new folder"),
    *,
    doc: dict[str, Any],
    reward: RewardFlags,
    talks: dict[str, Any] | None,
    llm: ModelRun,
) -> None:
    """GRPO with TRL on PERM, PereGRM[@k] or RLPA (and their ablations), or with
    --multi-turn on whole talks with simulated users."""
    from attunement.training.grpo import train_grpo

    doc["reward"] = _reward(doc.get("reward") or {}, reward, llm).model_dump(mode="json")
    if talks is not None:
        doc["multi_turn"] = {**(doc.get("multi_turn") or {}), **talks}
    settings = GRPOSettings.model_validate(doc)
    # no judge named (option or config file) means the embedded stand-in: never silently
    turns = settings.multi_turn
    if turns is None or turns.turn_weight > 0:
        warn_if_stand_in(settings.reward.judge)
    _report(train_grpo(settings, out_dir), "grpo")
    if settings.monitor.every:
        show(f"monitor: {out_dir / 'monitor.png'} (warnings in metrics.jsonl)")


@verb(doc=settings_document(SFTSettings, "max_length"))
def sft(out_dir: Path = out_option(RUN_FOLDER, kind="new folder"), *, doc: dict[str, Any]) -> None:
    """Supervised fine-tuning on `attune distill` rows (loss on the reply only)."""
    from attunement.training.sft import train_sft

    _report(train_sft(SFTSettings.model_validate(doc), out_dir), "sft")


def merge(
    adapter: Path = path_option(
        "folder",
        "A LoRA adapter folder (e.g. RUN/adapter or RUN/checkpoints/checkpoint-N).",
        "--adapter",
    ),
    out_dir: Path = out_option("Folder for the merged checkpoint.", kind="new folder"),
    base: str | None = typer.Option(
        None,
        "--base",
        metavar="SPEC",
        help="Base model (the one the adapter records when not given).",
    ),
) -> None:
    """Fold a LoRA adapter into its base model: a plain checkpoint for hf:FOLDER."""
    from attunement.training.models import merge_adapter

    show(f"policy: hf:{merge_adapter(adapter, out_dir, base=base)}")
