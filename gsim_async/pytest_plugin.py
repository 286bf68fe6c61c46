"""pytest plugin: the ``gsim_sandbox`` fixture, a running sandbox and a client bound to it.

Installed with gsim-async (entry point ``pytest11``): nothing to configure. Test your
own code against a real HTTP server that behaves like the gsim API, without money:

```python
@pytest.mark.anyio
async def test_sign_up(gsim_sandbox):
    assert await my_bot.sign_up(gsim_sandbox.client) == "welcome"
```

The fixture gives a [`GsimSandbox`][gsim_async.pytest_plugin.GsimSandbox]: ``.client``
(a [`gsim_async.Client`][gsim_async.Client] bound to the sandbox, polling fast),
``.sandbox`` (the [`Sandbox`][gsim_async.sandbox.Sandbox], to deliver codes, set faults,
read the ledger), ``.base_url`` and ``.api_key``. For the test's duration
``GSIM_API_KEY`` and ``GSIM_BASE_URL`` point at the sandbox, so code that makes its own
``gsim_async.Client()`` reaches it too.

It is an async fixture, run by whichever plugin runs the test:

* anyio's pytest plugin (installed with gsim-async): ``@pytest.mark.anyio`` tests;
* pytest-asyncio: ``@pytest.mark.asyncio`` tests, or any async test in its
  ``asyncio_mode = auto``. The client must live in the test's own event loop, so
  ``asyncio_default_fixture_loop_scope`` must equal the test's loop scope; a test run
  in another loop than the fixture's fails at once, saying what to set.

``@pytest.mark.gsim_sandbox(...)`` passes options to the
[`Sandbox`][gsim_async.sandbox.Sandbox] (``balance``, ``code_delay``, ``auto_deliver``,
``no_code_ratio``, ``order_ttl``, ``faults``, ``seed``, ...) and ``poll_interval`` to the
client. [`open_sandbox`][gsim_async.pytest_plugin.open_sandbox] is the same thing as an
``async with`` block, for other test runners or a longer-lived sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any, TypeVar

import attrs
import pytest

from ._client import Client
from ._models import Order
from .sandbox import Ledger, Sandbox

__all__ = ["GsimSandbox", "open_sandbox"]

F = TypeVar("F", bound=Callable[..., Any])

try:
    # Typed by hand: pytest-asyncio is optional and need not be installed for mypy.
    _asyncio_fixture: Callable[[F], F] | None = importlib.import_module("pytest_asyncio").fixture
except ImportError:  # pragma: no cover - depends on what the user installed
    _asyncio_fixture = None

#: Codes arrive by themselves this soon in tests (seconds, uniform).
DEFAULT_CODE_DELAY = (0.1, 0.3)
#: How often the fixture's client looks for codes (seconds).
DEFAULT_POLL_INTERVAL = 0.05

MARKER = "gsim_sandbox"

#: The event loop the fixture's client was made in, for the test that asked for it.
_FIXTURE_LOOP = pytest.StashKey[asyncio.AbstractEventLoop]()


@attrs.frozen
class GsimSandbox:
    """A running sandbox and a client bound to it (what ``gsim_sandbox`` gives)."""

    #: The sandbox server: ``deliver_code``, ``set_faults``, ``ledger``, ``advance``, ...
    sandbox: Sandbox
    #: A client of the sandbox with fast polling and no backoff sleeps.
    client: Client

    @property
    def base_url(self) -> str:
        """The sandbox's base URL (``GSIM_BASE_URL`` during the test)."""
        return self.sandbox.base_url

    @property
    def api_key(self) -> str:
        """The sandbox's API key (``GSIM_API_KEY`` during the test)."""
        return self.sandbox.api_key

    def deliver_code(self, order: Order | str, code: str | None = None) -> str:
        """Make the order's code arrive now (six random digits if ``code`` is None)."""
        return self.sandbox.deliver_code(order.id if isinstance(order, Order) else order, code)

    def ledger(self) -> Ledger:
        """Every charge and refund so far; ``ledger().balanced`` proves no money was lost."""
        return self.sandbox.ledger()


@contextlib.asynccontextmanager
async def open_sandbox(**options: Any) -> AsyncIterator[GsimSandbox]:
    """A sandbox and a client of it, for the length of an ``async with`` block.

    ``options`` go to [`Sandbox`][gsim_async.sandbox.Sandbox], except ``poll_interval``
    (the client's).
    """
    poll_interval = options.pop("poll_interval", DEFAULT_POLL_INTERVAL)
    options.setdefault("code_delay", DEFAULT_CODE_DELAY)
    async with (
        Sandbox(**options) as sandbox,
        Client(
            sandbox.api_key,
            base_url=sandbox.base_url,
            poll_interval=poll_interval,
            backoff_base=0,
            max_retry_after=1,
        ) as client,
    ):
        yield GsimSandbox(sandbox=sandbox, client=client)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the {MARKER} fixture's Sandbox (balance, "
        "code_delay, auto_deliver, no_code_ratio, faults, ...) and client (poll_interval)",
    )


