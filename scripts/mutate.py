#!/usr/bin/env python3
"""Plant bugs in one module, one at a time, and count how many the tests catch.

    .venv/bin/python scripts/mutate.py src/attunement/judging/parsing.py \
        --tests tests/test_judging_parsing.py tests/test_judging_rewards.py

Each mutant changes one AST node of the module:

- a comparison operator (``<`` <-> ``<=``, ``>`` <-> ``>=``, ``==`` <-> ``!=``,
  ``in`` <-> ``not in``, ``is`` <-> ``is not``);
- an arithmetic operator (``+`` <-> ``-``, ``*`` <-> ``/``, ``//`` -> ``/``,
  ``%`` -> ``*``), an augmented assignment (``+=`` <-> ``-=``);
- ``and`` <-> ``or``; a ``not`` dropped;
- a number nudged (``n`` -> ``n + 1``), ``True`` <-> ``False``;
- ``return X`` -> ``return None``; ``break`` <-> ``continue``.

String constants are left alone (messages and regular expressions: a changed
message is caught only by tests that read messages, and mutmut-style ``XX``
padding of a pattern says little). Docstrings, annotations and ``__all__`` are
not mutated.

First the given tests run once on the unmutated module with a line tracer,
which records which tests execute which lines of it. Each mutant then runs only
the tests that execute the lines it changed (all the given tests for a change
at module level, which runs at import); a mutant no test executes survives
without a run. The mutated module is written into a copy of ``src/`` that a fork of
this process (which has pytest and the third-party packages already imported,
but not attunement) puts first on ``sys.path``; the tests run with ``-x`` (first failure kills the
mutant). A mutant can turn a loop into one that never ends, so each run has a
time limit: a multiple of how long the same tests take on the unmutated module
(``--timeout-factor`` x that time + ``--timeout-slack`` seconds, measured once
at start; ``--timeout`` sets a fixed limit instead). A mutant that runs past it
is killed with every process it started and counts as caught by ``timeout``
(as mutmut and cosmic-ray count it); timeouts are reported apart from the
mutants a test failed on. Survivors are
listed with their line and change, to be read by a person: some are
equivalent to the original and cannot be caught. Nothing is written into the
repository.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CMP_SWAP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BIN_SWAP = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.Mult,
}
_SYMBOL = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.And: "and",
    ast.Or: "or",
}


@dataclass
class Mutant:
    index: int
    line: int
    change: str
    end_line: int = 0
    in_function: bool = True
    caught: bool | None = None
    #: "killed" (a test failed), "timeout" (ran past the time limit), "survived"
    outcome: str = ""
    tests: int = 0
    seconds: float = 0.0
    output: str = ""


_TRACER_PLUGIN = """
import importlib, json, os, sys, threading

# imported before any test is traced: a heavy import under the tracer takes minutes
for name in filter(None, os.environ.get("MUTATE_PRELOAD", "").split(",")):
    importlib.import_module(name)

TARGET = os.path.realpath(os.environ["MUTATE_TARGET"])
OUT = os.environ["MUTATE_MAP"]
lines = {}
current = [None]


def local(frame, event, arg):
    if event == "line" and current[0] is not None:
        lines.setdefault(frame.f_lineno, set()).add(current[0])
    return local


def tracer(frame, event, arg):
    if event == "call" and os.path.realpath(frame.f_code.co_filename) == TARGET:
        if current[0] is not None:
            lines.setdefault(frame.f_code.co_firstlineno, set()).add(current[0])
        return local
    return None


def pytest_runtest_protocol(item, nextitem):
    current[0] = item.nodeid
    sys.settrace(tracer)
    threading.settrace(tracer)


def pytest_runtest_logfinish(nodeid, location):
    sys.settrace(None)
    threading.settrace(None)
    current[0] = None


def pytest_sessionfinish(session, exitstatus):
    with open(OUT, "w") as fh:
        json.dump({str(k): sorted(v) for k, v in lines.items()}, fh)
