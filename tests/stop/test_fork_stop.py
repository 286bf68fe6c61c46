"""A child forked from a program with a ``SyncClient`` open is a plain process again.

``multiprocessing``'s fork start method and prefork servers copy the parent's memory,
the SDK's stop-signal state with it: the live clients (the parent's, whose loop thread
stayed there) and the SIGTERM handler ``SyncClient`` installed. A SIGTERM to such a
child must end it as it ends any process (killed by the signal, promptly), not
"stop" the parent's copied clients and leave with ``SystemExit(143)``; and a
``SyncClient`` the child makes and closes must put SIGTERM's default back.

Real processes, real signals: a program (``SCRIPT``) against the sandbox of this
process forks a child whose target sleeps; the test sends the child SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from typing import Any

import pytest
from served import ThreadedSandbox
from stopping import GRACE, Program

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork")

#: The program: a SyncClient open, a child forked with multiprocessing (``fork``).
SCRIPT = r'''
import json
import multiprocessing
import os
import signal
import sys
import time

import gsim_async
from gsim_async import _stop


def say(event, **fields):
    # One os.write per line: the forked child shares this stdout, and print() may
    # write a line in pieces that the other process's lines split.
    os.write(1, (json.dumps({"event": event, **fields}) + "\n").encode())


def handler():
    current = signal.getsignal(signal.SIGTERM)
    if isinstance(current, signal.Handlers):
        return current.name
    return getattr(current, "__qualname__", str(current))


def live():
    """The clients a stop signal in this process would stop."""
    return sum(1 for c in list(_stop._live) if not c.closed)


def client(config):
    return gsim_async.SyncClient(
        config["api_key"],
        base_url=config["base_url"],
        poll_interval=0.05,
        backoff_base=0,
        journal=False,
    )


def mine(signum, frame):
    """The program's own SIGTERM handler: says so, then dies of the signal."""
    say("own_handler", pid=os.getpid())
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def child(config):
    said = {}
    if config["mode"] == "client_in_child":
        with client(config) as gsim:
            gsim.balance()
            said["sigterm_open"] = handler()
    say("child", pid=os.getpid(), sigterm=handler(), live=live(), **said)
    time.sleep(60)  # bounded: it shares the test's pipe, should nobody kill it


def main(config):
    # The dispositions this program relies on, whatever its parent left it (a
    # background job starts with SIGINT ignored). The child inherits them as forked.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if config["mode"] == "own_handler":
        signal.signal(signal.SIGTERM, mine)
    with client(config) as gsim:
        gsim.balance()
        say("parent", sigterm=handler(), live=live())
        proc = multiprocessing.get_context("fork").Process(target=child, args=(config,))
        proc.start()
        proc.join(config["wait"])
        exitcode = proc.exitcode
        if exitcode is None:
            proc.kill()
            proc.join()
        say("child_exit", exitcode=exitcode)
        balance = gsim.balance()
        say("parent_after", sigterm=handler(), live=live(), balance=str(balance.balance))
    say("exit", sigterm=handler(), live=live())


main(json.loads(sys.argv[1]))
'''


def start(sandbox: ThreadedSandbox, mode: str) -> Program:
    config: dict[str, Any] = {
        "base_url": sandbox.base_url,
        "api_key": sandbox.api_key,
        "mode": mode,
        "wait": 30,
    }
    return Program([sys.executable, "-c", SCRIPT, json.dumps(config)], sandbox, {})


@pytest.mark.parametrize("mode", ["sleep", "client_in_child"])
def test_a_forked_child_dies_of_sigterm_and_leaves_the_parents_client_alone(
    sandbox: ThreadedSandbox, mode: str
) -> None:
    program = start(sandbox, mode)
    stray = None  # the child, until its parent has seen it exit
    try:
        parent = program.next("parent")
        assert parent["sigterm"] == "_on_sigterm"
        assert parent["live"] == 1
        child = program.next("child")
        stray = child["pid"]
        sent = time.monotonic()
        os.kill(child["pid"], signal.SIGTERM)
        exited = program.next("child_exit")
        took = time.monotonic() - sent
        stray = None
        after = program.next("parent_after")
        status, _ = program.finish(timeout=GRACE)
    finally:
        if stray is not None:  # a failed test's child must not hold the pipe open
            with contextlib.suppress(ProcessLookupError):
                os.kill(stray, signal.SIGKILL)
        program.kill()
    # Killed by the signal, as a plain process is: not SystemExit(143) from a
    # handler stopping the parent's clients (copies, with no loop thread here).
    assert exited["exitcode"] == -signal.SIGTERM, (child, exited, program.err)
    assert took < 5, took
    # The child's stop-signal state is its own: none of the parent's clients, and
    # SIGTERM at its default (the handler was the parent's clients').
    assert child["live"] == 0, child
    assert child["sigterm"] == "SIG_DFL", child
    if mode == "client_in_child":
        # Its own client handled SIGTERM while open, and put the default back.
        assert child["sigterm_open"] == "_on_sigterm", child
    # The parent never heard of it: its client still answers and still counts, and
    # its handler is still in place until the client closes.
    assert after["sigterm"] == "_on_sigterm"
    assert after["live"] == 1
    assert after["balance"]
    assert program.events("exit") == [{"event": "exit", "sigterm": "SIG_DFL", "live": 0}]
    assert status == 0, program.err


def test_a_forked_child_keeps_the_programs_own_sigterm_handler(sandbox: ThreadedSandbox) -> None:
    program = start(sandbox, "own_handler")
    stray = None
    try:
        assert program.next("parent") == {"event": "parent", "sigterm": "mine", "live": 1}
        child = program.next("child")
        stray = child["pid"]
        os.kill(child["pid"], signal.SIGTERM)
        heard = program.next("own_handler")
        exited = program.next("child_exit")
        stray = None
        after = program.next("parent_after")
        status, _ = program.finish(timeout=GRACE)
    finally:
        if stray is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stray, signal.SIGKILL)
        program.kill()
    # The fork let go of the parent's clients but left the program's handler alone.
    assert child["sigterm"] == "mine", child
    assert child["live"] == 0, child
    assert heard["pid"] == child["pid"]
    assert exited["exitcode"] == -signal.SIGTERM, (exited, program.err)
    assert after["sigterm"] == "mine"
    assert after["live"] == 1
    assert program.events("exit") == [{"event": "exit", "sigterm": "mine", "live": 0}]
    assert status == 0, program.err
