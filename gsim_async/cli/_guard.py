"""``gsim guard``: the spend limit and the breakers, and closing a breaker."""

from __future__ import annotations

import click

from .._client import Client
from .._guard_config import describe
from .._ledger import GuardStatus
from ._context import App, Group, pass_app


def guard_lines(status: GuardStatus, *, configured: bool) -> list[str]:
    """What the spend guard says, for people: the limit, then each breaker."""
    lines: list[str] = []
    spend = status.spend
    if spend is not None:
        held = f" ({spend.reserved} reserved by purchases in flight)" if spend.reserved else ""
        state = "[red]reached[/]: purchases are refused" if spend.available <= 0 else "ok"
        lines.append(
            f"spend limit: {spend.spent + spend.reserved} of {spend.limit} USD per "
            f"{describe(spend.per)} counted{held}, {spend.available} USD left; {state}"
        )
    for breaker in status.breakers:
        mark = "[red]breaker[/]" if breaker.open else "breaker"
        lines.append(f"{mark} {breaker.describe()}")
    if not lines:
        lines.append(
            "spend guard: nothing counted yet"
            if configured
            else "spend guard: off (--spend-limit, --breaker; GSIM_SPEND_LIMIT, GSIM_BREAKER)"
        )
    if (configured or spend is not None or status.breakers) and not status.shared:
        lines.append(
            "[dim]counted by this command alone: without a fleet each program keeps its own "
            "counts (GSIM_FLEET_URL shares them)[/]"
        )
    return lines


@click.group(cls=Group, no_args_is_help=True)
def guard() -> None:
    """Show the spend limit and the breakers, or close a breaker.

    With a fleet (GSIM_FLEET_URL) they are the fleet's, shared by every program on
    the key; without one, each program counts its own.
    """


@guard.command("status")
@pass_app
def status(app: App) -> None:
    """Show net spend against the limit, and the breakers and why."""

    async def go(gsim: Client) -> None:
        found = await gsim.guard.status()
        if app.out.json:
            app.out.data(found)
            return
        configured = gsim.guard.spend_limit is not None or gsim.guard.breaker is not None
        for line in guard_lines(found, configured=configured):
            app.out.console.print(line)

    app.run(go)


@guard.command("reset")
@click.option("--service", help="Only this service's breakers (e.g. telegram).")
@click.option("--country", help="With --service: only this country's (id, ISO code or name).")
@pass_app
def reset(app: App, service: str | None, country: str | None) -> None:
    """Close breakers: every one, or those of --service (in --country).

    Purchases they held may go again at once (the whole fleet's, with one). The
    spend limit is not reset: it frees up as its window rolls and as refunds come.
    """
    if country is not None and service is None:
        raise click.UsageError("--country needs --service")

    async def go(gsim: Client) -> None:
        closed = await gsim.guard.reset(service, country)
        app.out.result({"closed": closed}, f"closed {closed} breaker{'s' if closed != 1 else ''}")

    app.run(go)
