"""The layout's rules, read from the code itself (docs/architecture.md).

The import graph is built with the standard library's ``ast`` from every
``import`` statement, wherever it stands: at the top, inside a function, or
under ``if TYPE_CHECKING``. An import hidden in a function is still an arrow;
it only moves the failure from import time to call time.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "attunement"

#: rooms nothing else may import: the command line and the benchmarks that print figures
TOP_FLOORS = ("attunement.cli", "attunement.perf")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, modules: Iterable[str]) -> set[str]:
    """The project modules ``name`` imports, each resolved to a module file:
    ``from pkg import sub`` is an arrow to ``pkg.sub`` when that is a module,
    otherwise to ``pkg`` (its face)."""
    known = set(modules)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, path.name == "__init__.py", node)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:  # import a.b.c -> the deepest module
                target = target.rpartition(".")[0]
            if target and target.startswith("attunement") and target != name:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _in(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


def test_graph_reader_resolves_every_import_form(tmp_path):
    pkg = tmp_path / "attunement"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from attunement.sub.a import thing\n")
    (pkg / "sub" / "a.py").write_text(
        "from . import b\nfrom .b import x\nimport attunement.c\n"
        "def f():\n    from attunement.sub import thing\n"
    )
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nx = 1\n")
    (pkg / "c.py").write_text("if True:\n    from attunement.sub.a import f\n")
    names = ["attunement", "attunement.sub", "attunement.sub.a", "attunement.sub.b", "attunement.c"]
    got = imports_of("attunement.sub.a", pkg / "sub" / "a.py", names)
    assert got == {"attunement.sub.b", "attunement.c", "attunement.sub"}
    graph = {
        "attunement.sub": imports_of("attunement.sub", pkg / "sub" / "__init__.py", names),
        "attunement.sub.a": got,
        "attunement.c": imports_of("attunement.c", pkg / "c.py", names),
        "attunement.sub.b": set(),
    }
    assert cycles(graph) == [["attunement.c", "attunement.sub", "attunement.sub.a"]]


def test_nothing_but_the_command_line_imports_it():
    graph = import_graph()
    bad = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if _in(target, "attunement.cli") and not _in(module, "attunement.cli")
    ]
    assert not bad, "\n".join(bad)


def test_cli_and_perf_are_the_only_top_floors():
    graph = import_graph()
    bad = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        for top in TOP_FLOORS
        if _in(target, top) and not _in(module, top) and not _in(module, "attunement.cli")
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def _function_lengths(path: Path) -> Iterable[tuple[str, int]]:
    """(qualified name, lines of body) of every function; the signature, however
    many parameters a typer verb declares, is not counted."""
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def walk(node: ast.AST, prefix: str) -> Iterable[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                body = child.body
                first = body[0]
                if (
                    isinstance(first, ast.Expr)
                    and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)
                    and len(body) > 1
                ):
                    first = body[1]  # the docstring is not code
                yield f"{prefix}{child.name}", child.end_lineno - first.lineno + 1
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")

    yield from walk(tree, "")


def _sizes() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    modules, functions = [], []
    for name, path in all_modules().items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        modules.append((lines, name))
        functions.extend((n, f"{name}:{f}") for f, n in _function_lengths(path))
    return sorted(modules, reverse=True), sorted(functions, reverse=True)


def test_function_lengths_skip_signature_and_docstring(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        'def verb(\n    a: int = 1,\n    b: int = 2,\n):\n    """Doc.\n\n    More."""\n'
        "    x = a\n    return x + b\n"
        "class C:\n    def m(self):\n        return 1\n"
    )
    assert dict(_function_lengths(path)) == {"verb": 2, "C.m": 1}


ROOMS = sorted({".".join(name.split(".")[:2]) for name in all_modules() if "." in name})


@pytest.mark.parametrize("room", ROOMS)
def test_module_and_function_sizes(room):
    """No module over 600 lines and no function over 80 (typer parameter lists
    aside), room by room; the failure lists the largest offenders."""
    modules, functions = _sizes()
    big_modules = [(n, m) for n, m in modules if _in(m, room) and n > MAX_MODULE_LINES]
    big_functions = [
        (n, f) for n, f in functions if _in(f.split(":")[0], room) and n > MAX_FUNCTION_LINES
    ]
    report = [f"module {m}: {n} lines" for n, m in big_modules] + [
        f"function {f}: {n} lines" for n, f in big_functions
    ]
    assert not report, "\n".join(report)


def test_largest_modules_and_functions_are_reported(capsys):
    modules, functions = _sizes()
    with capsys.disabled():
        print("\nlargest modules:", ", ".join(f"{m} {n}" for n, m in modules[:5]))
        print("largest functions:", ", ".join(f"{f} {n}" for n, f in functions[:5]))
    assert modules[0][0] >= modules[-1][0]
