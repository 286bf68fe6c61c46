"""``gsim buy``, ``order``, ``wait``, ``cancel``, ``ban``, ``orders``, ``sweep``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Literal

import click

from .._client import Client
from .._enums import OrderStatus
from .._exceptions import ClientClosedError, ConflictError
from .._models import Order, Refund
from ._context import API_ERROR, DURATION, POSITIVE_DURATION, App, catalogue_hint, pass_app
from ._output import amount, money, to_data, when

ORDER_COLUMNS = ["order", "number", "service", "country", "status", "code", "USD", "created"]
STATUSES = [s.value for s in OrderStatus]


def order_row(order: Order) -> Sequence[object]:
    """One line of an orders table."""
    return [
        order.id,
        order.phone_number,
        order.service,
        order.country,
        order.status.value,
        order.sms_code,
        amount(order.price),
        when(order.created_at),
    ]


def order_fields(order: Order) -> Iterable[tuple[str, object]]:
    """An order as name/value pairs."""
    return [
        ("order", order.id),
        ("number", order.phone_number),
        ("service", order.service),
        ("country", order.country),
        ("operator", order.operator),
        ("status", order.status.value),
        ("code", order.sms_code),
        ("price", money(order.price)),
        ("created", when(order.created_at, seconds=True)),
        ("expires", when(order.expires_at, seconds=True)),
    ]


@click.command()
@click.argument("service")
@click.argument("country")
@click.option("--operator", help="An operator id from `gsim operators` (default: any).")
@pass_app
def buy(app: App, service: str, country: str, operator: str | None) -> None:
    """Buy a number for SERVICE in COUNTRY; its price is charged now.

    Then `gsim wait ID` waits for its code. `gsim get-code` does both, and refunds a
    number that gets no code.
    """

    async def go(gsim: Client) -> None:
        order = await gsim.orders.create(service, country, operator)
        app.out.result(
            order,
            f"bought [bold]{order.phone_number}[/] for {money(order.price)} (order {order.id})",
        )
        app.out.note(f"wait for its code: gsim wait {order.id}   refund: gsim cancel {order.id}")

    app.run(go, hint=catalogue_hint(service, country))


@click.command()
@click.argument("order_id", metavar="ID")
@pass_app
def order(app: App, order_id: str) -> None:
    """Show an order, with its code once it arrived."""

    async def go(gsim: Client) -> None:
        found = await gsim.orders.get(order_id)
        app.out.fields(found, order_fields(found))

    app.run(go)


@click.command()
@click.argument("order_id", metavar="ID")
@click.option(
    "--timeout",
    **POSITIVE_DURATION,
    help="Give up after this long (90, 90s, 5m); default: until the order expires.",
)
@click.option(
    "--on-timeout",
    type=click.Choice(["ban", "cancel", "keep"]),
    default="ban",
    show_default=True,
    help="What to do with the order when the timeout passes (ban and cancel refund it).",
)
@pass_app
def wait(
    app: App, order_id: str, timeout: float | None, on_timeout: Literal["ban", "cancel", "keep"]
) -> None:
    """Wait for an order's code and print it.

    Exit status 3 when no code comes; Ctrl-C stops waiting and leaves the order as it is.
    """

    async def go(gsim: Client) -> None:
        try:
            code = await gsim.orders.wait_for_code(order_id, timeout=timeout, on_timeout=on_timeout)
        except (asyncio.CancelledError, ClientClosedError):
            if app.stopped and gsim.journal is not None:
                app.out.note(
                    f"stopped: the journal {gsim.journal} keeps order {order_id}; a later "
                    "gsim command refunds it when this wait would have ended"
                )
            elif app.stopped and on_timeout != "keep":
                app.out.note(f"stopped: order {order_id} given up for a refund ({on_timeout})")
            else:
                app.out.note(
                    f"order {order_id} was left as it is: `gsim wait {order_id}` to wait "
                    f"again, `gsim cancel {order_id}` for a refund"
                )
            if not app.interrupted:
                raise
            raise asyncio.CancelledError from None
        app.out.result({"id": order_id, "code": code}, code)

    app.run(go)


def _refund_command(action: Literal["cancel", "ban"]) -> click.Command:
    done = "cancelled" if action == "cancel" else "banned"

    @click.argument("order_id", metavar="ID")
    @pass_app
    def command(app: App, order_id: str) -> None:
        async def go(gsim: Client) -> int | None:
            finish = gsim.orders.cancel if action == "cancel" else gsim.orders.ban
            try:
                refund = await finish(order_id)
            except ConflictError as exc:
                current = exc.order
                if current is None:
                    raise
                message = f"order {order_id} is {current.status.value}, not PENDING: not {done}"
                if current.sms_code is not None:
                    # Paid for and delivered: the code must not get lost in an error.
                    message += f"; its code is {current.sms_code}"
                app.out.error(message, code=exc.code, exit_code=API_ERROR)
                return API_ERROR
            app.out.result(
                {"id": order_id, **to_data(refund)},
                f"{done} order {order_id}: {money(refund.refunded)} refunded",
            )
            return None

        app.run(go)

    command.__doc__ = (
        "Cancel a PENDING order; its price is refunded."
        if action == "cancel"
        else "Report a PENDING order's number as not receiving, for a refund."
    )
    return click.command(action)(command)


cancel = _refund_command("cancel")
ban = _refund_command("ban")


@click.command()
@click.option(
    "--status",
    type=click.Choice(STATUSES, case_sensitive=False),
    help="Only the orders in this status.",
)
@click.option("--all", "every", is_flag=True, help="Every page, not just one.")
@click.option(
    "--page", type=click.IntRange(1), default=1, show_default=True, help="Which page to show."
)
@click.option(
    "--limit",
    type=click.IntRange(1, 100),
    default=20,
    show_default=True,
    help="Orders per page.",
)
@pass_app
def orders(app: App, status: str | None, every: bool, page: int, limit: int) -> None:
    """List the account's orders, newest first."""

    async def go(gsim: Client) -> None:
        wanted = status.upper() if status else None
        if every:
            found = [o async for o in gsim.orders.iterate(status=wanted)]
            app.out.table(found, ORDER_COLUMNS, map(order_row, found), empty="no orders")
            return
        result = await gsim.orders.list(page=page, limit=limit, status=wanted)
        app.out.table(
            result,
            ORDER_COLUMNS,
            map(order_row, result.items),
            title=f"page {result.page} of {result.total_pages} ({result.total} orders)",
            empty="no orders",
        )

    app.run(go)


