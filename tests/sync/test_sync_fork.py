"""A SyncClient made before a fork (a prefork server's, a Celery worker's at import).

Its event loop thread stays in the parent: in the child, a call says so and what to do
instead, and the child still exits (closing what it inherited is not its business; the
parent's client is the parent's). Before, the call said the loop thread had ended, and
the child hung at its exit, closing that copy.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from sync_helpers import ENV, ThreadedSandbox

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")

SCRIPT = textwrap.dedent(
    """
    import os, sys, warnings
    import gsim_async

    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
    url, key = sys.argv[1:3]
    gsim = gsim_async.SyncClient(key, base_url=url)
    print("parent", gsim.balance().balance, flush=True)
    pid = os.fork()
    if pid == 0:
        try:
            gsim.balance()
        except gsim_async.ClientClosedError as exc:
            print("child", exc, flush=True)
        sys.exit(0)  # the interpreter's exit closes open clients: not this one
    _, status = os.waitpid(pid, 0)
    print("child exited", os.waitstatus_to_exitcode(status), flush=True)
    gsim.close()
    """
)


def test_a_client_made_before_a_fork_says_so_in_the_child_which_still_exits(
    sandbox: ThreadedSandbox,
) -> None:
    done = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-c", SCRIPT, sandbox.base_url, sandbox.api_key],
        capture_output=True, text=True, timeout=30, env=ENV, check=False,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[0] == "parent 100"
    assert lines[1].startswith("child this gsim SyncClient was made in another process")
    assert "worker_process_init" in lines[1]
    assert lines[2:] == ["child exited 0"]
