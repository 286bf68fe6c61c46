"""``gsim rentals ...``: long-term virtual numbers."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.markup import escape

from .._client import Client
from .._codes import extract_code
from .._enums import NumberType, RentalStatus
from .._models import Call, Message, Rental
from .._types import NOT_GIVEN
from ._context import POSITIVE_DURATION, App, Group, pass_app
from ._output import amount, money, to_data, when

RENTAL_COLUMNS = ["rental", "number", "country", "type", "status", "USD/month", "renews"]
MESSAGE_COLUMNS = ["sms", "direction", "from", "to", "body", "status", "at"]
CALL_COLUMNS = ["call", "direction", "from", "to", "status", "seconds", "at"]
TYPES = {"local": NumberType.LOCAL, "mobile": NumberType.MOBILE, "toll-free": NumberType.TOLL_FREE}
TYPE_OPTION = click.Choice(sorted(TYPES), case_sensitive=False)


def rental_row(rental: Rental) -> Sequence[object]:
    """One line of a rentals table."""
    return [
        rental.id,
        rental.phone_number,
        rental.country,
        rental.number_type.value if rental.number_type else None,
        rental.status.value,
        amount(rental.monthly_price),
        when(rental.renews_at),
    ]


def message_row(message: Message) -> Sequence[object]:
    """One line of a messages table."""
    return [
        message.id,
        message.direction.value,
        message.from_,
        message.to,
        message.body,
        message.status,
        when(message.created_at),
    ]


def call_row(call: Call) -> Sequence[object]:
    """One line of a calls table."""
    return [
        call.id,
        call.direction.value,
        call.from_,
        call.to,
        call.status,
        call.duration,
        when(call.created_at),
    ]


def rental_fields(rental: Rental) -> Iterable[tuple[str, object]]:
    """A rental as name/value pairs."""
    return [
        ("rental", rental.id),
        ("number", rental.phone_number),
        ("name", rental.friendly_name),
        ("country", rental.country),
        ("type", rental.number_type.value if rental.number_type else None),
        ("status", rental.status.value),
        ("monthly", money(rental.monthly_price)),
        ("auto-renew", _yes_no(rental.auto_renew)),
        ("renews", when(rental.renews_at, seconds=True)),
        ("forwarding", rental.forwarding_number),
        ("voicemail", _yes_no(rental.voicemail_enabled)),
    ]


def _yes_no(flag: bool | None) -> str | None:
    return None if flag is None else ("yes" if flag else "no")


@click.group(cls=Group)
def rentals() -> None:
    """Rent long-term virtual numbers, with their SMS and calls."""


@rentals.command()
@click.argument("country")
@click.option(
    "--type", "kind", type=TYPE_OPTION, default="local", show_default=True,
    help="The kind of number.",
)  # fmt: skip
@click.option("--sms/--no-sms", default=None, help="Only numbers that can (or cannot) get SMS.")
@click.option("--voice/--no-voice", default=None, help="Only numbers with (or without) voice.")
@click.option("--area-code", help="Only numbers in this area code (e.g. 510).")
@click.option("--contains", help="Only numbers containing these digits (e.g. 555).")
@click.option(
    "--limit", type=click.IntRange(1, 50), default=20, show_default=True,
    help="At most this many numbers.",
)  # fmt: skip
@pass_app
def search(
    app: App,
    country: str,
    kind: str,
    sms: bool | None,
    voice: bool | None,
    area_code: str | None,
    contains: str | None,
    limit: int,
) -> None:
    """Find numbers to rent in COUNTRY, a 2-letter ISO code such as US.

    The USD/month column is filled only when the server sends a price: the published
    gsim API's search results carry none (see `gsim rentals rent --help`).
    """

    async def go(gsim: Client) -> None:
        found = await gsim.rentals.search(
            country,
            type=TYPES[kind.lower()],
            sms_enabled=sms,
            voice_enabled=voice,
            area_code=area_code,
            contains=contains,
            page_size=limit,
        )

        def can(flag: bool) -> str:
            return "yes" if flag else ""

        app.out.table(
            found,
            ["number", "name", "locality", "region", "SMS", "voice", "USD/month"],
            (
                [
                    n.phone_number,
                    n.friendly_name,
                    n.locality,
                    n.region,
                    can(n.capabilities.sms),
                    can(n.capabilities.voice),
                    amount(n.monthly_price),
                ]
                for n in found
            ),
            empty="no numbers found",
        )

    app.run(go)


@rentals.command("list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in RentalStatus], case_sensitive=False),
    help="Only the rentals in this status.",
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
    help="Rentals per page.",
)
@pass_app
def list_(app: App, status: str | None, every: bool, page: int, limit: int) -> None:
    """List the account's rentals."""

    async def go(gsim: Client) -> None:
        wanted = status.upper() if status else None
        if every:
            found = [r async for r in gsim.rentals.iterate(status=wanted)]
            app.out.table(found, RENTAL_COLUMNS, map(rental_row, found), empty="no rentals")
            return
        result = await gsim.rentals.list(page=page, limit=limit, status=wanted)
        app.out.table(result, RENTAL_COLUMNS, map(rental_row, result.items), empty="no rentals")

    app.run(go)


