"""``attune export verl|openrlhf``: training data for cluster trainers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from attunement.cli.common import console, fail, print_error
from attunement.integrations.verl import ABILITY, DATA_SOURCE, ExportMemoryMode

export_app = typer.Typer(
    help="Training data for cluster trainers (verl, OpenRLHF).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")


Data = Annotated[Path, typer.Option("--data", help="Examples JSONL (e.g. train.jsonl).")]
Memory = Annotated[
    ExportMemoryMode,
    typer.Option(
        "--memory-mode",
        help="Memories the policy sees in its prompt (the judges always see the user's own).",
    ),
]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the mismatch memory pairing.")]
RagK = Annotated[int, typer.Option("-k", "--k", min=1, help="Memories kept by rag.")]


def _examples(data: Path):
    from attunement.jsonl import RecordError, read_jsonl
    from attunement.records import Example

    try:
        return read_jsonl(data, Example)
    except (RecordError, FileNotFoundError, ValueError) as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None


@export_app.command("verl")
def export_verl_cmd(
    data: Data,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for <split>.parquet and its manifest.")
    ],
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="Split name: file name and "
            "extra_info.split (rows not of 'train' are judged "
            "with criteria round 0).",
        ),
    ] = "train",
    memory_mode: Memory = "full",
    data_source: Annotated[str, typer.Option("--data-source")] = DATA_SOURCE,
    ability: Annotated[str, typer.Option("--ability")] = ABILITY,
    seed: Seed = 0,
    k: RagK = 3,
) -> None:
    """Write examples as a verl parquet file (prompt, reward_model, extra_info with the
    example) for `compute_score` in attunement.integrations.verl."""
    from attunement.integrations.verl import export_verl

    examples = _examples(data)
    if not examples:
        raise fail(f"{data}: no examples")
    try:
        report = export_verl(
            examples,
            out / f"{split}.parquet",
            split=split,
            memory_mode=memory_mode,
            data_source=data_source,
            ability=ability,
            seed=seed,
            k=k,
            source=str(data),
        )
    except (ValueError, ImportError) as exc:
        raise fail(str(exc)) from None
    console.print(f"{report.rows} rows written to {report.out} (manifest {report.manifest.name})")


@export_app.command("openrlhf")
def export_openrlhf_cmd(
    data: Data,
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder for prompts.jsonl (and reward_func.py with --server-url)."
        ),
    ],
    server_url: Annotated[
        str | None,
        typer.Option(
            "--server-url",
            help="Base URL of `attune serve`; writes reward_func.py, which sends "
            "the token (pass it as --reward.remote_url).",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="Token file as seen from the OpenRLHF workers."),
    ] = None,
    memory_mode: Memory = "full",
    seed: Seed = 0,
    k: RagK = 3,
) -> None:
    """Write OpenRLHF prompt data: {"prompt": chat messages, "label": example id} per line."""
    from attunement.integrations.openrlhf import openrlhf_rows, reward_func_source
    from attunement.jsonl import manifest_path, write_jsonl, write_manifest
    from attunement.policy.prompting import reply_prompt_version

    examples = _examples(data)
    if not examples:
        raise fail(f"{data}: no examples")
    if token_file is not None and server_url is None:
        raise fail("--token-file goes with --server-url (it is written into reward_func.py)")
    try:
        rows = openrlhf_rows(examples, memory_mode=memory_mode, seed=seed, k=k)
    except (ValueError, ImportError) as exc:
        raise fail(str(exc)) from None
    prompts = out / "prompts.jsonl"
    tmp = prompts.with_name(prompts.name + ".tmp")
    write_jsonl(tmp, rows)
    tmp.replace(prompts)
    write_manifest(
        manifest_path(prompts),
        command="export openrlhf",
        source=str(data),
        rows=len(rows),
        memory_mode=memory_mode,
        seed=seed,
        k=k,
        prompt={"policy_reply": reply_prompt_version()},
    )
    console.print(
        f"{len(rows)} prompts written to {prompts} (--data.input_key prompt "
        "--data.label_key label --data.apply_chat_template)"
    )
    if server_url is not None:
        func = out / "reward_func.py"
        func.write_text(reward_func_source(server_url, token_file), encoding="utf-8")
        console.print(f"reward function written to {func} (--reward.remote_url {func})")
