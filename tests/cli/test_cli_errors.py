"""Global options, errors as one line, exit statuses, and the key never printed."""

from __future__ import annotations

import json

import pytest
from cli_helpers import Gsim, Served, StubApi
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
    assert result.stderr.startswith("gsim: error: 401 UNAUTHORIZED")
    assert len(result.stderr.splitlines()) == 1


def test_plain_http_to_another_host_is_refused_before_any_request(served: Served) -> None:
    env: dict[str, str | None] = {
        "GSIM_API_KEY": served.api_key,
        "GSIM_BASE_URL": "http://example.com",
    }
    gsim = Gsim(env, served.api_key)
    result = gsim("balance")
    assert result.exit_code == 2
    assert result.stderr.startswith("gsim: error: ")


def test_unknown_order_is_one_line_and_json_on_request(gsim: Gsim) -> None:
    result = gsim("order", "cmnosuchorder")
    assert result.exit_code == 1
    assert result.stderr == (
        "gsim: error: 404 NOT_FOUND: order 'cmnosuchorder' not found "
        "(GET /api/v1/orders/cmnosuchorder)\n"
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
        "gsim: error: Missing argument 'COUNTRY'; see 'gsim operators --help'\n"
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
    "args",
    [
        ["--json", "balance"],  # no API key
        ["balance", "--json"],
        ["--json", "get-code", "telegram", "russia", "--timeout", "abc"],
        ["operators", "telegram", "--json"],  # a missing argument
        ["--json", "no-such-command"],
        ["--json", "balance", "--no-such-option"],
        ["--json", "--poll-interval", "soon", "balance"],
    ],
)
def test_json_anywhere_makes_usage_errors_one_json_object(
    args: list[str], no_env: dict[str, str | None]
) -> None:
    result = CliRunner().invoke(cli, args, env=no_env)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    error = json.loads(result.stderr)
    assert error["code"] == "USAGE"
    assert error["exit_code"] == 2
    assert error["error"]
    assert error["hint"].startswith("see 'gsim")


def test_every_error_line_has_the_same_prefix(
    gsim: Gsim, served: Served, no_env: dict[str, str | None]
) -> None:
    usage = CliRunner().invoke(cli, ["balance"], env=no_env)  # raised by click
    api = gsim("order", "cmnosuchorder")  # raised by the API
    order = gsim.json("buy", "telegram", "russia")
    served.call(served.sandbox.deliver_code, order["id"], "123456")
    conflict = gsim("cancel", order["id"])  # printed by the command itself
    assert "its code is 123456" in conflict.stderr
    for result in (usage, api, conflict):
        assert result.stderr.startswith("gsim: error: "), result.stderr
        assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["get-code", "nosuch", "russia"], "`gsim services` lists the service ids"),
        (["buy", "telegram", "atlantis"], "`gsim countries --service telegram` lists the country"),
        (["operators", "nosuch", "russia"], "`gsim services` lists the service ids"),
        (["countries", "--service", "nosuch"], "`gsim services` lists the service ids"),
        (
            ["get-code", "telegram", "russia", "--operator", "nosuch"],
            "`gsim operators telegram russia` lists the operators",
        ),
    ],
)
def test_an_unknown_service_or_country_points_to_the_listings(
    gsim: Gsim, args: list[str], hint: str
) -> None:
    result = gsim(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith("gsim: error: 400 VALIDATION_ERROR")
    assert hint in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert hint in json.loads(gsim("--json", *args).stderr.splitlines()[-1])["hint"]


def test_a_404_for_a_service_points_to_both_listings(stub_api: StubApi) -> None:
    # The published API may answer an unknown id with a 404 that names neither.
    stub_api.answers[("POST", "/orders")] = (404, {"error": "Not found", "code": "NOT_FOUND"})
    result = Gsim(stub_api.env, stub_api.api_key)("get-code", "telegran", "russia", "-n", "3")
    assert result.exit_code == 1
    assert result.stderr == (
        "gsim: error: 404 NOT_FOUND: Not found (POST /api/v1/orders); `gsim services` lists "
        "the service ids, `gsim countries --service telegran` lists the country ids\n"
    )  # once, not once per number


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("1.5h", 5400.0), ("250ms", 0.25), (".5", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(None, None, text) == pytest.approx(seconds)  # type: ignore[arg-type]
