"""SDK programs in processes of their own, for the tests that kill them with real signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio


class Worker:
    """A Python script in its own process; the JSON lines it prints arrive on ``events``."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(
        cls, script: Path, config: dict[str, Any], env: dict[str, str] | None = None
    ) -> Worker:
        """Run ``script`` with ``config`` (as JSON, its one argument)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            json.dumps(config),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.seen.append(event)
            self.events.put_nowait(event)

    async def next(self, kind: str, timeout: float = 30) -> dict[str, Any]:
        """The next event of ``kind`` (others are kept in ``seen``)."""
        with anyio.fail_after(timeout):
            while True:
                event = await self.events.get()
                if event["event"] == kind:
                    return event

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every event of ``kind`` seen so far."""
        return [e for e in self.seen if e["event"] == kind]

    async def finish(self, timeout: float = 60) -> dict[str, Any]:
        """The ``done`` event, once the process has exited."""
        done = await self.next("done", timeout)
        with anyio.fail_after(10):
            await self.process.wait()
        await self._reader
        return done

    async def exited(self, timeout: float = 30) -> int:
        """The process's exit status, once it has exited."""
        with anyio.fail_after(timeout):
            code = await self.process.wait()
        await self._reader
        return code

    def kill(self) -> None:
        """SIGKILL: no cleanup runs, as when the OOM killer or a deploy ends a process."""
        self.process.send_signal(signal.SIGKILL)

    async def killed(self) -> None:
        """Kill and wait for the process to be gone."""
        self.kill()
        await self.exited()
