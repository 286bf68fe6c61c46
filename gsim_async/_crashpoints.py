"""Crash points: where the crash-safety tests kill their own process on purpose.

Some moments cannot be hit from outside a process (between a purchase's answer and
its journal row, say). With ``_GSIM_CRASH_AT=<point>`` in its environment, a process
sends itself SIGKILL when it reaches that point: the same death as the OOM killer's,
at an exact place (tests/crash/). Unset, as everywhere else, this is one string
comparison.
"""

from __future__ import annotations

import os
import signal
import sys

_AT = os.environ.get("_GSIM_CRASH_AT", "")


def reached(point: str) -> None:
    """Die here (SIGKILL) if the crash-safety tests asked for ``point``."""
    if _AT and point == _AT:
        if sys.platform != "win32":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(137)  # pragma: no cover - Windows has no SIGKILL
