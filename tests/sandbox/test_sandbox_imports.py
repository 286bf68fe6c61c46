"""The sandbox's modules import one another one way: no module imports one that imports it.

Every import counts wherever it stands: module top, inside a function, and under
``TYPE_CHECKING`` (a cycle there still ties the modules together for a reader and for a
refactoring, and breaks as soon as an annotation is evaluated).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

import gsim_async.sandbox

PACKAGE = "gsim_async.sandbox"
DIRECTORY = Path(gsim_async.sandbox.__file__).parent
MODULES = {path.stem for path in DIRECTORY.glob("*.py")}


def _short(module: str) -> str | None:
    """``gsim_async.sandbox._x`` → ``_x``; the package itself → ``__init__``; else None."""
    if module == PACKAGE:
        return "__init__"
    package, _, name = module.rpartition(".")
    return name if package == PACKAGE and name in MODULES else None


def imports(source: str) -> set[str]:
    """The sandbox modules (short names) a module of the sandbox package imports, anywhere."""
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(_short(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level <= 1:
            # Every module sits directly in the package, so level 1 is the package itself.
            if node.level == 1:
                module = PACKAGE + (f".{node.module}" if node.module else "")
            else:
                module = node.module or ""
            for alias in node.names:
                # ``from . import _x`` imports the module ``_x``; ``from . import X``, __init__.
                found.add(_short(f"{module}.{alias.name}") or _short(module))
    return {name for name in found if name is not None}


def import_graph() -> dict[str, set[str]]:
    """Each module of the sandbox package → the modules of the package it imports."""
    return {
        name: imports((DIRECTORY / f"{name}.py").read_text(encoding="utf-8")) - {name}
        for name in sorted(MODULES)
    }


def test_every_kind_of_import_is_seen() -> None:
    source = """
from typing import TYPE_CHECKING
from . import _errors
from ._json import dumps
import gsim_async.sandbox._ids
from gsim_async.sandbox import _clock
from .. import Client
if TYPE_CHECKING:
    from ._sandbox import Sandbox
def later():
    from . import Faults
"""
    assert imports(source) == {"_errors", "_json", "_ids", "_clock", "_sandbox", "__init__"}


def test_sandbox_imports_point_one_way() -> None:
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as err:
        pytest.fail("import cycle: " + " -> ".join(reversed(err.args[1])))
