"""GSIM_LOG=debug|info logs to stderr without any logging code."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import asyncio, gsim_async
from gsim_async.sandbox import Sandbox

async def main():
    async with Sandbox(seed=1) as sb:
        async with gsim_async.Client(sb.api_key, base_url=sb.base_url) as gsim:
            await gsim.balance()
        print("KEY=" + sb.api_key)

asyncio.run(main())
"""


def run(level: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GSIM_LOG"}
    if level is not None:
        env["GSIM_LOG"] = level
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=60
    )


def test_gsim_log_debug_shows_each_request_without_the_key() -> None:
    result = run("debug")
    key = result.stdout.strip().removeprefix("KEY=")
    assert "GET /api/v1/balance -> 200" in result.stderr
    assert key and key not in result.stderr


def test_without_gsim_log_the_library_is_silent() -> None:
    assert run(None).stderr == ""


def test_info_leaves_out_the_per_request_lines() -> None:
    assert "GET /api/v1/balance" not in run("info").stderr
