"""The ``gsim`` command line: ``pip install 'gsim-async[cli]'``, then ``gsim --help``.

Built on click and rich, which only the ``cli`` extra installs; the library itself
does not need them.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import click

__all__ = ["cli", "main"]


def main() -> None:
    """The ``gsim`` console script (also ``python -m gsim_async``)."""
    try:
        from ._app import cli
    except ImportError as exc:
        if exc.name not in ("click", "rich"):
            raise
        sys.exit(
            f"gsim: the command line needs {exc.name}, from the 'cli' extra: "
            "pip install 'gsim-async[cli]'"
        )
    cli.main(prog_name="gsim")


def __getattr__(name: str) -> Any:
    if name == "cli":
        from ._app import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    cli: click.Group
