"""What SIGTERM costs each kind of program with 20 waits: orders left charged, seconds to exit.

``python -m benchmarks.stop_signals [--repeats 3] [--waits 20] [--json out.json]``

``docker stop``, Kubernetes and systemd stop a program with SIGTERM and kill it when
its grace runs out (Docker: 10 s). Each row starts a real program (the one the tests
stop, ``tests/stop/program.py``, or the ``gsim`` command line) against a sandbox, lets
it wait on ``--waits`` orders, sends SIGTERM, and reads the sandbox's ledger: orders
left charged (neither refunded nor given a code), and the seconds from the signal to
the process's exit. No journal unless the row says so.

Beside each figure, measured in the same run: the *baseline*, the same program as it
was before stop signals were handled (a plain ``asyncio.run(main())``; a
``SyncClient`` script with SIGTERM at its default), and the *floor*, the seconds to
exit of the same kind of program with no wait (its interpreter and client closing).
The "paused" rows have the server answer 429 with ``Retry-After: 120`` before the
signal: no refund can land within the grace, and the program must still exit in
time and name the orders it leaves. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs

from gsim_async.sandbox import Sandbox

from ._common import Json, child_env, fmt, markdown_table, progress

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "tests" / "stop" / "program.py"
#: The grace a container runtime gives (Docker's default): the target's bound.
GRACE = 10.0
#: A program still running this long after SIGTERM is killed (and the row says so).
KILL_AFTER = 30.0


@attrs.define
class Run:
    """One program stopped once."""

    left_charged: int
    refunded: int
    exit_seconds: float | None  # None: still running at KILL_AFTER (killed)
    status: int | None
    named: int  # how many of the orders left charged its output names


@attrs.define
class Row:
    """A kind of program, stopped ``repeats`` times."""

    program: str
    waits: int
    runs: list[Run] = attrs.field(factory=list)
    baseline: list[Run] = attrs.field(factory=list)
    floor: list[Run] = attrs.field(factory=list)
    baseline_name: str = ""
    floor_name: str = ""

    def to_dict(self) -> Json:
        return {
            "program": self.program,
            "waits": self.waits,
            "runs": [attrs.asdict(r) for r in self.runs],
            "baseline_name": self.baseline_name,
            "baseline": [attrs.asdict(r) for r in self.baseline],
            "floor_name": self.floor_name,
            "floor": [attrs.asdict(r) for r in self.floor],
        }


# -- one program, stopped ---------------------------------------------------------------


class _Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: asyncio.Queue[Json] = asyncio.Queue()
        self.stderr = b""
        self._reader = asyncio.ensure_future(self._read())
        self._errors = asyncio.ensure_future(self._read_errors())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                self.lines.put_nowait(json.loads(line))
            except ValueError:
                continue

    async def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = await self.proc.stderr.read()

    async def next(self, kind: str, timeout: float = 60) -> Json:
        with anyio.fail_after(timeout):
            while True:
                event = await self.lines.get()
                if event.get("event") == kind:
                    return event

    async def stop(self) -> tuple[float | None, int | None]:
        """SIGTERM; the seconds until the process was gone, and its status."""
        signalled = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            with anyio.fail_after(KILL_AFTER):
                status = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            return None, None
        exited = time.monotonic() - signalled
        await self._reader
        await self._errors
        return exited, status


async def _spawn(args: list[str], env: dict[str, str] | None = None) -> _Child:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**child_env(), **(env or {})},
    )
    return _Child(proc)


async def _polled(sandbox: Sandbox, rounds: int = 2) -> None:
    """Once the program's watcher polled ``rounds`` more times: its waits are registered."""
    served = sandbox.stats.total
    with anyio.fail_after(30):
        while sandbox.stats.total < served + rounds:  # noqa: ASYNC110 - the sandbox's counters
            await asyncio.sleep(0.01)


async def _paused(sandbox: Sandbox) -> None:
    sandbox.set_faults(rate_limit=0.001, rate_limit_burst=1, retry_after=120)
    with anyio.fail_after(30):
        while not sandbox.stats.by_status.get(429):  # noqa: ASYNC110 - the sandbox's counters
            await asyncio.sleep(0.01)


def _left(sandbox: Sandbox) -> list[str]:
    ledger = sandbox.ledger()
    refunded = ledger.refunds_by_order
    return [o.id for o in ledger.orders if o.id not in refunded and o.status != "RECEIVED"]


