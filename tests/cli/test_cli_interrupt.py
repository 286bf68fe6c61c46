"""Ctrl-C: ``gsim get-code`` refunds every order still waiting, then exits 130.

Real processes and a real SIGINT: ``gsim sandbox`` serves the API from one process,
``python -m gsim_async get-code`` is interrupted in another, and the sandbox's ledger,
read over its control API, shows the refunds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

import gsim_async

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")

# Run the package from where it is imported, installed or not.
ROOT = Path(gsim_async.__file__).resolve().parent.parent


def gsim(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    # The environment as it is now: the fixtures' state directory included.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, "-m", "gsim_async", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
    )


def read_json_line(stream: IO[str] | None) -> Any:
    assert stream is not None
    line = stream.readline()
    assert line, "the process ended without a line"
    return json.loads(line)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback http)
        return json.loads(response.read())


@pytest.fixture
def server() -> Iterator[dict[str, str]]:
    """``gsim sandbox`` in its own process; codes only arrive through its control API."""
    proc = gsim("--json", "sandbox", "--port", "0", "--no-auto-deliver")
    try:
        yield read_json_line(proc.stdout)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0  # Ctrl-C is how a server stops: not an error
        assert proc.stderr is not None
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_ctrl_c_cancels_and_refunds_every_order_without_a_code(server: dict[str, str]) -> None:
    env = {"GSIM_BASE_URL": server["base_url"], "GSIM_API_KEY": server["api_key"]}
    proc = gsim(
        "--json", "--poll-interval", "0.05", "get-code", "telegram", "russia", "-n", "3", env=env
    )
    try:
        bought = [read_json_line(proc.stdout)["order"] for _ in range(3)]
        # One of the three gets its code before Ctrl-C: it must be kept, not refunded.
        lucky = bought[0]["id"]
        request = urllib.request.Request(  # noqa: S310 (loopback http)
            f"{server['base_url']}/_sandbox/orders/{lucky}/deliver",
            data=b'{"code": "555000"}',
            method="POST",
        )
        urllib.request.urlopen(request, timeout=5).close()  # noqa: S310
        code = read_json_line(proc.stdout)
        assert (code["event"], code["order_id"], code["code"]) == ("code", lucky, "555000")

        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    events = [json.loads(line) for line in out.splitlines()]
    cancelled = [e for e in events if e["event"] == "cancelled"]
    assert sorted(e["order_id"] for e in cancelled) == sorted(o["id"] for o in bought[1:])
    assert all(e["refunded"] == "0.18" for e in cancelled)
    assert events[-1] == {
        "event": "done",
        "codes": 1,
        "without_code": 2,
        "refunded": "0.36",
        "interrupted": True,
    }
    assert err == ""  # the done event says it all: no "interrupted" error besides

    ledger = get(f"{server['base_url']}/_sandbox/ledger")
    assert ledger["orders_by_status"] == {"RECEIVED": 1, "CANCELLED": 2}
    assert ledger["charged"] == 0.54
    assert ledger["refunded"] == 0.36
    assert ledger["balanced"] is True


def test_ctrl_c_for_people_ends_with_the_summary_alone(server: dict[str, str]) -> None:
    env = {"GSIM_BASE_URL": server["base_url"], "GSIM_API_KEY": server["api_key"]}
    proc = gsim("--poll-interval", "0.05", "get-code", "telegram", "russia", "-n", "2", env=env)
    try:
        assert proc.stdout is not None
        bought = [proc.stdout.readline() for _ in range(2)]
        assert all(" bought for 0.18 USD" in line for line in bought)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert out.splitlines()[-1] == "interrupted: 0 of 2 codes; 0.36 USD refunded"
    assert err == ""  # no "error: interrupted" after the summary


def test_a_killed_get_code_is_refunded_by_the_next_command(
    server: dict[str, str], tmp_path: Path
) -> None:
    # SIGKILL, not Ctrl-C: nothing of the killed command runs. Its journal (the default
    # one, in the state directory) tells the next command what it left charged.
    env = {
        "GSIM_BASE_URL": server["base_url"],
        "GSIM_API_KEY": server["api_key"],
        "XDG_STATE_HOME": str(tmp_path),
    }
    proc = gsim(
        "--json", "--poll-interval", "0.05", "get-code", "telegram", "russia", "-n", "2", env=env
    )
    try:
        bought = [read_json_line(proc.stdout)["order"] for _ in range(2)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert (tmp_path / "gsim-async" / "journal.db").exists()
    assert get(f"{server['base_url']}/_sandbox/ledger")["orders_by_status"] == {"PENDING": 2}

    after = gsim("--json", "balance", env=env)
    _, err = after.communicate(timeout=60)
    assert after.returncode == 0, err
    ledger = get(f"{server['base_url']}/_sandbox/ledger")
    assert ledger["orders_by_status"] == {"CANCELLED": 2}, [o["id"] for o in bought]
    assert ledger["balanced"] is True


def test_the_next_command_takes_the_journal_a_killed_one_left_rows_in(
    server: dict[str, str], tmp_path: Path
) -> None:
    # Two commands at once: the second takes journal-2.db. Killed, it leaves its orders
    # there; the next command, alone, takes that file first and refunds them.
    env = {
        "GSIM_BASE_URL": server["base_url"],
        "GSIM_API_KEY": server["api_key"],
        "XDG_STATE_HOME": str(tmp_path),
    }
    args = ("--json", "--poll-interval", "0.05", "get-code", "telegram", "russia")
    first = gsim(*args, env=env)
    second = None
    try:
        kept = read_json_line(first.stdout)["order"]
        second = gsim(*args, env=env)
        lost = read_json_line(second.stdout)["order"]
        second.send_signal(signal.SIGKILL)
        second.wait(timeout=10)
        first.send_signal(signal.SIGINT)  # refunds its own, then exits
        first.wait(timeout=30)
    finally:
        for proc in (first, second):
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate()
    assert (tmp_path / "gsim-async" / "journal-2.db").exists()
    assert get(f"{server['base_url']}/_sandbox/ledger")["orders_by_status"] == {
        "CANCELLED": 1,
        "PENDING": 1,
    }, (kept["id"], lost["id"])

    after = gsim("--json", "balance", env=env)
    _, err = after.communicate(timeout=60)
    assert after.returncode == 0, err
    ledger = get(f"{server['base_url']}/_sandbox/ledger")
    assert ledger["orders_by_status"] == {"CANCELLED": 2}
    assert ledger["balanced"] is True
