"""``gsim rentals ...``: search, rent, update, SMS, calls, wait-sms, release."""

from __future__ import annotations

import threading

from cli_helpers import Gsim, Served, StubApi


def rent_one(gsim: Gsim) -> dict[str, object]:
    offer = gsim.json("rentals", "search", "US", "--limit", "1")[0]
    rented = gsim.json("rentals", "rent", offer["phone_number"], "--country", "US")
    assert rented["phone_number"] == offer["phone_number"]
    return rented  # type: ignore[no-any-return]


def test_search_filters_and_shows_prices(gsim: Gsim) -> None:
    found = gsim.json("rentals", "search", "US", "--area-code", "510", "--sms", "--limit", "3")
    assert len(found) == 3
    assert all(n["phone_number"].startswith("+1510") for n in found)
    assert all(n["capabilities"]["sms"] for n in found)
    table = gsim("rentals", "search", "US", "--type", "toll-free", "--limit", "2").stdout
    assert "USD/month" in table


def test_rent_looks_up_the_price_and_list_get_show_it(gsim: Gsim, served: Served) -> None:
    rented = rent_one(gsim)
    assert rented["status"] == "ACTIVE"
    assert [r["id"] for r in gsim.json("rentals", "list")["items"]] == [rented["id"]]
    assert [r["id"] for r in gsim.json("rentals", "list", "--all", "--status", "active")] == [
        rented["id"]
    ]
    detail = gsim.json("rentals", "get", str(rented["id"]))
    assert detail["messages"] == [] and detail["calls"] == []
    assert str(rented["phone_number"]) in gsim("rentals", "get", str(rented["id"])).stdout
    assert served.call(served.sandbox.ledger).charges_by_rental == {
        rented["id"]: served.call(served.sandbox.rental, rented["id"]).monthly_price
    }


def test_rent_of_a_number_not_offered_is_a_usage_error(gsim: Gsim) -> None:
    result = gsim("rentals", "rent", "+15550000000", "--country", "US")
    assert result.exit_code == 2
    assert "--monthly-price" in result.stderr


def test_update_changes_only_what_is_given(gsim: Gsim, served: Served) -> None:
    rid = str(rent_one(gsim)["id"])
    update = gsim.json(
        "rentals", "update", rid, "--auto-renew", "--forward-to", "+905551234567",
        "--name", "support line",
    )  # fmt: skip
    assert update["auto_renew"] is True
    assert update["forwarding_number"] == "+905551234567"
    result = gsim("rentals", "update", rid, "--no-forwarding")
    assert result.exit_code == 0
    assert "forwarding_number=off" in result.stdout
    record = served.call(served.sandbox.rental, rid)
    assert (record.auto_renew, record.forwarding_number, record.friendly_name) == (
        True,
        None,
        "support line",
    )
    assert gsim("rentals", "update", rid, "--forward-to", "+1", "--no-forwarding").exit_code == 2
    assert gsim("rentals", "update", rid).exit_code == 2  # nothing to change


def test_send_call_and_list_messages_and_calls(gsim: Gsim, served: Served) -> None:
    rid = str(rent_one(gsim)["id"])
    sent = gsim.json("rentals", "send", rid, "+14155551234", "hello [there]")
    assert sent["status"] == "queued"
    placed = gsim.json("rentals", "call", rid, "+14155551234")
    assert placed["status"] == "RINGING"
    messages = gsim.json("rentals", "sms", rid)["items"]
    assert [(m["direction"], m["to"], m["body"]) for m in messages] == [
        ("OUTBOUND", "+14155551234", "hello [there]")
    ]
    assert "hello [there]" in gsim("rentals", "sms", rid).stdout  # shown as text, not markup
    calls = gsim.json("rentals", "calls", rid)["items"]
    assert [(c["direction"], c["to"]) for c in calls] == [("OUTBOUND", "+14155551234")]
    assert "+14155551234" in gsim("rentals", "calls", rid).stdout


def test_wait_sms_prints_the_message_and_its_code(gsim: Gsim, served: Served) -> None:
    rid = str(rent_one(gsim)["id"])
    arrive = threading.Timer(
        0.3, served.call, (served.sandbox.add_inbound_sms, rid, "+14155550000", "Code: 908172")
    )
    arrive.start()
    try:
        result = gsim("--poll-interval", "0.05", "rentals", "wait-sms", rid, "--timeout", "10")
    finally:
        arrive.join()
    assert result.exit_code == 0
    assert result.stdout == "+14155550000: Code: 908172\ncode 908172\n"
    timed_out = gsim("--poll-interval", "0.05", "rentals", "wait-sms", rid, "--timeout", "0.2")
    assert timed_out.exit_code == 3


def test_release_needs_yes_without_a_terminal(gsim: Gsim, served: Served) -> None:
    rid = str(rent_one(gsim)["id"])
    refused = gsim("rentals", "release", rid)
    assert refused.exit_code == 2
    assert "--yes" in refused.stderr
    assert gsim.json("rentals", "release", rid, "--yes") == {"id": rid, "released": True}
    assert served.call(served.sandbox.rental, rid).status == "CANCELLED"


PUBLISHED_SEARCH = {
    "numbers": [
        {
            "friendlyName": "(510) 555-1234",
            "phoneNumber": "+15105551234",
            "locality": "Oakland",
            "region": "CA",
            "isoCountry": "US",
            "capabilities": {"voice": True, "SMS": True, "MMS": True},
        }
    ]
}


def test_rent_without_a_price_in_the_search_asks_for_the_base_price(stub_api: StubApi) -> None:
    # The published API's search results carry no price at all.
    stub_api.answers[("GET", "/rentals/search")] = (200, PUBLISHED_SEARCH)
    gsim = Gsim(stub_api.env, stub_api.api_key)
    result = gsim("rentals", "rent", "+15105551234", "--country", "US")
    assert result.exit_code == 2
    assert "the search results carry no price: pass --monthly-price" in result.stderr
    assert "before its markup" in result.stderr
    assert ("POST", "/rentals") not in stub_api.hits


def test_rent_says_the_charge_is_the_base_price_plus_the_markup(stub_api: StubApi) -> None:
    stub_api.answers[("POST", "/rentals")] = (
        200,
        {
            "id": "cmrental1",
            "phoneNumber": "+15105551234",
            "country": "US",
            "numberType": "LOCAL",
            "status": "ACTIVE",
            "monthlyPrice": 1.50,
            "autoRenew": False,
            "renewsAt": "2024-04-15T10:00:00.000Z",
        },
    )
    gsim = Gsim(stub_api.env, stub_api.api_key)
    result = gsim("rentals", "rent", "+15105551234", "--country", "US", "--monthly-price", "1.15")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "rented +15105551234 for 1.5 USD a month, charged now: base price 1.15 USD plus "
        "gsim's markup (rental cmrental1)\n"
    )


def test_rent_help_says_where_the_base_price_comes_from_and_the_markup(gsim: Gsim) -> None:
    text = " ".join(gsim("rentals", "rent", "--help").stdout.split())
    assert "base monthly price, before gsim's markup" in text
    assert "charges that price plus gsim's markup" in text
    assert "the published API's do not" in text
