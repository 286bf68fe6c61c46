"""Bad arguments raise ValueError naming the argument, and send nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gsim_async
from gsim_async import _validation as v
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

Call = Callable[[gsim_async.Client], Awaitable[Any]]

CASES: list[tuple[str, Call, str]] = [
    ("empty service", lambda c: c.orders.create("", "russia"), "service"),
    ("blank country", lambda c: c.orders.create("telegram", "  "), "country"),
    ("limit 0", lambda c: c.orders.list(limit=0), "limit"),
    ("limit 101", lambda c: c.orders.list(limit=101), "limit"),
    ("page 0", lambda c: c.orders.list(page=0), "page"),
    ("bad status", lambda c: c.orders.list(status="DONE"), "status"),
    ("page_size 51", lambda c: c.rentals.search("US", page_size=51), "page_size"),
    ("page_size 0", lambda c: c.rentals.search("US", page_size=0), "page_size"),
    ("country USA", lambda c: c.rentals.search("USA"), "country"),
    ("search type", lambda c: c.rentals.search("US", type="Landline"), "type"),
    (
        "number not E.164",
        lambda c: c.rentals.create("5105551234", "LOCAL", "US", "1.15"),
        "phone_number",
    ),
    (
        "unknown number type",
        lambda c: c.rentals.create("+15105551234", "SATELLITE", "US", "1.15"),
        "number_type",
    ),
    (
        "zero price",
        lambda c: c.rentals.create("+15105551234", "LOCAL", "US", 0),
        "monthly_price",
    ),
    (
        "negative price",
        lambda c: c.rentals.create("+15105551234", "LOCAL", "US", "-1"),
        "monthly_price",
    ),
    ("rental country", lambda c: c.rentals.create("+15105551234", "LOCAL", "U", 1), "country"),
    ("sms to", lambda c: c.rentals.send_sms("cm1", "0800", "hi"), "to"),
    ("empty sms", lambda c: c.rentals.send_sms("cm1", "+14155551234", ""), "body"),
    ("long sms", lambda c: c.rentals.send_sms("cm1", "+14155551234", "x" * 1601), "body"),
    ("call to", lambda c: c.rentals.call("cm1", "12"), "to"),
    ("friendly_name", lambda c: c.rentals.update("cm1", friendly_name="n" * 65), "friendly_name"),
    ("forwarding", lambda c: c.rentals.update("cm1", forwarding_number="123"), "forwarding"),
    ("update nothing", lambda c: c.rentals.update("cm1"), "at least one"),
    ("auto_renew", lambda c: c.rentals.update("cm1", auto_renew="yes"), "auto_renew"),  # type: ignore[arg-type]
    ("order id slash", lambda c: c.orders.get("../balance"), "order"),
    ("on_timeout", lambda c: c.orders.wait_for_code("cm1", on_timeout="panic"), "on_timeout"),  # type: ignore[arg-type]
    ("timeout", lambda c: c.orders.wait_for_code("cm1", timeout=-1), "timeout"),
    (
        "max_price",
        lambda c: c.orders.activation("telegram", "russia", max_price=0).__aenter__(),
        "max_price",
    ),
    ("messages limit", lambda c: c.rentals.messages("cm1", limit=500), "limit"),
]


@pytest.mark.parametrize(("what", "call", "names"), CASES, ids=[c[0] for c in CASES])
async def test_invalid_argument_raises_before_any_request(
    client: gsim_async.Client, sandbox: Sandbox, what: str, call: Call, names: str
) -> None:
    before = sandbox.stats.total
    with pytest.raises(ValueError, match=names) as info:
        await call(client)
    assert isinstance(info.value, gsim_async.InvalidArgumentError)
    assert sandbox.stats.total == before, f"{what}: a request was sent"


def test_missing_api_key_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GSIM_API_KEY", raising=False)
    with pytest.raises(ValueError, match="GSIM_API_KEY"):
        gsim_async.Client()


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ValueError, match="unencrypted"):
        gsim_async.Client("2s_" + "a" * 40, base_url="http://gsim.io")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:8"])
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    assert gsim_async.Client("2s_" + "a" * 40, base_url=url).base_url == url


@given(st.text(alphabet="0123456789+- ()", max_size=20))
def test_e164_accepts_exactly_plus_and_7_to_15_digits(number: str) -> None:
    digits = number[1:]
    valid = (
        number.startswith("+")
        and digits.isdigit()
        and digits.isascii()
        and 7 <= len(digits) <= 15
        and not digits.startswith("0")
    )
    if valid:
        assert v.e164("to", number) == number
    else:
        with pytest.raises(ValueError, match=r"E\.164"):
            v.e164("to", number)


@given(st.integers(min_value=-1000, max_value=1000))
def test_limit_bounds(value: int) -> None:
    if 1 <= value <= 100:
        assert v.limit(value) == value
    else:
        with pytest.raises(ValueError, match="limit must be between 1 and 100"):
            v.limit(value)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4))
def test_price_is_kept_exact(value: Any) -> None:
    if value > 0:
        assert v.price("monthly_price", value) == value
        assert v.price("monthly_price", str(value)) == value
    else:
        with pytest.raises(ValueError, match="positive"):
            v.price("monthly_price", value)
