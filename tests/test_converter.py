"""The wire ⇄ model converter: exact money, UTC timestamps, tolerant enums."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from gsim_async import Order, OrderStatus, Rental
from gsim_async._converter import converter, dumps, format_datetime, loads, structure

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2)
stamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
statuses = st.sampled_from([s.value for s in OrderStatus]) | st.from_regex(
    r"[A-Z][A-Z_]{1,15}", fullmatch=True
)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=25)

orders = st.builds(
    Order,
    id=ids,
    service=st.sampled_from(["telegram", "whatsapp"]),
    phone_number=st.from_regex(r"\+[1-9][0-9]{9,13}", fullmatch=True),
    status=statuses.map(OrderStatus),
    price=money,
    country=st.none() | st.just("russia"),
    operator=st.none() | st.just("any"),
    sms_code=st.none() | st.from_regex(r"[0-9]{4,8}", fullmatch=True),
    created_at=st.none() | stamps,
    expires_at=st.none() | stamps,
)


@given(orders)
def test_order_round_trips_through_json(order: Order) -> None:
    wire = dumps(converter.unstructure(order))
    assert structure(loads(wire), Order) == order


@given(orders)
def test_wire_names_are_camel_case(order: Order) -> None:
    wire = json.loads(dumps(converter.unstructure(order)))
    assert {"phoneNumber", "smsCode", "createdAt", "expiresAt"} <= set(wire)
    assert "phone_number" not in wire


@given(money)
def test_money_is_parsed_without_float_rounding(price: Decimal) -> None:
    body = f'{{"balance": {price}, "currency": "USD"}}'
    from gsim_async import Balance

    assert structure(loads(body), Balance).balance == price


def test_point_one_is_exactly_a_tenth() -> None:
    from gsim_async import Balance

    assert structure(loads('{"balance": 0.1}'), Balance).balance == Decimal("0.1")


@given(stamps)
def test_z_timestamps_parse_to_aware_utc(when: datetime) -> None:
    text = format_datetime(when)
    assert text.endswith("Z") and len(text) == len("2024-03-15T10:00:00.000Z")
    parsed = structure(
        {
            "id": "x",
            "service": "s",
            "phoneNumber": "+10000000",
            "status": "PENDING",
            "price": 1,
            "createdAt": text,
        },
        Order,
    ).created_at
    assert parsed == when and parsed is not None and parsed.utcoffset() == timedelta(0)


def test_offset_timestamps_are_converted_to_utc() -> None:
    order = structure(
        {
            "id": "x",
            "service": "s",
            "phoneNumber": "+10000000",
            "status": "PENDING",
            "price": 1,
            "expiresAt": "2024-03-15T13:00:00.000+03:00",
        },
        Order,
    )
    assert order.expires_at == datetime(2024, 3, 15, 10, tzinfo=timezone.utc)


def test_rental_with_unknown_status_and_nested_messages() -> None:
    rental = structure(
        {
            "id": "r1",
            "phoneNumber": "+15105551234",
            "status": "SUSPENDED",
            "numberType": "LOCAL",
            "monthlyPrice": 1.5,
            "messages": [
                {"id": "m", "direction": "INBOUND", "from": "+1", "to": "+2", "body": "hi"}
            ],
            "calls": [],
        },
        Rental,
    )
    assert rental.status == "SUSPENDED"
    assert rental.monthly_price == Decimal("1.5")
    assert rental.messages[0].from_ == "+1"
