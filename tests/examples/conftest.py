"""The examples are scripts, not a package: make them importable by their file names."""

from __future__ import annotations

import sys
from pathlib import Path

# Beside tests/, whether gsim_async is imported from this checkout or an installed wheel.
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from redis_server import redis_server  # noqa: E402  (the fixture, for the arq example)

__all__ = ["redis_server"]