@rentals.command()
@click.argument("rental_id", metavar="ID")
@pass_app
def get(app: App, rental_id: str) -> None:
    """Show a rental with its recent SMS and calls."""

    async def go(gsim: Client) -> None:
        rental = await gsim.rentals.get(rental_id)
        app.out.fields(rental, rental_fields(rental))
        if not app.out.json:
            app.out.table(None, MESSAGE_COLUMNS, map(message_row, rental.messages), empty="no SMS")
            app.out.table(None, CALL_COLUMNS, map(call_row, rental.calls), empty="no calls")

    app.run(go)


@rentals.command()
@click.argument("phone_number", metavar="NUMBER")
@click.option("--country", required=True, help="2-letter ISO code the number was found in.")
@click.option(
    "--type", "kind", type=TYPE_OPTION, default="local", show_default=True,
    help="The kind of number, as searched for.",
)  # fmt: skip
@click.option(
    "--monthly-price",
    metavar="USD",
    help="The number's base monthly price, before gsim's markup. Left out, it is taken "
    "from the search results when they carry one (the published API's do not).",
)
@pass_app
def rent(app: App, phone_number: str, country: str, kind: str, monthly_price: str | None) -> None:
    """Rent NUMBER found by search; the first month is charged now.

    The API takes the number's base monthly price (--monthly-price, as gsim's price
    list gives it) and charges that price plus gsim's markup: the rental's monthly
    price, printed once it is rented, is what the balance pays, more than the base
    price passed.
    """

    async def go(gsim: Client) -> None:
        number_type = TYPES[kind.lower()]
        price: str | Any = monthly_price
        if price is None:
            digits = phone_number.lstrip("+")[-7:]
            offers = await gsim.rentals.search(
                country, type=number_type, contains=digits, page_size=50
            )
            offer = next((o for o in offers if o.phone_number == phone_number), None)
            if offer is None:
                raise click.UsageError(
                    f"{phone_number} is not offered in {country} as {kind} (see `gsim rentals "
                    "search`); to try anyway, pass --monthly-price with its base price"
                )
            if offer.monthly_price is None:
                raise click.UsageError(
                    "the search results carry no price: pass --monthly-price with the "
                    "number's base monthly price from gsim's price list (before its markup)"
                )
            price = offer.monthly_price
        rental = await gsim.rentals.create(phone_number, number_type, country, price)
        app.out.result(
            rental,
            f"rented [bold]{rental.phone_number}[/] for {money(rental.monthly_price)} a month, "
            f"charged now: base price {price} USD plus gsim's markup (rental {rental.id})",
        )

    app.run(go)


@rentals.command()
@click.argument("rental_id", metavar="ID")
@click.option("--auto-renew/--no-auto-renew", default=None, help="Renew every month.")
@click.option("--forward-to", metavar="NUMBER", help="Forward calls to this E.164 number.")
@click.option("--no-forwarding", is_flag=True, help="Stop forwarding calls.")
@click.option(
    "--voicemail/--no-voicemail", default=None, help="Take voicemail for missed calls (or stop)."
)
@click.option("--name", help="A friendly name (at most 64 characters).")
@pass_app
def update(
    app: App,
    rental_id: str,
    auto_renew: bool | None,
    forward_to: str | None,
    no_forwarding: bool,
    voicemail: bool | None,
    name: str | None,
) -> None:
    """Change a rental's settings: only those given are changed."""
    if forward_to is not None and no_forwarding:
        raise click.UsageError("--forward-to and --no-forwarding contradict each other")

    async def go(gsim: Client) -> None:
        result = await gsim.rentals.update(
            rental_id,
            auto_renew=NOT_GIVEN if auto_renew is None else auto_renew,
            forwarding_number=None if no_forwarding else (forward_to or NOT_GIVEN),
            voicemail_enabled=NOT_GIVEN if voicemail is None else voicemail,
            friendly_name=NOT_GIVEN if name is None else name,
        )
        changed = {k: v for k, v in to_data(result).items() if k != "id" and v is not None}
        if no_forwarding:
            changed["forwarding_number"] = "off"
        shown = ", ".join(f"{k}={v}" for k, v in changed.items())
        app.out.result(result, f"updated rental {result.id}" + (f": {shown}" if shown else ""))

    app.run(go)


