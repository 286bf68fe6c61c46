"""``gsim fleet status``: a fleet's members, leader, gate, holdings and 429s, read from Redis.

A real redis-server, real member processes (``tests/fleet/fleet_worker.py``) on the
key of a sandbox served from a thread, and ``gsim`` run in-process (click's runner)
or, for the live view and Ctrl-C, in a process of its own on a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Gsim, Served
from redis_server import RedisServer, redis_server

import gsim_async

__all__ = ["redis_server"]

WORKER = Path(__file__).parent.parent / "fleet" / "fleet_worker.py"
ROOT = Path(gsim_async.__file__).resolve().parent.parent


class Member:
    """A fleet member in a process of its own; its JSON lines are read as they come."""

    def __init__(self, served: Served, redis: RedisServer, **config: Any) -> None:
        settings = {
            "base_url": served.base_url,
            "api_key": served.api_key,
            "redis_url": redis.url,
            "namespace": None,
            "heartbeat": 0.3,
            "lease": 1.0,
            **config,
        }
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, our own script
            [sys.executable, str(WORKER), json.dumps(settings)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        self.pid = self.process.pid

    def next(self, kind: str, timeout: float = 30) -> dict[str, Any]:
        """The next line of ``kind`` the member prints."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(deadline - time.monotonic()):
                    break
                line = self.process.stdout.readline()
                if not line:
                    break
                event = json.loads(line)
                if event["event"] == kind:
                    return dict(event)
        pytest.fail(f"the member printed no {kind!r} line")

    def kill(self) -> None:
        """SIGKILL, and wait for the process to be gone."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def members(served: Served, redis_server: RedisServer) -> Iterator[list[Member]]:
    """Start members with ``members.append(Member(...))``; killed after the test."""
    started: list[Member] = []
    yield started
    for member in started:
        member.kill()


@pytest.fixture
def gsim(served: Served, redis_server: RedisServer) -> Gsim:
    """``gsim`` on the sandbox's key, with GSIM_FLEET_URL naming the test's Redis."""
    return Gsim(
        {**served.env, "GSIM_FLEET_URL": redis_server.url, "COLUMNS": "200"}, served.api_key
    )


def waiting_member(served: Served, redis: RedisServer, members: list[Member]) -> Member:
    member = Member(served, redis, scenario="wait", count=2, timeout=60, on_timeout="cancel")
    members.append(member)
    member.next("ready")
    member.next("bought")
    return member


def settled(found: dict[str, Any]) -> bool:
    """Both waits of ``waiting_member`` written: its rows and its registrations."""
    return (
        bool(found["members"])
        and (found["waiting"], found["ownership_records"]) == (2, 2)
        and (found["members"][0]["obligations"]["waits"] == 2)
    )


def status_when(gsim: Gsim, check: Any, *args: str) -> dict[str, Any]:
    """``gsim --json fleet status ARGS`` until ``check(status)`` (members write as they go)."""
    deadline = time.monotonic() + 15
    while True:
        found: dict[str, Any] = gsim.json("fleet", "status", *args)
        if check(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


# -- what is asked of the user --------------------------------------------------------------


def test_no_fleet_named_is_a_usage_error(served: Served) -> None:
    gsim = Gsim({**served.env, "GSIM_FLEET_URL": None}, served.api_key)
    result = gsim("fleet", "status")
    assert result.exit_code == 2
    assert result.stderr.startswith("gsim: error: no fleet: pass --fleet URL or set GSIM_FLEET_URL")
    as_json = json.loads(gsim("fleet", "status", "--json").stderr)
    assert (as_json["code"], as_json["exit_code"]) == ("USAGE", 2)


def test_no_api_key_is_a_usage_error(
    redis_server: RedisServer, no_env: dict[str, str | None]
) -> None:
    result = Gsim(no_env, "2s_")("fleet", "status", "--fleet", redis_server.url)
    assert result.exit_code == 2
    assert "no API key" in result.stderr


def test_the_embedded_sandbox_has_no_fleet_to_show(
    redis_server: RedisServer, no_env: dict[str, str | None]
) -> None:
    result = Gsim(no_env, "2s_")("--sandbox", "fleet", "status", "--fleet", redis_server.url)
    assert result.exit_code == 2
    assert "--sandbox: an embedded sandbox has no fleet to show" in result.stderr


def test_count_goes_with_watch(gsim: Gsim) -> None:
    result = gsim("fleet", "status", "--count", "2")
    assert result.exit_code == 2
    assert "--count goes with --watch" in result.stderr


def test_an_unusable_redis_is_the_fleet_error_line_of_every_command(
    served: Served, redis_server: RedisServer
) -> None:
    redis_server.stop()
    gsim = Gsim(served.env, served.api_key)
    status = gsim("fleet", "status", "--fleet", redis_server.url)
    balance = gsim("balance", "--fleet", redis_server.url)
    assert (status.exit_code, balance.exit_code) == (1, 1)
    assert status.stderr == balance.stderr
    assert status.stderr.startswith("gsim: error: cannot reach the fleet's Redis at redis://")
    assert (
        json.loads(gsim("fleet", "status", "--json", "--fleet", redis_server.url).stderr)["code"]
        == "FleetError"
    )


# -- what it shows --------------------------------------------------------------------------


def test_a_redis_without_a_fleet_says_so(gsim: Gsim, redis_server: RedisServer) -> None:
    result = gsim("fleet", "status")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"no fleet on this key at {redis_server.url} yet")
    found = gsim.json("fleet", "status")
    assert (found["members"], found["leader"], found["gate"], found["throttles"]) == (
        [],
        None,
        None,
        [],
    )


def test_json_shows_each_member_and_what_it_holds_and_owes(
    gsim: Gsim, served: Served, redis_server: RedisServer, members: list[Member]
) -> None:
    member = waiting_member(served, redis_server, members)
    found = status_when(gsim, settled)
    (shown,) = found["members"]
    assert (shown["pid"], shown["host"], shown["state"]) == (
        member.pid,
        socket.gethostname(),
        "alive",
    )
    assert (shown["held"], shown["waiting"], shown["leader"]) == (2, 2, True)
    assert shown["obligations"]["next_due"].endswith("Z")
    assert found["leader"]["member"] == shown["id"]
    assert found["gate"]["phase"] == "slow"
    assert (found["ownership_records"], found["waiting"]) == (2, 2)


def test_people_see_a_line_per_member_and_a_dead_one_as_dead(
    gsim: Gsim, served: Served, redis_server: RedisServer, members: list[Member]
) -> None:
    member = waiting_member(served, redis_server, members)
    found = status_when(gsim, settled)
    member_id = found["members"][0]["id"]
    result = gsim("fleet", "status")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"fleet {found['prefix']} at {redis_server.url}: 1 alive")
    assert lines[1].startswith(f"leader: {member_id[:8]}, lease ")
    assert lines[2].startswith("gate: slow, ")
    assert lines[3] == "429s: none remembered"
    (row,) = [line for line in lines if line.startswith(member_id[:8])]
    assert row.split()[1:4] == ["alive", socket.gethostname(), str(member.pid)]
    assert "2 waits" in row and row.rstrip().endswith("leader")

    member.kill()  # on this machine: its process is seen gone at once
    result = gsim("fleet", "status")
    lines = result.stdout.splitlines()
    assert lines[0].endswith("0 alive, 1 dead")
    (row,) = [line for line in lines if line.startswith(f"{member_id[:8]}  ")]
    assert row.split()[1] == "dead" and row.rstrip().endswith("gone")
    assert lines[-1] == (
        f"{member_id[:8]} is dead (its process is gone) and owes 2 waits: "
        "no live leader to take them over"
    )


def test_the_gate_and_429s_after_a_rate_limit(
    gsim: Gsim, served: Served, redis_server: RedisServer, members: list[Member]
) -> None:
    served.call(served.sandbox.set_faults, rate_limit=3, retry_after=30)
    member = Member(
        served, redis_server, scenario="hammer", seconds=3, concurrency=4, max_retry_after=30
    )
    members.append(member)
    member.next("ready")
    found = status_when(gsim, lambda s: s["throttles"] and s["gate"]["phase"] == "learnt")
    gate = found["gate"]
    assert gate["phase"] == "learnt" and 0 < gate["rate"] <= 3
    assert 20 < gate["paused_for"] <= 30
    last = found["throttles"][0]
    assert (last["member"], last["retry_after"]) == (found["members"][0]["id"], 30.0)
    assert sum(t["began_pause"] for t in found["throttles"]) == 1
    result = gsim("fleet", "status")
    assert "gate: learnt, " in result.stdout and "; paused " in result.stdout
    assert re.search(
        r"429s: (\d+) in the last minute, \1 in the last hour; the last ", result.stdout
    )


# -- watching --------------------------------------------------------------------------------


def test_watch_shows_it_again_until_the_count(
    gsim: Gsim, served: Served, redis_server: RedisServer, members: list[Member]
) -> None:
    waiting_member(served, redis_server, members)
    result = gsim("fleet", "status", "--json", "--watch", "0.2", "--count", "3")
    assert result.exit_code == 0, result.stderr
    views = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(views) == 3
    assert views[0]["read_at"] < views[1]["read_at"] < views[2]["read_at"]
    people = gsim("fleet", "status", "--watch", "0.2", "--count", "2")
    assert people.exit_code == 0, people.stderr
    assert sum(line.startswith("fleet gsim:") for line in people.stdout.splitlines()) == 2


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal and SIGINT")
def test_watch_on_a_terminal_redraws_until_ctrl_c(
    served: Served, redis_server: RedisServer, members: list[Member]
) -> None:
    member = waiting_member(served, redis_server, members)
    main, terminal = pty.openpty()
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "GSIM_API_KEY": served.api_key,
        "GSIM_BASE_URL": served.base_url,
        "GSIM_FLEET_URL": redis_server.url,
        "TERM": "xterm",
        "COLUMNS": "160",
        "LINES": "40",
    }
    env.pop("TTY_INTERACTIVE", None)
    env.pop("NO_COLOR", None)

    def default_signals() -> None:  # started under nohup, SIGINT would be ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        [sys.executable, "-m", "gsim_async", "fleet", "status", "--watch", "0.2"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        preexec_fn=default_signals,
    )
    os.close(terminal)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while seen.count(b"leader: ") < 3 and time.monotonic() < deadline:
            with selectors.DefaultSelector() as selector:
                selector.register(main, selectors.EVENT_READ)
                if selector.select(1):
                    seen += os.read(main, 65536)
        assert seen.count(b"leader: ") >= 3, seen.decode(errors="replace")
        assert str(member.pid).encode() in seen
        process.send_signal(signal.SIGINT)
        status = process.wait(10)
        with_rest = seen
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            with_rest += chunk
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)
    assert status == 0  # Ctrl-C is how a watch ends
    assert b"error" not in with_rest[len(seen) :]
    assert served.api_key.encode() not in with_rest
    assert b"\x1b[" in seen  # drawn for a terminal: colours and cursor moves


def test_a_watch_goes_on_while_redis_is_away(served: Served, redis_server: RedisServer) -> None:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, **served.env, "GSIM_FLEET_URL": redis_server.url}
    watch = ["fleet", "status", "--json", "--watch", "1.5", "--count", "3"]
    process = subprocess.Popen(  # noqa: S603 - this interpreter, our own package
        [sys.executable, "-m", "gsim_async", *watch],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        first = json.loads(process.stdout.readline())
        redis_server.stop()  # a restart, or a failover: the next view cannot be read
        problem = json.loads(process.stderr.readline())
        redis_server.start()
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert first["members"] == []
    assert problem["code"] == "FleetError"
    assert problem["error"].startswith("cannot reach the fleet's Redis at redis://")
    (last,) = [json.loads(line) for line in out.splitlines()]
    assert last["read_at"] > first["read_at"]
    assert err == ""
