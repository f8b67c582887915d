"""The reward options every reward verb shares (score, judge-card, evaluate, serve, train).

A reward is configured the same way everywhere, by one :class:`~attunement.cli.
options.Bundle` (:func:`reward_bundle`) read into :class:`RewardFlags`:

- ``--reward perm|peregrm|rlpa[@k]`` and ``--judge SPEC``;
- the ablations of the papers: ``--no-resonation``, ``--no-expression``,
  ``--no-reception``, ``--no-bystander``;
- ``--reward-config FILE`` (JSON or TOML: fields of the reward's config), then
  ``--set FIELD=VALUE`` (repeatable; VALUE is read as JSON when it parses,
  else as a string), which override the file.

:func:`reward_spec` merges them, with a verb's own flags, into a validated
:class:`~attunement.judging.RewardSpec`; a refused setting is one sentence
starting ``reward options:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from attunement.cli.common import UsageError
from attunement.cli.errors import describe_validation
from attunement.cli.options import Bundle, field_option, judge_option, option
from attunement.configfile import parse_assignments, read_config_file
from attunement.judging import RewardSpec, reward_config, reward_names
from attunement.llm import LLMOptions

#: the ablation switches: ``--no-DIMENSION`` turns ``use_DIMENSION`` off
ABLATIONS = ("resonation", "expression", "reception", "bystander")
#: the reward kinds whose configs the scoring flags set (their defaults are shown per kind)
CONFIGURED_KINDS = ("perm", "peregrm")


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
    off = dict(zip(ABLATIONS, (no_resonation, no_expression, no_reception, no_bystander)))
    merged.update({f"use_{dim}": False for dim, flag in off.items() if flag})
    merged.update(parse_assignments(assignments))
    spec = RewardSpec(reward=reward, judge=judge, options=options, overrides=merged)
    check_spec(spec)
    return spec


def check_spec(spec: RewardSpec) -> None:
    """Validate a spec's reward name and overrides; a refusal names the fields."""
    try:
        spec.config()
    except ValidationError as exc:
        raise UsageError(f"reward options: {describe_validation(exc)}") from None
    except ValueError as exc:
        raise UsageError(f"reward options: {exc}") from None


@dataclass(frozen=True)
class RewardFlags:
    """The reward options as given (None: not given)."""

    reward: str | None
    judge: str | None
    config_file: Path | None
    assignments: list[str] | None
    ablations: tuple[str, ...]

    def spec(self, options: LLMOptions, **overrides: Any) -> RewardSpec:
        """The validated spec on ``options``; ``overrides`` are the verb's own flags."""
        off = {f"no_{dim}": dim in self.ablations for dim in ABLATIONS}
        return reward_spec(
            self.reward or "peregrm",
            self.judge or "local",
            options,
            config_file=self.config_file,
            assignments=self.assignments,
            **off,
            **overrides,
        )


def reward_bundle(
    reward: str | None = "peregrm", *, judge: bool = True, bystander: bool = True
) -> Bundle:
    """The reward options, ``reward`` their default (None: not given, e.g. a
    training config file's). ``judge=False`` leaves ``--judge`` to the verb
    (evaluate takes several); ``bystander=False`` drops ``--no-bystander``."""
    unset = reward is None
    ablations = [d for d in ABLATIONS if bystander or d != "bystander"]
    params = [
        option(
            "reward",
            str | None,
            field_option(
                RewardSpec,
                "reward",
                default=reward,
                unset=unset,
                help=f"The reward: {', '.join(reward_names())}, optionally @k (judge samples), "
                "e.g. peregrm@4.",
            ),
        ),
        *([option("judge", str | None, judge_option(None if unset else ...))] if judge else []),
        *(
            option(f"no_{dim}", bool, typer.Option(False, f"--no-{dim}", help=ABLATION_HELP[dim]))
            for dim in ablations
        ),
        option(
            "reward_config",
            Path | None,
            typer.Option(
                None,
                "--reward-config",
                help="JSON or TOML file of reward config fields (see docs/rewards.md).",
            ),
        ),
        option(
            "assignments",
            list[str] | None,
            typer.Option(
                None,
                "--set",
                metavar="FIELD=VALUE",
                help="A reward config field, repeatable (VALUE read as JSON, else as text).",
            ),
        ),
    ]

    def build(**v: Any) -> RewardFlags:
        return RewardFlags(
            reward=v["reward"],
            judge=v.get("judge"),
            config_file=v["reward_config"],
            assignments=v["assignments"],
            ablations=tuple(d for d in ablations if v[f"no_{d}"]),
        )

    return Bundle(tuple(params), build)


ABLATION_HELP = {
    "resonation": "Ablation: drop resonation.",
    "expression": "Ablation: drop expression.",
    "reception": "Ablation: drop reception.",
    "bystander": "Ablation: no bystander judge or penalty.",
}


def kind_defaults(name: str) -> str:
    """What ``[default: ...]`` says for a reward config field: one value, or one
    per kind where PERM and PereGRM differ.

    >>> kind_defaults("aggregation"), kind_defaults("length_penalty")
    ('harmonic', 'perm True, peregrm False')
    """
    values = {kind: getattr(reward_config(kind), name) for kind in CONFIGURED_KINDS}
    if len(set(map(str, values.values()))) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{kind} {value}" for kind, value in values.items())
