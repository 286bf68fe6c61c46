"""``gsim balance``, ``services``, ``countries``, ``operators``."""

from __future__ import annotations

import click

from .._client import Client
from ._context import App, catalogue_hint, pass_app
from ._output import amount


@click.command()
@pass_app
def balance(app: App) -> None:
    """Show the account's balance."""

    async def go(gsim: Client) -> None:
        result = await gsim.balance()
        app.out.result(result, f"{result.balance} {result.currency}")

    app.run(go)


@click.command()
@pass_app
def services(app: App) -> None:
    """List the services numbers can be bought for."""

    async def go(gsim: Client) -> None:
        found = await gsim.services()
        app.out.table(
            found,
            ["service", "name", "from USD", "in stock"],
            ([s.id, s.name, amount(s.min_price), s.count] for s in found),
        )

    app.run(go)


@click.command()
@click.option("--service", help="Only countries with numbers for this service (e.g. telegram).")
@pass_app
def countries(app: App, service: str | None) -> None:
    """List the countries numbers can be bought in."""

    async def go(gsim: Client) -> None:
        found = await gsim.countries(service=service)
        app.out.table(
            found,
            ["country", "name", "ISO", "from USD", "in stock"],
            ([c.id, c.name, c.iso, amount(c.min_price), c.count] for c in found),
        )

    app.run(go, hint=catalogue_hint(service))


@click.command()
@click.argument("service")
@click.argument("country")
@pass_app
def operators(app: App, service: str, country: str) -> None:
    """List the operators for SERVICE in COUNTRY, with their prices."""

    async def go(gsim: Client) -> None:
        found = await gsim.operators(service, country)
        app.out.table(
            found,
            ["operator", "name", "USD", "in stock"],
            ([o.id, o.name, amount(o.price), o.count] for o in found),
        )

    app.run(go, hint=catalogue_hint(service, country))
