"""Fixtures for the sandbox's own tests: a running sandbox and a plain aiohttp caller."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from sandbox_helpers import Caller

from gsim_async.sandbox import Sandbox


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    """A sandbox whose codes arrive only when a test delivers them."""
    async with Sandbox(seed=11, auto_deliver=False) as sandbox:
        yield sandbox


@pytest.fixture
async def api(sb: Sandbox) -> AsyncIterator[Caller]:
    """A plain aiohttp caller of ``sb`` with its default key."""
    async with aiohttp.ClientSession() as session:
        yield Caller(session, sb)