@contextlib.asynccontextmanager
async def _running(request: pytest.FixtureRequest) -> AsyncIterator[GsimSandbox]:
    marker = request.node.get_closest_marker(MARKER)
    options = dict(marker.kwargs) if marker is not None else {}
    async with open_sandbox(**options) as env:
        with pytest.MonkeyPatch.context() as patch:
            # Code under test that makes its own Client() finds the sandbox.
            patch.setenv("GSIM_API_KEY", env.api_key)
            patch.setenv("GSIM_BASE_URL", env.base_url)
            yield env


@pytest.fixture
async def _gsim_sandbox_anyio(request: pytest.FixtureRequest) -> AsyncIterator[GsimSandbox]:
    async with _running(request) as env:
        yield env


if _asyncio_fixture is not None:

    @_asyncio_fixture
    async def _gsim_sandbox_asyncio(
        request: pytest.FixtureRequest,
    ) -> AsyncIterator[GsimSandbox]:
        # pytest-asyncio runs async fixtures and tests in loops of their own scopes; the
        # test checks it runs in this one (see pytest_runtest_call).
        request.node.stash[_FIXTURE_LOOP] = asyncio.get_running_loop()
        async with _running(request) as env:
            yield env


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Fail a pytest-asyncio test at once when it runs in another loop than the fixture.

    The client's session belongs to the loop it was made in; used from another loop,
    its requests never complete (a purchase then ends, minutes later, in "may have been
    charged"). The check runs first in the test's own coroutine, before any request.
    """
    loop = item.stash.get(_FIXTURE_LOOP, None)
    test = getattr(item, "obj", None)
    if loop is None or not inspect.iscoroutinefunction(test):
        return (yield)

    @functools.wraps(test)
    async def checked(*args: Any, **kwargs: Any) -> Any:
        if asyncio.get_running_loop() is not loop:
            pytest.fail(_loop_mismatch(item), pytrace=False)
        return await test(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(item, "obj", checked)
        return (yield)


def _ini(config: pytest.Config, name: str) -> str | None:
    try:
        value = config.getini(name)
    except ValueError:  # an older pytest-asyncio without this option
        return None
    return value if isinstance(value, str) and value else None


def _loop_mismatch(item: pytest.Item) -> str:
    marker = item.get_closest_marker("asyncio")
    kwargs = marker.kwargs if marker is not None else {}
    test_scope = (
        kwargs.get("loop_scope")
        or kwargs.get("scope")
        or _ini(item.config, "asyncio_default_test_loop_scope")
        or "function"
    )
    fixture_scope = _ini(item.config, "asyncio_default_fixture_loop_scope") or "function"
    return (
        f"{MARKER}: this test runs in pytest-asyncio's {test_scope}-scoped event loop, but "
        f"async fixtures, {MARKER} among them, run in the {fixture_scope}-scoped one (the "
        "client must live in the test's own loop). Set asyncio_default_fixture_loop_scope "
        f"= {test_scope} in your pytest configuration, or run the test in the fixtures' "
        f'loop: @pytest.mark.asyncio(loop_scope="{fixture_scope}").'
    )


@pytest.fixture
def gsim_sandbox(request: pytest.FixtureRequest) -> GsimSandbox:
    """A running gsim sandbox and a client bound to it.

    A [`GsimSandbox`][gsim_async.pytest_plugin.GsimSandbox], for async tests run by anyio
    (``@pytest.mark.anyio``) or pytest-asyncio.
    """
    # One name, two async runners: hand the work to the fixture the test's runner runs,
    # so the sandbox and the client live in the test's own event loop.
    if "anyio_backend" in request.fixturenames:
        backend = request.getfixturevalue("anyio_backend")
        name = backend if isinstance(backend, str) else backend[0]
        if name != "asyncio":
            pytest.skip(f"gsim-async runs on asyncio (aiohttp), not on anyio's {name!r} backend")
        anyio_env: GsimSandbox = request.getfixturevalue("_gsim_sandbox_anyio")
        return anyio_env
    if request.node.get_closest_marker("asyncio") is not None:
        if _asyncio_fixture is None:
            pytest.fail("the asyncio marker needs pytest-asyncio installed", pytrace=False)
        asyncio_env: GsimSandbox = request.getfixturevalue("_gsim_sandbox_asyncio")
        return asyncio_env
    pytest.fail(
        f"{MARKER} is an async fixture: use it from an async test marked "
        "@pytest.mark.anyio (or @pytest.mark.asyncio, with pytest-asyncio)",
        pytrace=False,
    )
