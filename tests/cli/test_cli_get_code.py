"""``gsim get-code``: numbers at once, codes as they arrive, refunds for the rest."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import pytest
from cli_helpers import Gsim, Served

import gsim_async.cli._context


@pytest.fixture
def fast(serve: Callable[..., Served]) -> Gsim:
    """``gsim`` against a sandbox whose codes arrive within a fraction of a second."""
    served = serve(seed=4, code_delay=(0.05, 0.2))
    return Gsim({**served.env, "COLUMNS": "200"}, served.api_key)


def events(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_numbers_then_codes_then_a_summary_in_json_lines(fast: Gsim) -> None:
    result = fast("--json", "--poll-interval", "0.05", "get-code", "telegram", "russia", "-n", "3")
    assert result.exit_code == 0, result.stderr
    lines = events(result.stdout)
    assert [e["event"] for e in lines[:3]] == ["bought"] * 3  # every number before any code
    codes = [e for e in lines if e["event"] == "code"]
    assert len(codes) == 3
    bought = {e["order"]["id"]: e["order"]["phone_number"] for e in lines[:3]}  # type: ignore[index]
    assert {c["order_id"]: c["phone_number"] for c in codes} == bought
    assert all(str(c["code"]).isdigit() for c in codes)
    assert lines[-1] == {
        "event": "done",
        "codes": 3,
        "without_code": 0,
        "refunded": "0",
        "interrupted": False,
    }


def test_people_get_a_line_per_number_and_per_code_then_a_summary(fast: Gsim) -> None:
    result = fast("--poll-interval", "0.05", "get-code", "telegram", "russia")
    assert result.exit_code == 0
    bought, code, summary = result.stdout.splitlines()
    number = bought.split()[0]
    assert number.startswith("+7")
    assert "bought for 0.18 USD" in bought
    assert code.startswith(f"{number}  code ")
    assert summary == "1 of 1 code"
    several = fast("--poll-interval", "0.05", "get-code", "telegram", "russia", "-n", "2")
    assert several.stdout.splitlines()[-1] == "2 of 2 codes"


def test_no_code_in_time_is_banned_refunded_and_exits_3(serve: Callable[..., Served]) -> None:
    served = serve(seed=4, auto_deliver=False)
    gsim = Gsim(served.env, served.api_key)
    result = gsim(
        "--json", "--poll-interval", "0.05", "get-code", "telegram", "russia", "-n", "2",
        "--timeout", "0.3",
    )  # fmt: skip
    assert result.exit_code == 3
    lines = events(result.stdout)
    no_code = [e for e in lines if e["event"] == "no_code"]
    assert [e["status"] for e in no_code] == ["BANNED", "BANNED"]
    assert lines[-1]["refunded"] == "0.36"
    ledger = served.call(served.sandbox.ledger)
    assert ledger.charged == ledger.refunded == Decimal("0.36")


def test_a_failed_purchase_is_one_error_line_and_exit_1(serve: Callable[..., Served]) -> None:
    served = serve(seed=4, balance="0.10")
    result = Gsim(served.env, served.api_key)("get-code", "telegram", "russia")
    assert result.exit_code == 1
    assert result.stderr.startswith("gsim: error: 402 INSUFFICIENT_BALANCE")
    assert len(result.stderr.splitlines()) == 1


def test_max_price_refuses_before_buying(gsim: Gsim, served: Served) -> None:
    result = gsim("get-code", "telegram", "russia", "--max-price", "0.01")
    assert result.exit_code == 1
    assert "nothing was bought" in result.stderr
    assert served.call(served.sandbox.orders) == []


def test_bad_arguments_are_usage_errors(gsim: Gsim, served: Served) -> None:
    assert gsim("get-code", "telegram", "russia", "--max-price", "cheap").exit_code == 2
    assert gsim("get-code", "telegram", "russia", "--timeout", "soon").exit_code == 2
    assert gsim("get-code", "telegram").exit_code == 2
    assert gsim("get-code", "telegram", "russia", "-n", "0").exit_code == 2
    assert gsim("get-code", "telegram", "russia", "--on-timeout", "wait").exit_code == 2
    assert served.call(served.sandbox.orders) == []


@pytest.mark.parametrize("timeout", ["0", "0s", "0m"])
def test_a_zero_timeout_is_refused_before_buying(gsim: Gsim, served: Served, timeout: str) -> None:
    result = gsim("get-code", "telegram", "russia", "--timeout", timeout)
    assert result.exit_code == 2
    assert "not a positive duration" in result.stderr
    assert gsim("wait", "cmanyorder", "--timeout", timeout).exit_code == 2
    assert gsim("--poll-interval", timeout, "balance").exit_code == 2
    assert served.call(served.sandbox.orders) == []  # nothing bought, nothing banned


def test_on_timeout_cancel_cancels_and_refunds(serve: Callable[..., Served]) -> None:
    served = serve(seed=4, auto_deliver=False)
    gsim = Gsim(served.env, served.api_key)
    result = gsim(
        "--json", "--poll-interval", "0.05", "get-code", "telegram", "russia",
        "--timeout", "0.3", "--on-timeout", "cancel",
    )  # fmt: skip
    assert result.exit_code == 3
    lines = events(result.stdout)
    assert [e["status"] for e in lines if e["event"] == "no_code"] == ["CANCELLED"]
    assert lines[-1]["refunded"] == "0.18"
    assert served.call(served.sandbox.ledger).orders_by_status == {"CANCELLED": 1}


def test_on_timeout_keep_leaves_the_order_waiting(serve: Callable[..., Served]) -> None:
    served = serve(seed=4, auto_deliver=False)
    gsim = Gsim(served.env, served.api_key)
    result = gsim(
        "--poll-interval", "0.05", "get-code", "telegram", "russia",
        "--timeout", "0.3", "--on-timeout", "keep",
    )  # fmt: skip
    assert result.exit_code == 3
    [order] = served.call(served.sandbox.orders)
    assert order.status == "PENDING"  # neither banned nor cancelled on the way out
    _, kept, summary = result.stdout.splitlines()
    assert f"gsim wait {order.id}" in kept
    assert summary == "0 of 1 code; 0 USD refunded; 1 kept waiting"
    # ... so a later `gsim wait` still gets its code.
    served.call(served.sandbox.deliver_code, order.id, "246810")
    assert gsim.json("wait", order.id) == {"id": order.id, "code": "246810"}


def test_sandbox_flag_runs_the_whole_flow_without_an_account(
    no_env: dict[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The embedded sandbox's codes take a few seconds for people to watch; not here.
    monkeypatch.setattr(gsim_async.cli._context, "SANDBOX_CODE_DELAY", (0.05, 0.1))
    monkeypatch.setattr(gsim_async.cli._context, "SANDBOX_POLL_INTERVAL", 0.05)
    result = Gsim(no_env, "2s_")("--sandbox", "get-code", "telegram", "russia")
    assert result.exit_code == 0
    assert "embedded sandbox" in result.stderr
    _, code, summary = result.stdout.splitlines()
    assert " code " in code
    assert summary == "1 of 1 code"
