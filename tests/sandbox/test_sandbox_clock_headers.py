"""What the server says about time: the Date header and how timestamps are written."""

from __future__ import annotations

import time
from datetime import datetime
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
