"""Error answers become the documented exception classes, with what a user needs."""

from __future__ import annotations

import json
import pickle

import pytest
from helpers import StubServer

import gsim_async
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

DOCUMENTED = [
    (401, "UNAUTHORIZED", gsim_async.UnauthorizedError),
    (403, "FORBIDDEN", gsim_async.ForbiddenError),
    (404, "NOT_FOUND", gsim_async.NotFoundError),
    (402, "INSUFFICIENT_BALANCE", gsim_async.InsufficientBalanceError),
    (429, "RATE_LIMITED", gsim_async.RateLimitedError),
    (400, "VALIDATION_ERROR", gsim_async.ValidationError),
    (503, "PROVIDER_ERROR", gsim_async.ProviderError),
    (409, "CONFLICT", gsim_async.ConflictError),
]


@pytest.mark.parametrize(("status", "code", "cls"), DOCUMENTED)
async def test_every_documented_code_maps_to_its_class(
    stub: StubServer,
    stub_client: gsim_async.Client,
    status: int,
    code: str,
    cls: type[gsim_async.APIError],
) -> None:
    stub.answer("GET", "/balance", status, json.dumps({"error": f"said {code}", "code": code}))
    with pytest.raises(cls) as info:
        await stub_client.balance()
    err = info.value
    assert isinstance(err, gsim_async.APIError)
    assert (err.status, err.code, err.message) == (status, code, f"said {code}")
    assert (err.method, err.path) == ("GET", "/api/v1/balance")


@pytest.mark.parametrize("name", ["X-Request-ID", "x-request-id", "X-Request-Id"])
async def test_the_request_id_is_read_whatever_the_header_casing(
    stub: StubServer, stub_client: gsim_async.Client, name: str
) -> None:
    # Seen: request_id was None when the server sent X-Request-ID (aiohttp's own casing).
    body = json.dumps({"error": "no such order", "code": "NOT_FOUND"})
    stub.answer("GET", "/orders/o1", 404, body, {name: "req-42", "Set-Cookie": "a=1"})
    with pytest.raises(gsim_async.NotFoundError) as info:
        await stub_client.orders.get("o1")
    err = info.value
    assert err.request_id == "req-42"
    assert err.headers["x-request-id"] == err.headers["X-REQUEST-ID"] == "req-42"
    assert "[request req-42]" in str(err)
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301  # our own bytes
    assert (copy.request_id, copy.headers["X-Request-Id"], str(copy)) == (
        "req-42",
        "req-42",
        str(err),
    )


def test_errors_made_by_hand_read_the_request_id_from_any_casing() -> None:
    err = gsim_async.APIError("boom", status=500, headers={"x-request-id": "r1"})
    assert err.request_id == "r1"
    assert err.headers == {"x-request-id": "r1"}  # still a mapping of what was sent
    assert dict(pickle.loads(pickle.dumps(err)).headers) == {"x-request-id": "r1"}  # noqa: S301


async def test_unknown_code_is_a_plain_api_error(
    stub: StubServer, stub_client: gsim_async.Client
) -> None:
    stub.answer("GET", "/balance", 418, '{"error": "I am a teapot", "code": "TEAPOT"}')
    with pytest.raises(gsim_async.APIError) as info:
        await stub_client.balance()
    assert type(info.value) is gsim_async.APIError
    assert info.value.code == "TEAPOT" and info.value.status == 418


async def test_html_502_becomes_api_error_with_excerpt(
    stub: StubServer, stub_client: gsim_async.Client
) -> None:
    page = (
        "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
    )
    stub.answer("GET", "/balance", 502, page)
    with pytest.raises(gsim_async.APIError) as info:
        await stub_client.balance()
    assert info.value.status == 502 and info.value.code is None
    assert "Bad Gateway" in info.value.message and "<h1>" not in info.value.message
    # A GET is retried on a 5xx before giving up.
    assert len(stub.hits) == 1 + stub_client.max_retries


async def test_rate_limited_exposes_retry_after(
    stub: StubServer, stub_client: gsim_async.Client
) -> None:
    stub.answer(
        "GET",
        "/balance",
        429,
        '{"error": "slow down", "code": "RATE_LIMITED"}',
        {"Retry-After": "0"},
    )
    with pytest.raises(gsim_async.RateLimitedError) as info:
        await stub_client.balance()
    assert info.value.retry_after == 0


async def test_extra_fields_and_unknown_enum_values_parse(
    stub: StubServer, stub_client: gsim_async.Client
) -> None:
    stub.answer(
        "GET",
        "/orders/cm1",
        200,
        json.dumps(
            {
                "id": "cm1",
                "service": "telegram",
                "phoneNumber": "+79001234567",
                "status": "ON_HOLD",
                "price": 0.1,
                "smsCode": None,
                "createdAt": "2024-03-15T10:00:00.000Z",
                "expiresAt": "2024-03-15T10:20:00.000Z",
                "brandNewField": {"nested": [1, 2, 3]},
            }
        ),
    )
    order = await stub_client.orders.get("cm1")
    assert order.status == "ON_HOLD" and not order.status.is_known
    assert str(order.price) == "0.1"
    assert order.created_at is not None and order.created_at.isoformat() == (
        "2024-03-15T10:00:00+00:00"
    )


async def test_malformed_success_body_is_a_clear_error(
    stub: StubServer, stub_client: gsim_async.Client
) -> None:
    stub.answer("GET", "/balance", 200, '{"balance": "lots"}')
    with pytest.raises(gsim_async.APIResponseValidationError) as info:
        await stub_client.balance()
    assert "balance" in str(info.value)


async def test_redirects_are_not_followed(stub: StubServer, stub_client: gsim_async.Client) -> None:
    stub.answer("GET", "/balance", 302, "", {"Location": "https://elsewhere.example/steal"})
    with pytest.raises(gsim_async.APIError) as info:
        await stub_client.balance()
    assert info.value.status == 302 and "not followed" in info.value.message
    assert stub.hits == [("GET", "/api/v1/balance")]


async def test_response_over_the_size_cap_is_refused(stub: StubServer) -> None:
    stub.answer("GET", "/services", 200, json.dumps([{"id": "x" * 5000, "name": "n"}]))
    async with gsim_async.Client(
        "2s_" + "k" * 40, base_url=stub.base_url, max_response_size=2048
    ) as gsim:
        with pytest.raises(gsim_async.APIConnectionError, match="limit"):
            await gsim.services()
    assert len(stub.hits) == 1  # not retried: it would be as large again


async def test_unknown_key_is_unauthorized(sandbox: Sandbox) -> None:
    async with gsim_async.Client("2s_" + "x" * 40, base_url=sandbox.base_url) as gsim:
        with pytest.raises(gsim_async.UnauthorizedError):
            await gsim.balance()


async def test_revoked_key_is_forbidden(sandbox: Sandbox) -> None:
    key = sandbox.add_key()
    sandbox.revoke_key(key)
    async with gsim_async.Client(key, base_url=sandbox.base_url) as gsim:
        with pytest.raises(gsim_async.ForbiddenError):
            await gsim.balance()


async def test_connection_refused_is_a_connection_error() -> None:
    async with gsim_async.Client(
        "2s_" + "k" * 40, base_url="http://127.0.0.1:9", max_retries=1, backoff_base=0
    ) as gsim:
        with pytest.raises(gsim_async.APIConnectionError, match="could not connect"):
            await gsim.balance()
