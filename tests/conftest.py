"""Fixtures: a running ``sandbox`` and a ``client`` bound to it, over real HTTP."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from helpers import StubServer

import gsim_async
from gsim_async.sandbox import Sandbox

#: Every API key a sandbox of this run handed out; no log line may contain one.
KEYS: set[str] = set()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


#: Tests that start real processes (members, workers, crashed programs), servers or whole
#: benchmarks, or wait out real pauses: most of the suite's time. ``-m "not slow"`` leaves
#: them out of a quick loop; the README's command and CI run them all.
_SLOW = (
    "crash/",
    "fleet/",
    "stop/",
    "examples/",
    "sync/test_sync_interrupt.py",
    "cli/test_cli_interrupt.py",
    "test_benchmarks_smoke.py",
    "test_chaos.py",
    "test_docs_site.py",
    "test_scale.py",
    "test_plugin.py",
    "test_rate_limits.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow tests (see ``_SLOW``)."""
    here = Path(__file__).parent
    for item in items:
        where = item.path.relative_to(here).as_posix() if item.path.is_relative_to(here) else ""
        if where.startswith(_SLOW):
            item.add_marker(pytest.mark.slow)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(autouse=True)
def no_spend_guard_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A spend guard set in the developer's shell must not change what the tests buy."""
    for name in ("GSIM_SPEND_LIMIT", "GSIM_BREAKER", "GSIM_BREAKER_COOLDOWN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def no_key_in_logs() -> Iterator[list[str]]:
    """Capture the gsim_async logger at DEBUG and check no API key was ever logged."""
    logger = logging.getLogger("gsim_async")
    handler = _Capture()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    leaked = [line for line in handler.lines for key in KEYS if key in line]
    assert not leaked, f"API key in log lines: {leaked[:3]}"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A sandbox whose codes arrive only when a test delivers them."""
    async with Sandbox(seed=7, auto_deliver=False) as sb:
        KEYS.add(sb.api_key)
        yield sb


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[gsim_async.Client]:
    """A client of the sandbox with fast polling and no backoff sleeps."""
    async with gsim_async.Client(
        sandbox.api_key,
        base_url=sandbox.base_url,
        poll_interval=0.05,
        backoff_base=0,
        max_retry_after=2,
        reconcile_window=1,
    ) as gsim:
        yield gsim


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    """A loopback server whose answers a test sets (``stub.answer(...)``)."""
    from aiohttp import web

    server = StubServer()

    async def handle(request: web.Request) -> web.Response:
        server.hits.append((request.method, request.path))
        server.headers.append(dict(request.headers))
        server.times.append(time.monotonic())
        key = (request.method, request.path)
        script = server.scripts.get(key)
        if script:
            status, body, headers = script.pop(0) if len(script) > 1 else script[0]
        else:
            status, body, headers = server.responses.get(
                key, (404, '{"error": "no stub", "code": "NOT_FOUND"}', {})
            )
        if status == 0:
            await request.read()
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=599)
        ctype = "text/html" if body.lstrip().startswith("<") else "application/json"
        return web.Response(status=status, text=body, headers=headers, content_type=ctype)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.base_url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


STUB_KEY = "2s_" + "k" * 40
KEYS.add(STUB_KEY)


@pytest.fixture
async def stub_client(stub: StubServer) -> AsyncIterator[gsim_async.Client]:
    """A client of the stub server, retries on but without sleeping."""
    async with gsim_async.Client(
        STUB_KEY, base_url=stub.base_url, backoff_base=0, max_retry_after=0, reconcile_window=1
    ) as gsim:
        yield gsim


@pytest.fixture
def sandbox_url_and_key() -> Iterator[tuple[str, str]]:
    """A sandbox served from its own thread, for tests that run their own event loops."""
    import asyncio
    import threading

    ready = threading.Event()
    stop: list[asyncio.AbstractEventLoop] = []
    info: list[tuple[str, str]] = []

    def serve() -> None:
        async def main() -> None:
            async with Sandbox(seed=5) as sb:
                KEYS.add(sb.api_key)
                info.append((sb.base_url, sb.api_key))
                stop.append(asyncio.get_running_loop())
                ready.set()
                await asyncio.Event().wait()

        loop = asyncio.new_event_loop()
        task = loop.create_task(main())
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass
        finally:
            loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    yield info[0]
    loop = stop[0]
    loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
    thread.join(10)
