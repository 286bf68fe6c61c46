"""Ctrl-C: a real SIGINT to a process using SyncClient refunds before the exception leaves.

The sandbox runs in this process (its own thread); ``interrupted.py`` runs in another,
prints ``ready`` once it waits, and, after its ``KeyboardInterrupt``, what the server
said of its orders at that moment. The sandbox's ledger says the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sync_helpers import ENV, ThreadedSandbox, until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")

SCRIPT = Path(__file__).with_name("interrupted.py")

#: Runs the rest of its command line with SIGINT ignored, as a shell starts a background
#: job (``cmd &``, nohup, many CI runners): the process inherits the disposition.
AS_BACKGROUND_JOB = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
]


class Script:
    """``interrupted.py`` in a process of its own."""

    def __init__(self, mode: str, sandbox: ThreadedSandbox, *, background: bool = False) -> None:
        self.sandbox = sandbox
        prefix = AS_BACKGROUND_JOB if background else [sys.executable]
        self.proc = subprocess.Popen(  # noqa: S603 (our own interpreter and script)
            [*prefix, str(SCRIPT), mode, sandbox.base_url, sandbox.api_key],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )

    def ready(self) -> list[str]:
        """The order ids, once the script waits on them (its watcher has polled)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ready"), line + self.errors()
        served = self.requests()
        until(lambda: self.requests() >= served + 2, "the script's wait to poll")
        return line.split()[1:]

    def requests(self) -> int:
        return self.sandbox.call(lambda: self.sandbox.sandbox.stats.total)

    def interrupt(self) -> None:
        os.kill(self.proc.pid, signal.SIGINT)

    def outcome(self) -> dict[str, Any]:
        """What the script saw as its KeyboardInterrupt left; it must exit 130."""
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 130, out + err
        line = next(x for x in out.splitlines() if x.startswith("interrupted"))
        seen: dict[str, Any] = json.loads(line.split(" ", 1)[1])
        return seen

    def errors(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def script(sandbox: ThreadedSandbox) -> Iterator[Any]:
    started: list[Script] = []

    def start(mode: str, *, background: bool = False) -> Script:
        started.append(Script(mode, sandbox, background=background))
        return started[-1]

    yield start
    for each in started:
        each.kill()


def assert_refunded(sandbox: ThreadedSandbox, order_id: str, status: str) -> None:
    record = sandbox.order(order_id)
    assert record.status == status
    ledger = sandbox.ledger()
    assert ledger.refunds_by_order[order_id] == record.price
    assert ledger.balanced and ledger.balance == Decimal("100")


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background-job"])
def test_ctrl_c_in_an_activation_refunds_before_the_exception_leaves(
    script: Any, sandbox: ThreadedSandbox, background: bool
) -> None:
    # Started as a background job, the script inherits SIGINT ignored: it must set the
    # disposition it relies on itself, or the SIGINT the test sends does nothing.
    proc = script("activation", background=background)
    (order_id,) = proc.ready()
    proc.interrupt()
    seen = proc.outcome()
    assert seen == {"statuses": {order_id: "CANCELLED"}, "refunded": "0.18"}
    assert_refunded(sandbox, order_id, "CANCELLED")


@pytest.mark.parametrize(("on_timeout", "status"), [("ban", "BANNED"), ("cancel", "CANCELLED")])
def test_ctrl_c_in_a_wait_gives_the_order_up_as_on_timeout_says(
    script: Any, sandbox: ThreadedSandbox, on_timeout: str, status: str
) -> None:
    proc = script(on_timeout)
    (order_id,) = proc.ready()
    proc.interrupt()
    assert proc.outcome()["statuses"] == {order_id: status}
    assert_refunded(sandbox, order_id, status)


def test_ctrl_c_in_a_wait_that_keeps_its_order_keeps_it(
    script: Any, sandbox: ThreadedSandbox
) -> None:
    proc = script("keep")
    (order_id,) = proc.ready()
    proc.interrupt()
    assert proc.outcome()["statuses"] == {order_id: "PENDING"}
    assert sandbox.ledger().refunds_by_order == {}


def test_ctrl_c_in_as_completed_gives_up_every_order_not_returned(
    script: Any, sandbox: ThreadedSandbox
) -> None:
    proc = script("as_completed")
    ids = proc.ready()
    proc.interrupt()
    assert proc.outcome()["statuses"] == dict.fromkeys(ids, "BANNED")
    ledger = sandbox.ledger()
    assert ledger.orders_by_status == {"BANNED": 3}
    assert ledger.balance == Decimal("100")


def test_ctrl_c_during_a_purchase_lets_it_end_and_refunds_it(
    script: Any, sandbox: ThreadedSandbox
) -> None:
    sandbox.call(lambda: sandbox.sandbox.set_faults(purchase_delay=(2.0, 2.0)))
    proc = script("purchase")
    assert proc.proc.stdout is not None
    assert proc.proc.stdout.readline().startswith("ready")
    # A client lists the account once before its first purchase: then it buys.
    lists = "GET /api/v1/orders"
    until(lambda: sandbox.call(lambda: sandbox.sandbox.stats.count(lists)) >= 1, "the listing")
    time.sleep(0.2)  # the purchase on the wire (it takes 2 s to answer)
    proc.interrupt()
    statuses = proc.outcome()["statuses"]
    assert list(statuses.values()) == ["CANCELLED"]
    (order_id,) = statuses
    assert_refunded(sandbox, order_id, "CANCELLED")


def test_a_second_ctrl_c_stops_waiting_for_the_refund(
    script: Any, sandbox: ThreadedSandbox
) -> None:
    proc = script("twice")
    proc.ready()
    sandbox.call(lambda: sandbox.sandbox.set_faults(latency=(30.0, 30.0)))  # a refund hangs
    proc.interrupt()
    time.sleep(0.3)
    proc.interrupt()
    assert proc.outcome() == {}  # out well before the refund could answer
