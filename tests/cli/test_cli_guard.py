"""The spend guard on the command line: options, exit status 4, ``gsim guard``, ``gsim stats``."""

from __future__ import annotations

import asyncio

import pytest
from cli_helpers import Gsim, Served
from redis_server import RedisServer, redis_server

import gsim_async
from gsim_async.fleet import RedisFleet

__all__ = ["redis_server"]


def charged(served: Served) -> int:
    return len(served.call(served.sandbox.ledger).charges_by_order)


def test_get_code_buys_no_more_than_the_limit_and_exits_4(gsim: Gsim, served: Served) -> None:
    result = gsim(
        "--spend-limit", "0.36/1h", "--poll-interval", "0.05",
        "get-code", "-n", "4", "telegram", "russia", "--timeout", "300ms",
    )  # fmt: skip
    assert result.exit_code == 4, result.stderr
    assert "the spend guard refused a purchase of telegram in russia" in result.stderr
    assert "`gsim guard`" in result.stderr  # the hint
    assert charged(served) == 2


def test_the_breaker_holds_get_code_attempts(gsim: Gsim, served: Served) -> None:
    result = gsim(
        "--poll-interval", "0.05", "--json",
        "get-code", "telegram", "russia", "--attempts", "3", "--timeout", "200ms",
        "--breaker", "2",
    )  # fmt: skip
    assert result.exit_code == 4, result.stderr
    assert '"code": "BreakerOpenError"' in result.stderr
    assert charged(served) == 2  # the third try was never bought


def test_a_bad_limit_is_a_usage_error(gsim: Gsim) -> None:
    result = gsim("--spend-limit", "lots", "balance")
    assert result.exit_code == 2
    assert "--spend-limit" in result.stderr
    assert gsim("balance", "--breaker", "0").exit_code == 2


def test_a_cooldown_reads_as_the_client_reads_it(gsim: Gsim) -> None:
    # GSIM_BREAKER_COOLDOWN=1d configured Client() but was a usage error for `gsim`.
    assert gsim("--breaker", "2", "--breaker-cooldown", "1d", "balance").exit_code == 0
    assert gsim("--breaker", "2", "--breaker-cooldown", "1 week", "balance").exit_code == 2


def test_guard_status_reads_the_options_and_the_environment(served: Served) -> None:
    env = {**served.env, "GSIM_SPEND_LIMIT": "2/6h", "GSIM_BREAKER": "4"}
    gsim = Gsim(env, served.api_key)
    status = gsim.json("guard", "status")
    assert status["spend"]["limit"] == "2" and status["spend"]["available"] == "2.00"
    assert status["spend"]["per"] == 6 * 3600
    assert status["breakers"] == [] and status["shared"] is False
    shown = gsim("guard", "status", "--spend-limit", "1/1h")
    assert "0.00 of 1 USD per 1h counted, 1.00 USD left" in shown.stdout
    assert "counted by this command alone" in shown.stdout
    off = Gsim({**served.env, "GSIM_SPEND_LIMIT": None, "GSIM_BREAKER": None}, served.api_key)
    assert "spend guard: off" in off("guard", "status").stdout


@pytest.fixture
def fleet_env(served: Served, redis_server: RedisServer) -> dict[str, str | None]:
    return {**served.env, "GSIM_FLEET_URL": redis_server.url, "COLUMNS": "200"}


class SignUpError(Exception):
    """The step after the code failed."""


def trip_the_breaker(served: Served, redis: RedisServer) -> None:
    """A program of the fleet whose sign-ups fail after the code, twice."""

    async def main() -> None:
        async with gsim_async.Client(
            served.api_key,
            base_url=served.base_url,
            poll_interval=0.05,
            fleet=RedisFleet(redis.url),
            breaker=gsim_async.Breaker(2),
        ) as gsim:
            for _ in range(2):
                try:
                    async with gsim.orders.activation("telegram", "russia") as act:
                        served.call(served.sandbox.deliver_code, act.order.id)
                        await act.wait_for_code(timeout=5)
                        raise SignUpError
                except SignUpError:
                    pass
            await asyncio.sleep(0.5)  # its writes reach Redis

    asyncio.run(main())


def test_stats_and_guard_say_why_the_fleet_holds_purchases(
    served: Served, redis_server: RedisServer, fleet_env: dict[str, str | None]
) -> None:
    trip_the_breaker(served, redis_server)
    gsim = Gsim(fleet_env, served.api_key)
    stats = gsim("stats")
    assert stats.exit_code == 0, stats.stderr
    assert "breaker telegram/russia: open, 2 failed verifications in a row" in stats.stdout
    assert "2 left by an exception after the code came (SignUpError)" in stats.stdout
    status = gsim.json("guard", "status")
    assert [(b["service"], b["country"], b["open"]) for b in status["breakers"]] == [
        ("telegram", "russia", True)
    ]
    held = gsim("--breaker", "2", "buy", "telegram", "RU")
    assert held.exit_code == 4
    assert "BreakerOpenError" in gsim("--json", "--breaker", "2", "buy", "telegram", "RU").stderr
    assert gsim.json("guard", "reset", "--service", "telegram", "--country", "RU") == {"closed": 1}
    assert gsim.json("guard", "status")["breakers"] == []
    assert gsim("--breaker", "2", "buy", "telegram", "russia").exit_code == 0
