"""Printing and running, shared by the CLI verbs.

Both consoles soft-wrap: a plain line (an error naming ``file:line: field``, a
``written: PATH`` line) is printed whole at any terminal width, because a
person copies it and a test reads it. Tables still fit the terminal; tests
read files and plain lines, never a table's layout. Progress and messages go
to stderr, results to stdout.

Failures are not caught here: a verb raises (or lets the library raise) and
:mod:`attunement.cli.errors` turns the exception into one line and an exit code.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

T = TypeVar("T")

#: messages and progress (stderr) and results (stdout); plain lines never wrap
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


class CommandError(Exception):
    """A failure a verb words itself (``raise fail("--x needs --y")``): one line, exit 1."""

    exit_code = 1


class UsageError(CommandError, ValueError):
    """The command line names something that cannot serve (a missing input, a
    folder where a file belongs, option values the settings refuse): one line,
    exit 2, like the errors click finds itself."""

    exit_code = 2


def usage(message: str) -> UsageError:
    """The error to raise for a command line that cannot serve."""
    return UsageError(message)


def fail(message: str) -> CommandError:
    """The error to raise for a failure the verb words itself."""
    return CommandError(message)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a verb's coroutine (its failures travel up to :mod:`attunement.cli.errors`)."""
    return asyncio.run(coro)


def print_error(message: str) -> None:
    """``error: message`` on stderr, never wrapped at the terminal width: a person
    copies the ``file:line: field`` it names, and tests read it whole."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def say(message: str, *, style: str | None = None) -> None:
    """One plain line on stderr (``written: PATH``, counts), never wrapped and
    never read as markup, so paths with brackets print as they are."""
    console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)


def show(message: str) -> None:
    """One plain line on stdout (a result: ``report: PATH``, a summary line)."""
    out.print(message, markup=False, highlight=False, soft_wrap=True)


def report_failures(
    failed: Sequence[Any],
    what: str = "example",
    *,
    shown: int = 5,
    unfinished: Exception | None = None,
) -> None:
    """After a long job: the first failed items with their reasons, a count, and
    exit code 1 (finished records are kept; running the command again retries
    the failed ones). Does nothing when nothing failed. ``unfinished`` (the
    library's :class:`~attunement.llm.CallsFailedError` when model calls failed)
    is raised last, so the error mapper ends the run with its one line."""
    if unfinished is not None and not failed:
        raise unfinished
    if not failed:
        return
    for item in failed[:shown]:
        say(f"failed: {item.key}: {item.reason}", style="yellow")
    if len(failed) > shown:
        say(f"... and {len(failed) - shown} more", style="yellow")
    one = len(failed) == 1
    say(
        f"{len(failed)} {what}{'' if one else 's'} failed and {'was' if one else 'were'} not "
        f"written; run the same command again to retry {'it' if one else 'them'}",
        style="yellow",
    )
    if unfinished is not None:
        raise unfinished
    raise typer.Exit(1)


def is_interactive() -> bool:
    return sys.stderr.isatty()
