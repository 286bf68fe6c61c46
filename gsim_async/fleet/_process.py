"""Which process a member is, and proof that a member on this machine has died.

A heartbeat that stopped is a guess: the process may only be stalled (a blocked loop,
a frozen container, a paused VM), and refunding its orders then loses its codes. A
process that no longer exists is a fact. Each member writes where it runs (the boot,
the pid namespace, the pid and the pid's start time); a member that reads the same
boot and pid namespace can see whether that process is still there, and so take over
a dead neighbour's orders at once instead of after the death threshold. Elsewhere
(another machine or container, a system without ``/proc``) only the heartbeat tells.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

#: Set (to anything) to ignore the process check and judge by heartbeats alone: a
#: benchmark measures the fleet as if every member ran on a machine of its own.
_NO_CHECK = "_GSIM_FLEET_NO_PROCESS_CHECK"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _machine() -> str | None:
    """This boot of this machine and this pid namespace: where a pid means one process."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}/{namespace}" if boot else None


def _started(pid: int) -> tuple[str, str] | None:
    """The process's start time (clock ticks since boot) and state, from ``/proc``."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # The command name may hold spaces and parentheses: fields count from the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20:
        return None
    return fields[19], fields[0]


def identity() -> dict[str, Any]:
    """What a member writes of itself: shown by ``gsim fleet status``, read by ``gone``."""
    pid = os.getpid()
    started = _started(pid)
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "machine": _machine(),
        "start": started[0] if started else None,
        "since": time.time(),
    }


def gone(info: Any) -> bool:
    """Whether the process ``info`` describes is provably dead (on this machine only)."""
    if os.environ.get(_NO_CHECK) or not isinstance(info, dict):
        return False
    machine = info.get("machine")
    pid, start = info.get("pid"), info.get("start")
    if not machine or machine != _machine() or not isinstance(pid, int) or not start:
        return False  # another machine or namespace: its pids are not ours to read
    started = _started(pid)
    if started is None:
        # Unreadable is not gone (/proc mounted with hidepid hides others' processes):
        # only the kernel's "no such process" is proof.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    began, state = started
    # The pid was reused by another process, or it is a zombie waiting to be reaped.
    return began != start or state in ("Z", "X")
