"""``gsim get-code --attempts``: a try per number, across countries; ``gsim stats``."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import pytest
from cli_helpers import Gsim, Served


@pytest.fixture
def quick(serve: Callable[..., Served]) -> Served:
    """A sandbox whose codes arrive within a fraction of a second (when they do)."""
    return serve(seed=4, code_delay=(0.05, 0.1))


def run(served: Served, *args: str) -> tuple[int, list[dict[str, object]], str]:
    """``gsim --json get-code ...`` at a fast poll: exit status, events, stderr."""
    gsim = Gsim({**served.env, "COLUMNS": "200"}, served.api_key)
    result = gsim("--json", "--poll-interval", "0.05", "get-code", *args)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    return result.exit_code, events, result.stderr


def test_a_number_without_a_code_is_refunded_and_the_next_country_tried(quick: Served) -> None:
    quick.call(quick.sandbox.set_delivery_rate, 0.0, "telegram", "russia")
    status, events, _ = run(
        quick, "telegram", "RU", "Kazakhstan", "--attempts", "3", "--timeout", "0.5"
    )
    assert status == 0
    assert [(e["event"], e.get("try")) for e in events] == [
        ("bought", 1),
        ("no_code", 1),
        ("bought", 2),
        ("code", 2),
        ("done", None),
    ]
    first, second = events[0]["order"], events[2]["order"]
    assert (first["country"], second["country"]) == ("russia", "kazakhstan")  # type: ignore[index]
    assert events[1]["status"] == "BANNED" and events[1]["refunded"] == "0.18"
    assert events[-1] == {
        "event": "done",
        "codes": 1,
        "without_code": 0,
        "tries": 2,
        "spent": "0.30",
        "refunded": "0.18",
        "interrupted": False,
    }
    ledger = quick.call(quick.sandbox.ledger)
    assert ledger.refunds_by_order == {first["id"]: Decimal("0.18")}  # type: ignore[index]


def test_people_see_each_try_and_a_summary(quick: Served) -> None:
    quick.call(quick.sandbox.set_delivery_rate, 0.0, "telegram", "russia")
    gsim = Gsim({**quick.env, "COLUMNS": "200"}, quick.api_key)
    result = gsim(
        "--poll-interval", "0.05", "get-code", "telegram", "russia", "kazakhstan",
        "--attempts", "2", "--timeout", "0.5",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert "bought for 0.18 USD in russia" in lines[0] and "try 1 of 2" in lines[0]
    assert lines[1].endswith("no code (BANNED, 0.18 USD refunded)")
    assert "bought for 0.12 USD in kazakhstan" in lines[2] and "try 2 of 2" in lines[2]
    assert "  code " in lines[3]
    assert lines[4] == "1 of 1 code after 2 tries; 0.18 USD refunded"


def test_every_try_without_a_code_gives_up_with_exit_3(quick: Served) -> None:
    quick.call(quick.sandbox.set_delivery_rate, 0.0)
    status, events, stderr = run(quick, "telegram", "russia", "--attempts", "2", "--timeout", "0.2")
    assert status == 3
    assert [e["event"] for e in events] == [
        "bought", "no_code", "bought", "no_code", "gave_up", "done",
    ]  # fmt: skip
    gave_up = events[-2]
    assert gave_up["reason"] == "AttemptsExhaustedError"
    assert gave_up["orders"] == [events[0]["order"]["id"], events[2]["order"]["id"]]  # type: ignore[index]
    assert stderr == ""
    orders = quick.call(quick.sandbox.orders)
    assert [o.status for o in orders] == ["BANNED", "BANNED"]
    assert quick.call(quick.sandbox.balance) == Decimal("100")


def test_a_sold_out_country_is_skipped_and_said_so(quick: Served) -> None:
    quick.call(quick.sandbox.set_stock, "telegram", "russia", 0)
    status, events, _ = run(quick, "telegram", "russia", "kazakhstan", "--timeout", "1")
    assert status == 0
    assert events[0] == {
        "event": "skipped",
        "loop": 0,
        "country": "russia",
        "operator": None,
        "reason": "sold_out",
        "price": "0.18",
        "detail": "",
    }
    assert events[1]["event"] == "bought"
    assert events[1]["order"]["country"] == "kazakhstan"  # type: ignore[index]


def test_a_budget_stops_the_loop_before_a_purchase_would_pass_it(quick: Served) -> None:
    quick.call(quick.sandbox.set_delivery_rate, 0.0)
    gsim = Gsim({**quick.env, "COLUMNS": "200"}, quick.api_key)
    result = gsim(
        "--poll-interval", "0.05", "get-code", "telegram", "russia", "kazakhstan",
        "--attempts", "5", "--budget", "0.30", "--timeout", "0.2",
    )  # fmt: skip
    assert result.exit_code == 3
    assert result.stderr.startswith("gsim: error: telegram: the next number")
    assert "past its budget 0.30" in result.stderr
    assert result.stdout.splitlines()[-1] == "0 of 1 code after 2 tries; 0.30 USD refunded"
    assert quick.call(quick.sandbox.ledger).charged == Decimal("0.30")


def test_an_unknown_country_is_a_usage_error_naming_close_matches(quick: Served) -> None:
    gsim = Gsim(quick.env, quick.api_key)
    result = gsim("get-code", "telegram", "russia", "Kazakstan", "--attempts", "2")
    assert result.exit_code == 2
    assert "did you mean kazakhstan (Kazakhstan)" in result.stderr
    assert quick.call(quick.sandbox.orders) == []


def test_keep_is_refused_with_attempts(quick: Served) -> None:
    gsim = Gsim(quick.env, quick.api_key)
    result = gsim("get-code", "telegram", "russia", "--attempts", "2", "--on-timeout", "keep")
    assert result.exit_code == 2
    assert "--on-timeout keep cannot be used with --attempts" in result.stderr


def test_stats_match_the_ledger(gsim: Gsim, served: Served) -> None:
    sandbox = served.sandbox
    orders = [served.call(sandbox.place_order, "telegram", "russia") for _ in range(3)]
    served.call(sandbox.deliver_code, orders[0].id)
    served.call(sandbox.set_order_status, orders[1].id, "BANNED", refund=True)
    rows = gsim.json("stats")
    assert rows == [
        {
            "service": "telegram",
            "country": "russia",
            "operator": "mts",
            "orders": 3,
            "codes": 1,
            "success_rate": 0.5,
            "median_time_to_code": None,
            "spent": "0.54",
            "refunded": "0.18",
            "cost_per_code": "0.36",
            "pending": 1,
            "observed": 0,
        }
    ]
    ledger = served.call(sandbox.ledger)
    assert (Decimal(rows[0]["spent"]), Decimal(rows[0]["refunded"])) == (
        ledger.charged,
        ledger.refunded,
    )
    table = gsim("stats", "--since", "1h", "--country", "RU")
    assert table.exit_code == 0
    header, _, line, total = table.stdout.splitlines()
    assert header.split()[:5] == ["service", "country", "operator", "orders", "codes"]
    assert line.split() == [
        "telegram", "russia", "mts", "3", "1", "1", "50%", "0.54", "0.18", "0.36",
    ]  # fmt: skip
    assert total == "3 orders, 1 code: 0.54 USD spent, 0.18 refunded, 0.36 paid"


def test_stats_since_takes_a_duration_or_a_date(gsim: Gsim) -> None:
    assert gsim("stats", "--since", "7d").exit_code == 0
    assert gsim("stats", "--since", "2026-01-31T08:00Z").exit_code == 0
    bad = gsim("stats", "--since", "last week")
    assert bad.exit_code == 2
    assert "neither a duration" in bad.stderr
