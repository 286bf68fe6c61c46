"""The sandbox refuses what the published API does not allow, as a strict server would.

Users' own tests run against the sandbox, so it must be at least as strict as the real
service: a value outside its documented range or enum is a 400 ``VALIDATION_ERROR``, an
unsupported method a 405 naming the allowed ones in ``Allow``. Unknown query parameters
and unknown body fields are ignored (the published shapes are a floor: a server may add
parameters and fields, and refusing them would fail tests the real service passes).
"""

from __future__ import annotations

from typing import Any

import pytest
from sandbox_helpers import Caller

pytestmark = pytest.mark.anyio


@pytest.fixture
async def rental_id(api: Caller) -> str:
    """The id of a rental of the default key."""
    return str((await api.rent())["id"])


def _refused(reply: Any) -> None:
    assert reply.status == 400, reply.text
    assert reply.error_code == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    ("path", "query"),
    [
        # Pages and page sizes: integers in their documented range.
        ("orders", "page=0"),
        ("orders", "page=-1"),
        ("orders", "page=abc"),
        ("orders", "limit=0"),
        ("orders", "limit=101"),
        ("rentals", "page=0"),
        ("rentals", "limit=101"),
        ("rentals/search", "country=US&pageSize=0"),
        ("rentals/search", "country=US&pageSize=51"),
        # Enums: one of the documented values, spelt as documented; empty is none of them.
        ("orders", "status=foo"),
        ("orders", "status=pending"),
        ("orders", "status="),
        ("rentals", "status=active"),
        ("rentals", "status="),
        ("rentals/search", "country=US&type=foo"),
        ("rentals/search", "country=US&type=LOCAL"),
        ("rentals/search", "country=US&type=TOLL_FREE"),
        ("rentals/search", "country=US&type="),
        ("rentals/search", "country=US&smsEnabled=maybe"),
        ("rentals/search", "country=US&smsEnabled=TRUE"),
        ("rentals/search", "country=US&voiceEnabled=False"),
        ("rentals/search", "country=US&smsEnabled="),
        ("rentals/search", "country=US&voiceEnabled="),
        # Digit patterns: at least one digit, nothing else.
        ("rentals/search", "country=US&areaCode=abc"),
        ("rentals/search", "country=US&areaCode="),
        ("rentals/search", "country=US&contains=abc"),
        ("rentals/search", "country=US&contains="),
        # Countries: a 2-letter ISO code is upper case.
        ("rentals/search", "country=USA"),
        ("rentals/search", "country=us"),
        ("rentals/search", ""),
        # The catalogue: required parameters present, an empty service is no service id.
        ("operators", "country=russia"),
        ("operators", "service=telegram"),
        ("countries", "service="),
        # One value per parameter: which of two a server takes is not documented.
        ("orders", "page=1&page=2"),
        ("orders", "status=PENDING&status=foo"),
        ("rentals", "limit=5&limit=500"),
        ("rentals/search", "country=US&country=GB"),
        ("operators", "service=telegram&country=russia&country=usa"),
    ],
)
async def test_query_outside_the_documented_values_is_refused(
    api: Caller, path: str, query: str
) -> None:
    _refused(await api.get(f"{path}?{query}" if query else path))


@pytest.mark.parametrize("page", ["sms", "calls"])
@pytest.mark.parametrize("query", ["page=0", "limit=0", "limit=101", "limit=abc", "page=1&page=2"])
async def test_rental_pages_outside_the_documented_values_are_refused(
    api: Caller, rental_id: str, page: str, query: str
) -> None:
    _refused(await api.get(f"rentals/{rental_id}/{page}?{query}"))


async def test_an_order_with_a_null_operator_is_refused(api: Caller) -> None:
    # The documented way to take any operator is to leave the field out.
    body = {"service": "telegram", "country": "russia", "operator": None}
    _refused(await api.post("orders", body))
    assert api.sb.orders() == []


async def test_a_rental_country_in_lower_case_is_refused(api: Caller) -> None:
    offer = await api.offer()
    _refused(await api.post("rentals", {**offer, "country": "us"}))
    assert api.sb.rentals() == []


@pytest.mark.parametrize(
    "body",
    [{"friendlyName": None}, {"friendlyName": 5}, {"friendlyName": "x" * 65}, {"autoRenew": None}],
)
async def test_rental_updates_outside_the_documented_types_are_refused(
    api: Caller, rental_id: str, body: dict[str, Any]
) -> None:
    _refused(await api.patch(f"rentals/{rental_id}", body))


async def test_unknown_parameters_and_fields_are_ignored(api: Caller) -> None:
    listed = await api.get("orders?page=1&sort=newest")
    assert listed.status == 200, listed.text
    bought = await api.post("orders", {"service": "telegram", "country": "russia", "note": 1})
    assert bought.status == 200, bought.text


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/v1/orders", {"GET", "HEAD", "POST"}),
        ("POST", "/api/v1/balance", {"GET", "HEAD"}),
        ("DELETE", "/api/v1/orders/{order}", {"GET", "HEAD"}),
        ("GET", "/api/v1/orders/{order}/cancel", {"POST"}),
        ("PUT", "/api/v1/rentals/{rental}", {"GET", "HEAD", "PATCH", "DELETE"}),
        # /rentals/search is a resource of its own, not the rental whose id is "search".
        ("POST", "/api/v1/rentals/search", {"GET", "HEAD"}),
        ("PATCH", "/api/v1/rentals/search", {"GET", "HEAD"}),
        ("DELETE", "/api/v1/rentals/search", {"GET", "HEAD"}),
        ("OPTIONS", "/api/v1/rentals/{rental}/sms", {"GET", "HEAD", "POST"}),
        # The control API follows the same rule.
        ("PUT", "/_sandbox/faults", {"GET", "HEAD", "POST"}),
        ("DELETE", "/_sandbox/", {"GET", "HEAD"}),
    ],
)
async def test_an_unsupported_method_is_405_with_allow(
    api: Caller, rental_id: str, method: str, path: str, allowed: set[str]
) -> None:
    order_id = (await api.buy())["id"]
    reply = await api.request(method, path.format(order=order_id, rental=rental_id))
    assert reply.status == 405, reply.text
    assert reply.error_code == "METHOD_NOT_ALLOWED"
    assert {m.strip() for m in reply.headers["Allow"].split(",")} == allowed


@pytest.mark.parametrize("path", ["/api/v1/balance", "/api/v1/orders?status=PENDING", "/_sandbox/"])
async def test_head_answers_like_get_without_a_body(api: Caller, path: str) -> None:
    # RFC 9110: a server that answers GET on a resource answers HEAD on it too.
    get, head = await api.get(path), await api.request("HEAD", path)
    assert (head.status, head.text) == (200, "")
    assert head.headers["Content-Type"] == get.headers["Content-Type"]


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/orders/x/y", "/api/v2/balance", "/"])
async def test_an_unknown_path_is_404_json(api: Caller, path: str) -> None:
    reply = await api.get(path)
    assert reply.status == 404, reply.text
    assert reply.error_code == "NOT_FOUND"
