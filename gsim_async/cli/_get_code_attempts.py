"""``gsim get-code --attempts N``: fresh numbers, across countries, until each code comes.

Every code is one ``orders.activations()`` loop; ``-n`` runs that many loops at once.
Each try is shown as it goes (its number, status and outcome): a line when it is
bought, a line when it ends, and a live line meanwhile on a terminal. ``--json``
prints one line per event: ``bought``, then ``code`` / ``no_code`` / ``cancelled`` /
``error`` for each try, ``skipped`` for each country or operator left out,
``gave_up`` for a code whose loop ended without one, and ``done``.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import NoReturn

import attrs
import click
from rich.progress import Progress, TaskID

from .._attempts import Activations, AttemptsExhaustedError, NoNumberAvailableError, Skipped
from .._client import Client
from .._exceptions import ClientClosedError, GsimError, InvalidArgumentError, NoCodeError
from .._models import Order
from .._waiting import Activation, OnTimeout
from ._context import API_ERROR, NO_CODE, App, Hint, catalogue_hint
from ._live import live_progress, run_all
from ._output import money, to_data


def run_attempts(
    app: App,
    service: str,
    countries: tuple[str, ...],
    *,
    count: int,
    operator: str | None,
    max_price: str | None,
    timeout: float,
    on_timeout: OnTimeout,
    attempts: int,
    budget: str | None,
) -> NoReturn:
    """Run ``count`` attempt loops at once and exit with their status."""
    if on_timeout == "keep":
        raise click.UsageError(
            "--on-timeout keep cannot be used with --attempts: a number without a code is "
            "refunded before the next one is bought"
        )

    async def go(gsim: Client) -> int:
        # Made first so a bad argument fails before anything is bought.
        loops = [
            gsim.orders.activations(
                service,
                list(countries),
                operators=None if operator is None else [operator],
                attempts=attempts,
                max_price=max_price,
                budget=budget,
            )
            for _ in range(count)
        ]
        hint = catalogue_hint(service, countries[0])
        return await GetCodeAttempts(app, timeout, on_timeout, attempts, hint).run(loops)

    app.run(go, hint=catalogue_hint(service, countries[0]))


@attrs.define(eq=False)
class Try:
    """One number of one loop."""

    loop: int
    number: int
    task: TaskID | None = None
    order: Order | None = None
    code: str | None = None
    refunded: Decimal | None = None
    error: GsimError | None = None
    interrupted: bool = False


@attrs.define(eq=False)
class Loop:
    """One code's loop: its tries and how it ended."""

    index: int
    activations: Activations
    tries: list[Try] = attrs.Factory(list)
    code: str | None = None
    error: GsimError | None = None
    interrupted: bool = False
    shown_skips: set[Skipped] = attrs.Factory(set)


