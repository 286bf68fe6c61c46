"""examples/fastapi_app.py served as its users serve it: ``uvicorn fastapi_app:app``.

One uvicorn process serves the module's tests (the last one stops it with SIGTERM, with
numbers waiting and requests long-polling for their codes); the error mapping is checked
in-process with Starlette's TestClient, on an account of its own.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import fastapi_app
import httpx
import pytest
from services import (
    Service,
    ThreadedSandbox,
    assert_nothing_left_charged,
    python,
    threaded_sandbox,
)

with warnings.catch_warnings():
    # Starlette's TestClient runs on httpx2, which needs Python 3.11; on 3.10 it warns
    # that it falls back to httpx.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="stops a process with SIGTERM")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    with threaded_sandbox(seed=23) as sb:
        yield sb


@pytest.fixture(scope="module")
def server(sandbox: ThreadedSandbox) -> Iterator[Service]:
    port = free_port()
    service = Service(
        python("-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port", str(port),
               "--timeout-graceful-shutdown", "3"),
        env={**sandbox.env(), "POLL_INTERVAL": "0.1", "CODE_TIMEOUT": "60"},
        ready="Application startup complete",
        name="uvicorn",
    )  # fmt: skip
    service.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield service
    service.close()


@pytest.fixture
def http(server: Service) -> Iterator[httpx.Client]:
    server.running()
    with httpx.Client(base_url=server.url, timeout=30) as client:  # type: ignore[attr-defined]
        yield client


def test_a_number_then_its_code(http: httpx.Client, sandbox: ThreadedSandbox) -> None:
    started = http.post("/verifications", json={"service": "whatsapp", "country": "india"})
    assert started.status_code == 201, started.text
    number = started.json()
    assert number["status"] == "waiting"
    assert number["phone_number"].startswith("+91")

    code = sandbox.deliver_code(number["id"])
    found = http.get(f"/verifications/{number['id']}", params={"wait": 10}).json()
    assert found == {**number, "status": "received", "code": code}
    assert sandbox.order(number["id"]).status == "RECEIVED"


def test_delete_gives_the_number_up(http: httpx.Client, sandbox: ThreadedSandbox) -> None:
    number = http.post("/verifications", json={}).json()
    given_up = http.delete(f"/verifications/{number['id']}")
    assert given_up.json() == {**number, "status": "refunded"}
    order = sandbox.order(number["id"])
    assert order.status == "CANCELLED"
    assert sandbox.ledger().refunds_by_order[order.id] == order.price


def test_health_and_balance(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"ok": True}
    balance = http.get("/balance").json()
    assert balance["currency"] == "USD"
    assert Decimal(balance["balance"]) > 0


def test_sigterm_with_waits_running_refunds_every_number(
    http: httpx.Client, server: Service, sandbox: ThreadedSandbox
) -> None:
    numbers = [http.post("/verifications", json={}).json()["id"] for _ in range(3)]
    with ThreadPoolExecutor(2) as pool:
        # As the server is told to stop, two requests long-poll for codes: one for less
        # than --timeout-graceful-shutdown (3 s), one for longer.
        short = pool.submit(http.get, f"/verifications/{numbers[0]}", params={"wait": 1})
        long = pool.submit(http.get, f"/verifications/{numbers[1]}", params={"wait": 20})
        time.sleep(0.5)  # both are in (nothing to watch for: a held number's GET sends none)
        status, seconds = server.stop(signal.SIGTERM)
        assert short.result(timeout=5).json()["status"] == "waiting"
        # uvicorn cancelled the other at the graceful timeout: it ends, with no answer.
        with contextlib.suppress(httpx.HTTPError):
            assert long.result(timeout=5).status_code == 500

    # uvicorn ends a graceful shutdown by raising the signal it received again.
    assert status == -signal.SIGTERM, server.log()
    assert seconds < 10
    assert "Cancel 1 running task(s)" in server.log()
    ledger = sandbox.ledger()
    assert {o.id: o.status for o in ledger.orders if o.id in numbers} == dict.fromkeys(
        numbers, "CANCELLED"
    )
    assert_nothing_left_charged(ledger)


# -- in-process, with Starlette's TestClient ------------------------------------------------


@pytest.fixture
def account(sandbox: ThreadedSandbox) -> str:
    """An API key of its own (its own ledger), with a balance of 0.05."""
    key: str = sandbox.call(lambda: sandbox.sandbox.add_key(balance=Decimal("0.05")))
    return key


def app_client(sandbox: ThreadedSandbox, key: str) -> TestClient:
    app = fastapi_app.create_app(api_key=key, base_url=sandbox.base_url, poll_interval=0.05)
    return TestClient(app)


def test_out_of_credit_is_402_and_nothing_is_bought(sandbox: ThreadedSandbox, account: str) -> None:
    with app_client(sandbox, account) as client:
        answer = client.post("/verifications", json={})
    assert answer.status_code == 402
    assert "balance" in answer.json()["detail"].lower()
    assert sandbox.call(lambda: sandbox.sandbox.ledger(account)).charged == 0


def test_a_country_unknown_by_name_is_422_before_anything_is_bought(
    sandbox: ThreadedSandbox, account: str
) -> None:
    sandbox.call(lambda: sandbox.sandbox.set_balance(Decimal("10"), account))
    with app_client(sandbox, account) as client:
        answer = client.post("/verifications", json={"country": "atlantis"})
        unknown = client.get("/verifications/ord_nope")
    assert answer.status_code == 422
    assert "atlantis" in answer.json()["detail"]
    assert unknown.status_code in (404, 422)
    assert sandbox.call(lambda: sandbox.sandbox.ledger(account)).charged == 0


def test_leaving_the_lifespan_refunds_what_waits(sandbox: ThreadedSandbox, account: str) -> None:
    sandbox.call(lambda: sandbox.sandbox.set_balance(Decimal("10"), account))
    with app_client(sandbox, account) as client:
        ids = [client.post("/verifications", json={}).json()["id"] for _ in range(2)]
        assert client.get(f"/verifications/{ids[0]}").json()["status"] == "waiting"
    ledger = sandbox.call(lambda: sandbox.sandbox.ledger(account))
    assert ledger.orders_by_status == {"CANCELLED": 2}
    assert_nothing_left_charged(ledger)
