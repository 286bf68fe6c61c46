"""Fixtures for the command line: a sandbox served from its own thread, and a runner.

The CLI runs its own event loop (``asyncio.run``), so these tests are plain sync tests
and the sandbox lives in a background thread with a loop of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cli_helpers import Gsim, Served, StubApi

from gsim_async.sandbox import Sandbox


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Start sandboxes (``serve(**Sandbox options)``) in threads; stopped after the test."""
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Event, threading.Thread]] = []

    def start(**options: Any) -> Served:
        ready: concurrent.futures.Future[Served] = concurrent.futures.Future()

        def main() -> None:
            async def serve_until_stopped() -> None:
                stop = asyncio.Event()
                try:
                    async with Sandbox(**options) as sb:
                        running.append((asyncio.get_running_loop(), stop, thread))
                        ready.set_result(Served(sb, asyncio.get_running_loop()))
                        await stop.wait()
                except BaseException as exc:
                    if not ready.done():
                        ready.set_exception(exc)
                    raise

            asyncio.run(serve_until_stopped())

        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        return ready.result(timeout=10)

    yield start
    for loop, stop, thread in running:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


@pytest.fixture
def served(serve: Callable[..., Served]) -> Served:
    """A sandbox whose codes arrive only when a test delivers them."""
    return serve(seed=3, auto_deliver=False)


@pytest.fixture
def gsim(served: Served) -> Gsim:
    """``gsim`` pointed at ``served`` through GSIM_API_KEY and GSIM_BASE_URL."""
    return Gsim({**served.env, "COLUMNS": "200"}, served.api_key)


@pytest.fixture
def no_env() -> dict[str, str | None]:
    """An environment without the gsim variables (None unsets them for the runner)."""
    return {"GSIM_API_KEY": None, "GSIM_BASE_URL": None}


@pytest.fixture
def stub_api() -> Iterator[StubApi]:
    """A loopback HTTP server answering what a test puts in ``stub_api.answers``."""
    from aiohttp import web

    api = StubApi()

    async def handle(request: web.Request) -> web.Response:
        path = request.path.removeprefix("/api/v1")
        api.hits.append((request.method, path))
        status, body = api.answers.get(
            (request.method, path), (404, {"error": "no such endpoint", "code": "NOT_FOUND"})
        )
        return web.json_response(body, status=status)

    ready: concurrent.futures.Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = (
        concurrent.futures.Future()
    )

    def main() -> None:
        async def serve() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            api.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            stop = asyncio.Event()
            ready.set_result((asyncio.get_running_loop(), stop))
            try:
                await stop.wait()
            finally:
                await runner.cleanup()

        asyncio.run(serve())

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    loop, stop = ready.result(timeout=10)
    yield api
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
