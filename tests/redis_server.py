"""A real redis-server for the tests that need one, on a free port in a temporary directory.

Without the ``redis-server`` binary the tests skip, saying how to get it; with
``GSIM_REQUIRE_REDIS=1`` (CI) they fail instead, so they never silently skip there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


class RedisServer:
    """One redis-server process that a test may stop and start again (same port)."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # No persistence: a restarted server starts empty, as after losing its data.
        options = {"port": str(self.port), "bind": "127.0.0.1", "dir": str(self.directory)}
        options.update({"save": "", "appendonly": "no", "protected-mode": "yes"})
        arguments = [self.binary]
        for name, value in options.items():
            arguments += [f"--{name}", value]
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test (its own port and directory)."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = (
            "redis-server is not installed: the fleet's tests need a real Redis "
            "(apt-get install redis-server, or the official redis container image)"
        )
        if os.environ.get("GSIM_REQUIRE_REDIS"):
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
