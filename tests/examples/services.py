"""The framework recipes' harness: the sandbox in a thread, each recipe in a real process.

A recipe runs as its users run it (``uvicorn ...``, ``arq ...``, ``celery ... worker``,
``python telegram_bot.py``), in a process of its own that a test stops with a real
signal. The sandbox it buys from runs in this process, in a thread of its own, so the
tests (plain functions, as the processes are not theirs to await) read its ledger
whenever they like, and so does a module-scoped fixture shared by a module's tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from anyio.from_thread import start_blocking_portal
from served import ThreadedSandbox as Served

import gsim_async
from gsim_async.sandbox import Ledger, OrderRecord, Sandbox

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: Where gsim_async is imported from: this checkout, or an installed wheel's site-packages.
PACKAGE_HOME = Path(gsim_async.__file__).resolve().parent.parent


def until(condition: Callable[[], object], what: str, deadline: float = 15.0) -> None:
    """Wait for ``condition`` (a safety net against a hang, not a measurement)."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


class ThreadedSandbox(Served):
    """A sandbox serving from its own thread's event loop, and the way to steer it."""

    def orders(self) -> list[OrderRecord]:
        return self.call(self.sandbox.orders)

    def pending(self) -> list[OrderRecord]:
        """Orders still waiting for a code, oldest first."""
        return [o for o in self.orders() if o.status == "PENDING"]

    def wait_for_pending(self, count: int, deadline: float = 15.0) -> list[OrderRecord]:
        """Once ``count`` orders are waiting for their codes: those orders."""
        until(lambda: len(self.pending()) >= count, f"{count} orders waiting", deadline)
        return self.pending()

    def env(self) -> dict[str, str]:
        """What a recipe's process needs to buy from this sandbox."""
        return {"GSIM_API_KEY": self.api_key, "GSIM_BASE_URL": self.base_url}


@contextlib.contextmanager
def threaded_sandbox(**options: Any) -> Iterator[ThreadedSandbox]:
    """A sandbox in a thread of its own (codes only when a test delivers them)."""
    options.setdefault("auto_deliver", False)
    with start_blocking_portal("asyncio") as portal:
        sandbox = Sandbox(**options)
        portal.call(sandbox.start)
        try:
            yield ThreadedSandbox(portal, sandbox)
        finally:
            portal.call(sandbox.close)


def assert_nothing_left_charged(ledger: Ledger, *, codes: int | None = None) -> None:
    """Every order has its code or was refunded in full; none waits (money rules 4, 7, 9)."""
    waiting = [o.id for o in ledger.orders if o.status == "PENDING"]
    assert not waiting, f"orders left PENDING (charged): {waiting}"
    for order in ledger.orders:
        refunded = ledger.refunds_by_order.get(order.id, Decimal(0))
        if order.sms_code is not None:
            assert refunded == 0, f"{order.id} has its code and was refunded too"
        else:
            assert refunded == order.price, f"{order.id} ({order.status}) left charged"
    assert ledger.balanced
    if codes is not None:
        assert sum(o.sms_code is not None for o in ledger.orders) == codes


class Service:
    """A recipe's real process (a server, a worker, a bot), started the way its users do.

    A module's tests share one (``running()`` starts it, or starts it again after a
    test stopped it). It is ready once its output shows ``ready`` (or ``ready()`` is
    true). Its output goes to a file, shown when a test fails. ``pythonpath`` comes
    before the inherited ``PYTHONPATH`` (by default where gsim_async is imported from
    here, and ``cwd``).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        ready: str | Callable[[], object],
        cwd: Path = EXAMPLES,
        name: str = "service",
        pythonpath: Sequence[str | Path] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.env = env
        self.ready = ready
        self.cwd = cwd
        self.pythonpath = [PACKAGE_HOME, cwd] if pythonpath is None else list(pythonpath)
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self._directory = tempfile.TemporaryDirectory(prefix=f"gsim-{name}-")
        self.directory = Path(self._directory.name)
        self._starts = 0
        self._signalled = (signal.SIGTERM, time.monotonic())
        self.log_path = self.directory / "output-0.log"

    def running(self, timeout: float = 30.0) -> Service:
        """Start the process unless it runs; return once its output shows ``ready``."""
        if self.process is not None and self.process.poll() is None:
            return self
        self._starts += 1
        self.log_path = self.directory / f"output-{self._starts}.log"
        path = os.pathsep.join(
            filter(None, [*map(str, self.pythonpath), os.environ.get("PYTHONPATH")])
        )
        with self.log_path.open("wb") as output:
            self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and recipes)
                self.argv,
                cwd=self.cwd,
                env={**os.environ, **self.env, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        process = self.process
        until(lambda: self._is_ready() or process.poll() is not None, f"{self.name} to start")
        if not self._is_ready():
            raise AssertionError(f"{self.name} did not start:\n{self.log()}")
        return self

    def _is_ready(self) -> bool:
        if isinstance(self.ready, str):
            return self.ready in self.log()
        return bool(self.ready())

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        """What the process printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, float]:
        """Send ``sig`` and wait for the exit: its status, and the seconds it took."""
        self.signal(sig)
        return self.exited(timeout)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig``; ``exited()`` then says how the process ended."""
        assert self.process is not None
        self._signalled = (sig, time.monotonic())
        self.process.send_signal(sig)

    def exited(self, timeout: float = 30.0) -> tuple[int, float]:
        """The exit status, and the seconds since the last signal."""
        assert self.process is not None
        sig, sent = self._signalled
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not exit within {timeout} s of {signal.Signals(sig).name}:\n"
                + self.log()
            ) from None
        return status, time.monotonic() - sent

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def close(self) -> None:
        """Kill the process if it runs; its output never showed the API key."""
        self.kill()
        key = self.env.get("GSIM_API_KEY")
        outputs = sorted(self.directory.glob("output-*.log"))
        leaked = [p.name for p in outputs if key and key in p.read_text(errors="replace")]
        self._directory.cleanup()
        assert not leaked, f"{self.name} printed its API key ({leaked})"


def python(*args: str) -> list[str]:
    """A command run by this interpreter (so a module's script uses this environment)."""
    return [sys.executable, *args]
