"""SIGTERM to real programs with 20 waits: refunded before exit, within the grace.

``docker stop``, Kubernetes and systemd stop a program with SIGTERM and kill it a
grace period later (10 s by default for Docker). Each kind of program (design.md,
money rule 9) is run in a process of its own against a sandbox served from this
process's thread, stopped with a real signal, and judged by the sandbox's ledger:
no order left charged, the process gone before the grace ran out. A program that
handles SIGTERM itself keeps its handler; when the server pauses the client past
the grace, the program still exits in time and names the orders it leaves.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from served import ThreadedSandbox, until
from stopping import (
    Program,
    answered_429,
    assert_all_refunded,
    left_charged,
    pause_the_client,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")

COUNT = 20

#: (kind, mode) → the status the stop leaves the orders in.
PROGRAMS = {
    ("async", "waits"): "BANNED",  # wait_for_code's on_timeout, "ban" by default
    ("async", "activations"): "CANCELLED",  # a block left without a code is cancelled
    ("async", "as_completed"): "BANNED",
    ("sync", "threads"): "BANNED",
    ("sync", "as_completed"): "BANNED",
}


@pytest.mark.parametrize(("kind", "mode"), list(PROGRAMS), ids=[f"{k}-{m}" for k, m in PROGRAMS])
def test_sigterm_refunds_every_wait_and_exits_within_the_grace(
    sandbox: ThreadedSandbox, kind: str, mode: str
) -> None:
    program = Program.start(sandbox, kind=kind, mode=mode, count=COUNT)
    try:
        ids = program.ready(COUNT)
        assert len(left_charged(sandbox)) == COUNT
        program.send(signal.SIGTERM)
        status, _ = program.finish()
    finally:
        program.kill()
    assert status == 128 + signal.SIGTERM, program.err
    assert_all_refunded(sandbox, ids, PROGRAMS[kind, mode])
    assert program.events("exit") == [{"event": "exit", "status": 143}]
    assert "Traceback" not in program.err


def test_a_sync_script_in_a_thread_pool_hears_what_became_of_each_order(
    sandbox: ThreadedSandbox,
) -> None:
    program = Program.start(sandbox, kind="sync", mode="threads", count=3)
    try:
        program.ready(3)
        program.send(signal.SIGTERM)
        program.finish()
    finally:
        program.kill()
    # The waits in the pool's threads ended with the stop, each saying so.
    assert program.events("handler") == [{"event": "handler", "sigterm": "_on_sigterm"}]
    results = [e["outcome"] for e in program.events("result")]
    assert len(results) == 3
    assert all(
        r.startswith("ClientClosedError: the client stopped while waiting")
        and "banned, 0.18 refunded" in r
        for r in results
    ), results


@pytest.mark.parametrize("journal", [False, True], ids=["no-journal", "journal"])
def test_the_cli_refunds_on_sigterm(
    sandbox: ThreadedSandbox, tmp_path: Path, journal: bool
) -> None:
    args = ["--json", "--poll-interval", "0.05", *([] if journal else ["--no-journal"])]
    program = cli(sandbox, tmp_path, *args, "get-code", "telegram", "russia", "-n", str(COUNT))
    try:
        ids = [program.next("bought")["order"]["id"] for _ in range(COUNT)]
        program.polled()
        program.send(signal.SIGTERM)
        status, _ = program.finish()
    finally:
        program.kill()
    assert status == 130, program.err  # the CLI's "interrupted"
    assert program.err == ""
    assert_all_refunded(sandbox, ids, "CANCELLED")
    done = program.events("done")
    assert done == [
        {
            "event": "done",
            "codes": 0,
            "without_code": COUNT,
            "refunded": "3.60",
            "interrupted": True,
        }
    ]


def test_the_cli_with_attempts_refunds_on_sigterm(sandbox: ThreadedSandbox, tmp_path: Path) -> None:
    args = ["--json", "--poll-interval", "0.05", "--no-journal", "get-code", "telegram"]
    program = cli(sandbox, tmp_path, *args, "russia", "-n", "5", "--attempts", "2")
    try:
        ids = [program.next("bought")["order"]["id"] for _ in range(5)]
        program.polled()
        program.send(signal.SIGTERM)
        status, _ = program.finish()
    finally:
        program.kill()
    assert status == 130, program.err
    assert program.err == ""
    assert_all_refunded(sandbox, ids, "CANCELLED")
    (done,) = program.events("done")
    assert done["interrupted"] is True


def test_gsim_wait_gives_its_order_up_on_sigterm(sandbox: ThreadedSandbox, tmp_path: Path) -> None:
    # Ctrl-C leaves a `gsim wait` order as it is (the user bought it, and may wait
    # again); a stop signal gives it up as --on-timeout says, as every wait.
    buy = cli(sandbox, tmp_path, "--json", "--no-journal", "buy", "telegram", "russia")
    buy.finish(timeout=30)
    (order,) = buy.lines
    order_id = order["id"]
    waiting = cli(sandbox, tmp_path, "--json", "--no-journal", "--poll-interval", "0.05", "wait",
                  order_id)  # fmt: skip
    try:
        waiting.polled()
        waiting.send(signal.SIGTERM)
        status, _ = waiting.finish()
    finally:
        waiting.kill()
    assert status == 130, waiting.err
    assert_all_refunded(sandbox, [order_id], "BANNED")


def cli(sandbox: ThreadedSandbox, tmp_path: Path, *args: str) -> Program:
    env = {
        "GSIM_BASE_URL": sandbox.base_url,
        "GSIM_API_KEY": sandbox.api_key,
        "XDG_STATE_HOME": str(tmp_path),  # the default journal, if any, is the test's
    }
    return Program([sys.executable, "-m", "gsim_async", *args], sandbox, env)


# -- a handler of the program's own --------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "own_handler"),
    [("async", "signal"), ("async", "loop"), ("sync", "signal")],
    ids=["run-signal.signal", "run-add_signal_handler", "SyncClient-signal.signal"],
)
def test_a_program_that_handles_sigterm_keeps_its_handler(
    sandbox: ThreadedSandbox, kind: str, own_handler: str
) -> None:
    mode = "waits" if kind == "async" else "threads"
    program = Program.start(sandbox, kind=kind, mode=mode, count=3, own_handler=own_handler)
    try:
        ids = program.ready(3)
        program.send(signal.SIGTERM)
        assert program.next("own_handler")["signum"] == signal.SIGTERM
        program.polled()  # still waiting: nothing was given up
        assert sorted(left_charged(sandbox)) == sorted(ids)
        for order_id in ids:
            sandbox.deliver_code(order_id, "424242")
        status, _ = program.finish(timeout=30)
    finally:
        program.kill()
    assert status == 0, program.err
    (ended,) = program.events("ended")
    assert ended["results"] == ["code 424242"] * 3
    if kind == "sync":
        assert program.events("handler") == [{"event": "handler", "sigterm": "main.<locals>.mine"}]


# -- the server pauses the client past the grace --------------------------------------------


@pytest.mark.parametrize(("kind", "mode"), [("async", "waits"), ("sync", "threads")])
def test_paused_past_the_grace_the_program_exits_in_time_naming_what_it_leaves(
    sandbox: ThreadedSandbox, kind: str, mode: str
) -> None:
    program = Program.start(sandbox, kind=kind, mode=mode, count=COUNT)
    try:
        ids = program.ready(COUNT)
        pause_the_client(sandbox)  # Retry-After: 120 s; the client pauses 60 s
        until(lambda: answered_429(sandbox) >= 1, "a 429")
        program.send(signal.SIGTERM)
        status, _ = program.finish()
    finally:
        program.kill()
    assert status == 143, program.err
    # Nothing could be refunded in time: every order is named as left charged.
    assert sorted(left_charged(sandbox)) == sorted(ids)
    assert "left charged" in program.err
    assert all(order_id in program.err for order_id in ids), program.err


def test_paused_past_the_grace_the_cli_exits_in_time_naming_what_it_leaves(
    sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    args = ["--json", "--poll-interval", "0.05", "--no-journal"]
    program = cli(sandbox, tmp_path, *args, "get-code", "telegram", "russia", "-n", str(COUNT))
    try:
        ids = [program.next("bought")["order"]["id"] for _ in range(COUNT)]
        program.polled()
        pause_the_client(sandbox)
        until(lambda: answered_429(sandbox) >= 1, "a 429")
        program.send(signal.SIGTERM)
        status, _ = program.finish()
    finally:
        program.kill()
    assert status == 130, program.err
    assert sorted(left_charged(sandbox)) == sorted(ids)
    left = [e for e in program.events("cancelled") if e["refunded"] is None]
    assert sorted(e["order_id"] for e in left) == sorted(ids)
    assert all(e["status"] == "PENDING" for e in left)


# -- a journal keeps what is owed ---------------------------------------------------------------


def test_with_a_journal_the_waits_stop_and_the_next_run_decides(
    sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    journal = str(tmp_path / "gsim.db")
    program = Program.start(
        sandbox, kind="async", mode="waits", count=COUNT, journal=journal, timeout=3
    )
    try:
        ids = program.ready(COUNT)
        program.send(signal.SIGTERM)
        status, _ = program.finish()
    finally:
        program.kill()
    assert status == 143, program.err
    # Not refunded: the journal keeps them, as after a crash.
    assert sorted(left_charged(sandbox)) == sorted(ids)
    # main was cancelled: its waits stopped (the journal keeps their rows as they were).
    assert [e["outcome"] for e in program.events("result")] == [
        "CancelledError: gsim_async.run(): SIGTERM"
    ] * COUNT

    # The next run with the journal refunds each when its wait would have ended.
    again = Program.start(sandbox, kind="async", mode="idle", count=0, journal=journal)
    try:
        again.next("ready")
        until(lambda: not left_charged(sandbox), "the next run's refunds", deadline=30)
        again.send(signal.SIGTERM)
        status, _ = again.finish()
    finally:
        again.kill()
    assert status == 143, again.err
    assert_all_refunded(sandbox, ids, "BANNED")
