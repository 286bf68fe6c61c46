"""What a SIGKILL costs with a journal (and in a fleet): orders left charged, time to refund.

``python -m benchmarks.crash [--json out.json] [--no-fleet]``

Each row kills a real program (tests/crash/crash_worker.py, ``Client(journal=...)``)
at one point that matters, starts it again on the same journal, and reads the
sandbox's ledger: the orders bought, any charged twice, any still charged past the
moment its refund fell due plus 5 s, and when the last refund landed, beside the
moment it was due (the floor: the SDK must not refund earlier than promised, and
should not much later). The fleet row kills a member waiting on 20 orders beside a
live one, and measures from the kill. Loopback only; a real redis-server for the
fleet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import attrs

from gsim_async.sandbox import Sandbox

from ._common import Json, fmt, markdown_table, progress
from .fleet import redis_server

ROOT = Path(__file__).resolve().parent.parent
CRASH_WORKER = ROOT / "tests" / "crash" / "crash_worker.py"
FLEET_WORKER = ROOT / "tests" / "fleet" / "fleet_worker.py"
SLACK = 5.0


@attrs.define
class KillRow:
    """One kill point's outcome."""

    point: str
    orders: int
    charged_twice: int
    left_charged: int
    due: float  # seconds after the restart (or the kill) the refunds fell due
    last_refund: float | None  # seconds after the same moment the last one landed


class _Proc:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: asyncio.Queue[Json] = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                self.lines.put_nowait(json.loads(line))
            except ValueError:
                continue

    async def next(self, kind: str, timeout: float = 60) -> Json:
        with anyio.fail_after(timeout):
            while True:
                event = await self.lines.get()
                if event["event"] == kind:
                    return event

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await self._reader


async def _start(script: Path, config: Json, env: dict[str, str] | None = None) -> _Proc:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
    )
    return _Proc(proc)


async def _until_settled(sandbox: Sandbox, since: float, within: float) -> tuple[float | None, int]:
    """Seconds after ``since`` when no order was charged any more; orders still charged."""
    while True:
        charged = [o for o in sandbox.orders() if o.status == "PENDING" and not o.refunded]
        if not charged:
            return time.monotonic() - since, 0
        if time.monotonic() - since > within:
            return None, len(charged)
        await asyncio.sleep(0.05)


def _twice(sandbox: Sandbox, asked: int) -> int:
    over_asked = max(len(sandbox.orders()) - asked, 0)
    refunded_twice = sum(1 for o in sandbox.orders() if o.refunded > o.price)
    return over_asked + refunded_twice


async def _kill_point(
    point: str,
    scenario: str,
    *,
    asked: int,
    due: float,
    faults: Json | None = None,
    env: dict[str, str] | None = None,
    ttl: float = 1200.0,
    ready: Callable[[Sandbox], bool] | None = None,
    **more: Any,
) -> KillRow:
    async with Sandbox(seed=31, auto_deliver=False, order_ttl=ttl) as sandbox:
        journal = Path(tempfile.gettempdir()) / f"gsim-crash-{uuid.uuid4().hex}.db"
        base = {"base_url": sandbox.base_url, "api_key": sandbox.api_key, "journal": str(journal)}
        if faults:
            sandbox.set_faults(**faults)
        first = await _start(CRASH_WORKER, {**base, "scenario": scenario, **more}, env)
        if env is None:
            await first.next("ready")
            if ready is None:
                await first.next(more.get("marker", "bought"))
                await asyncio.sleep(0.5)  # well into what it does
            else:
                while not ready(sandbox):  # noqa: ASYNC110 - the sandbox's ledger, polled
                    await asyncio.sleep(0.02)
        else:
            await first.proc.wait()  # it kills itself at its crash point
        await first.kill()
        sandbox.clear_faults()
        second = await _start(CRASH_WORKER, {**base, "scenario": "recover", "stay": due + 30})
        await second.next("ready")
        restarted = time.monotonic()
        last, left = await _until_settled(sandbox, restarted, due + SLACK)
        await second.kill()
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(str(journal) + suffix).unlink(missing_ok=True)  # noqa: ASYNC240
        return KillRow(point, len(sandbox.orders()), _twice(sandbox, asked), left, due, last)


