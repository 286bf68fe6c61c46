"""``gsim stats``: what each service, country and operator gave this account."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import click
from rich.status import Status

from .._client import Client
from .._models import OrderStats, StatsProgress
from ._context import App, catalogue_hint, duration, pass_app
from ._guard import guard_lines
from ._output import amount

COLUMNS = [
    "service",
    "country",
    "operator",
    "orders",
    "codes",
    "pending",
    "success",
    "median s",
    "spent USD",
    "refunded USD",
    "USD per code",
]


def since_option(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
    """``--since``: a duration back from now (``24h``, ``7d``) or an ISO date or time."""
    if value is None:
        return None
    text = value.strip()
    if text.lower().endswith("d") and text[:-1].replace(".", "", 1).isdigit():
        return timedelta(days=float(text[:-1]))
    try:
        seconds = duration(ctx, param, text)
    except click.BadParameter:
        pass
    else:
        assert seconds is not None
        return timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a duration (24h, 7d, 90m) nor a date (2026-01-31, "
            "2026-01-31T08:00Z)"
        ) from None
    # A date or time without an offset is local time, as people write it.
    return moment.astimezone(timezone.utc) if moment.tzinfo is None else moment


def stats_row(row: OrderStats) -> list[object]:
    """One line of the stats table."""
    return [
        row.service,
        row.country,
        row.operator,
        row.orders,
        row.codes,
        row.pending,
        "" if row.success_rate is None else f"{row.success_rate:.0%}",
        "" if row.median_time_to_code is None else f"{row.median_time_to_code:.1f}",
        amount(row.spent),
        amount(row.refunded),
        amount(row.cost_per_code),
    ]


@click.command()
@click.option(
    "--since", callback=since_option, metavar="WHEN",
    help="Only orders made since then: a duration back from now (24h, 7d) or a date "
    "(2026-01-31, local time unless it says otherwise).",
)  # fmt: skip
@click.option("--service", help="Only this service (e.g. telegram).")
@click.option("--country", help="Only this country (id, ISO code or name).")
@pass_app
def stats(
    app: App, since: datetime | timedelta | None, service: str | None, country: str | None
) -> None:
    """Show what worked, per service, country and operator.

    Codes, success rate, money spent and refunded, and cost per code, from the
    account's own orders (read 100 a request). The time to a code is only known for
    codes a running program saw arrive, so it stays empty here. With a spend guard
    (--spend-limit, --breaker, or a fleet's), it says why purchases are refused:
    `gsim guard` shows the same alone.
    """

    async def go(gsim: Client) -> None:
        with _reading(app) as on_progress:
            found = await gsim.orders.stats(
                since=since, service=service, country=country, on_progress=on_progress
            )
        if app.out.json:
            app.out.data(found)
            return
        app.out.table(found, COLUMNS, map(stats_row, found), empty="no orders")
        if found:
            spent = sum((r.spent for r in found), Decimal(0))
            refunded = sum((r.refunded for r in found), Decimal(0))
            orders = sum(r.orders for r in found)
            codes = sum(r.codes for r in found)
            app.out.console.print(
                f"{orders} order{'s' if orders != 1 else ''}, {codes} code"
                f"{'s' if codes != 1 else ''}: {spent} USD spent, {refunded} refunded, "
                f"{spent - refunded} paid"
            )
        # Why purchases may be refused: the spend guard, when one is configured or the
        # fleet keeps one (its counts are not in the order history).
        configured = gsim.guard.spend_limit is not None or gsim.guard.breaker is not None
        status = await gsim.guard.status()
        if configured or status.spend is not None or status.breakers:
            for line in guard_lines(status, configured=configured):
                app.out.console.print(line)

    app.run(go, hint=catalogue_hint(service, country))


@contextlib.contextmanager
def _reading(app: App) -> Iterator[Callable[[StatsProgress], object] | None]:
    """A progress hook: a spinner saying how far the reading got, on a terminal only."""
    if app.out.json or not app.out.console.is_interactive:
        yield None
        return
    with Status("reading the order history ...", console=app.out.console) as status:

        def on_progress(progress: StatsProgress) -> None:
            status.update(
                f"reading the order history: page {progress.pages} of "
                f"{progress.total_pages} ({progress.orders} orders)"
            )

        yield on_progress
