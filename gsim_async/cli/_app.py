"""The ``gsim`` command group: global options and the list of commands."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from .._exceptions import InvalidArgumentError
from .._guard_config import SpendLimit
from .._version import __version__
from . import _catalogue, _fleet, _get_code, _guard, _orders, _rentals, _sandbox_cmd, _stats
from ._context import INTERRUPTED, POSITIVE_DURATION, App, Group, positive_duration
from ._output import error_line


def _wants_json(args: Sequence[str]) -> bool:
    """``--json`` anywhere on the line (before a ``--``): errors are JSON from the start."""
    args = list(args)
    if "--" in args:
        args = args[: args.index("--")]
    return "--json" in args


class _Gsim(Group):
    """Every error, usage errors included, as one line (a JSON object with --json)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        as_json = _wants_json(sys.argv[1:] if args is None else args)
        try:
            status = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            hint = f"see '{exc.ctx.command_path} --help'" if exc.ctx is not None else None
            error_line(
                exc.format_message(),
                code="USAGE",
                exit_code=exc.exit_code,
                hint=hint,
                as_json=as_json,
            )
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            error_line(exc.format_message(), code="ERROR", exit_code=exc.exit_code, as_json=as_json)
            sys.exit(exc.exit_code)
        except click.Abort:
            error_line("aborted", code="INTERRUPTED", exit_code=INTERRUPTED, as_json=as_json)
            sys.exit(INTERRUPTED)
        sys.exit(status if isinstance(status, int) else 0)


# The options every command takes, before or after its name. Before it they also read
# the environment; after it they override whatever was given before.
_API_KEY: dict[str, Any] = {
    "metavar": "KEY",
    "help": "Your gsim API key (made on the gsim dashboard).",
}
_BASE_URL: dict[str, Any] = {
    "metavar": "URL",
    "help": "The API's address (default https://gsim.io).",
}
_SANDBOX: dict[str, Any] = {
    "is_flag": True,
    "help": "Use an embedded sandbox: no account, no money; codes arrive after a few seconds.",
}
_JSON: dict[str, Any] = {"is_flag": True, "help": "Machine-readable output, no colours."}
_POLL_INTERVAL: dict[str, Any] = {
    **POSITIVE_DURATION,
    "help": "How often waits look for codes (default 2 s; 0.5 s with --sandbox).",
}
_JOURNAL: dict[str, Any] = {
    "metavar": "PATH",
    "help": "Where to keep what is owed, so a killed run's orders are refunded by the next "
    "(default: gsim-async/journal.db in your state directory).",
}
_NO_JOURNAL: dict[str, Any] = {"is_flag": True, "help": "Keep no journal."}
_FLEET: dict[str, Any] = {
    "metavar": "URL",
    "help": "Join the fleet on this Redis (redis://, rediss://, unix://, redis+sentinel://; "
    "default: GSIM_FLEET_URL, which --sandbox ignores).",
}


def spend_limit_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> SpendLimit | None:
    """``--spend-limit``: ``USD[/WINDOW]`` (``20/24h``, ``5/1h``; the window defaults to 24h)."""
    if value is None or not value.strip():
        return None
    try:
        return SpendLimit.parse(value)
    except InvalidArgumentError as exc:
        raise click.BadParameter(str(exc)) from None


_SPEND_LIMIT: dict[str, Any] = {
    "metavar": "USD[/WINDOW]",
    "callback": spend_limit_option,
    "help": "Refuse purchases that would take net spend (bought minus refunded) over "
    "the rolling WINDOW past USD, e.g. 20/24h (default window 24h); fleet-wide with "
    "GSIM_FLEET_URL.",
}
_BREAKER: dict[str, Any] = {
    "type": click.IntRange(1, 1000),
    "metavar": "N",
    "help": "Hold purchases of a service in a country after N failed verifications in a "
    "row (no code, or the step after the code failed).",
}
_BREAKER_COOLDOWN: dict[str, Any] = {
    **POSITIVE_DURATION,
    "help": "With --breaker: how long it holds purchases before a trial one (default 15m).",
}
_VERBOSE: dict[str, Any] = {
    "count": True,
    "help": "DEBUG logs on stderr (-vv adds aiohttp's).",
}


