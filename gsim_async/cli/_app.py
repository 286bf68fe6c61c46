"""The ``gsim`` command group: global options and the list of commands."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from .._version import __version__
from . import _catalogue, _get_code, _orders, _rentals, _sandbox_cmd
from ._context import DURATION, INTERRUPTED, App


class _Group(click.Group):
    """Usage errors as one line (``gsim: error: ...``), like every other error."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # the order they were added in: most used first

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
        try:
            status = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"gsim: error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"gsim: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("gsim: aborted", err=True)
            sys.exit(INTERRUPTED)
        sys.exit(status if isinstance(status, int) else 0)


@click.group("gsim", cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--api-key",
    envvar="GSIM_API_KEY",
    show_envvar=True,
    metavar="KEY",
    help="Your gsim API key (made on the gsim dashboard).",
)
@click.option(
    "--base-url",
    envvar="GSIM_BASE_URL",
    show_envvar=True,
    metavar="URL",
    help="The API's address (default https://gsim.io).",
)
@click.option(
    "--sandbox",
    is_flag=True,
    help="Use an embedded sandbox: no account, no money; codes arrive after a few seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, no colours.")
@click.option(
    "--poll-interval",
    **DURATION,
    help="How often waits look for codes (default 2 s; 0.5 s with --sandbox).",
)
@click.option("-v", "--verbose", count=True, help="DEBUG logs on stderr (-vv adds aiohttp's).")
@click.version_option(__version__, "-V", "--version", prog_name="gsim")
@click.pass_context
def cli(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    sandbox: bool,
    as_json: bool,
    poll_interval: float | None,
    verbose: int,
) -> None:
    """gsim: SMS verification numbers and virtual number rentals.

    Try it without an account: gsim --sandbox get-code telegram russia

    Exit status: 0 ok, 1 API error, 2 usage, 3 no code, 130 interrupted.
    """
    ctx.obj = App(
        api_key=api_key,
        base_url=base_url,
        sandbox=sandbox,
        as_json=as_json,
        verbose=verbose,
        poll_interval=poll_interval,
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
    _rentals.rentals,
    _sandbox_cmd.sandbox,
):
    cli.add_command(_command)
del _command


def _late_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(App).out.json = True


def _late_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:
        ctx.ensure_object(App).verbose += value


def _leaves(group: click.Group) -> list[click.Command]:
    found: list[click.Command] = []
    for command in group.commands.values():
        found.extend(_leaves(command) if isinstance(command, click.Group) else [command])
    return found


# `gsim orders --json` works as well as `gsim --json orders`: scripts put it anywhere.
for _command in _leaves(cli):
    _command.params += [
        click.Option(
            ["--json"], is_flag=True, expose_value=False, callback=_late_json,
            help="Machine-readable output, no colours.",
        ),
        click.Option(
            ["-v", "--verbose"], count=True, expose_value=False, callback=_late_verbose,
            help="DEBUG logs on stderr.",
        ),
    ]  # fmt: skip
del _command
