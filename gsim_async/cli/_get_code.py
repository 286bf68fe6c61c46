"""``gsim get-code``: buy numbers, show them at once, print each code as it arrives.

Every order that gets no code is refunded — after its timeout (banned), on an error,
and on Ctrl-C (cancelled): ``orders.activation()`` does it, shielded from the
cancellation that Ctrl-C turns into.
"""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

import attrs
import click
from rich.progress import Progress, TaskID

from .._client import Client
from .._exceptions import ClientClosedError, CodeTimeoutError, GsimError, NoCodeError
from .._models import Order
from .._waiting import Activation, OnTimeout
from ._context import API_ERROR, NO_CODE, POSITIVE_DURATION, App, Hint, catalogue_hint, pass_app
from ._live import live_progress, run_all
from ._output import money, to_data

#: What ``--on-timeout`` may say, as ``wait_for_code(on_timeout=...)`` takes it.
ON_TIMEOUT: list[OnTimeout] = ["ban", "cancel", "keep"]


@click.command("get-code")
@click.argument("service")
@click.argument("countries", metavar="COUNTRY...", nargs=-1, required=True)
@click.option(
    "-n", "--count", type=click.IntRange(1, 100), default=1, show_default=True,
    help="How many numbers to buy and wait on at once.",
)  # fmt: skip
@click.option("--operator", help="An operator id from `gsim operators` (default: any).")
@click.option(
    "--max-price", metavar="USD",
    help="Buy only at this price or lower (e.g. 0.50); nothing is bought above it.",
)  # fmt: skip
@click.option(
    "--timeout", **POSITIVE_DURATION, default="5m", show_default=True,
    help="How long to wait for each code (90s, 5m, 20m).",
)  # fmt: skip
@click.option(
    "--on-timeout", type=click.Choice(ON_TIMEOUT), default="ban", show_default=True,
    help="What to do with an order whose code did not come in time: ban or cancel it "
    "(both refund it), or keep it waiting for `gsim wait ID`.",
)  # fmt: skip
@click.option(
    "--attempts", type=click.IntRange(1, 100), metavar="N",
    help="Try up to N numbers per code: a number without a code in time is refunded and "
    "another one bought, from the next COUNTRY given.",
)  # fmt: skip
@click.option(
    "--budget", metavar="USD",
    help="With --attempts: the most the numbers bought for one code may cost together "
    "(refunds aside); no purchase passes it.",
)  # fmt: skip
@pass_app
def get_code(
    app: App,
    service: str,
    countries: tuple[str, ...],
    count: int,
    operator: str | None,
    max_price: str | None,
    timeout: float,
    on_timeout: OnTimeout,
    attempts: int | None,
    budget: str | None,
) -> None:
    """Buy numbers for SERVICE in COUNTRY and print their codes.

    Each number is printed as soon as it is bought, each code as it arrives, and a
    summary at the end. An order that gets no code in time is banned and refunded
    (see --on-timeout); Ctrl-C cancels and refunds the ones still waiting. Exit
    status 3 when a code did not come.

    With --attempts (or several countries, or --budget) each code gets up to N
    numbers: one that gets no code in time is refunded and the next is bought, from
    the next COUNTRY in turn; a country that is sold out or dearer than --max-price
    is skipped without buying. Countries are ids, ISO codes or names (russia, RU,
    Russia).
    """
    if attempts is not None or budget is not None or len(countries) > 1:
        from ._get_code_attempts import run_attempts

        run_attempts(
            app,
            service,
            countries,
            count=count,
            operator=operator,
            max_price=max_price,
            timeout=timeout,
            on_timeout=on_timeout,
            attempts=attempts or 3,
            budget=budget,
        )
    country = countries[0]

    async def go(gsim: Client) -> int:
        # Made first so a bad argument fails before anything is bought.
        activations = [
            gsim.orders.activation(service, country, operator, max_price=max_price)
            for _ in range(count)
        ]
        return await GetCode(app, timeout, on_timeout, catalogue_hint(service, country)).run(
            activations
        )

    app.run(go, hint=catalogue_hint(service, country))


@attrs.define(eq=False)
class Slot:
    """One number being bought and waited on."""

    index: int
    task: TaskID | None = None
    order: Order | None = None
    code: str | None = None
    error: GsimError | None = None
    refunded: Decimal | None = None
    interrupted: bool = False
    #: Left PENDING after its timeout (--on-timeout keep).
    kept: bool = False


