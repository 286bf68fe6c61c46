"""The wire ⇄ model converter: exact money, UTC timestamps, tolerant enums."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from gsim_async import Order, OrderStatus, Rental
from gsim_async._converter import decoder, dumps, format_datetime, loads, parse_datetime


def structure(data: object, cl: type) -> object:
    return decoder(cl)(data)


def wire(order: Order) -> dict[str, object]:
    """An Order as the API would send it (camelCase, money as numbers, Z timestamps)."""
    return {
        "id": order.id,
        "service": order.service,
        "phoneNumber": order.phone_number,
        "status": order.status.value,
        "price": order.price,
        "country": order.country,
        "operator": order.operator,
        "smsCode": order.sms_code,
        "createdAt": order.created_at and format_datetime(order.created_at),
        "expiresAt": order.expires_at and format_datetime(order.expires_at),
    }


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
    assert structure(loads(dumps(wire(order))), Order) == order


@given(money)
def test_money_is_parsed_without_float_rounding(price: Decimal) -> None:
    body = f'{{"balance": {price}, "currency": "USD"}}'
    from gsim_async import Balance

    assert structure(loads(body), Balance).balance == price  # type: ignore[attr-defined]


def test_point_one_is_exactly_a_tenth() -> None:
    from gsim_async import Balance

    assert structure(loads('{"balance": 0.1}'), Balance).balance == Decimal("0.1")  # type: ignore[attr-defined]


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


# -- every RFC 3339 form, on every supported Python (3.10's fromisoformat takes only
#    0, 3 or 6 fraction digits and no "Z") --------------------------------------------

instants = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda m: timedelta(minutes=m)
)


@given(
    when=instants,
    digits=st.integers(min_value=0, max_value=9),
    offset=st.none() | offsets,
    zulu=st.sampled_from(["Z", "z", "+00:00", "-00:00"]),
    sep=st.sampled_from(["T", "t", " "]),
)
def test_every_rfc3339_form_parses_to_the_same_instant(
    when: datetime, digits: int, offset: timedelta | None, zulu: str, sep: str
) -> None:
    local = when if offset is None else when.astimezone(timezone(offset))
    fraction = f"{local.microsecond:06d}".ljust(9, "0")[:digits]
    text = local.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (f".{fraction}" if digits else "")
    if offset is None:
        text += zulu
    else:
        sign = "-" if offset < timedelta(0) else "+"
        minutes = abs(int(offset.total_seconds())) // 60
        text += f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    parsed = parse_datetime(text)
    expected = when.replace(microsecond=int(fraction.ljust(6, "0")[:6]) if digits else 0)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_a_leap_second_is_the_last_microsecond_of_its_minute() -> None:
    assert parse_datetime("2016-12-31T23:59:60Z") == datetime(
        2016, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc
    )


def test_a_timestamp_that_is_not_rfc3339_is_refused() -> None:
    import pytest

    for bad in (
        "2024-03-15",
        "10:00:00Z",
        "2024-03-15T10:00Z",
        "yesterday",
        "2024-13-01T00:00:00Z",
    ):
        with pytest.raises(ValueError):
            parse_datetime(bad)


@given(orders)
def test_the_hand_written_order_hook_matches_the_generated_one(order: Order) -> None:
    from gsim_async._converter import generated_structure

    data = loads(dumps(wire(order)))
    assert structure(data, Order) == generated_structure(Order)(data, Order)
