"""Reward options shared by every verb that builds a reward (score, train, serve, ...).

Each verb declares the same typer options through these aliases and turns them
into a :class:`~attunement.judging.RewardSpec` with :func:`reward_spec`, so a
reward is configured the same way everywhere:

- ``--reward perm|peregrm[@k]`` and ``--judge SPEC``;
- the ablations of the papers: ``--no-resonation``, ``--no-expression``,
  ``--no-reception``, ``--no-bystander``;
- ``--reward-config FILE`` (JSON or TOML: fields of the reward's config), then
  ``--set FIELD=VALUE`` (repeatable; VALUE is read as JSON when it parses,
  else as a string), which override the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from attunement.configfile import parse_assignments, read_config_file
from attunement.judging.registry import RewardSpec
from attunement.llm import LLMOptions

RewardName = Annotated[
    str,
    typer.Option(
        "--reward",
        help="Reward: perm | peregrm | rlpa, optionally @k (judge samples), e.g. peregrm@4.",
    ),
]
JudgeSpec = Annotated[
    str,
    typer.Option(
        "--judge", help="Judge model spec (local, openai:http://host:8000/v1#model, ...)."
    ),
]
NoResonation = Annotated[bool, typer.Option("--no-resonation", help="Ablation: drop resonation.")]
NoExpression = Annotated[bool, typer.Option("--no-expression", help="Ablation: drop expression.")]
NoReception = Annotated[bool, typer.Option("--no-reception", help="Ablation: drop reception.")]
NoBystander = Annotated[
    bool, typer.Option("--no-bystander", help="Ablation: no bystander judge or penalty.")
]
RewardConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--reward-config", help="JSON or TOML file of reward config fields (see docs/rewards.md)."
    ),
]
RewardSet = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="FIELD=VALUE of the reward config, repeatable (VALUE as JSON, else text)."
    ),
]


def reward_spec(
    reward: str,
    judge: str,
    options: LLMOptions,
    *,
    config_file: Path | None = None,
    assignments: list[str] | None = None,
    no_resonation: bool = False,
    no_expression: bool = False,
    no_reception: bool = False,
    no_bystander: bool = False,
    **overrides: Any,
) -> RewardSpec:
    """Merge file, flags and ``--set`` into a validated :class:`RewardSpec`.

    Precedence, lowest first: the config file, keyword ``overrides`` whose
    value is not None (a verb's own flags), the ablation flags, ``--set``.
    """
    merged: dict[str, Any] = read_config_file(config_file) if config_file else {}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    for dim, off in (
        ("resonation", no_resonation),
        ("expression", no_expression),
        ("reception", no_reception),
        ("bystander", no_bystander),
    ):
        if off:
            merged[f"use_{dim}"] = False
    merged.update(parse_assignments(assignments))
    spec = RewardSpec(reward=reward, judge=judge, options=options, overrides=merged)
    try:
        spec.config()
    except ValueError as exc:
        raise ValueError(f"reward options: {exc}") from None
    return spec
