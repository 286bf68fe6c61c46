"""Fixtures for the command line: a sandbox served from its own thread, and a runner.

The CLI runs its own event loop (``asyncio.run``), so these tests are plain sync tests
and the sandbox lives in a background thread with a loop of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import pytest
from cli_helpers import Gsim, Served, StubApi

from gsim_async.sandbox import Sandbox

T = TypeVar("T")
R = TypeVar("R")


class Background:
    """Async context managers entered in threads of their own, each in its own loop."""

    def __init__(self) -> None:
        self._running: list[tuple[asyncio.AbstractEventLoop, asyncio.Event, threading.Thread]] = []

    def enter(
        self,
        make: Callable[[], AbstractAsyncContextManager[T]],
        wrap: Callable[[T, asyncio.AbstractEventLoop], R],
    ) -> R:
        """Enter ``make()`` in a new thread; ``wrap(value, loop)`` is what is returned."""
        ready: concurrent.futures.Future[R] = concurrent.futures.Future()

        def main() -> None:
            async def run_until_stopped() -> None:
                stop = asyncio.Event()
                try:
                    async with make() as value:
                        loop = asyncio.get_running_loop()
                        self._running.append((loop, stop, thread))
                        ready.set_result(wrap(value, loop))
                        await stop.wait()
                except BaseException as exc:
                    if not ready.done():
                        ready.set_exception(exc)
                    raise

            asyncio.run(run_until_stopped())

        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        return ready.result(timeout=10)

    def close(self) -> None:
        for loop, stop, thread in self._running:
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)


@pytest.fixture(autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line's journals go to a fresh state directory, never the user's.

    Nor does a command join the fleet of the shell the tests run in.
    """
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    monkeypatch.delenv("GSIM_JOURNAL", raising=False)
    monkeypatch.delenv("GSIM_FLEET_URL", raising=False)


@pytest.fixture
def background() -> Iterator[Background]:
    """Runs servers in threads; they stop after the test."""
    threads = Background()
    yield threads
    threads.close()


@pytest.fixture
def serve(background: Background) -> Callable[..., Served]:
    """Start sandboxes (``serve(**Sandbox options)``) in threads; stopped after the test."""

    def start(**options: Any) -> Served:
        return background.enter(lambda: Sandbox(**options), Served)

    return start


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


@contextlib.asynccontextmanager
async def _stub_server(api: StubApi) -> AsyncIterator[StubApi]:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        path = request.path.removeprefix("/api/v1")
        api.hits.append((request.method, path))
        status, body = api.answers.get(
            (request.method, path), (404, {"error": "no such endpoint", "code": "NOT_FOUND"})
        )
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        api.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        yield api
    finally:
        await runner.cleanup()


@pytest.fixture
def stub_api(background: Background) -> StubApi:
    """A loopback HTTP server answering what a test puts in ``stub_api.answers``."""
    return background.enter(lambda: _stub_server(StubApi()), lambda api, _: api)
