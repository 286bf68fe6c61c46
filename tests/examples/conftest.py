"""The examples are scripts, not a package: make them importable by their file names."""

from __future__ import annotations

import sys
from pathlib import Path

import gsim_async

EXAMPLES = Path(gsim_async.__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