Starter = Callable[[Sandbox, int, str], Awaitable[_Child]]


def sdk_program(kind: str, mode: str, **extra: Any) -> Starter:
    """``tests/stop/program.py`` as ``kind``/``mode``."""

    async def start(sandbox: Sandbox, waits: int, home: str) -> _Child:
        config = {
            "base_url": sandbox.base_url,
            "api_key": sandbox.api_key,
            "kind": kind,
            "mode": mode if waits else "idle",
            "count": waits,
            **extra,
        }
        child = await _spawn([str(PROGRAM), json.dumps(config)])
        if waits:
            await child.next("ready")
            await _polled(sandbox)
        else:  # no wait: the client is open and has been used once
            await child.next("ready")
            await asyncio.sleep(0.3)
        return child

    return start


def cli_program(*options: str) -> Starter:
    """``gsim [options] get-code telegram russia -n WAITS``."""

    async def start(sandbox: Sandbox, waits: int, home: str) -> _Child:
        env = {
            "GSIM_BASE_URL": sandbox.base_url,
            "GSIM_API_KEY": sandbox.api_key,
            "XDG_STATE_HOME": home,
        }
        args = ["-m", "gsim_async", "--json", "--poll-interval", "0.05", *options]
        child = await _spawn([*args, "get-code", "telegram", "russia", "-n", str(waits)], env)
        for _ in range(waits):
            await child.next("bought")
        await _polled(sandbox)
        return child

    return start


async def stop_once(start: Starter, waits: int, *, paused: bool, seed: int) -> Run:
    """Start a program with ``waits`` waits, SIGTERM it, and read the ledger."""
    async with Sandbox(seed=seed, auto_deliver=False) as sandbox:
        with tempfile.TemporaryDirectory() as home:  # the CLI's state directory (journal)
            return await _stop_in(sandbox, start, waits, paused=paused, home=home)


async def _stop_in(sandbox: Sandbox, start: Starter, waits: int, *, paused: bool, home: str) -> Run:
    child = await start(sandbox, waits, home)
    if paused:
        await _paused(sandbox)
    exited, status = await child.stop()
    left = _left(sandbox)
    said = child.stderr.decode(errors="replace")
    said += "".join(json.dumps(e) for e in _drain(child.lines))
    named = sum(1 for order_id in left if order_id in said)
    refunded = len(sandbox.ledger().refunds_by_order)
    return Run(len(left), refunded, exited, status, named)


def _drain(queue: asyncio.Queue[Json]) -> list[Json]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


# -- the rows ----------------------------------------------------------------------------

ASYNC_BASELINE = ("plain asyncio.run(main())", sdk_program("plain", "waits"))
SYNC_BASELINE = ("SyncClient, SIGTERM left at default", sdk_program("sync", "threads",
                 sigterm_default=True))  # fmt: skip
ASYNC_FLOOR = ("gsim_async.run, no wait", sdk_program("async", "idle"))
SYNC_FLOOR = ("SyncClient, no wait", sdk_program("sync", "idle"))
CLI_FLOOR = ("gsim get-code -n 1", cli_program("--no-journal"))


@attrs.define
class Case:
    name: str
    start: Starter
    paused: bool = False
    baseline: tuple[str, Starter] | None = None
    floor: tuple[str, Starter] | None = None
    floor_waits: int = 0


CASES = [
    Case("gsim_async.run: wait_for_code", sdk_program("async", "waits"),
         baseline=ASYNC_BASELINE, floor=ASYNC_FLOOR),
    Case("gsim_async.run: activation()", sdk_program("async", "activations"),
         baseline=ASYNC_BASELINE, floor=ASYNC_FLOOR),
    Case("gsim_async.run: as_completed", sdk_program("async", "as_completed"),
         baseline=ASYNC_BASELINE, floor=ASYNC_FLOOR),
    Case("SyncClient: a wait per thread", sdk_program("sync", "threads"),
         baseline=SYNC_BASELINE, floor=SYNC_FLOOR),
    Case("SyncClient: as_completed", sdk_program("sync", "as_completed"),
         baseline=SYNC_BASELINE, floor=SYNC_FLOOR),
    Case("gsim get-code (--no-journal)", cli_program("--no-journal"),
         floor=CLI_FLOOR, floor_waits=1),
    Case("gsim get-code (its journal)", cli_program(), floor=CLI_FLOOR, floor_waits=1),
    Case("paused: gsim_async.run: wait_for_code", sdk_program("async", "waits"), paused=True,
         floor=ASYNC_FLOOR),
    Case("paused: SyncClient: a wait per thread", sdk_program("sync", "threads"), paused=True,
         floor=SYNC_FLOOR),
    Case("paused: gsim get-code (--no-journal)", cli_program("--no-journal"), paused=True,
         floor=CLI_FLOOR, floor_waits=1),
]  # fmt: skip


