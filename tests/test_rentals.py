"""client.rentals: search, rent, configure, SMS and calls — against the sandbox."""

from __future__ import annotations

import re
from decimal import Decimal

import anyio
import pytest

import gsim_async
from gsim_async import Direction, NumberType, RentalStatus
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio


async def rent(client: gsim_async.Client) -> gsim_async.Rental:
    offer = (await client.rentals.search("US", sms_enabled=True, page_size=1))[0]
    assert offer.monthly_price is not None
    return await client.rentals.create(offer.phone_number, "LOCAL", "US", offer.monthly_price)


async def test_search_filters(client: gsim_async.Client) -> None:
    numbers = await client.rentals.search(
        "us", type=NumberType.LOCAL, sms_enabled=True, area_code="510", page_size=5
    )
    assert 1 <= len(numbers) <= 5
    for number in numbers:
        assert number.phone_number.startswith("+1510")
        assert number.capabilities.sms
        assert number.iso_country == "US"


async def test_create_charges_the_marked_up_price(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    offer = (await client.rentals.search("US", page_size=1))[0]
    assert offer.monthly_price is not None
    rental = await client.rentals.create(offer.phone_number, "LOCAL", "US", offer.monthly_price)
    assert rental.status == RentalStatus.ACTIVE
    assert rental.number_type == NumberType.LOCAL
    assert rental.phone_number == offer.phone_number
    assert rental.monthly_price is not None and rental.monthly_price > offer.monthly_price
    assert sandbox.ledger().charges_by_rental == {rental.id: rental.monthly_price}


async def test_get_list_and_iterate(client: gsim_async.Client) -> None:
    rental = await rent(client)
    detail = await client.rentals.get(rental.id)
    assert detail.id == rental.id and detail.messages == () and detail.calls == ()
    page = await client.rentals.list(status="ACTIVE")
    assert [r.id for r in page] == [rental.id]
    assert page.total == 1 and page.total_pages == 1  # derived: the API omits totalPages
    assert [r.id async for r in client.rentals.iterate()] == [rental.id]


async def test_update_sends_only_what_is_given(client: gsim_async.Client, sandbox: Sandbox) -> None:
    rental = await rent(client)
    result = await client.rentals.update(rental, forwarding_number="+905551234567")
    assert result.forwarding_number == "+905551234567"
    assert sandbox.rental(rental.id).forwarding_number == "+905551234567"
    await client.rentals.update(rental, auto_renew=False, friendly_name="Support line")
    record = sandbox.rental(rental.id)
    assert record.forwarding_number == "+905551234567"  # untouched
    assert record.friendly_name == "Support line" and record.auto_renew is False


async def test_forwarding_none_disables_forwarding(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    rental = await rent(client)
    await client.rentals.update(rental, forwarding_number="+905551234567")
    await client.rentals.update(rental, forwarding_number=None)
    assert sandbox.rental(rental.id).forwarding_number is None


async def test_release_frees_the_number(client: gsim_async.Client) -> None:
    rental = await rent(client)
    await client.rentals.release(rental)
    assert (await client.rentals.get(rental.id)).status == RentalStatus.CANCELLED


async def test_send_sms_charges_a_fee_and_is_listed(
    client: gsim_async.Client, sandbox: Sandbox
) -> None:
    rental = await rent(client)
    before = sandbox.balance()
    sent = await client.rentals.send_sms(rental, "+14155551234", "hello")
    assert sent.status == "queued" and sent.twilio_sid
    assert sandbox.balance() < before
    messages = await client.rentals.messages(rental)
    assert [(m.direction, m.to, m.body) for m in messages] == [
        (Direction.OUTBOUND, "+14155551234", "hello")
    ]


async def test_calls(client: gsim_async.Client) -> None:
    rental = await rent(client)
    placed = await client.rentals.call(rental.id, "+14155551234")
    assert placed.status == "RINGING"
    calls = await client.rentals.calls(rental.id)
    assert calls.total == 1 and calls.items[0].to == "+14155551234"


async def test_inbound_sms_shows_on_detail(client: gsim_async.Client, sandbox: Sandbox) -> None:
    rental = await rent(client)
    sandbox.add_inbound_sms(rental.id, "+15550001111", "Your code is 123456")
    detail = await client.rentals.get(rental)
    assert detail.messages[0].from_ == "+15550001111"
    assert gsim_async.extract_code(detail.messages[0].body) == "123456"


async def test_insufficient_balance_for_rental(client: gsim_async.Client, sandbox: Sandbox) -> None:
    offer = (await client.rentals.search("US", page_size=1))[0]
    sandbox.set_balance("0.10")
    with pytest.raises(gsim_async.InsufficientBalanceError):
        await client.rentals.create(offer.phone_number, "LOCAL", "US", Decimal("1.15"))


async def inbound_later(sandbox: Sandbox, rental_id: str, *bodies: str) -> None:
    for body in bodies:
        await anyio.sleep(0.1)
        sandbox.add_inbound_sms(rental_id, "+15550001111", body)


@pytest.mark.parametrize(
    "match",
    [
        None,
        r"code is \d+",
        re.compile(r"CODE IS", re.IGNORECASE),
        lambda m: "code" in m.body,
    ],
    ids=["none", "regex-string", "compiled", "callable"],
)
async def test_wait_for_sms_matches(
    client: gsim_async.Client, sandbox: Sandbox, match: object
) -> None:
    rental = await rent(client)
    sandbox.add_inbound_sms(rental.id, "+15550001111", "old code is 000000")  # before the call
    await anyio.sleep(0.1)  # "before" by more than the clocks' disagreement
    bodies = ("Your code is 654321",) if match is None else ("hello", "Your code is 654321")
    async with anyio.create_task_group() as tg:
        tg.start_soon(inbound_later, sandbox, rental.id, *bodies)
        message = await client.rentals.wait_for_sms(rental, match=match, timeout=5)  # type: ignore[arg-type]
    assert message.body == "Your code is 654321"
    assert message.direction == Direction.INBOUND


async def test_wait_for_sms_times_out(client: gsim_async.Client) -> None:
    rental = await rent(client)
    with pytest.raises(gsim_async.MessageTimeoutError):
        await client.rentals.wait_for_sms(rental, timeout=0.2)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Your code is 123456", "123456"),
        ("G-482913 is your Google verification code.", "482913"),
        ("Telegram code: 12345. Do not give it to anyone", "12345"),
        ("Code 123-456", "123456"),
        ("Call +14155551234 if this was not you", None),
        ("You paid 12.50 USD", None),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_code(text: str, code: str | None) -> None:
    assert gsim_async.extract_code(text) == code
