"""The command line and fleets: ``--fleet URL``, and ``--sandbox`` joining none unasked."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
from cli_helpers import Gsim, Served
from redis_server import RedisServer, redis_server

import gsim_async.cli._context

__all__ = ["redis_server"]


@pytest.fixture
def fast_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    # The embedded sandbox's codes take a few seconds for people to watch; not here.
    monkeypatch.setattr(gsim_async.cli._context, "SANDBOX_CODE_DELAY", (0.05, 0.1))
    monkeypatch.setattr(gsim_async.cli._context, "SANDBOX_POLL_INTERVAL", 0.05)


@pytest.fixture
def redis_keys(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client of the test's Redis, to see what a command wrote there."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.mark.usefixtures("fast_sandbox")
def test_a_sandbox_run_joins_no_fleet_the_environment_names(
    no_env: dict[str, str | None], redis_server: RedisServer, redis_keys: redis.Redis
) -> None:
    # Seen: with GSIM_FLEET_URL set in the shell (a fleet's host), a sandbox run joined
    # that Redis and became its leader.
    env = {**no_env, "GSIM_FLEET_URL": redis_server.url}
    result = Gsim(env, "2s_")("--sandbox", "get-code", "telegram", "russia")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "1 of 1 code"
    assert redis_keys.keys("*") == []


@pytest.mark.usefixtures("fast_sandbox")
def test_a_sandbox_run_joins_the_fleet_an_option_names(
    no_env: dict[str, str | None], redis_server: RedisServer, redis_keys: redis.Redis
) -> None:
    result = Gsim(no_env, "2s_")(
        "--sandbox", "--fleet", redis_server.url, "get-code", "telegram", "russia"
    )
    assert result.exit_code == 0, result.stderr
    assert any(k.endswith(":gate") for k in redis_keys.keys("gsim:*"))


def test_a_command_joins_the_fleet_the_option_names(
    served: Served, redis_server: RedisServer, redis_keys: redis.Redis
) -> None:
    gsim = Gsim(served.env, served.api_key)
    assert gsim.json("balance", "--fleet", redis_server.url)["currency"] == "USD"
    assert any(k.endswith(":gate") for k in redis_keys.keys("gsim:*"))


def test_a_fleet_that_cannot_be_used_is_one_error_line(
    served: Served, redis_server: RedisServer
) -> None:
    port = redis_server.port
    redis_server.stop()
    result = Gsim(served.env, served.api_key)("--fleet", redis_server.url, "balance")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"gsim: error: cannot reach the fleet's Redis at redis://127.0.0.1:{port}/0"
    )
    assert len(result.stderr.splitlines()) == 1
    malformed = Gsim(served.env, served.api_key)("--fleet", "redis://127.0.0.1/zero", "balance")
    assert malformed.exit_code == 2


def test_a_sandbox_run_needs_no_redis_py_whatever_the_environment_says() -> None:
    # The docs build (its CLI screenshots) has no redis-py, and may run where
    # GSIM_FLEET_URL is set: it failed with "RedisFleet needs redis-py".
    program = (
        "import sys; sys.modules['redis'] = None\n"  # as if redis-py were not installed
        "from gsim_async.cli import main\n"
        "sys.argv = ['gsim', '--sandbox', '--json', 'balance']\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GSIM_")}
    env["GSIM_FLEET_URL"] = "redis://127.0.0.1:1/0"
    done = subprocess.run(  # noqa: S603 - this interpreter, our own program
        [sys.executable, "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"currency"' in done.stdout
