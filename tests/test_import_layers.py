"""Imports inside each package point one way: no module imports one that imports it back.

Every import counts, at any level: module top, inside a function, and under
``TYPE_CHECKING`` (a cycle there still ties the modules together for a reader and for
refactoring, and breaks as soon as an annotation is evaluated).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gsim_async

ROOT = Path(gsim_async.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules of ``known`` that the module ``name`` at ``path`` imports, anywhere."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                # ``from . import _x`` imports the module ``_x``; ``from . import X``, the
                # package's ``__init__``.
                submodule = f"{module}.{alias.name}"
                found.add(submodule if submodule in known else module)
    return found & known


def import_graph(package: str) -> dict[str, set[str]]:
    """Each module directly in ``package`` → the modules of the same package it imports."""
    directory = ROOT.parent.joinpath(*package.split("."))
    modules = {_module_name(p): p for p in directory.glob("*.py")}
    known = set(modules)
    return {name: _imported(path, name, known) - {name} for name, path in sorted(modules.items())}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in import order), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_find_cycle_sees_an_indirect_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    "package", ["gsim_async", "gsim_async._resources", "gsim_async.cli", "gsim_async.fleet"]
)
def test_imports_point_one_way(package: str) -> None:
    cycle = find_cycle(import_graph(package))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
