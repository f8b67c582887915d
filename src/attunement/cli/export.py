"""``attune export verl|openrlhf``: training data for cluster trainers.

Both exports show the policy the same prompt (``--memory``, ``--top-k``,
``--seed`` and the shared ``--persona``/``--situation``: :data:`PROMPT`), the
one ``attune generate`` and ``attune train grpo`` show with the same settings;
the files are written by the library
(:func:`~attunement.integrations.verl.export_verl`,
:func:`~attunement.integrations.openrlhf.export_openrlhf`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from attunement.cli.common import fail, say
from attunement.cli.options import (
    MEMORY_HELP,
    ShownFlags,
    compose,
    field_option,
    first,
    limit_option,
    option,
    shown_options,
    verb,
)
from attunement.cli.paths import data_option, out_option
from attunement.integrations.verl import ABILITY, DATA_SOURCE, ExportMemoryMode
from attunement.jsonl import read_jsonl
from attunement.policy import (
    DEFAULT_MEMORY_MODE,
    SHOW_PERSONA,
    SHOW_SITUATION,
    GenerationSettings,
)
from attunement.records import Example

HELP = "Training data for cluster trainers (verl, OpenRLHF)."


@dataclass(frozen=True)
class PromptFlags:
    """What the exported prompts show the policy."""

    memory_mode: ExportMemoryMode
    seed: int
    k: int
    shown: ShownFlags

    def settings(self) -> dict[str, Any]:
        """The prompt settings as the export functions take them (defaults when not given)."""
        return {"memory_mode": self.memory_mode, "seed": self.seed, "k": self.k} | {
            "persona": SHOW_PERSONA,
            "situation": SHOW_SITUATION,
            **self.shown.given(),
        }


PROMPT = compose(
    PromptFlags,
    option(
        "memory_mode",
        ExportMemoryMode,
        typer.Option(
            DEFAULT_MEMORY_MODE,
            "--memory",
            help=MEMORY_HELP + " The judges always see the user's own.",
        ),
    ),
    option("seed", int, typer.Option(0, "--seed", help="Seed of the mismatch memory pairing.")),
    option("k", int, field_option(GenerationSettings, "k", "--top-k")),
    shown=shown_options(),
)
RENAMED = {"--memory-mode": "--memory", "-k": "--top-k", "--k": "--top-k"}


def _examples(data: Path, limit: int | None) -> list[Example]:
    examples = first(read_jsonl(data, Example), limit)
    if not examples:
        raise fail(f"{data}: no examples")
    return examples


@verb(renamed=RENAMED, prompt=PROMPT)
def verl(
    data: Path = data_option("Examples JSONL (e.g. train.jsonl)."),
    out: Path = out_option("Folder for <split>.parquet and its manifest.", kind="new folder"),
    split: str = typer.Option(
        "train",
        "--split",
        help="Split name: file name and extra_info.split (rows not of 'train' are judged "
        "with criteria round 0).",
    ),
    data_source: str = typer.Option(
        DATA_SOURCE, "--data-source", help="verl's data_source column."
    ),
    ability: str = typer.Option(ABILITY, "--ability", help="verl's ability column."),
    multi_turn: bool = typer.Option(
        False,
        "--multi-turn",
        help="Route every row to attunement's talk agent loop (agent_name column): "
        "the policy talks with a simulated user (docs/scale-out.md).",
    ),
    limit: int | None = limit_option(),
    *,
    prompt: PromptFlags,
) -> None:
    """Write examples as a verl parquet file (prompt, reward_model, extra_info with the
    example) for `compute_score` in attunement.integrations.verl."""
    from attunement.integrations.verl import export_verl
    from attunement.integrations.verl_data import TALK_AGENT

    report = export_verl(
        _examples(data, limit),
        out / f"{split}.parquet",
        split=split,
        data_source=data_source,
        ability=ability,
        **prompt.settings(),
        source=str(data),
        agent_name=TALK_AGENT if multi_turn else None,
    )
    say(f"{report.rows} rows written to {report.out} (manifest {report.manifest.name})")


@verb(renamed=RENAMED, prompt=PROMPT)
def openrlhf(
    data: Path = data_option("Examples JSONL (e.g. train.jsonl)."),
    out: Path = out_option(
        "Folder for prompts.jsonl (and reward_func.py with --server-url).", kind="new folder"
    ),
    server_url: str | None = typer.Option(
        None,
        "--server-url",
        help="Base URL of `attune serve`; writes reward_func.py, which sends "
        "the token (pass it as --reward.remote_url).",
    ),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="Token file as seen from the OpenRLHF workers (not read here)."
    ),
    limit: int | None = limit_option(),
    *,
    prompt: PromptFlags,
) -> None:
    """Write OpenRLHF prompt data: {"prompt": chat messages, "label": example id} per line."""
    from attunement.integrations.openrlhf import export_openrlhf

    if token_file is not None and server_url is None:
        raise fail("--token-file goes with --server-url (it is written into reward_func.py)")
    done = export_openrlhf(
        _examples(data, limit),
        out,
        **prompt.settings(),
        server_url=server_url,
        token_file=token_file,
        source=str(data),
    )
    say(
        f"{done.rows} prompts written to {done.prompts} (--data.input_key prompt "
        "--data.label_key label --data.apply_chat_template)"
    )
    if done.reward_func is not None:
        say(
            f"reward function written to {done.reward_func} (--reward.remote_url {done.reward_func})"
        )