@click.group("gsim", cls=_Gsim, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--api-key", envvar="GSIM_API_KEY", show_envvar=True, **_API_KEY)
@click.option("--base-url", envvar="GSIM_BASE_URL", show_envvar=True, **_BASE_URL)
@click.option("--sandbox", envvar="GSIM_SANDBOX", show_envvar=True, **_SANDBOX)
@click.option("--json", "as_json", **_JSON)
@click.option("--poll-interval", **_POLL_INTERVAL)
@click.option("--journal", envvar="GSIM_JOURNAL", show_envvar=True, **_JOURNAL)
@click.option("--no-journal", **_NO_JOURNAL)
@click.option("--fleet", **_FLEET)
@click.option("--spend-limit", envvar="GSIM_SPEND_LIMIT", show_envvar=True, **_SPEND_LIMIT)
@click.option("--breaker", envvar="GSIM_BREAKER", show_envvar=True, **_BREAKER)
@click.option(
    "--breaker-cooldown", envvar="GSIM_BREAKER_COOLDOWN", show_envvar=True, **_BREAKER_COOLDOWN
)
@click.option("-v", "--verbose", **_VERBOSE)
@click.version_option(__version__, "-V", "--version", prog_name="gsim")
@click.pass_context
def cli(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    sandbox: bool,
    as_json: bool,
    poll_interval: float | None,
    journal: str | None,
    no_journal: bool,
    fleet: str | None,
    spend_limit: SpendLimit | None,
    breaker: int | None,
    breaker_cooldown: float | None,
    verbose: int,
) -> None:
    """gsim: SMS verification numbers and virtual number rentals.

    Try it without an account: gsim --sandbox get-code telegram russia

    The options below may also follow the command (gsim balance --json).

    Exit status: 0 ok, 1 API error, 2 usage, 3 no code, 4 refused by the spend guard,
    130 interrupted.
    """
    ctx.obj = App(
        api_key=api_key,
        base_url=base_url,
        sandbox=sandbox,
        as_json=as_json,
        verbose=verbose,
        poll_interval=poll_interval,
        journal=journal,
        no_journal=no_journal,
        fleet=fleet,
        spend_limit=spend_limit,
        breaker=breaker,
        breaker_cooldown=breaker_cooldown,
    )


for _command in (
    _catalogue.balance,
    _catalogue.services,
    _catalogue.countries,
    _catalogue.operators,
    _get_code.get_code,
    _orders.buy,
    _orders.order,
    _orders.wait,
    _orders.cancel,
    _orders.ban,
    _orders.orders,
    _orders.sweep,
    _stats.stats,
    _guard.guard,
    _fleet.fleet,
    _rentals.rentals,
    _sandbox_cmd.sandbox,
):
    cli.add_command(_command)
del _command


def _late(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """The callback of an option given after the command: it overrides the App's ``name``."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if name in ("poll_interval", "breaker_cooldown"):
            value = positive_duration(ctx, param, value)
        elif name == "spend_limit":
            value = spend_limit_option(ctx, param, value)
        app = ctx.find_object(App)
        if app is None or not value:  # not given (or empty): what came before stands
            return value
        if name == "verbose":
            app.verbose += value
        elif name == "json":
            app.out.json = True
        else:
            setattr(app, name, value)
        return value

    return callback


def _late_options(*names: str) -> list[click.Option]:
    options = {
        "api_key": (["--api-key"], _API_KEY),
        "base_url": (["--base-url"], _BASE_URL),
        "sandbox": (["--sandbox"], _SANDBOX),
        "poll_interval": (["--poll-interval"], _POLL_INTERVAL),
        "journal": (["--journal"], _JOURNAL),
        "no_journal": (["--no-journal"], _NO_JOURNAL),
        "fleet": (["--fleet"], _FLEET),
        "spend_limit": (["--spend-limit"], _SPEND_LIMIT),
        "breaker": (["--breaker"], _BREAKER),
        "breaker_cooldown": (["--breaker-cooldown"], _BREAKER_COOLDOWN),
        "json": (["--json"], _JSON),
        "verbose": (["-v", "--verbose"], _VERBOSE),
    }
    return [
        click.Option(
            options[name][0], **{**options[name][1], "expose_value": False, "callback": _late(name)}
        )
        for name in names
    ]


def _leaves(group: click.Group) -> list[click.Command]:
    found: list[click.Command] = []
    for command in group.commands.values():
        found.extend(_leaves(command) if isinstance(command, click.Group) else [command])
    return found


# `gsim orders --json` works as well as `gsim --json orders`: scripts put options anywhere.
for _command in _leaves(cli):
    if _command is _fleet.status:  # it reads Redis: no client, no journal, no guard
        _command.params += _late_options("api_key", "base_url", "fleet")
    elif _command is not _sandbox_cmd.sandbox:  # it serves an API: no key, no client
        _command.params += _late_options(
            "api_key",
            "base_url",
            "sandbox",
            "poll_interval",
            "journal",
            "no_journal",
            "spend_limit",
            "breaker",
            "breaker_cooldown",
            "fleet",
        )
    _command.params += _late_options("json", "verbose")
del _command
