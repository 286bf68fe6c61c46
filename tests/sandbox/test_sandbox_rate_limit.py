"""The rate limit's shape: burst, Retry-After or none, and the headers advertising it."""

from __future__ import annotations

import anyio
import pytest
from sandbox_helpers import Caller

from gsim_async.sandbox import Faults, Sandbox

pytestmark = pytest.mark.anyio

X_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


async def test_burst_sets_the_bucket_size(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(rate_limit=1, rate_limit_burst=5)
    statuses = [(await api.get("balance")).status for _ in range(6)]
    assert statuses == [200] * 5 + [429]


async def test_a_429_without_retry_after(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(rate_limit=1, retry_after_header=False)
    assert (await api.get("balance")).status == 200
    limited = await api.get("balance")
    assert (limited.status, limited.error_code) == (429, "RATE_LIMITED")
    assert "Retry-After" not in limited.headers
    sb.set_faults(retry_after=60)  # no header, whatever it would have said
    assert "Retry-After" not in (await api.get("balance")).headers


async def test_x_ratelimit_headers_follow_the_bucket(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(rate_limit=2, rate_limit_burst=4, rate_limit_headers="x")
    first = await api.get("balance")
    assert [first.headers[h] for h in X_HEADERS] == ["4", "3", "1"]
    replies = [await api.get("nowhere") for _ in range(3)]  # 404s advertise it too
    assert [r.headers["X-RateLimit-Remaining"] for r in replies] == ["2", "1", "0"]
    assert replies[-1].headers["X-RateLimit-Reset"] == "2"  # 4 tokens at 2/s
    limited = await api.get("balance")
    assert limited.status == 429
    assert [limited.headers[h] for h in X_HEADERS] == ["4", "0", "2"]
    await anyio.sleep(0.55)
    assert (await api.get("balance")).headers["X-RateLimit-Remaining"] == "0"  # 1 back, 1 used


async def test_ietf_ratelimit_headers(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(rate_limit=2, rate_limit_burst=4, rate_limit_headers="ietf")
    reply = await api.get("balance")
    assert reply.headers["RateLimit-Policy"] == "4;w=2"
    assert reply.headers["RateLimit"] == "limit=4, remaining=3, reset=1"
    assert "X-RateLimit-Limit" not in reply.headers
    sb.set_faults(rate_limit=3, rate_limit_burst=None)  # burst max(1, 3) = 3, window 1 s
    assert (await api.get("balance")).headers["RateLimit-Policy"] == "3;w=1"
    sb.set_faults(rate_limit=3, rate_limit_burst=4)
    assert (await api.get("balance")).headers["RateLimit-Policy"] == "4;w=1.333"


async def test_headers_only_with_a_limit(api: Caller, sb: Sandbox) -> None:
    sb.set_faults(rate_limit_headers="x")
    assert "X-RateLimit-Limit" not in (await api.get("balance")).headers
    sb.set_faults(rate_limit=5, rate_limit_headers=None)
    assert "X-RateLimit-Limit" not in (await api.get("balance")).headers


async def test_rate_limit_knobs_over_http_and_validated(api: Caller, sb: Sandbox) -> None:
    reply = await api.post(
        "/_sandbox/faults",
        {"rateLimit": 10, "rateLimitBurst": 20, "retryAfterHeader": False,
         "rateLimitHeaders": "ietf"},
    )  # fmt: skip
    body = reply.body
    assert (body["rate_limit_burst"], body["retry_after_header"]) == (20, False)
    assert body["rate_limit_headers"] == "ietf"
    for bad in ({"rate_limit_burst": 0}, {"rate_limit_headers": "draft"},
                {"retry_after_header": "no"}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            sb.set_faults(**bad)
    assert Faults(rate_limit_burst=3).rate_limit_burst == 3.0