"""


#: a copy of src/ taken at start, so edits made while the run goes on do not leak in
SNAPSHOT: Path = ROOT / "src"


def line_map(
    module: Path, tests: list[str], timeout: float, preload: list[str] | tuple[str, ...] = ()
) -> dict[int, set[str]]:
    """{line of ``module``: ids of the tests that execute it} (on the snapshot;
    the ``preload`` modules imported before tracing starts)."""
    with tempfile.TemporaryDirectory(prefix="attune-linemap-") as tmp:
        plugin = Path(tmp) / "mutate_tracer.py"
        plugin.write_text(_TRACER_PLUGIN, encoding="utf-8")
        out = Path(tmp) / "map.json"
        target = SNAPSHOT / module.relative_to(ROOT / "src")
        env = dict(
            os.environ,
            PYTHONPATH=f"{SNAPSHOT}{os.pathsep}{tmp}",
            MUTATE_TARGET=str(target),
            MUTATE_MAP=str(out),
            MUTATE_PRELOAD=",".join(preload),
        )
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "mutate_tracer",
                "-m",
                "not slow",
                *KEYWORD,
                *tests,
            ],
            check=False,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise SystemExit(
                "the tests fail without any mutation:\n" + (proc.stdout + proc.stderr)[-2000:]
            )
        return {int(k): set(v) for k, v in json.loads(out.read_text()).items()}


def _skipped(tree: ast.Module) -> set[int]:
    """ids of nodes never mutated: docstrings, annotations, __all__."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            mark(body[0])
        if isinstance(node, ast.arg | ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            mark(node.returns)
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            mark(node)
    return skip


class _Mutator(ast.NodeTransformer):
    """Counts mutation points; rewrites the ``target``-th one (when given)."""

    def __init__(self, skip: set[int], target: int | None = None):
        self.skip = skip
        self.target = target
        self.count = 0
        self.depth = 0
        self.points: list[Mutant] = []

    def _point(self, node: ast.AST, change: str) -> bool:
        index = self.count
        self.count += 1
        line = getattr(node, "lineno", 0)
        self.points.append(
            Mutant(index, line, change, getattr(node, "end_lineno", line) or line, self.depth > 0)
        )
        return index == self.target

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        # decorators and default values run when the module is imported; the body
        # runs when the function is called
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.args = self.visit(node.args)
        self.depth += 1
        try:
            node.body = [self.visit(stmt) for stmt in node.body]
        finally:
            self.depth -= 1
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        return self._function(node)

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        self.depth += 1
        try:
            return self.generic_visit(node)
        finally:
            self.depth -= 1

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if id(node) in self.skip:
            return node
        return super().generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        for i, op in enumerate(node.ops):
            new = _CMP_SWAP.get(type(op))
            if new and self._point(node, f"{_SYMBOL[type(op)]} -> {_SYMBOL[new]}"):
                node.ops[i] = new()
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        new = _BIN_SWAP.get(type(node.op))
        if new and self._point(node, f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[new]}"):
            node.op = new()
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        new = {ast.Add: ast.Sub, ast.Sub: ast.Add}.get(type(node.op))
        if new and self._point(node, f"{_SYMBOL[type(node.op)]}= -> {_SYMBOL[new]}="):
            node.op = new()
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        if self._point(node, f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[new]}"):
            node.op = new()
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and self._point(node, "not dropped"):
            return node.operand
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if id(node) in self.skip:
            return node
        value = node.value
        if isinstance(value, bool):
            if self._point(node, f"{value} -> {not value}"):
                return ast.copy_location(ast.Constant(not value), node)
        elif isinstance(value, int | float) and self._point(node, f"{value!r} -> {value + 1!r}"):
            return ast.copy_location(ast.Constant(value + 1), node)
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        if (
            node.value is not None
            and not (isinstance(node.value, ast.Constant) and node.value.value is None)
            and self._point(node, "return X -> return None")
        ):
            return ast.copy_location(ast.Return(value=None), node)
        return node

    def visit_Break(self, node: ast.Break) -> ast.AST:
        if self._point(node, "break -> continue"):
            return ast.copy_location(ast.Continue(), node)
        return node

    def visit_Continue(self, node: ast.Continue) -> ast.AST:
        if self._point(node, "continue -> break"):
            return ast.copy_location(ast.Break(), node)
        return node


def mutation_points(source: str) -> list[Mutant]:
    tree = ast.parse(source)
    mutator = _Mutator(_skipped(tree))
    mutator.visit(tree)
    return mutator.points


def mutated(source: str, index: int) -> str:
    tree = ast.parse(source)
    mutator = _Mutator(_skipped(tree), target=index)
    return ast.unparse(ast.fix_missing_locations(mutator.visit(tree)))


def tests_for(mutant: Mutant, lines: dict[int, set[str]], all_tests: list[str]) -> list[str]:
    """The tests that execute the lines the mutant changes (all, at module level)."""
    if not mutant.in_function:
        return all_tests
    found: set[str] = set()
    for line in range(mutant.line, mutant.end_line + 1):
        found |= lines.get(line, set())
    return sorted(found)


PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", "--no-header"]
#: ``-k EXPR`` when given: the tests measured, for every run alike
KEYWORD: list[str] = []


def _preload(extra: list[str]) -> None:
    """Import what every test run needs, except attunement itself, once in this
    process; each mutant then runs in a fork that starts with them loaded.
    ``extra``: more third-party modules the tests import (``--preload
    transformers``, when a test imports it: seconds saved on every mutant)."""
    import importlib

    for name in extra:
        importlib.import_module(name)
    import asyncio  # noqa: F401

    import openai  # noqa: F401
    import pydantic  # noqa: F401
    import pytest  # noqa: F401
    import rich  # noqa: F401
    import typer  # noqa: F401
    from typer.testing import CliRunner  # noqa: F401


def _run_forked(src: Path, tests: list[str], timeout: float, log: Path) -> int | None:
    """Exit code of pytest run in a fork with ``src`` first on the path (None: timed out).

    The fork leads a process group of its own, so a run past ``timeout`` is
    killed together with whatever it started (a simulated server, a worker)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.setpgid(0, 0)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.path.insert(0, str(src))
            os.chdir(ROOT)
            import pytest

            code = int(pytest.main([*PYTEST_ARGS, *KEYWORD, *tests]))
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:  # the group ended between the two checks
                pass
            os.waitpid(pid, 0)
            return None
        time.sleep(0.05)


def run_mutant(
    module: Path, source: str, mutant: Mutant, tests: list[str], timeout: float
) -> Mutant:
    mutant.tests = len(tests)
    if not tests:  # no test executes this code: nothing can catch the change
        mutant.caught, mutant.outcome = False, "survived"
        mutant.output = "no test executes this line"
        return mutant
    with tempfile.TemporaryDirectory(prefix="attune-mutant-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(SNAPSHOT, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        target = src / module.relative_to(ROOT / "src")
        target.write_text(mutated(source, mutant.index), encoding="utf-8")
        log = Path(tmp) / "pytest.log"
        started = time.perf_counter()
        code = _run_forked(src, tests, timeout, log)
        mutant.seconds = time.perf_counter() - started
        mutant.caught = code != 0
        mutant.outcome = "timeout" if code is None else "killed" if code != 0 else "survived"
        mutant.output = (
            f"timed out after {timeout:.0f} s"
            if code is None
            else log.read_text(errors="replace")[-400:]
        )
    return mutant


#: the traced run that maps lines to tests runs once, unmutated: a generous fixed bound
LINE_MAP_TIMEOUT = 3600.0


def time_limit(tests: list[str], factor: float, slack: float) -> float:
    """Seconds a mutant's run may take: ``factor`` x the unmutated run of all
    ``tests`` (run once here, in a fork like the mutants', so it also proves that
    the fork passes before any mutation) + ``slack``."""
    with tempfile.TemporaryDirectory(prefix="attune-baseline-") as tmp:
        log = Path(tmp) / "pytest.log"
        started = time.perf_counter()
        code = _run_forked(SNAPSHOT, tests, LINE_MAP_TIMEOUT, log)
        seconds = time.perf_counter() - started
        if code != 0:
            raise SystemExit(
                "the tests fail without any mutation (forked run):\n"
                + log.read_text(errors="replace")[-2000:]
            )
    return factor * seconds + slack


def summary(name: Path, mutants: list[Mutant]) -> str:
    """One line: caught (tests failed + timed out) of all, and the timeouts apart.

    >>> ms = [Mutant(0, 1, "x", outcome="killed", caught=True),
    ...       Mutant(1, 1, "x", outcome="timeout", caught=True),
    ...       Mutant(2, 1, "x", outcome="survived", caught=False)]
    >>> print(summary(Path("m.py"), ms))
    <BLANKLINE>
    m.py: caught 2 of 3 (66.7%): 1 by a failing test, 1 by timeout; 1 survived
    """
    killed = sum(1 for m in mutants if m.outcome == "killed")
    timeouts = sum(1 for m in mutants if m.outcome == "timeout")
    caught = killed + timeouts
    return (
        f"\n{name}: caught {caught} of {len(mutants)} "
        f"({100 * caught / max(1, len(mutants)):.1f}%): {killed} by a failing test, "
        f"{timeouts} by timeout; {len(mutants) - caught} survived"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", type=Path)
    parser.add_argument("--tests", nargs="+", required=True)
    parser.add_argument(
        "--timeout",
        type=float,
        help="a fixed time limit per mutant, in seconds (default: from the unmutated run)",
    )
    parser.add_argument(
        "--timeout-factor",
        type=float,
        default=5.0,
        help="time limit per mutant: this many times the unmutated run ...",
    )
    parser.add_argument("--timeout-slack", type=float, default=10.0, help="... plus these seconds")
    parser.add_argument(
        "--preload",
        nargs="*",
        default=[],
        help="third-party modules to import once, before tracing and before forking "
        "(never attunement)",
    )
    parser.add_argument(
        "-k", dest="keyword", help="pytest -k expression selecting the tests (every run alike)"
    )
    parser.add_argument("--only", type=int, nargs="*", help="mutant indices to run")
    parser.add_argument("--list", action="store_true", help="list mutants and stop")
    parser.add_argument("--report", type=Path, help="write every mutant's outcome as JSON")
    args = parser.parse_args()

    global SNAPSHOT
    if args.keyword:
        KEYWORD[:] = ["-k", args.keyword]
    module = args.module.resolve()
    snapshot_dir = tempfile.TemporaryDirectory(prefix="attune-mutate-src-")
    SNAPSHOT = Path(snapshot_dir.name) / "src"
    shutil.copytree(
        ROOT / "src", SNAPSHOT, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    source = (SNAPSHOT / module.relative_to(ROOT / "src")).read_text(encoding="utf-8")
    mutants = mutation_points(source)
    if args.only:
        mutants = [m for m in mutants if m.index in set(args.only)]
    if args.list:
        for m in mutants:
            print(f"{m.index:4d}  line {m.line:4d}  {m.change}")
        return 0
    # the unmutated module must pass (or every mutant would look caught); this run
    # also records which tests execute which lines
    lines = line_map(module, args.tests, LINE_MAP_TIMEOUT, args.preload)
    _preload(args.preload)
    limit = args.timeout or time_limit(args.tests, args.timeout_factor, args.timeout_slack)
    print(
        f"{module.relative_to(ROOT)}: {len(mutants)} mutants; tests: {' '.join(args.tests)}; "
        f"time limit per mutant {limit:.0f} s"
    )
    for done, m in enumerate(mutants, start=1):
        run_mutant(module, source, m, tests_for(m, lines, args.tests), limit)
        mark = {"killed": "caught  ", "timeout": "timeout "}.get(m.outcome, "SURVIVED")
        print(
            f"[{done:4d}/{len(mutants)}] {mark} #{m.index:<4d} line {m.line:<4d} "
            f"{m.change}  ({m.tests} tests, {m.seconds:.0f} s)",
            flush=True,
        )
    print(summary(module.relative_to(ROOT), mutants))
    for m in sorted((m for m in mutants if not m.caught), key=lambda m: m.index):
        print(f"  survived #{m.index} line {m.line}: {m.change}")
    if args.report:
        args.report.write_text(json.dumps([asdict(m) for m in mutants], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
