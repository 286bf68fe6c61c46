"""What every benchmark shares: the sandbox in a subprocess, its control API, one child
process per contender (so CPU time and peak RSS belong to that contender alone),
statistics, and markdown tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening on (\S+)\s+api key: (\S+)")

#: No child may outlive this many seconds (bounded loops only).
CHILD_DEADLINE = 600.0

Json = dict[str, Any]


def child_env() -> dict[str, str]:
    """The environment of every subprocess: works from a checkout without installing."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# -- the sandbox in its own process ----------------------------------------------------


async def start_sandbox(
    seed: int,
    *,
    code_delay: tuple[float, float] | None = None,
    auto_deliver: bool = False,
    balance: str = "1000000",
    no_code_ratio: float = 0.0,
) -> tuple[asyncio.subprocess.Process, str, str]:
    """Run the sandbox in its own process; returns it, its base URL and API key.

    Codes only arrive through the control API unless ``auto_deliver`` (then after
    ``code_delay`` seconds, drawn from ``seed``: the same for every contender).
    """
    args = ["--port", "0", "--seed", str(seed), "--balance", balance]
    if auto_deliver:
        if code_delay is not None:
            args += ["--code-delay", f"{code_delay[0]},{code_delay[1]}"]
        args += ["--no-code-ratio", str(no_code_ratio)]
    else:
        args.append("--no-auto-deliver")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gsim_async.sandbox",
        *args,
        stdout=asyncio.subprocess.PIPE,
        env=child_env(),
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    match = _LISTENING.search(line)
    if match is None:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"sandbox did not start: {line!r}")
    return proc, match.group(1), match.group(2)


async def stop_sandbox(proc: asyncio.subprocess.Process) -> int:
    """Interrupt the sandbox as Ctrl-C would and return its exit status."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT if sys.platform != "win32" else signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
    return proc.returncode if proc.returncode is not None else -1


class SandboxProcess:
    """A running sandbox subprocess and a session on its control API (``/_sandbox/``)."""

    def __init__(self, proc: asyncio.subprocess.Process, base_url: str, api_key: str) -> None:
        self.proc = proc
        self.base_url = base_url
        self.api_key = api_key
        self._control = aiohttp.ClientSession(base_url + "/_sandbox/")

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def get(self, path: str) -> Any:
        """GET a control endpoint; its JSON answer."""
        async with self._control.get(path) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def post(self, path: str, body: Json | None = None) -> Any:
        """POST to a control endpoint; its JSON answer."""
        async with self._control.post(path, json=body or {}) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def stats(self) -> Json:
        """The API request counters (control requests are never counted)."""
        result: Json = await self.get("stats")
        return result

    async def orders(self) -> list[Json]:
        """Every order's record: status, code and ``code_delivered_at`` (Unix seconds)."""
        result: list[Json] = (await self.get("orders"))["orders"]
        return result

    async def aclose(self) -> int:
        await self._control.close()
        return await stop_sandbox(self.proc)


@contextlib.asynccontextmanager
async def running_sandbox(
    seed: int,
    *,
    code_delay: tuple[float, float] | None = None,
    auto_deliver: bool = False,
    balance: str = "1000000",
    no_code_ratio: float = 0.0,
) -> AsyncIterator[SandboxProcess]:
    """``async with running_sandbox(seed) as sb``: a fresh sandbox, stopped afterwards."""
    proc, base_url, api_key = await start_sandbox(
        seed,
        code_delay=code_delay,
        auto_deliver=auto_deliver,
        balance=balance,
        no_code_ratio=no_code_ratio,
    )
    sb = SandboxProcess(proc, base_url, api_key)
    try:
        yield sb
    finally:
        await sb.aclose()


#: Short names of the API routes, for "where the requests went" cells.
_ROUTE_NAMES = {
    "POST /api/v1/orders": "buy",
    "GET /api/v1/orders": "list",
    "GET /api/v1/orders/{id}": "get",
    "POST /api/v1/orders/{id}/cancel": "cancel",
    "POST /api/v1/orders/{id}/ban": "ban",
}


def route_summary(by_route: dict[str, int]) -> str:
    """``by_route`` of a ``/_sandbox/stats`` answer as "buy 1,000, list 12, get 3"."""
    parts = [f"{_ROUTE_NAMES.get(route, route)} {count:,}" for route, count in by_route.items()]
    return ", ".join(parts) or "-"


def status_count(stats: Json, status: int) -> int:
    """Requests answered with ``status`` in a ``/_sandbox/stats`` answer."""
    by_status: dict[str, int] = stats.get("by_status", {})
    return int(by_status.get(str(status), 0))


# -- one child process per contender ---------------------------------------------------


async def run_child(module: str, config: Json, *, timeout: float = CHILD_DEADLINE) -> Json:
    """Run ``benchmarks.<module>.child(config)`` in a fresh interpreter; its JSON result.

    The child's CPU time and peak RSS are its own, not the parent's or the sandbox's.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks._child",
        module,
        json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
        env=child_env(),
        cwd=ROOT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"benchmark child {module} ran over {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {module} failed with exit status {proc.returncode}")
    lines = out.decode().strip().splitlines()
    if not lines:
        raise RuntimeError(f"benchmark child {module} printed no result")
    result: Json = json.loads(lines[-1])
    return result


def peak_rss_bytes() -> int | None:
    """This process's peak resident set size so far (None where unknown)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak if sys.platform == "darwin" else peak * 1024


def rss_bytes() -> int | None:
    """This process's current resident set size (Linux /proc; else the peak)."""
    try:
        resident = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_bytes()
    return resident * os.sysconf("SC_PAGE_SIZE")


class Clock:
    """CPU and wall time of this process since ``start()``."""

    def __init__(self) -> None:
        self.cpu0 = time.process_time()
        self.wall0 = time.perf_counter()

    def cpu(self) -> float:
        return time.process_time() - self.cpu0

    def wall(self) -> float:
        return time.perf_counter() - self.wall0


# -- statistics and tables -------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float | None:
    """The median, None for no values."""
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    """A number for a table cell; ``-`` when unknown."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A markdown table; ``align`` has one ``l`` or ``r`` per column."""
    marks = {"l": "---", "r": "---:"}
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(marks[a] for a in align) + "|",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def progress(message: str) -> None:
    """A progress line on stderr, so stdout stays the tables."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
