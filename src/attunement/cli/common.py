"""Options and helpers shared by the CLI verbs.

Both consoles soft-wrap: a plain line (an error naming ``file:line: field``, a
``written: PATH`` line) is printed whole at any terminal width, because a
person copies it and a test reads it. Tables still fit the terminal; tests
read files and plain lines, never a table's layout.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from attunement.jsonl import RecordError
from attunement.llm import LLMError, LLMOptions
from attunement.llm.options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
)

T = TypeVar("T")

#: messages and progress (stderr) and results (stdout); plain lines never wrap
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

Concurrency = Annotated[
    int, typer.Option("--concurrency", "-c", min=1, help="Model requests in flight at once.")
]
Timeout = Annotated[
    float,
    typer.Option("--timeout", min=0.1, help="Deadline of one model call, retries included, s."),
]
Retries = Annotated[
    int, typer.Option("--retries", min=0, help="Retries on timeouts, 429 and 5xx answers.")
]
CachePath = Annotated[
    Path | None,
    typer.Option("--cache", help="sqlite file caching every completion (re-runs cost no calls)."),
]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Do not cache completions.")]


def llm_options(
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_MAX_RETRIES,
    cache: Path | None = None,
    no_cache: bool = False,
) -> LLMOptions:
    return LLMOptions(
        concurrency=concurrency,
        timeout=timeout,
        max_retries=retries,
        cache=None if no_cache else cache,
    )


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning known failures into a clean message and exit 1."""
    try:
        return asyncio.run(coro)
    except (RecordError, LLMError, ValueError, FileNotFoundError) as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: finished records are kept; run again to resume[/]")
        raise typer.Exit(130) from None


def print_error(message: str) -> None:
    """``error: message`` on stderr, never wrapped at the terminal width: a person
    copies the ``file:line: field`` it names, and tests read it whole."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def say(message: str, *, style: str | None = None) -> None:
    """One plain line on stderr (``written: PATH``, counts), never wrapped and
    never read as markup, so paths with brackets print as they are."""
    console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)


def report_failures(failed: Sequence[Any], what: str = "example", *, shown: int = 5) -> None:
    """After a long job: the first failed items with their reasons, a count, and
    exit code 1 (finished records are kept; running the command again retries
    the failed ones). Does nothing when nothing failed."""
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
    raise typer.Exit(1)


def fail(message: str) -> typer.Exit:
    print_error(message)
    return typer.Exit(1)


def is_interactive() -> bool:
    return sys.stderr.isatty()
