"""Helpers of the stop-signal tests: programs in processes of their own, and the ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from served import ENV, ThreadedSandbox, until

import gsim_async

PROGRAM = Path(__file__).with_name("program.py")

#: The grace period a container runtime gives after SIGTERM (Docker's default): past
#: it, the program is killed. Not a measurement: the bound the feature promises.
GRACE = 10.0


class Program:
    """``program.py`` (or any command) in a process of its own, read line by line."""

    def __init__(self, command: list[str], sandbox: ThreadedSandbox, env: dict[str, str]) -> None:
        self.sandbox = sandbox
        self.proc = subprocess.Popen(  # noqa: S603 (our own interpreter and scripts)
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**ENV, **env},
        )
        self.lines: list[dict[str, Any]] = []
        self.signalled_at = 0.0
        self.out = ""
        self.err = ""

    @classmethod
    def start(cls, sandbox: ThreadedSandbox, **config: Any) -> Program:
        config = {"base_url": sandbox.base_url, "api_key": sandbox.api_key, **config}
        return cls([sys.executable, str(PROGRAM), json.dumps(config)], sandbox, {})

    def next(self, event: str) -> dict[str, Any]:
        """The next JSON line whose ``event`` is ``event`` (others are kept)."""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.finish(timeout=GRACE)
                raise AssertionError(f"no {event!r} line; stdout {self.out!r} stderr {self.err!r}")
            try:
                data = json.loads(line)
            except ValueError:
                continue
            self.lines.append(data)
            if data.get("event") == event:
                return data

    def ready(self, count: int) -> list[str]:
        """The order ids, once every wait polled at least once."""
        ids: list[str] = self.next("ready")["ids"]
        assert len(ids) == count
        self.polled()
        return ids

    def polled(self) -> None:
        """Once the program's watcher has polled twice more: its waits are registered."""
        served = self.requests()
        until(lambda: self.requests() >= served + 2, "the program's waits to poll")

    def requests(self) -> int:
        return self.sandbox.call(lambda: self.sandbox.sandbox.stats.total)

    def send(self, sig: int) -> None:
        self.signalled_at = time.monotonic()
        os.kill(self.proc.pid, sig)

    def finish(self, timeout: float = GRACE) -> tuple[int, float]:
        """The exit status and the seconds from the signal to the exit, within ``timeout``.

        Past ``timeout`` the program is killed, as the runtime would, and the test fails.
        """
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            self.out, self.err = out, err
            raise AssertionError(
                f"still running {timeout} s after the signal (killed); stderr:\n{err}"
            ) from None
        exited = time.monotonic() - self.signalled_at
        self.out, self.err = out, err
        for line in out.splitlines():
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                continue
        return self.proc.returncode, exited

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == event]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def left_charged(sandbox: ThreadedSandbox) -> list[str]:
    """Orders charged and neither refunded nor given a code: money left on the table."""
    ledger = sandbox.ledger()
    return [
        o.id
        for o in ledger.orders
        if o.id not in ledger.refunds_by_order and o.status != gsim_async.OrderStatus.RECEIVED
    ]


def assert_all_refunded(sandbox: ThreadedSandbox, ids: list[str], status: str) -> None:
    ledger = sandbox.ledger()
    assert left_charged(sandbox) == []
    assert {o.id: o.status for o in ledger.orders} == dict.fromkeys(ids, status)
    assert set(ledger.refunds_by_order) == set(ids)
    assert ledger.balanced and ledger.balance == ledger.initial


def pause_the_client(sandbox: ThreadedSandbox, retry_after: int = 120) -> None:
    """From now on the server answers 429 with ``Retry-After`` (a bucket that never
    refills in the test's time), so a client that meets it pauses for that long."""
    sandbox.call(
        lambda: sandbox.sandbox.set_faults(
            rate_limit=0.001, rate_limit_burst=1, retry_after=retry_after
        )
    )


def answered_429(sandbox: ThreadedSandbox) -> int:
    return sandbox.call(lambda: sandbox.sandbox.stats.by_status.get(429, 0))


def money(value: Decimal) -> str:
    return f"{value:.2f}"


__all__ = [
    "GRACE",
    "PROGRAM",
    "Program",
    "answered_429",
    "assert_all_refunded",
    "left_charged",
    "money",
    "pause_the_client",
    "signal",
]
