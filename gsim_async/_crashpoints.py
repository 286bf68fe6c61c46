"""Crash points: where the crash-safety tests kill their own process on purpose.

Some moments cannot be hit from outside a process (between a purchase's answer and
its journal row, say). With ``_GSIM_CRASH_AT=<point>`` (or ``<point>#<n>``: the n-th
time it is reached) in its environment, a process sends itself SIGKILL at that point:
the same death as the OOM killer's, at an exact place (tests/crash/). Unset, as
everywhere else, this is one string comparison.
"""

from __future__ import annotations

import os
import signal
import sys

_AT, _, _NTH = os.environ.get("_GSIM_CRASH_AT", "").partition("#")
_left = int(_NTH) if _NTH.isdigit() else 1


def reached(point: str) -> None:
    """Die here (SIGKILL) if the crash-safety tests asked for ``point``."""
    global _left
    if _AT and point == _AT:
        _left -= 1
        if _left > 0:
            return
        if sys.platform != "win32":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(137)  # pragma: no cover - Windows has no SIGKILL
