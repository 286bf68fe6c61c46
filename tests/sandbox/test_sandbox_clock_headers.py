"""What the server says about time: the Date header and how timestamps are written."""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from email.utils import parsedate_to_datetime

import aiohttp
import pytest
from sandbox_helpers import Caller, Reply

from gsim_async.sandbox import Faults, Sandbox

pytestmark = pytest.mark.anyio


def date_of(reply: Reply) -> float:
    return parsedate_to_datetime(reply.headers["Date"]).timestamp()


def created_at(order: dict[str, str]) -> float:
    return datetime.fromisoformat(order["createdAt"].replace("Z", "+00:00")).timestamp()


RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)"
)


def instant(text: str) -> tuple[Decimal, int]:
    """The exact Unix time an RFC 3339 timestamp denotes, and its fraction digits."""
    match = RFC3339.fullmatch(text)
    assert match, text
    *fields, fraction, zone = match.groups()
    seconds = calendar.timegm(tuple(int(f) for f in fields))
    if zone not in "Zz":
        sign = -1 if zone[0] == "-" else 1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds + Decimal(f"0.{fraction or 0}"), len(fraction or "")


def truncated(epoch: float, digits: int) -> Decimal:
    return Decimal(repr(epoch)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_FLOOR)


async def test_date_is_always_sent(api: Caller) -> None:
    reply = await api.get("balance")
    assert date_of(reply) == pytest.approx(time.time(), abs=2)
    missing = await api.get("nowhere")
    assert date_of(missing) == pytest.approx(time.time(), abs=2)


async def test_date_offset_moves_the_date_header_only() -> None:
    async with Sandbox(date_offset=-90, auto_deliver=False) as sb, aiohttp.ClientSession() as s:
        api = Caller(s, sb)
        order = await api.buy()
        detail = await api.get(f"orders/{order['id']}")
        assert date_of(detail) == pytest.approx(time.time() - 90, abs=2)
        assert created_at(detail.body) == pytest.approx(time.time(), abs=2)
        assert sb.faults.date_offset == -90
        sb.set_faults(date_offset=3600)
        assert date_of(await api.get("balance")) == pytest.approx(time.time() + 3600, abs=2)
        sb.set_faults(date_offset=0)
        assert date_of(await api.get("balance")) == pytest.approx(time.time(), abs=2)


async def test_date_offset_adds_to_clock_skew() -> None:
    async with (
        Sandbox(clock_skew=60, faults=Faults(date_offset=30), auto_deliver=False) as sb,
        aiohttp.ClientSession() as session,
    ):
        api = Caller(session, sb)
        order = await api.buy()
        detail = await api.get(f"orders/{order['id']}")
        assert created_at(detail.body) == pytest.approx(time.time() + 60, abs=2)
        assert date_of(detail) == pytest.approx(time.time() + 90, abs=2)
        sb.set_faults(rate_limit=1)
        limited = [await api.get("balance") for _ in range(2)][-1]
        assert limited.status == 429
        assert date_of(limited) == pytest.approx(time.time() + 90, abs=2)


async def test_date_offset_over_http_and_validated(api: Caller, sb: Sandbox) -> None:
    reply = await api.post("/_sandbox/faults", {"dateOffset": -5.5})
    assert reply.body["date_offset"] == -5.5
    with pytest.raises(ValueError, match="date_offset"):
        sb.set_faults(date_offset=float("nan"))
    with pytest.raises(ValueError, match="date_offset"):
        Sandbox(date_offset=float("inf"))


@pytest.mark.parametrize(
    ("style", "shape"),
    [
        ("ms", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"),
        ("s", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"),
        ("us", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"),
        ("offset", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00"),
    ],
)
async def test_timestamp_styles(api: Caller, sb: Sandbox, style: str, shape: str) -> None:
    order = await api.buy()
    rental = await api.rent()
    sb.add_inbound_sms(rental["id"], "+14155550100", "hi")
    sb.set_faults(timestamp_style=style)
    record = sb.order(order["id"])
    detail = (await api.get(f"orders/{order['id']}")).body
    listed = (await api.get("orders")).body["orders"][0]
    for value, epoch in [
        (detail["createdAt"], record.created_at),
        (detail["expiresAt"], record.expires_at),
        (listed["createdAt"], record.created_at),
    ]:
        assert re.fullmatch(shape, value)
        at, digits = instant(value)
        assert at == truncated(epoch, digits)
    rental_detail = (await api.get(f"rentals/{rental['id']}")).body
    assert re.fullmatch(shape, rental_detail["renewsAt"])
    assert instant(rental_detail["renewsAt"])[0] == truncated(
        sb.rental(rental["id"]).renews_at, instant(rental_detail["renewsAt"])[1]
    )
    assert re.fullmatch(shape, rental_detail["messages"][0]["createdAt"])
    fresh = await api.buy()
    assert re.fullmatch(shape, fresh["expiresAt"])


async def test_varied_timestamps_are_every_rfc3339_form_of_one_instant() -> None:
    async def forms(seed: int) -> list[tuple[int, str, str]]:
        """(fraction digits, separator, zone) of 60 renderings of one order's createdAt."""
        async with (
            Sandbox(seed=seed, auto_deliver=False, timestamp_style="varied") as sb,
            aiohttp.ClientSession() as session,
        ):
            api = Caller(session, sb)
            order = await api.buy()
            record = sb.order(order["id"])
            seen = []
            for _ in range(60):
                value = (await api.get(f"orders/{order['id']}")).body["createdAt"]
                at, digits = instant(value)
                assert at == truncated(record.created_at, digits), value
                match = RFC3339.fullmatch(value)
                assert match
                seen.append((digits, value[10], match[8]))
            return seen

    seen = await forms(3)
    assert {digits for digits, _, _ in seen} == set(range(10))
    assert {separator for _, separator, _ in seen} == {"T", "t"}
    zones = {zone for _, _, zone in seen}
    assert {"Z", "z", "+00:00"} <= zones
    assert zones - {"Z", "z", "+00:00"}  # a non-zero offset: the wall time is shifted
    assert seen == await forms(3)  # seeded


async def test_timestamp_style_is_validated(api: Caller, sb: Sandbox) -> None:
    with pytest.raises(ValueError, match="timestamp_style"):
        sb.set_faults(timestamp_style="iso")
    with pytest.raises(ValueError, match="timestamp_style"):
        Sandbox(timestamp_style="nanos")
    reply = await api.post("/_sandbox/faults", {"timestampStyle": "us"})
    assert reply.body["timestamp_style"] == "us"
    order = await api.buy()
    assert re.fullmatch(r".*\.\d{6}Z", order["expiresAt"])
