"""The blocking client keeps a journal as ``Client`` does: a killed script's orders come back."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sync_helpers import ENV, ThreadedSandbox, until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends SIGKILL")

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from gsim_async import SyncClient

    url, key, journal = sys.argv[1:4]
    with SyncClient(key, base_url=url, poll_interval=0.05, journal=journal) as gsim:
        with gsim.orders.activation("telegram", "russia") as act:
            print("ready", act.order.id, flush=True)
            time.sleep(0.3)  # well into the block (its rows are on disk)
            print("waiting", flush=True)
            act.wait_for_code(timeout=600)
    """
)


def killed_inside_activation(sandbox: ThreadedSandbox, journal: Path) -> str:
    """Run SCRIPT, SIGKILL it inside its activation() block; the order's id."""
    proc = subprocess.Popen(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-c", SCRIPT, sandbox.base_url, sandbox.api_key, str(journal)],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        order_id = proc.stdout.readline().split()[1]
        assert proc.stdout.readline().strip() == "waiting"
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    return order_id


def test_a_killed_scripts_order_is_taken_back_and_gets_its_code(
    sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    journal = tmp_path / "gsim.db"
    order_id = killed_inside_activation(sandbox, journal)

    with sandbox.client(journal=journal) as gsim:
        [order] = gsim.orders.recovered()
        assert order.id == order_id
        code = sandbox.deliver_code(order_id)
        assert gsim.orders.wait_for_code(order, timeout=30) == code
    assert sandbox.order(order_id).status == "RECEIVED"
    assert sandbox.order(order_id).refunded == 0


def test_a_killed_scripts_activation_is_refunded_after_the_grace(
    sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    import gsim_async

    journal = tmp_path / "gsim.db"
    order_id = killed_inside_activation(sandbox, journal)

    with sandbox.client(journal=gsim_async.Journal(journal, grace=0.5)):
        until(lambda: sandbox.order(order_id).status == "CANCELLED", "the refund", 10)
    assert sandbox.order(order_id).refunded == sandbox.order(order_id).price
