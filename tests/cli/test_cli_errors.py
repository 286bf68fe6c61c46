"""Global options, errors as one line, exit statuses, and the key never printed."""

from __future__ import annotations

import json

import pytest
from cli_helpers import Gsim, Served
from click.testing import CliRunner

from gsim_async.cli import cli
from gsim_async.cli._context import duration


def test_no_api_key_is_a_usage_error(no_env: dict[str, str | None]) -> None:
    result = CliRunner().invoke(cli, ["balance"], env=no_env)
    assert result.exit_code == 2
    assert result.stderr.startswith("gsim: error: no API key")
    assert "--sandbox" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_api_key_and_base_url_options_beat_the_environment(served: Served) -> None:
    env: dict[str, str | None] = {"GSIM_API_KEY": "2s_" + "x" * 40, "GSIM_BASE_URL": None}
    args = ["--api-key", served.api_key, "--base-url", served.base_url, "--json", "balance"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["currency"] == "USD"


def test_a_wrong_key_is_an_api_error_without_the_key(served: Served) -> None:
    wrong = "2s_" + "w" * 40
    gsim = Gsim({"GSIM_API_KEY": wrong, "GSIM_BASE_URL": served.base_url}, wrong)
    result = gsim("balance")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 401 UNAUTHORIZED")
    assert len(result.stderr.splitlines()) == 1


def test_plain_http_to_another_host_is_refused_before_any_request(served: Served) -> None:
    env: dict[str, str | None] = {
        "GSIM_API_KEY": served.api_key,
        "GSIM_BASE_URL": "http://example.com",
    }
    gsim = Gsim(env, served.api_key)
    result = gsim("balance")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")


def test_unknown_order_is_one_line_and_json_on_request(gsim: Gsim) -> None:
    result = gsim("order", "cmnosuchorder")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: 404 NOT_FOUND: order 'cmnosuchorder' not found (GET /api/v1/orders/cmnosuchorder)\n"
    )
    as_json = gsim("--json", "order", "cmnosuchorder")
    assert json.loads(as_json.stderr) == {
        "error": "404 NOT_FOUND: order 'cmnosuchorder' not found "
        "(GET /api/v1/orders/cmnosuchorder)",
        "code": "NOT_FOUND",
        "exit_code": 1,
    }


def test_json_may_follow_the_command(gsim: Gsim) -> None:
    assert json.loads(gsim("balance", "--json").stdout)["currency"] == "USD"


def test_usage_errors_are_one_line_with_a_hint(gsim: Gsim) -> None:
    result = gsim("operators", "telegram")
    assert result.exit_code == 2
    assert result.stderr == (
        "gsim: error: Missing argument 'COUNTRY'. (see 'gsim operators --help')\n"
    )
    assert gsim("no-such-command").exit_code == 2


def test_verbose_logs_requests_to_stderr_but_never_the_key(gsim: Gsim) -> None:
    result = gsim("-v", "balance")
    assert result.exit_code == 0
    assert "DEBUG gsim_async: GET /api/v1/balance -> 200" in result.stderr
    assert result.stdout == "100 USD\n"  # logs stay out of the output


def test_help_and_version(gsim: Gsim) -> None:
    result = gsim("--help")
    assert result.exit_code == 0
    for command in ("get-code", "balance", "rentals", "sweep", "sandbox"):
        assert command in result.stdout
    assert "wait-sms" in gsim("rentals", "--help").stdout
    assert gsim("--version").stdout.startswith("gsim, version ")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("1.5h", 5400.0), ("250ms", 0.25), (".5", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(None, None, text) == pytest.approx(seconds)  # type: ignore[arg-type]