class GetCodeAttempts:
    """The loops of one ``get-code --attempts`` run, and what they show."""

    def __init__(
        self, app: App, timeout: float, on_timeout: OnTimeout, attempts: int, hint: Hint
    ) -> None:
        self.app = app
        self.out = app.out
        self.timeout = timeout
        self.on_timeout: OnTimeout = on_timeout
        self.attempts = attempts
        self.hint = hint
        self.progress: Progress | None = None
        #: Error lines already shown: the same failure of many loops is shown once.
        self.shown: set[str] = set()

    async def run(self, activations: list[Activations]) -> int:
        loops = [Loop(i, a) for i, a in enumerate(activations)]
        with live_progress(self.out) as progress:
            self.progress = progress
            tasks = [asyncio.ensure_future(self._loop(loop)) for loop in loops]
            await run_all(tasks, lambda: self._interrupted(loops))
        return self._summary(loops, interrupted=False)

    async def _loop(self, loop: Loop) -> None:
        try:
            async for act in loop.activations:
                attempt = Try(loop.index, len(loop.tries) + 1)
                loop.tries.append(attempt)
                self._buying(attempt)
                await self._one(loop, attempt, act)
                if attempt.code is not None:
                    loop.code = attempt.code
        except asyncio.CancelledError:
            loop.interrupted = True
            raise
        except InvalidArgumentError:
            raise  # an unknown country, before anything was bought: a usage error
        except GsimError as exc:
            loop.error = exc
            self._gave_up(loop)
        finally:
            self._skips(loop)
            if loop.tries and loop.tries[-1].order is None and loop.tries[-1].task is not None:
                # The last try bought nothing: its live line goes.
                self._drop(loop.tries[-1])

    async def _one(self, loop: Loop, attempt: Try, act: Activation) -> None:
        try:
            async with act:  # a wait without a code ends the try here, refunded
                attempt.order = act.order
                self._skips(loop)  # what the purchase left out on its way
                self._bought(attempt)
                attempt.code = await act.wait_for_code(
                    timeout=self.timeout, on_timeout=self.on_timeout
                )
        except asyncio.CancelledError:
            attempt.interrupted = True
            raise
        except ClientClosedError:
            if not self.app.interrupted:
                raise
            # SIGTERM stopped the client under the wait: an interruption, as Ctrl-C.
            attempt.interrupted = True
            raise asyncio.CancelledError from None
        except GsimError as exc:
            attempt.error = exc
            raise
        finally:
            order = _order_of(act)
            if order is not None:
                attempt.order = order
                # A code that raced the cancel was paid for: show it, never drop it.
                attempt.code = attempt.code or act.code or order.sms_code
                attempt.refunded = act.refunded
                self._finished(attempt)

    # -- what is shown --

    def _label(self, attempt: Try) -> str:
        return f"try {attempt.number} of {self.attempts}"

    def _buying(self, attempt: Try) -> None:
        if self.progress is not None:
            attempt.task = self.progress.add_task(
                "", status=f"[dim]buying ({self._label(attempt)}) ...", total=None
            )

    def _drop(self, attempt: Try) -> None:
        if self.progress is not None and attempt.task is not None:
            self.progress.remove_task(attempt.task)
            attempt.task = None

    def _bought(self, attempt: Try) -> None:
        order = attempt.order
        assert order is not None
        if self.out.json:
            self.out.data(
                {
                    "event": "bought",
                    "loop": attempt.loop,
                    "try": attempt.number,
                    "order": to_data(order),
                }
            )
            return
        self.out.console.print(
            f"[bold]{order.phone_number}[/]  bought for {money(order.price)} in "
            f"{order.country} (order {order.id}, {self._label(attempt)})"
        )
        if self.progress is not None and attempt.task is not None:
            self.progress.reset(
                attempt.task,
                description=order.phone_number,
                status=f"waiting ({self._label(attempt)})",
            )

    def _finished(self, attempt: Try) -> None:
        order = attempt.order
        assert order is not None
        refunded = money(attempt.refunded) if attempt.refunded is not None else None
        if attempt.code is not None:
            event, text = "code", f"code [bold green]{attempt.code}[/]"
            status = f"[green]code {attempt.code}"
        elif attempt.interrupted:
            event, status = "cancelled", "[yellow]cancelled"
            text = (
                "[red]not cancelled[/]: it will expire and be refunded by gsim"
                if refunded is None
                else f"[yellow]cancelled[/] ({refunded} refunded)"
            )
        elif attempt.error is None or isinstance(attempt.error, NoCodeError):
            event, status = "no_code", "[red]no code"
            text = f"[red]no code[/] ({order.status.value}" + (
                f", {refunded} refunded)" if refunded else ")"
            )
        else:
            event, status = "error", "[red]failed"
            text = f"[red]failed[/] ({attempt.error}" + (
                f"; {refunded} refunded)" if refunded else ")"
            )
        if self.out.json:
            self.out.data(
                {
                    "event": event,
                    "loop": attempt.loop,
                    "try": attempt.number,
                    "order_id": order.id,
                    "phone_number": order.phone_number,
                    "country": order.country,
                    "code": attempt.code,
                    "status": order.status.value,
                    "refunded": to_data(attempt.refunded),
                    "error": str(attempt.error) if attempt.error is not None else None,
                }
            )
        else:
            self.out.console.print(f"[bold]{order.phone_number}[/]  {text}")
        if self.progress is not None and attempt.task is not None:
            self.progress.update(attempt.task, status=status, total=1, completed=1)
            self.progress.stop_task(attempt.task)

    def _skips(self, loop: Loop) -> None:
        for skip in loop.activations.skipped:
            if skip in loop.shown_skips:
                continue
            loop.shown_skips.add(skip)
            if self.out.json:
                self.out.data({"event": "skipped", "loop": loop.index, **to_data(skip)})
            else:
                self.out.console.print(f"[yellow]skipped[/] {skip.describe()}")

    def _gave_up(self, loop: Loop) -> None:
        error = loop.error
        assert error is not None
        if self.out.json:
            self.out.data(
                {
                    "event": "gave_up",
                    "loop": loop.index,
                    "reason": type(error).__name__,
                    "error": str(error),
                    "orders": [o.id for o in loop.activations.orders],
                }
            )
        if isinstance(error, AttemptsExhaustedError):
            if not self.out.json:
                self.out.console.print(
                    f"[red]no code after {len(loop.tries)} "
                    f"tr{'y' if len(loop.tries) == 1 else 'ies'}[/]"
                )
            return
        # Why the loop stopped early (sold out, budget, an API error): on stderr like
        # every error (JSON with --json), once for many alike.
        if str(error) not in self.shown:
            self.shown.add(str(error))
            status = NO_CODE if isinstance(error, NoNumberAvailableError) else API_ERROR
            self.out.failure(error, status, hint=self.hint(error))

    def _interrupted(self, loops: list[Loop]) -> None:
        # Ctrl-C: every wait still under way cancelled its order (refunded).
        self._summary(loops, interrupted=True)
        self.app.interruption_reported = True

    def _summary(self, loops: list[Loop], *, interrupted: bool) -> int:
        codes = sum(1 for loop in loops if loop.code is not None)
        tries = [t for loop in loops for t in loop.tries if t.order is not None]
        refunded = sum((t.refunded or Decimal(0) for t in tries), Decimal(0))
        spent = sum((loop.activations.spent for loop in loops), Decimal(0))
        failed = [loop for loop in loops if loop.code is None]
        if self.out.json:
            self.out.data(
                {
                    "event": "done",
                    "codes": codes,
                    "without_code": len(failed),
                    "tries": len(tries),
                    "spent": to_data(spent),
                    "refunded": to_data(refunded),
                    "interrupted": interrupted,
                }
            )
        else:
            text = f"{codes} of {len(loops)} code{'s' if len(loops) > 1 else ''}"
            text += f" after {len(tries)} tr{'y' if len(tries) == 1 else 'ies'}"
            if refunded:
                text += f"; {money(refunded)} refunded"
            self.out.console.print(("interrupted: " if interrupted else "") + text)
        if any(
            loop.error is not None
            and not isinstance(loop.error, (NoCodeError, NoNumberAvailableError))
            for loop in failed
        ):
            return API_ERROR
        return NO_CODE if failed else 0


def _order_of(act: Activation) -> Order | None:
    """The order ``act`` bought, or None if it bought nothing."""
    try:
        return act.order
    except RuntimeError:
        return None
