"""The ``attune`` command line.

Each module in this package that defines ``register(app)`` adds its verbs;
:func:`main` builds the app from all of them, in module-name order.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

from attunement import __version__


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="attune",
        help="Personalized empathy for LLM assistants: build data, score, train, evaluate.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback(invoke_without_command=True)
    def _root(version: bool = typer.Option(False, "--version", help="Print the version.")) -> None:
        if version:
            typer.echo(f"attunement {__version__}")
            raise typer.Exit()

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)
    return app


def main() -> None:
    build_app()()