@click.command()
@click.option(
    "--older-than",
    **DURATION,
    default="5m",
    show_default=True,
    help="Only PENDING orders bought at least this long ago (90s, 5m, 1h).",
)
@pass_app
def sweep(app: App, older_than: float) -> None:
    """Refund the PENDING orders a crashed program left behind.

    Cancels every PENDING order bought at least --older-than ago; a program still
    waiting on one of them will see it cancelled.
    """

    async def go(gsim: Client) -> None:
        refunds: list[tuple[Order, Refund]] = await gsim.orders.cancel_stale(older_than=older_than)
        total = sum((refund.refunded for _, refund in refunds), Decimal(0))
        if app.out.json:
            app.out.data(
                {
                    "cancelled": [
                        {"order": to_data(o), "refunded": to_data(r.refunded)} for o, r in refunds
                    ],
                    "refunded": to_data(total),
                }
            )
            return
        app.out.table(
            refunds,
            ["order", "number", "service", "created", "refunded USD"],
            (
                [o.id, o.phone_number, o.service, when(o.created_at), amount(r.refunded)]
                for o, r in refunds
            ),
            empty="no stale PENDING orders",
        )
        if refunds:
            app.out.console.print(f"cancelled {len(refunds)} orders, {money(total)} refunded")

    app.run(go)