async def _fleet_row(count: int) -> KillRow:
    async with Sandbox(seed=37, auto_deliver=False, balance=Decimal(1000)) as sandbox:
        with redis_server() as url:
            base = {
                "base_url": sandbox.base_url,
                "api_key": sandbox.api_key,
                "redis_url": url,
                "namespace": uuid.uuid4().hex[:8],
                # RedisFleet's defaults: a member is dead after ten heartbeats (10 s).
                "heartbeat": 1.0,
                "lease": 3.0,
            }
            victim = await _start(
                FLEET_WORKER,
                {**base, "scenario": "wait", "count": count, "timeout": 600, "on_timeout": "ban"},
            )
            await victim.next("ready")
            await victim.next("bought")
            survivor = await _start(FLEET_WORKER, {**base, "scenario": "idle", "stay": 120})
            await survivor.next("ready")
            await asyncio.sleep(1.0)
            await victim.kill()
            killed = time.monotonic()
            last, left = await _until_settled(sandbox, killed, 30)
            await survivor.kill()
            return KillRow(
                f"fleet member killed, {count} waits", len(sandbox.orders()),
                _twice(sandbox, count), left, 30.0, last,
            )  # fmt: skip


async def run(*, fleet: bool) -> list[KillRow]:
    """Every kill point, then (with ``fleet``) a fleet member's death."""
    grace = 1.0
    rows = []
    cases: list[tuple[str, dict[str, Any]]] = [
        (
            "before the intent is written",
            {"scenario": "activation", "asked": 0, "due": 0.0,
             "env": {"_GSIM_CRASH_AT": "before-intent"}},
        ),
        (
            "purchase on the wire (charged, unanswered)",
            {"scenario": "activation", "asked": 1, "due": grace + 1.0,
             "faults": {"purchase_answer_delay": 60}, "grace": grace,
             "ready": lambda sb: len(sb.orders()) == 1},
        ),
        (
            "after the answer, before it is journaled",
            {"scenario": "activation", "asked": 3, "due": grace + 1.0, "count": 3,
             "env": {"_GSIM_CRASH_AT": "after-answer"}},
        ),
        (
            "inside activation(), waiting",
            {"scenario": "activation", "asked": 5, "due": grace, "count": 5, "grace": grace},
        ),
        (
            "waiting with timeout=5 s",
            {"scenario": "wait", "asked": 5, "due": 5.0, "count": 5, "timeout": 5.0},
        ),
        (
            "in the middle of a refund",
            {"scenario": "wait", "asked": 3, "due": 0.0, "count": 3, "timeout": 0.2,
             "stay": 600, "faults": {"refund_error_rate": 1.0}, "marker": "timeout"},
        ),
        (
            "create() held, expiring in 65 s",
            {"scenario": "create", "asked": 2, "due": 5.0, "count": 2, "ttl": 65.0},
        ),
    ]  # fmt: skip
    for name, options in cases:
        progress(f"kill point: {name}")
        rows.append(await _kill_point(name, **options))
    if fleet:
        progress("fleet: a member killed with 20 waits")
        rows.append(await _fleet_row(20))
    return rows


def table(rows: list[KillRow]) -> str:
    """The markdown table of the rows."""
    return markdown_table(
        ["killed", "orders", "charged twice", "left charged", "due by", "last refund"],
        [
            [
                r.point,
                str(r.orders),
                str(r.charged_twice),
                str(r.left_charged),
                fmt(r.due, 1, " s"),
                "-" if r.last_refund is None else fmt(r.last_refund, 1, " s"),
            ]
            for r in rows
        ],
        "lrrrrr",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--no-fleet", action="store_true", help="skip the fleet row")
    args = parser.parse_args(argv)
    rows = asyncio.run(run(fleet=not args.no_fleet))
    print(table(rows))
    print(
        "\ndue by: the latest the refunds fell due, after the restart (the fleet row: after"
        " the kill, the goal);"
        " last refund: when the last one landed; left charged: still charged "
        f"{SLACK:.0f} s past due (goal 0); charged twice: goal 0"
    )
    if args.json_path:
        Path(args.json_path).write_text(json.dumps([attrs.asdict(r) for r in rows], indent=2))
    bad = sum(r.left_charged + r.charged_twice for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
