"""Path options and arguments checked before a verb runs.

A missing input, a folder where a file is wanted or an output folder that
cannot be written ends in one line naming the option (exit 2 for usage, 1 for
an unwritable output), never in a traceback from deep inside a run. The
options' faces are re-exported by :mod:`attunement.cli.options`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import typer

from attunement.cli.common import CommandError, UsageError

#: what a path option must be: an input that exists, or an output that can be created
PathKind = Literal["file", "folder", "path", "new file", "new folder"]


def _flag(param: Any) -> str:
    """How the line names an option (``--data``) or an argument (``BUILD_DIR``)."""
    if param.param_type_name == "argument":
        return (param.name or "").upper()
    return next((o for o in param.opts if o.startswith("--")), param.opts[0] if param.opts else "")


def _writable(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (None: they can).

    The nearest folder that exists is asked by creating (and at once
    removing) an unnamed file there: permission bits say nothing for root,
    nor for a read-only file system.
    """
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=probe):
            return None
    except OSError as exc:
        return f"{probe}: {exc.strerror or type(exc).__name__}"


def check_path(flag: str, path: Path, kind: PathKind) -> None:
    """Raise a one-line error naming ``flag`` when ``path`` cannot serve as ``kind``."""
    if kind in ("file", "folder", "path") and not path.exists():
        raise UsageError(f"{flag}: {path}: no such {'file or folder' if kind == 'path' else kind}")
    if kind in ("file", "new file") and path.is_dir():
        raise UsageError(f"{flag}: {path}: is a folder; give a file")
    if kind in ("folder", "new folder") and path.exists() and not path.is_dir():
        raise UsageError(f"{flag}: {path}: is a file; give a folder")
    why = None
    if kind.startswith("new"):
        why = _writable(path.parent if kind == "new file" else path)
    if why:
        raise CommandError(f"{flag}: {path}: cannot be written ({why})")


def path_check(kind: PathKind) -> Callable[..., Any]:
    """A typer callback checking a path option or argument (see :func:`check_path`)."""

    def check(param: typer.CallbackParam, value: Any) -> Any:
        for path in value if isinstance(value, list | tuple) else [value]:
            if path is not None:
                check_path(_flag(param), Path(path), kind)
        return value

    return check


def path_option(kind: PathKind, help: str, *decls: str, default: Any = ...) -> Any:
    """A path option checked before the verb runs: an input ``file``, ``folder``
    or ``path`` (either) must exist; a ``new file`` or ``new folder`` must be
    creatable. ``decls`` default to ``--data`` for inputs, ``--out`` for outputs."""
    decls = decls or (("--out",) if kind.startswith("new") else ("--data",))
    return typer.Option(default, *decls, help=help, callback=path_check(kind))


def data_option(help: str, *, default: Any = ..., kind: PathKind = "file") -> Any:
    return path_option(kind, help, "--data", default=default)


def replies_option(help: str, *, default: Any = ...) -> Any:
    return path_option("file", help, "--replies", default=default)


def out_option(help: str, *, kind: PathKind = "new file", default: Any = ...) -> Any:
    return path_option(kind, help, "--out", "-o", default=default)
