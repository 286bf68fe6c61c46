"""``gsim buy``, ``order``, ``wait``, ``cancel``, ``ban``, ``orders``, ``sweep``."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

from cli_helpers import Gsim, Served


def test_buy_prints_the_number_and_order_shows_it(gsim: Gsim) -> None:
    result = gsim("buy", "telegram", "russia")
    assert result.exit_code == 0
    assert result.stdout.startswith("bought +7")
    assert "gsim wait" in result.stderr  # the hint, for people only

    order = gsim.json("buy", "telegram", "russia", "--operator", "mts")
    shown = gsim.json("order", order["id"])
    assert shown["phone_number"] == order["phone_number"]
    assert shown["status"] == "PENDING"
    assert shown["operator"] == "mts"
    assert order["id"] in gsim("order", order["id"]).stdout


def test_wait_prints_the_code_when_it_arrives(gsim: Gsim, served: Served) -> None:
    order = gsim.json("buy", "telegram", "russia")
    timer = threading.Timer(0.3, served.call, (served.sandbox.deliver_code, order["id"], "4711"))
    timer.start()
    try:
        result = gsim("--poll-interval", "0.05", "wait", order["id"], "--timeout", "10s")
    finally:
        timer.join()
    assert result.exit_code == 0
    assert result.stdout == "4711\n"
    assert gsim.json("wait", order["id"]) == {"id": order["id"], "code": "4711"}


def test_wait_timeout_bans_for_a_refund_and_exits_3(gsim: Gsim, served: Served) -> None:
    order = gsim.json("buy", "telegram", "russia")
    result = gsim("--poll-interval", "0.05", "wait", order["id"], "--timeout", "300ms")
    assert result.exit_code == 3
    assert "banned" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    record = served.call(served.sandbox.order, order["id"])
    assert record.status == "BANNED"
    assert record.refunded == record.charged


def test_wait_json_error_on_stderr(gsim: Gsim) -> None:
    order = gsim.json("buy", "telegram", "russia")
    result = gsim("--json", "wait", order["id"], "--timeout", "0.1", "--on-timeout", "keep")
    assert result.exit_code == 3
    error = json.loads(result.stderr)
    assert error["code"] == "CodeTimeoutError"
    assert error["exit_code"] == 3
    assert result.stdout == ""


def test_cancel_and_ban_refund(gsim: Gsim, served: Served) -> None:
    first = gsim.json("buy", "telegram", "russia")
    second = gsim.json("buy", "telegram", "russia")
    result = gsim("cancel", first["id"])
    assert result.exit_code == 0
    assert result.stdout == f"cancelled order {first['id']}: {first['price']} USD refunded\n"
    assert gsim.json("ban", second["id"]) == {
        "id": second["id"],
        "success": True,
        "refunded": second["price"],
    }
    ledger = served.call(served.sandbox.ledger)
    assert ledger.refunded == ledger.charged == 2 * Decimal(first["price"])


def test_cancel_after_the_code_came_reports_the_code(gsim: Gsim, served: Served) -> None:
    order = gsim.json("buy", "telegram", "russia")
    served.call(served.sandbox.deliver_code, order["id"], "123456")
    result = gsim("cancel", order["id"])
    assert result.exit_code == 1
    assert "RECEIVED" in result.stderr
    assert "its code is 123456" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_orders_one_page_every_page_and_status(gsim: Gsim) -> None:
    bought = [gsim.json("buy", "telegram", "russia")["id"] for _ in range(3)]
    gsim.json("cancel", bought[0])
    page = gsim.json("orders", "--limit", "2")
    assert (page["total"], page["page"], page["limit"], page["total_pages"]) == (3, 1, 2, 2)
    assert len(page["items"]) == 2
    every = gsim.json("orders", "--all")
    assert sorted(o["id"] for o in every) == sorted(bought)
    cancelled = gsim.json("orders", "--status", "cancelled", "--all")
    assert [o["id"] for o in cancelled] == [bought[0]]
    table = gsim("orders", "--status", "PENDING").stdout
    assert bought[1] in table and bought[2] in table and bought[0] not in table


def test_sweep_cancels_stale_pending_orders(gsim: Gsim, served: Served) -> None:
    stale = [gsim.json("buy", "telegram", "russia") for _ in range(2)]
    assert gsim.json("sweep")["cancelled"] == []  # nothing is 5 minutes old yet
    swept = gsim.json("sweep", "--older-than", "0s")
    assert sorted(c["order"]["id"] for c in swept["cancelled"]) == sorted(o["id"] for o in stale)
    assert Decimal(swept["refunded"]) == sum(Decimal(o["price"]) for o in stale)
    assert "no stale PENDING orders" in gsim("sweep", "--older-than", "0").stdout
    ledger = served.call(served.sandbox.ledger)
    assert ledger.refunded == ledger.charged