async def run(*, waits: int, repeats: int, only: str | None = None) -> list[Row]:
    """Every case, each ``repeats`` times beside its baseline and floor (interleaved)."""
    rows = []
    seed = 100
    for case in CASES:
        if only is not None and only not in case.name:
            continue
        row = Row(case.name, waits)
        if case.baseline is not None:
            row.baseline_name = case.baseline[0]
        if case.floor is not None:
            row.floor_name = case.floor[0]
        for attempt in range(repeats):
            progress(f"stop signals: {case.name} ({attempt + 1}/{repeats})")
            seed += 1
            row.runs.append(await stop_once(case.start, waits, paused=case.paused, seed=seed))
            if case.baseline is not None:
                row.baseline.append(
                    await stop_once(case.baseline[1], waits, paused=case.paused, seed=seed)
                )
            if case.floor is not None:
                row.floor.append(
                    await stop_once(case.floor[1], case.floor_waits, paused=False, seed=seed)
                )
        rows.append(row)
    return rows


def _seconds(runs: list[Run]) -> str:
    times = [r.exit_seconds for r in runs]
    if not runs:
        return "-"
    if any(t is None for t in times):
        return f"killed after {KILL_AFTER:.0f} s"
    done = [t for t in times if t is not None]
    return f"{fmt(statistics.median(done), 2)} (max {fmt(max(done), 2)})"


def _statuses(runs: list[Run]) -> str:
    return ", ".join(sorted({str(r.status) for r in runs})) or "-"


def table(rows: list[Row]) -> str:
    """One line per kind of program: the figures, then the baseline's and the floor's."""
    body = []
    for row in rows:
        left = max(r.left_charged for r in row.runs)
        named = min(r.named for r in row.runs)
        said = f"{named} of {left} named" if left else "-"
        base = (
            f"{row.baseline_name}: {max(r.left_charged for r in row.baseline)} left, "
            f"{_seconds(row.baseline)} s, exit {_statuses(row.baseline)}"
            if row.baseline
            else "-"
        )
        floor = f"{row.floor_name}: {_seconds(row.floor)} s" if row.floor else "-"
        body.append(
            [
                row.program,
                str(row.waits),
                str(left),
                said,
                _seconds(row.runs),
                _statuses(row.runs),
                base,
                floor,
            ]
        )
    return markdown_table(
        [
            "program (SIGTERM)",
            "waits",
            "left charged (max)",
            "left ones named",
            "s to exit (median, max)",
            "exit status",
            "baseline (same run)",
            "floor (same run)",
        ],
        body,
        "lrrrrrll",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=20, help="waits per program")
    parser.add_argument("--repeats", type=int, default=3, help="stops per kind of program")
    parser.add_argument("--only", help="only the cases whose name contains this")
    parser.add_argument("--json", dest="json_path", help="write the figures as JSON")
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows = asyncio.run(run(waits=args.waits, repeats=args.repeats, only=args.only))
    print(f"## SIGTERM with {args.waits} waits, no journal unless said (grace: {GRACE:.0f} s)\n")
    print(table(rows))
    print(f"\n{args.repeats} stop(s) per row, {time.monotonic() - started:.0f} s in all.")
    if args.json_path:
        Path(args.json_path).write_text(
            json.dumps({"grace": GRACE, "rows": [r.to_dict() for r in rows]}, indent=2)
        )
    in_time = all(
        r.exit_seconds is not None and r.exit_seconds < GRACE for row in rows for r in row.runs
    )
    refunded = all(
        r.left_charged == 0 for row in rows if "paused" not in row.program for r in row.runs
    )
    named = all(r.named == r.left_charged for row in rows for r in row.runs)
    return 0 if in_time and refunded and named else 1


if __name__ == "__main__":
    sys.exit(main())
