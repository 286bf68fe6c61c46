"""Resilience rules shown with a scripted server: what the sandbox cannot stage."""

from __future__ import annotations

import gzip
import json
import shutil
import ssl
import subprocess
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from helpers import StubServer, fast_client

import gsim_async
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

ORDER = {
    "id": "cm1",
    "service": "telegram",
    "phoneNumber": "+79001234567",
    "price": 0.18,
    "createdAt": "2024-03-15T10:00:00.000Z",
}


def order_body(status: str, code: str | None = None) -> str:
    return json.dumps({**ORDER, "status": status, "smsCode": code})


async def test_cancel_whose_answer_was_lost_is_a_success_on_retry(
    stub: StubServer, stub_client: gsim_async.Client
) -> None:
    # The cancel went through but its answer was lost; the retry then meets 409.
    stub.script(
        "POST", "/orders/cm1/cancel", (0, ""), (409, '{"error": "not pending", "code": "CONFLICT"}')
    )
    stub.answer("GET", "/orders/cm1", 200, order_body("CANCELLED"))
    refund = await stub_client.orders.cancel("cm1")
    assert refund.success and str(refund.refunded) == "0.18"


async def test_conflict_on_first_try_is_raised_with_the_order(
    stub: StubServer, stub_client: gsim_async.Client
) -> None:
    stub.answer("POST", "/orders/cm1/ban", 409, '{"error": "not pending", "code": "CONFLICT"}')
    stub.answer("GET", "/orders/cm1", 200, order_body("RECEIVED", "4321"))
    with pytest.raises(gsim_async.ConflictError) as info:
        await stub_client.orders.ban("cm1")
    assert info.value.order is not None and info.value.order.sms_code == "4321"


async def test_release_whose_answer_was_lost_is_a_success_on_retry(
    stub: StubServer, stub_client: gsim_async.Client
) -> None:
    stub.script("DELETE", "/rentals/r1", (0, ""), (404, '{"error": "gone", "code": "NOT_FOUND"}'))
    await stub_client.rentals.release("r1")
    assert len(stub.hits) == 2


async def test_retry_after_as_http_date(stub: StubServer) -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    stub.answer(
        "GET",
        "/balance",
        429,
        '{"error": "slow down", "code": "RATE_LIMITED"}',
        {"Retry-After": format_datetime(when, usegmt=True)},
    )
    async with gsim_async.Client("2s_" + "k" * 40, base_url=stub.base_url, max_retries=0) as gsim:
        with pytest.raises(gsim_async.RateLimitedError) as info:
            await gsim.balance()
    assert info.value.retry_after is not None and 27 <= info.value.retry_after <= 30


async def test_a_429_pauses_every_request_of_the_client(stub: StubServer) -> None:
    stub.script(
        "GET",
        "/balance",
        (429, '{"error": "slow down", "code": "RATE_LIMITED"}', {"Retry-After": "1"}),
        (200, '{"balance": 1, "currency": "USD"}'),
    )
    stub.answer("GET", "/services", 200, "[]")
    async with gsim_async.Client("2s_" + "k" * 40, base_url=stub.base_url) as gsim:
        await gsim.balance()
        await gsim.services()  # a different call waits for the same gate
    throttled_at = stub.times[0]
    assert [h[1] for h in stub.hits] == ["/api/v1/balance", "/api/v1/balance", "/api/v1/services"]
    assert stub.times[1] - throttled_at >= 0.95
    assert stub.times[2] - throttled_at >= 0.95


async def test_client_side_rate_limit_spaces_requests(stub: StubServer) -> None:
    stub.answer("GET", "/services", 200, "[]")
    async with (
        gsim_async.Client(
            "2s_" + "k" * 40, base_url=stub.base_url, max_requests_per_second=10
        ) as gsim,
        anyio.create_task_group() as tg,
    ):
        for _ in range(25):
            tg.start_soon(gsim.services)
    # A one-second burst of 10, then 10 per second: 25 requests span at least 1.4 s.
    assert stub.times[-1] - stub.times[0] >= 1.4


