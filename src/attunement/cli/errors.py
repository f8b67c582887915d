"""How every ``attune`` verb ends when something is wrong: one line, the right exit code.

A person who mistyped a path needs the path and what is wrong with it, not
forty lines of Python. So no verb catches its own failures: they travel up to
:class:`AttuneGroup`, the app's root command, and :func:`one_line` turns each
into a single ``error: ...`` line on stderr that names the file (``file:line:
field`` for a bad JSONL record) or the option. ``ATTUNE_DEBUG=1`` prints the
traceback above that line, for a bug report.

Exit codes (docs/cli.md):

- ``2``: a usage error: the command line could not be read (an unknown option
  or verb, a missing required option, a value of the wrong type, choice or
  range: click finds these) or names something that cannot serve (an input
  that is missing, a folder where a file belongs or the reverse, an output file
  that already exists, option values the settings refuse);
- ``1``: the command line was fine but the command failed: a malformed input
  file, an output that cannot be written, a folder another build holds, a
  model that fails, records that failed;
- ``130``: interrupted (what was finished is kept; the same command resumes).

Old option spellings are rewritten here too (:class:`AttuneCommand`), before
click reads the arguments, with one deprecation line each.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

import typer
from pydantic import ValidationError

# typer vendors click; "no arguments: show the help" has no public name
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import TyperCommand, TyperGroup

from attunement.building import BuildLockedError
from attunement.cli.common import CommandError, print_error, say
from attunement.cli.options import apply_field_types
from attunement.llm import LLMError
from attunement.policy import RetrieverError
from attunement.training import JudgeUnavailableError

#: failures whose message is the whole story (besides ``ValueError``, ``OSError``,
#: ``ImportError``): the library words them for the person who runs the command
MESSAGE_ERRORS: tuple[type[BaseException], ...] = (
    LLMError,
    BuildLockedError,
    JudgeUnavailableError,
    RetrieverError,
)
#: a path the command line named cannot serve: usage errors (exit 2); other
#: ``OSError`` (permission, a full disk) are failures (exit 1)
USAGE_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError)
#: what ``KeyboardInterrupt`` prints (exit 130)
INTERRUPTED = "interrupted: what was finished is kept; run the same command again to resume"
DEBUG_VARIABLE = "ATTUNE_DEBUG"


def flat(text: str) -> str:
    """A message on one line: its lines joined with ``; ``.

    >>> flat("bad value\\n  for k\\n")
    'bad value; for k'
    """
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def describe_validation(exc: ValidationError) -> str:
    """A pydantic error as a sentence: ``field: message`` per error, no docs URL.

    >>> from pydantic import BaseModel
    >>> class M(BaseModel):
    ...     k: int
    >>> try:
    ...     M(k="abc")
    ... except ValidationError as exc:
    ...     print(describe_validation(exc))
    k: Input should be a valid integer, unable to parse string as an integer (got 'abc')
    """
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        value = err.get("input")
        shown = (
            f" (got {value!r})"
            if err.get("type") not in ("missing", "value_error", "extra_forbidden")
            and isinstance(value, str | int | float | bool)
            else ""
        )
        parts.append(f"{where}: {message}{shown}" if where else f"{message}{shown}")
    return "; ".join(parts)


def _os_message(exc: OSError) -> str:
    name = exc.filename
    if name is None:
        return str(exc)
    what = {
        FileNotFoundError: "no such file",
        IsADirectoryError: "is a folder, not a file",
        NotADirectoryError: "a part of this path is a file, not a folder",
        PermissionError: "permission denied (cannot read or write there)",
        FileExistsError: "already exists",
    }.get(type(exc), exc.strerror or type(exc).__name__)
    return f"{name}: {what}"


def one_line(exc: BaseException) -> tuple[str, int]:
    """The ``error:`` text and the exit code of a failure (see the module docstring)."""
    if isinstance(exc, typer.TyperException):  # click's errors: usage errors exit 2
        ctx = getattr(exc, "ctx", None)
        where = (
            f" (see '{ctx.command_path} --help')" if ctx is not None and exc.exit_code == 2 else ""
        )
        return flat(exc.format_message()) + where, exc.exit_code
    if isinstance(exc, ValidationError):  # a settings model refused the options' values
        prefix = "settings: " if any(err.get("loc") for err in exc.errors()) else ""
        return prefix + flat(describe_validation(exc)), 2
    if isinstance(exc, CommandError):
        return flat(str(exc)), exc.exit_code
    if isinstance(exc, OSError):
        return flat(_os_message(exc)), 2 if isinstance(exc, USAGE_OS_ERRORS) else 1
    if isinstance(exc, ImportError) and (exc.name or "").startswith("attunement"):
        return _internal(exc)  # our own code is broken, not the installation
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"{exc.name} is not installed ({flat(str(exc))})", 1
    if isinstance(exc, (CommandError, ValueError, ImportError, *MESSAGE_ERRORS)):
        return flat(str(exc)), 1
    return _internal(exc)


def _internal(exc: BaseException) -> tuple[str, int]:
    debug = f"({DEBUG_VARIABLE}=1 shows the traceback)"
    return f"internal error: {type(exc).__name__}: {flat(str(exc))} {debug}", 1


def report(exc: BaseException) -> int:
    """Print ``exc`` as one ``error:`` line (the traceback first under
    ``ATTUNE_DEBUG=1``) and return the exit code."""
    if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
        traceback.print_exception(exc, file=sys.stderr)
    message, code = one_line(exc)
    print_error(message)
    return code


class AttuneGroup(TyperGroup):
    """The root command: the one place where failures become lines and exit codes."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except NoArgsIsHelpError as exc:
            exc.show()  # the help itself
            code = exc.exit_code
        except typer.Abort:
            print_error("aborted")
            code = 1
        except Exception as exc:  # noqa: BLE001 - every failure ends in one line
            code = report(exc)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            say(INTERRUPTED, style="yellow")
            raise typer.Exit(130) from None


def respell(args: Sequence[str], renamed: Mapping[str, str]) -> list[str]:
    """``args`` with each old spelling replaced by the new one, a deprecation
    line printed per old spelling used (``--old VALUE`` and ``--old=VALUE``).

    >>> respell(["--k", "3", "--mode=ood", "--", "--k"], {"--k": "--clusters"})
    ['--clusters', '3', '--mode=ood', '--', '--k']
    """
    out: list[str] = []
    warned: set[str] = set()
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            out += [arg, *rest]
            break
        name, eq, value = arg.partition("=")
        new = renamed.get(name if name.startswith("--") else arg)
        if new is None:
            out.append(arg)
            continue
        old = name if name.startswith("--") else arg
        if old not in warned:
            say(f"{old} is deprecated; use {new}", style="yellow")
            warned.add(old)
        out.append(f"{new}={value}" if eq and name.startswith("--") else new)
    return out


class AttuneCommand(TyperCommand):
    """A verb: old spellings respelled before parsing, field bounds in the help.

    The verb function may carry ``renamed`` ({old: new}, set by
    :func:`attunement.cli.options.verb`); options built from a settings field
    show that field's bounds (open ones included, which typer's own range
    display cannot say).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        apply_field_types(self)

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        renamed = getattr(self.callback, "renamed", None)
        if renamed:
            args = respell(args, renamed)
        return super().parse_args(ctx, args)
