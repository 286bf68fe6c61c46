"""``python -m benchmarks``: run the default suite (see ``benchmarks/suite.py``)."""

from __future__ import annotations

import sys

from .suite import cli

sys.exit(cli())
