"""``python -m gsim_async``: the ``gsim`` command line."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