@rentals.command()
@click.argument("rental_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def release(app: App, rental_id: str, yes: bool) -> None:
    """Give a rented number back at once; it cannot be recovered."""
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("releasing cannot be undone: pass --yes to confirm")
        if not click.confirm(f"Release rental {rental_id}? The number cannot be recovered"):
            app.out.note("not released")
            raise click.exceptions.Exit(1)

    async def go(gsim: Client) -> None:
        await gsim.rentals.release(rental_id)
        app.out.result({"id": rental_id, "released": True}, f"released rental {rental_id}")

    app.run(go)


@rentals.command()
@click.argument("rental_id", metavar="ID")
@click.option(
    "--page", type=click.IntRange(1), default=1, show_default=True, help="Which page to show."
)
@click.option(
    "--limit",
    type=click.IntRange(1, 100),
    default=50,
    show_default=True,
    help="Messages per page.",
)
@pass_app
def sms(app: App, rental_id: str, page: int, limit: int) -> None:
    """List a rental's SMS, newest first."""

    async def go(gsim: Client) -> None:
        result = await gsim.rentals.messages(rental_id, page=page, limit=limit)
        app.out.table(result, MESSAGE_COLUMNS, map(message_row, result.items), empty="no SMS")

    app.run(go)


@rentals.command()
@click.argument("rental_id", metavar="ID")
@click.argument("to")
@click.argument("body")
@pass_app
def send(app: App, rental_id: str, to: str, body: str) -> None:
    """Send BODY by SMS from a rental to TO; a per-SMS fee is charged.

    TO is an E.164 number (+14155551234).
    """

    async def go(gsim: Client) -> None:
        sent = await gsim.rentals.send_sms(rental_id, to, body)
        app.out.result(sent, f"SMS to {to} {sent.status} (message {sent.id})")

    app.run(go)


@rentals.command()
@click.argument("rental_id", metavar="ID")
@click.option(
    "--page", type=click.IntRange(1), default=1, show_default=True, help="Which page to show."
)
@click.option(
    "--limit", type=click.IntRange(1, 100), default=50, show_default=True, help="Calls per page."
)
@pass_app
def calls(app: App, rental_id: str, page: int, limit: int) -> None:
    """List a rental's calls, newest first."""

    async def go(gsim: Client) -> None:
        result = await gsim.rentals.calls(rental_id, page=page, limit=limit)
        app.out.table(result, CALL_COLUMNS, map(call_row, result.items), empty="no calls")

    app.run(go)


@rentals.command()
@click.argument("rental_id", metavar="ID")
@click.argument("to")
@pass_app
def call(app: App, rental_id: str, to: str) -> None:
    """Call TO (E.164) from a rental."""

    async def go(gsim: Client) -> None:
        placed = await gsim.rentals.call(rental_id, to)
        app.out.result(placed, f"calling {to}: {placed.status} (call {placed.id})")

    app.run(go)


@rentals.command("wait-sms")
@click.argument("rental_id", metavar="ID")
@click.option("--match", metavar="REGEX", help="Only an SMS whose body matches this regex.")
@click.option(
    "--timeout", **POSITIVE_DURATION, help="Give up after this long (90s, 5m; exit status 3)."
)
@pass_app
def wait_sms(app: App, rental_id: str, match: str | None, timeout: float | None) -> None:
    """Wait for a rental's next inbound SMS and print it.

    A verification code found in it is printed on a line of its own. Exit status 3
    when none comes before --timeout.
    """

    async def go(gsim: Client) -> None:
        try:
            message = await gsim.rentals.wait_for_sms(rental_id, match=match, timeout=timeout)
        except asyncio.CancelledError:
            app.out.note("stopped waiting")
            raise
        code = extract_code(message.body)
        if app.out.json:
            app.out.data({**to_data(message), "code": code})
            return
        app.out.console.print(f"[bold]{escape(message.from_)}[/]: {escape(message.body)}")
        if code is not None:
            app.out.console.print(f"code {code}")

    app.run(go)