class GetCode:
    """The concurrent waits of one ``get-code`` run, and what they show."""

    def __init__(self, app: App, timeout: float, on_timeout: OnTimeout, hint: Hint) -> None:
        self.app = app
        self.out = app.out
        self.timeout = timeout
        self.on_timeout: OnTimeout = on_timeout
        self.hint = hint
        self.progress: Progress | None = None
        #: Error lines already shown: the same failure of many purchases is shown once.
        self.shown: set[str] = set()

    async def run(self, activations: list[Activation]) -> int:
        slots = [Slot(i) for i in range(len(activations))]
        with live_progress(self.out) as progress:
            self.progress = progress
            for slot in slots:
                if progress is not None:
                    slot.task = progress.add_task("", status="[dim]buying ...", total=None)
            tasks = [
                asyncio.ensure_future(self._one(slot, act))
                for slot, act in zip(slots, activations, strict=True)
            ]
            await run_all(tasks, lambda: self._interrupted(slots))
        return self._summary(slots, interrupted=False)

    async def _one(self, slot: Slot, act: Activation) -> None:
        try:
            async with act:
                slot.order = act.order
                self._bought(slot)
                try:
                    slot.code = await act.wait_for_code(
                        timeout=self.timeout, on_timeout=self.on_timeout
                    )
                except CodeTimeoutError as exc:
                    slot.error = exc
                    # With --on-timeout keep, leaving the block keeps the order waiting.
                    slot.kept = self.on_timeout == "keep"
                except NoCodeError as exc:
                    slot.error = exc
        except ClientClosedError as exc:
            # SIGTERM stopped the client under the wait: the order went as on Ctrl-C.
            if self.app.interrupted:
                slot.interrupted = True
            else:
                slot.error = exc
        except GsimError as exc:
            slot.error = exc
        except asyncio.CancelledError:
            slot.interrupted = True
            raise
        finally:
            with contextlib.suppress(RuntimeError):  # RuntimeError: nothing was bought
                slot.order = act.order
            # A code that raced the cancel on Ctrl-C was paid for: show it, never drop it.
            slot.code = slot.code or act.code
            slot.refunded = act.refunded
            self._finished(slot)

    # -- what is shown --

    def _bought(self, slot: Slot) -> None:
        order = slot.order
        assert order is not None
        if self.out.json:
            self.out.data({"event": "bought", "order": to_data(order)})
            return
        self.out.console.print(
            f"[bold]{order.phone_number}[/]  bought for {money(order.price)} (order {order.id})"
        )
        if self.progress is not None and slot.task is not None:
            self.progress.reset(slot.task, description=order.phone_number, status="waiting")

    def _finished(self, slot: Slot) -> None:
        order = slot.order
        number = order.phone_number if order is not None else None
        refunded = money(slot.refunded) if slot.refunded is not None else None
        if slot.code is not None:
            event, text = "code", f"code [bold green]{slot.code}[/]"
            status = f"[green]code {slot.code}"
        elif slot.interrupted:
            event, status = "cancelled", "[yellow]cancelled"
            if order is None:
                text = "[yellow]cancelled[/] before the purchase finished"
            elif refunded is None:
                text = "[red]not cancelled[/]: it will expire and be refunded by gsim"
            else:
                text = f"[yellow]cancelled[/] ({refunded} refunded)"
        elif slot.kept and order is not None:
            event, status = "no_code", "[yellow]kept"
            text = (
                f"[yellow]no code yet[/]: kept waiting (`gsim wait {order.id}`, "
                f"or `gsim cancel {order.id}` for a refund)"
            )
        elif isinstance(slot.error, NoCodeError):
            event = "no_code"
            state = order.status.value if order is not None else "?"
            text = f"[red]no code[/] ({state}" + (f", {refunded} refunded)" if refunded else ")")
            status = "[red]no code"
        else:
            event, text, status = "error", "", "[red]failed"
        if self.out.json:
            self.out.data(
                {
                    "event": event,
                    "order_id": order.id if order is not None else None,
                    "phone_number": number,
                    "code": slot.code,
                    "status": order.status.value if order is not None else None,
                    "refunded": to_data(slot.refunded),
                    "error": str(slot.error) if slot.error is not None else None,
                }
            )
        if event == "error":
            assert slot.error is not None
            # On stderr like every error (JSON with --json), once for many alike.
            if str(slot.error) not in self.shown:
                self.shown.add(str(slot.error))
                self.out.failure(slot.error, API_ERROR, hint=self.hint(slot.error))
        elif not self.out.json:
            self.out.console.print(f"[bold]{number or '(no number)'}[/]  {text}")
        if self.progress is not None and slot.task is not None:
            self.progress.update(slot.task, status=status, total=1, completed=1)
            self.progress.stop_task(slot.task)

    def _interrupted(self, slots: list[Slot]) -> None:
        # Ctrl-C: every wait still under way cancelled its order (refunded).
        self._summary(slots, interrupted=True)
        self.app.interruption_reported = True

    def _summary(self, slots: list[Slot], *, interrupted: bool) -> int:
        codes = sum(1 for s in slots if s.code is not None)
        failed = [s for s in slots if s.code is None]
        refunded = sum((s.refunded or Decimal(0) for s in slots), Decimal(0))
        if self.out.json:
            self.out.data(
                {
                    "event": "done",
                    "codes": codes,
                    "without_code": len(failed),
                    "refunded": to_data(refunded),
                    "interrupted": interrupted,
                }
            )
        else:
            text = f"{codes} of {len(slots)} code{'s' if len(slots) > 1 else ''}"
            if failed:
                text += f"; {money(refunded)} refunded"
            kept = sum(1 for s in slots if s.kept)
            if kept:
                text += f"; {kept} kept waiting"
            self.out.console.print(("interrupted: " if interrupted else "") + text)
        if any(s.error is not None and not isinstance(s.error, NoCodeError) for s in failed):
            return API_ERROR
        return NO_CODE if failed else 0
