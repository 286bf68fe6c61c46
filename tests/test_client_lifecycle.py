"""Session lifetime, configuration from the environment, and keeping the key secret."""

from __future__ import annotations

import asyncio
import gc
import logging
import pickle
import platform
from decimal import Decimal

import aiohttp
import anyio
import pytest
from helpers import StubServer, fast_client

import gsim_async
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


async def test_key_and_url_come_from_the_environment(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GSIM_API_KEY", sandbox.api_key)
    monkeypatch.setenv("GSIM_BASE_URL", sandbox.base_url)
    async with gsim_async.Client() as gsim:
        assert gsim.base_url == sandbox.base_url
        assert (await gsim.balance()).currency == "USD"


def test_default_base_url_is_the_real_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GSIM_BASE_URL", raising=False)
    assert gsim_async.Client("2s_" + "a" * 40).base_url == "https://gsim.io"


async def test_closed_client_says_so(client: gsim_async.Client) -> None:
    await client.aclose()
    assert client.closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.balance()


def test_client_bound_to_its_first_event_loop(sandbox_url_and_key: tuple[str, str]) -> None:
    url, key = sandbox_url_and_key
    gsim = gsim_async.Client(key, base_url=url)

    async def use() -> None:
        await gsim.balance()

    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(use())
        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(use())
    finally:
        first.run_until_complete(gsim.aclose())
        first.close()


async def test_callers_session_is_used_and_left_open(sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as session:
        async with gsim_async.Client(
            sandbox.api_key, base_url=sandbox.base_url, session=session
        ) as gsim:
            await gsim.balance()
        assert not session.closed


async def test_unclosed_client_warns(sandbox: Sandbox) -> None:
    gsim = gsim_async.Client(sandbox.api_key, base_url=sandbox.base_url)
    await gsim.balance()
    session = gsim._transport.shared.session._session
    assert session is not None
    del gsim
    with pytest.warns(ResourceWarning, match="not closed"):
        gc.collect()
    await session.close()  # what the user forgot, so the test itself leaks nothing


async def test_user_agent_names_sdk_aiohttp_and_python(
    stub: StubServer, stub_client: gsim_async.Client
) -> None:
    stub.answer("GET", "/balance", 200, '{"balance": 1, "currency": "USD"}')
    await stub_client.balance()
    agent = stub.headers[0]["User-Agent"]
    assert agent.startswith(f"gsim-async/{gsim_async.__version__} ")
    assert f"aiohttp/{aiohttp.__version__}" in agent
    assert f"Python/{platform.python_version()}" in agent
    assert stub.headers[0]["Authorization"] == "Bearer 2s_" + "k" * 40


async def test_key_never_in_repr_errors_or_logs(
    sandbox: Sandbox, no_key_in_logs: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    key = sandbox.add_key()
    sandbox.revoke_key(key)
    gsim = gsim_async.Client(key, base_url=sandbox.base_url, max_retries=0)
    async with gsim:
        assert key not in repr(gsim) and key not in repr(gsim._transport.settings)
        with pytest.raises(gsim_async.ForbiddenError) as info:
            await gsim.balance()
    err = info.value
    assert key not in str(err) and key not in repr(err)
    assert key not in repr(pickle.loads(pickle.dumps(err)))  # noqa: S301  # our own bytes
    assert any("GET /api/v1/balance -> 403" in line for line in no_key_in_logs)
    assert all(key not in line for line in no_key_in_logs)


async def test_debug_log_has_method_path_status_and_time(
    client: gsim_async.Client, no_key_in_logs: list[str]
) -> None:
    await client.balance()
    line = next(line for line in no_key_in_logs if "/api/v1/balance" in line)
    assert line.startswith("DEBUG GET /api/v1/balance -> 200 in ") and line.endswith(" ms")


async def test_codes_are_not_logged_at_info_or_above(
    client: gsim_async.Client, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gsim_async")
    order = await client.orders.create("telegram", "russia")
    sandbox.deliver_code(order.id, "97531")
    assert await client.orders.wait_for_code(order) == "97531"
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not any("97531" in m for m in loud)


def test_version_comes_from_package_metadata() -> None:
    from importlib.metadata import version

    assert gsim_async.__version__ == version("gsim-async")


def test_public_names_live_in_the_package() -> None:
    assert gsim_async.Client.__module__ == "gsim_async"
    assert repr(gsim_async.OrderStatus.PENDING) == "<OrderStatus.PENDING>"
    assert set(gsim_async.__all__) <= set(dir(gsim_async))


async def test_closing_the_client_during_an_activation_refunds_it(sandbox: Sandbox) -> None:
    gsim = fast_client(sandbox)
    errors: list[BaseException] = []

    async def use() -> None:
        try:
            async with gsim.orders.activation("telegram", "russia") as act:
                await act.wait_for_code()
        except (RuntimeError, gsim_async.GsimError) as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(use)
        await anyio.sleep(0.2)
        await gsim.aclose()
    [record] = sandbox.orders()
    assert record.status == "CANCELLED"
    assert sandbox.ledger().balance == Decimal("100")
    assert errors
