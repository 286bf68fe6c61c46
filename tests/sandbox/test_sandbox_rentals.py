"""Rentals: search, purchase at a markup, detail, PATCH, DELETE, SMS and calls."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sandbox_helpers import Caller

from gsim_async.sandbox import Sandbox, StateError

pytestmark = pytest.mark.anyio


async def test_search_returns_numbers_of_the_country(api: Caller) -> None:
    reply = await api.get("rentals/search", params={"country": "US", "areaCode": "510"})
    numbers = reply.body["numbers"]
    assert len(numbers) == 20
    first = numbers[0]
    assert first["phoneNumber"].startswith("+1510")
    assert first["friendlyName"] == (
        f"(510) {first['phoneNumber'][5:8]}-{first['phoneNumber'][8:]}"
    )
    assert (first["locality"], first["region"], first["isoCountry"]) == ("Oakland", "CA", "US")
    assert set(first["capabilities"]) == {"voice", "SMS", "MMS"}
    assert first["monthlyPrice"] == Decimal("1.15")


async def test_search_filters(api: Caller) -> None:
    params = {"country": "US", "type": "TollFree", "contains": "777", "pageSize": "5"}
    numbers = (await api.get("rentals/search", params=params)).body["numbers"]
    assert len(numbers) == 5
    for number in numbers:
        assert "777" in number["phoneNumber"][5:]
        assert number["numberType"] == "TOLL_FREE"
        assert number["monthlyPrice"] == Decimal("2.50")
    no_sms = await api.get(
        "rentals/search", params={"country": "US", "smsEnabled": "false", "pageSize": "3"}
    )
    assert all(not n["capabilities"]["SMS"] for n in no_sms.body["numbers"])
    mobile = await api.get("rentals/search", params={"country": "GB", "type": "Mobile"})
    assert all(n["phoneNumber"].startswith("+447") for n in mobile.body["numbers"])


async def test_search_finds_nothing_for_an_unserved_country_or_area(api: Caller) -> None:
    assert (await api.get("rentals/search", params={"country": "ZZ"})).body == {"numbers": []}
    none = await api.get("rentals/search", params={"country": "US", "areaCode": "999"})
    assert none.body == {"numbers": []}


async def test_search_is_deterministic_for_a_seed(api: Caller) -> None:
    params = {"country": "CA", "pageSize": "4"}
    first = (await api.get("rentals/search", params=params)).body
    assert (await api.get("rentals/search", params=params)).body == first
    async with Sandbox(seed=12) as other:
        caller = Caller(api.session, other)
        assert (await caller.get("rentals/search", params=params)).body != first


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "country"),
        ({"country": "USA"}, "country"),
        ({"country": "U1"}, "country"),
        ({"country": "US", "type": "Landline"}, "type"),
        ({"country": "US", "smsEnabled": "yes"}, "smsEnabled"),
        ({"country": "US", "voiceEnabled": "1"}, "voiceEnabled"),
        ({"country": "US", "areaCode": "5a0"}, "areaCode"),
        ({"country": "US", "contains": "55-5"}, "contains"),
        ({"country": "US", "pageSize": "0"}, "pageSize"),
        ({"country": "US", "pageSize": "51"}, "pageSize"),
    ],
)
async def test_search_validation_names_the_field(
    api: Caller, params: dict[str, str], field: str
) -> None:
    reply = await api.get("rentals/search", params=params)
    assert (reply.status, reply.error_code) == (400, "VALIDATION_ERROR")
    assert reply.body["error"].startswith(field)


async def test_rent_charges_the_marked_up_price(api: Caller, sb: Sandbox) -> None:
    rental = await api.rent("US")
    assert rental["status"] == "ACTIVE"
    assert rental["monthlyPrice"] == Decimal("1.50")
    assert '"monthlyPrice":1.50' in (await api.get(f"rentals/{rental['id']}")).text
    assert rental["numberType"] == "LOCAL"
    assert rental["country"] == "US"
    assert {"id", "phoneNumber", "autoRenew", "renewsAt"} <= set(rental)
    assert sb.balance() == Decimal("98.50")
    assert sb.ledger().charges_by_rental == {rental["id"]: Decimal("1.50")}


async def test_rent_a_number_twice_is_409(api: Caller, sb: Sandbox) -> None:
    rental = await api.rent("US")
    body = {
        "phoneNumber": rental["phoneNumber"],
        "numberType": "LOCAL",
        "country": "US",
        "monthlyPrice": 1.15,
    }
    other = sb.add_key()
    reply = await api.post("rentals", body, key=other)
    assert (reply.status, reply.error_code) == (409, "CONFLICT")
    assert sb.balance(other) == 100


async def test_rent_without_balance_is_402(api: Caller, sb: Sandbox) -> None:
    sb.set_balance("1.49")
    found = await api.get("rentals/search", params={"country": "US"})
    number = found.body["numbers"][0]
    reply = await api.post(
        "rentals",
        {"phoneNumber": number["phoneNumber"], "numberType": "LOCAL", "country": "US",
         "monthlyPrice": 1.15},
    )  # fmt: skip
    assert (reply.status, reply.error_code) == (402, "INSUFFICIENT_BALANCE")
    assert sb.rentals() == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"phoneNumber": None}, "phoneNumber"),
        ({"phoneNumber": "5105551234"}, "phoneNumber"),
        ({"phoneNumber": "+15550000000"}, "phoneNumber"),  # never offered
        ({"numberType": "LANDLINE"}, "numberType"),
        ({"numberType": "MOBILE"}, "numberType"),
        ({"country": None}, "country"),
        ({"country": "GB"}, "country"),
        ({"monthlyPrice": None}, "monthlyPrice"),
        ({"monthlyPrice": "1.15"}, "monthlyPrice"),
        ({"monthlyPrice": 1.0}, "monthlyPrice"),
        ({"monthlyPrice": True}, "monthlyPrice"),
    ],
)
async def test_rent_validation_names_the_field(
    api: Caller, sb: Sandbox, change: dict[str, Any], field: str
) -> None:
    found = await api.get("rentals/search", params={"country": "US"})
    body = {
        "phoneNumber": found.body["numbers"][0]["phoneNumber"],
        "numberType": "LOCAL",
        "country": "US",
        "monthlyPrice": 1.15,
    }
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    reply = await api.post("rentals", body)
    assert (reply.status, reply.error_code) == (400, "VALIDATION_ERROR")
    assert reply.body["error"].startswith(field)
    assert sb.ledger().charged == 0


async def test_list_rentals_has_total_and_page_only(api: Caller) -> None:
    first = await api.rent("US")
    second = await api.rent("GB")
    body = (await api.get("rentals")).body
    assert set(body) == {"rentals", "total", "page"}
    assert [r["id"] for r in body["rentals"]] == [second["id"], first["id"]]
    assert (body["total"], body["page"]) == (2, 1)
    page2 = (await api.get("rentals", params={"limit": 1, "page": 2})).body
    assert [r["id"] for r in page2["rentals"]] == [first["id"]]
    beyond = (await api.get("rentals", params={"limit": 1, "page": 3})).body
    assert (beyond["rentals"], beyond["total"]) == ([], 2)
    await api.delete(f"rentals/{first['id']}")
    active = (await api.get("rentals", params={"status": "ACTIVE"})).body
    assert [r["id"] for r in active["rentals"]] == [second["id"]]
    cancelled = (await api.get("rentals", params={"status": "CANCELLED"})).body
    assert [r["id"] for r in cancelled["rentals"]] == [first["id"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": "101"}, "limit"), ({"page": "0"}, "page"), ({"status": "PENDING"}, "status")],
)
async def test_list_rentals_validation(api: Caller, params: dict[str, str], field: str) -> None:
    reply = await api.get("rentals", params=params)
    assert (reply.status, reply.error_code) == (400, "VALIDATION_ERROR")
    assert reply.body["error"].startswith(field)


async def test_detail_has_recent_messages_and_calls(api: Caller, sb: Sandbox) -> None:
    rental = await api.rent("US")
    message = sb.add_inbound_sms(rental["id"], "+14155550100", "Your code is 123456")
    assert message["direction"] == "INBOUND"
    assert message["to"] == rental["phoneNumber"]
    assert message["status"] == "received"
    sb.add_inbound_call(rental["id"], "+14155550100", duration=42)
    detail = (await api.get(f"rentals/{rental['id']}")).body
    assert detail["messages"] == [message]
    assert detail["calls"][0]["duration"] == 42
    assert set(detail["calls"][0]) == {"id", "direction", "from", "to", "status", "duration",
                                       "createdAt"}  # fmt: skip
    for i in range(25):
        sb.add_inbound_sms(rental["id"], "+14155550100", f"message {i}")
    detail = (await api.get(f"rentals/{rental['id']}")).body
    assert len(detail["messages"]) == 20
    assert detail["messages"][0]["body"] == "message 24"


async def test_another_keys_rental_is_not_found(api: Caller, sb: Sandbox) -> None:
    rental = await api.rent("US")
    other = sb.add_key()
    for method in ("GET", "PATCH", "DELETE"):
        reply = await api.request(method, f"rentals/{rental['id']}", key=other, json={})
        assert (reply.status, reply.error_code) == (404, "NOT_FOUND")
    reply = await api.get(f"rentals/{rental['id']}/sms", key=other)
    assert reply.status == 404


async def test_patch_answers_only_the_fields_set(api: Caller, sb: Sandbox) -> None:
    rental = await api.rent("US")
    reply = await api.patch(
        f"rentals/{rental['id']}", {"autoRenew": False, "forwardingNumber": "+905551234567"}
    )
    assert reply.body == {
        "id": rental["id"],
        "autoRenew": False,
        "forwardingNumber": "+905551234567",
    }
    record = sb.rental(rental["id"])
    assert (record.auto_renew, record.forwarding_number) == (False, "+905551234567")
    reply = await api.patch(f"rentals/{rental['id']}", {"forwardingNumber": None})
    assert reply.body == {"id": rental["id"], "forwardingNumber": None}
    assert sb.rental(rental["id"]).forwarding_number is None
    reply = await api.patch(
        f"rentals/{rental['id']}", {"voicemailEnabled": True, "friendlyName": "support line"}
    )
    assert reply.body == {
        "id": rental["id"],
        "voicemailEnabled": True,
        "friendlyName": "support line",
    }
    detail = (await api.get(f"rentals/{rental['id']}")).body
    assert (detail["autoRenew"], detail["voicemailEnabled"]) == (False, True)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"autoRenew": "yes"}, "autoRenew"),
        ({"autoRenew": 1}, "autoRenew"),
        ({"forwardingNumber": "0555"}, "forwardingNumber"),
        ({"forwardingNumber": 905551234567}, "forwardingNumber"),
        ({"voicemailEnabled": None}, "voicemailEnabled"),
        ({"friendlyName": "x" * 65}, "friendlyName"),
        ({"friendlyName": 7}, "friendlyName"),
    ],
)
async def test_patch_validation_changes_nothing(
    api: Caller, sb: Sandbox, body: dict[str, Any], field: str
) -> None:
    rental = await api.rent("US")
    reply = await api.patch(f"rentals/{rental['id']}", {"autoRenew": False, **body})
    assert (reply.status, reply.error_code) == (400, "VALIDATION_ERROR")
    assert reply.body["error"].startswith(field)
    assert sb.rental(rental["id"]).auto_renew is True


async def test_delete_frees_the_number_and_later_writes_conflict(api: Caller, sb: Sandbox) -> None:
    rental = await api.rent("US")
    reply = await api.delete(f"rentals/{rental['id']}")
    assert reply.body == {"success": True}
    assert (await api.get(f"rentals/{rental['id']}")).body["status"] == "CANCELLED"
    for method, path, body in [
        ("DELETE", "", None),
        ("PATCH", "", {"autoRenew": True}),
        ("POST", "/sms", {"to": "+14155551234", "body": "hi"}),
        ("POST", "/calls", {"to": "+14155551234"}),
    ]:
        conflict = await api.request(method, f"rentals/{rental['id']}{path}", json=body)
        assert (conflict.status, conflict.error_code) == (409, "CONFLICT"), (method, path)
    with pytest.raises(StateError):
        sb.add_inbound_sms(rental["id"], "+1415", "late")
    # The number is free again: someone else can rent it.
    again = await api.post(
        "rentals",
        {"phoneNumber": rental["phoneNumber"], "numberType": "LOCAL", "country": "US",
         "monthlyPrice": 1.15},
        key=sb.add_key(),
    )  # fmt: skip
    assert again.status == 200
    assert sb.ledger().charged == Decimal("1.50")  # no refund on release, no other charge


async def test_send_sms_charges_the_fee_and_lists_it(api: Caller, sb: Sandbox) -> None:
    rental = await api.rent("US")
    reply = await api.post(f"rentals/{rental['id']}/sms", {"to": "+14155551234", "body": "hello"})
    assert reply.body["status"] == "queued"
    assert reply.body["twilioSid"].startswith("SM")
    assert sb.balance() == Decimal("98.45")
    sb.add_inbound_sms(rental["id"], "+14155551234", "hi back")
    listed = (await api.get(f"rentals/{rental['id']}/sms")).body
    assert listed["total"] == 2
    assert [m["direction"] for m in listed["messages"]] == ["INBOUND", "OUTBOUND"]
    outbound = listed["messages"][1]
    assert outbound["id"] == reply.body["id"]
    assert (outbound["from"], outbound["to"], outbound["body"]) == (
        rental["phoneNumber"], "+14155551234", "hello"
    )  # fmt: skip
    page = (await api.get(f"rentals/{rental['id']}/sms", params={"limit": 1, "page": 2})).body
    assert [m["id"] for m in page["messages"]] == [outbound["id"]]
    assert (await api.get(f"rentals/{rental['id']}/sms", params={"limit": "101"})).status == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"body": "hi"}, "to"),
        ({"to": "14155551234", "body": "hi"}, "to"),
        ({"to": "+14155551234"}, "body"),
        ({"to": "+14155551234", "body": ""}, "body"),
        ({"to": "+14155551234", "body": "x" * 1601}, "body"),
    ],
)
async def test_send_sms_validation(
    api: Caller, sb: Sandbox, body: dict[str, str], field: str
) -> None:
    rental = await api.rent("US")
    reply = await api.post(f"rentals/{rental['id']}/sms", body)
    assert (reply.status, reply.error_code) == (400, "VALIDATION_ERROR")
    assert reply.body["error"].startswith(field)
    assert sb.balance() == Decimal("98.50")


async def test_send_sms_without_balance_is_402(api: Caller, sb: Sandbox) -> None:
    rental = await api.rent("US")
    sb.set_balance("0.04")
    reply = await api.post(
        f"rentals/{rental['id']}/sms", {"to": "+14155551234", "body": "x" * 1600}
    )
    assert (reply.status, reply.error_code) == (402, "INSUFFICIENT_BALANCE")


async def test_calls_place_and_list(api: Caller, sb: Sandbox) -> None:
    rental = await api.rent("US")
    reply = await api.post(f"rentals/{rental['id']}/calls", {"to": "+14155551234"})
    assert reply.body["status"] == "RINGING"
    assert reply.body["twilioSid"].startswith("CA")
    sb.add_inbound_call(rental["id"], "+14155550000", status="COMPLETED", duration=61)
    listed = (await api.get(f"rentals/{rental['id']}/calls")).body
    assert listed["total"] == 2
    assert [(c["direction"], c["status"]) for c in listed["calls"]] == [
        ("INBOUND", "COMPLETED"), ("OUTBOUND", "RINGING")
    ]  # fmt: skip
    bad = await api.post(f"rentals/{rental['id']}/calls", {"to": "nobody"})
    assert (bad.status, bad.error_code) == (400, "VALIDATION_ERROR")
    assert bad.body["error"].startswith("to")
