"""``python -m benchmarks._child MODULE CONFIG``: run one benchmark child, print its JSON.

Each contender runs in a fresh interpreter so that the CPU seconds and peak RSS
it reports are its own. ``MODULE`` names a module of this package with an
``async def child(config) -> dict``; the result is the last line on stdout.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks._child MODULE CONFIG_JSON", file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.{argv[0]}")
    result = asyncio.run(module.child(json.loads(argv[1])))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
