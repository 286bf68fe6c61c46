"""``gsim balance``, ``services``, ``countries``, ``operators`` against a sandbox."""

from __future__ import annotations

from decimal import Decimal

from cli_helpers import Gsim


def test_balance_prints_amount_and_currency(gsim: Gsim) -> None:
    result = gsim("balance")
    assert result.exit_code == 0
    assert result.stdout.strip() == "100 USD"


def test_balance_json_has_money_as_exact_decimal_string(gsim: Gsim) -> None:
    assert gsim.json("balance") == {"balance": "100", "currency": "USD"}


def test_services_table_lists_telegram(gsim: Gsim) -> None:
    result = gsim("services")
    assert result.exit_code == 0
    assert "telegram" in result.stdout
    assert "Telegram" in result.stdout


def test_services_json(gsim: Gsim) -> None:
    services = {s["id"]: s for s in gsim.json("services")}
    assert set(services["telegram"]) == {"id", "name", "min_price", "count"}
    assert Decimal(services["telegram"]["min_price"]) > 0


def test_countries_filtered_by_service(gsim: Gsim) -> None:
    countries = gsim.json("countries", "--service", "telegram")
    assert "russia" in {c["id"] for c in countries}
    assert all(c["count"] > 0 for c in countries)


def test_operators_table_and_json_agree(gsim: Gsim) -> None:
    operators = gsim.json("operators", "telegram", "russia")
    table = gsim("operators", "telegram", "russia").stdout
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
    for operator in operators:
        assert operator["price"] in rows[operator["id"]]
