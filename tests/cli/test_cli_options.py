"""Global options before or after the command, the environment, and the help texts."""

from __future__ import annotations

import json

import click
import pytest
from cli_helpers import Gsim, Served
from click.testing import CliRunner

import gsim_async.cli._context
from gsim_async.cli import cli


@pytest.fixture
def quick_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded sandbox of --sandbox with codes in a fraction of a second."""
    monkeypatch.setattr(gsim_async.cli._context, "SANDBOX_CODE_DELAY", (0.05, 0.1))
    monkeypatch.setattr(gsim_async.cli._context, "SANDBOX_POLL_INTERVAL", 0.05)


@pytest.mark.parametrize(
    "args",
    [
        ["--sandbox", "--json", "balance"],
        ["balance", "--sandbox", "--json"],
        ["--json", "balance", "--sandbox"],
        ["rentals", "list", "--sandbox", "--json"],
    ],
)
def test_sandbox_works_before_or_after_the_command(
    args: list[str], no_env: dict[str, str | None]
) -> None:
    result = CliRunner().invoke(cli, args, env=no_env)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)


def test_gsim_sandbox_in_the_environment_turns_the_sandbox_on(
    no_env: dict[str, str | None],
) -> None:
    on = CliRunner().invoke(cli, ["--json", "balance"], env={**no_env, "GSIM_SANDBOX": "1"})
    assert on.exit_code == 0, on.stderr
    assert json.loads(on.stdout)["balance"] == "100"
    off = CliRunner().invoke(cli, ["balance"], env={**no_env, "GSIM_SANDBOX": "0"})
    assert off.exit_code == 2
    assert "no API key" in off.stderr


def test_api_key_and_base_url_work_after_the_command(served: Served) -> None:
    env: dict[str, str | None] = {"GSIM_API_KEY": "2s_" + "x" * 40, "GSIM_BASE_URL": None}
    args = ["balance", "--api-key", served.api_key, "--base-url", served.base_url, "--json"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["currency"] == "USD"


def test_an_option_after_the_command_overrides_the_one_before(served: Served) -> None:
    wrong = "2s_" + "w" * 40
    args = ["--api-key", wrong, "balance", "--api-key", served.api_key, "--json"]
    result = CliRunner().invoke(cli, args, env={"GSIM_BASE_URL": served.base_url})
    assert result.exit_code == 0, result.stderr


def test_poll_interval_after_the_command(
    quick_sandbox: None, no_env: dict[str, str | None]
) -> None:
    args = ["get-code", "telegram", "russia", "--sandbox", "--poll-interval", "0.05", "--json"]
    result = CliRunner().invoke(cli, args, env=no_env)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["codes"] == 1


@pytest.mark.parametrize("args", [[], ["rentals"]])
def test_a_bare_group_shows_its_help_and_succeeds(
    args: list[str], no_env: dict[str, str | None]
) -> None:
    result = CliRunner().invoke(cli, args, env=no_env)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: gsim")
    assert "Commands:" in result.stdout
    assert result.stderr == ""


def _commands(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = [(path, group)]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.extend(_commands(command, f"{path} {name}"))
        else:
            found.append((f"{path} {name}", command))
    return found


COMMANDS = _commands(cli, "gsim")


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_command_and_option_has_a_whole_help_text(path: str, command: click.Command) -> None:
    assert command.help, f"{path} has no help"
    first = command.help.split("\n\n")[0].strip()
    assert "\n" not in first and first.endswith("."), f"{path}: first line {first!r}"
    # The listing shows the first sentence: it must be the whole first line, and fit it.
    assert command.get_short_help_str(limit=1_000) == first, f"{path}: cut at a full stop"
    assert len(first) <= 64, f"{path}: {first!r} is too long for the listing"
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help and param.help.endswith((".", ")")), f"{path} {param.opts}"


@pytest.mark.parametrize("path", [[], ["rentals"]])
def test_command_listings_show_one_whole_line_per_command(path: list[str], gsim: Gsim) -> None:
    group = cli.commands["rentals"] if path else cli
    assert isinstance(group, click.Group)
    listing = gsim(*path, "--help").stdout.split("Commands:")[1]
    assert "..." not in listing
    assert len(listing.strip().splitlines()) == len(group.commands)