async def test_purchase_answered_by_a_proxy_5xx_is_reconciled(stub: StubServer) -> None:
    created = {**ORDER, "status": "PENDING", "country": "russia", "operator": "any"}
    created["createdAt"] = (
        datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    stub.answer("POST", "/orders", 504, "<html><body>Gateway Timeout</body></html>")
    stub.script(
        "GET",
        "/orders",
        # Before the purchase (the client's baseline), then after it.
        (200, json.dumps({"orders": [], "total": 0, "page": 1, "limit": 1, "totalPages": 0})),
        (200, json.dumps({"orders": [created], "total": 1, "page": 1, "totalPages": 1})),
    )
    async with gsim_async.Client("2s_" + "k" * 40, base_url=stub.base_url) as gsim:
        order = await gsim.orders.create("telegram", "russia")
    assert order.id == "cm1"
    assert stub.hits.count(("POST", "/api/v1/orders")) == 1


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(  # noqa: S603
        [  # noqa: S607
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_tls_is_verified_and_not_retried(self_signed: ssl.SSLContext) -> None:
    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"balance": 1, "currency": "USD"})

    app = web.Application()
    app.router.add_get("/api/v1/balance", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with gsim_async.Client(
            "2s_" + "k" * 40, base_url=f"https://127.0.0.1:{port}"
        ) as gsim:
            with pytest.raises(gsim_async.APIConnectionError, match="TLS"):
                await gsim.balance()
    finally:
        await runner.cleanup()
    assert hits == []  # the key never reached a server we could not verify


async def test_conflict_after_a_429_is_not_taken_for_our_own_success(
    stub: StubServer, stub_client: gsim_async.Client
) -> None:
    # The 429 provably rejected our first try, so the 409 is someone else's doing.
    stub.script(
        "POST",
        "/orders/cm1/cancel",
        (429, '{"error": "slow down", "code": "RATE_LIMITED"}', {"Retry-After": "0"}),
        (409, '{"error": "not pending", "code": "CONFLICT"}'),
    )
    stub.answer("GET", "/orders/cm1", 200, order_body("CANCELLED"))
    with pytest.raises(gsim_async.ConflictError) as info:
        await stub_client.orders.cancel("cm1")
    assert info.value.order is not None
    assert info.value.order.status == gsim_async.OrderStatus.CANCELLED


async def test_cleanup_waits_out_a_429(sandbox: Sandbox) -> None:
    async with fast_client(sandbox, max_retries=0) as gsim:
        order = await gsim.orders.create("telegram", "russia")
        sandbox.set_faults(rate_limit=2, retry_after=1)
        with pytest.raises(gsim_async.CodeTimeoutError) as info:
            await gsim.orders.wait_for_code(order, timeout=0.3)
    assert info.value.refunded == order.price
    assert sandbox.order(order.id).status == "BANNED"


async def test_gzip_body_is_capped_after_decompression() -> None:
    huge = json.dumps([{"id": "x" * 1000, "name": "n", "minPrice": 1}] * 3000).encode()

    async def handle(request: web.Request) -> web.Response:
        body = gzip.compress(huge)
        return web.Response(
            body=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    app = web.Application()
    app.router.add_get("/api/v1/services", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with gsim_async.Client(
            "2s_" + "k" * 40, base_url=f"http://127.0.0.1:{port}", max_response_size=1 << 20
        ) as gsim:
            with pytest.raises(gsim_async.APIConnectionError, match="limit"):
                await gsim.services()
    finally:
        await runner.cleanup()


async def test_429_without_retry_after_waits_the_documented_minute_capped(
    stub: StubServer,
) -> None:
    events: list[gsim_async.RetryEvent] = []
    stub.script(
        "GET",
        "/balance",
        (429, '{"error": "slow down", "code": "RATE_LIMITED"}'),
        (200, '{"balance": 1, "currency": "USD"}'),
    )
    async with gsim_async.Client(
        "2s_" + "k" * 40, base_url=stub.base_url, max_retry_after=0.3, on_retry=events.append
    ) as gsim:
        await gsim.balance()
    # The API documents 60 s when Retry-After is absent; max_retry_after caps it.
    assert [e.delay for e in events] == [0.3]
