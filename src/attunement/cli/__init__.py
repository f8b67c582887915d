"""The ``attune`` command line: an explicit list of thin verbs, in pipeline order.

Each verb reads its options (declared once: :mod:`attunement.cli.options`),
builds the library's settings object and makes the library call; it prints
the result. :func:`commands` lists the verbs in the order a project runs
them, so ``attune --help`` reads as the pipeline (demo, then build to
doctor); nothing is registered by importing a module. Every failure ends in
one ``error:`` line and an exit code (:mod:`attunement.cli.errors`).
Conventions for users: docs/cli.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer

from attunement import __version__
from attunement.cli import (
    bench,
    benchmarks,
    build,
    demo,
    dialogue,
    evaluate,
    export,
    judge_card,
    llm,
    policy,
    score,
    serve,
    train,
)
from attunement.cli.errors import AttuneCommand, AttuneGroup

Verb = tuple[str, Callable[..., Any]]


@dataclass(frozen=True)
class Group:
    """A verb with sub-verbs (``attune train grpo``)."""

    name: str
    help: str
    verbs: tuple[Verb, ...]


def commands() -> tuple[Verb | Group, ...]:
    """Every verb, in the order a project runs them."""
    return (
        ("demo", demo.demo),
        ("build", build.build),
        ("augment", build.augment),
        ("stats", build.stats),
        ("split", build.split),
        ("generate", policy.generate),
        ("distill", policy.distill),
        ("converse", dialogue.converse_verb),
        ("score", score.score),
        ("criteria", score.criteria),
        ("judge-card", judge_card.judge_card),
        Group(
            "train", train.HELP, (("grpo", train.grpo), ("sft", train.sft), ("merge", train.merge))
        ),
        ("evaluate", evaluate.evaluate),
        ("emobench", benchmarks.emobench),
        ("eqbench3", benchmarks.eqbench3),
        ("sage", dialogue.sage),
        Group("export", export.HELP, (("verl", export.verl), ("openrlhf", export.openrlhf))),
        ("serve", serve.serve),
        Group(
            "bench",
            bench.HELP,
            (
                ("rewards", bench.rewards),
                ("serve", bench.serve),
                ("train", bench.train),
                ("converse", bench.converse),
                ("llm", bench.llm),
            ),
        ),
        ("chat", llm.chat),
        ("doctor", llm.doctor),
    )


class PipelineGroup(AttuneGroup):
    """The root command: verbs and verb groups listed in :func:`commands` order."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        names = [entry.name if isinstance(entry, Group) else entry[0] for entry in commands()]
        return [n for n in names if n in self.commands]


def _typer(**settings: Any) -> typer.Typer:
    # plain click help: option names are never cut, whatever the width
    return typer.Typer(
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        **settings,
    )


def _add(app: typer.Typer, verbs: tuple[Verb, ...]) -> None:
    for name, fn in verbs:
        app.command(name, cls=AttuneCommand)(fn)


def build_app() -> typer.Typer:
    app = _typer(
        name="attune",
        help="Personalized empathy for LLM assistants: build data, score, train, evaluate.",
        cls=PipelineGroup,
    )

    @app.callback(invoke_without_command=True)
    def _root(version: bool = typer.Option(False, "--version", help="Print the version.")) -> None:
        if version:
            typer.echo(f"attunement {__version__}")
            raise typer.Exit()

    for entry in commands():
        if isinstance(entry, Group):
            sub = _typer(help=entry.help)
            _add(sub, entry.verbs)
            app.add_typer(sub, name=entry.name)
        else:
            _add(app, (entry,))
    return app


def main() -> None:
    build_app()()
