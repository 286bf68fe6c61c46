"""Waiting for codes: wait, the cleanup after a timeout, as_completed, and activation().

Everything here works through ``OrderOps``, a small protocol the orders namespace
implements (fetch, ban/cancel, the watcher, the clock, the background tasks), so the
waiting helpers never reach into the namespace.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Literal, Protocol

import anyio
import attrs

from . import _constants as C
from . import _validation as v
from ._background import Background
from ._enums import TERMINAL_WITHOUT_CODE, OrderStatus
from ._exceptions import (
    ClientClosedError,
    CodeTimeoutError,
    ConflictError,
    ForbiddenError,
    GsimError,
    NoCodeError,
    NotFoundError,
    PriceTooHighError,
    UnauthorizedError,
)
from ._guard_config import Failure
from ._models import Operator, Order, Refund
from ._telemetry import (
    Hooks,
    settle_args,
    settled_result,
    traced,
    via_ops,
    wait_args,
    waited_result,
)
from ._watcher import Watch, WatcherLike, is_settled

log = logging.getLogger("gsim_async")

OnTimeout = Literal["ban", "cancel", "keep"]
_ON_TIMEOUT = ("ban", "cancel", "keep")


class OrderOps(Protocol):
    """What the waiting helpers need of a client's orders."""

    @property
    def watcher(self) -> WatcherLike:
        """The client's watcher."""

    @property
    def background(self) -> Background:
        """The client's tasks that outlive their caller's cancellation."""

    @property
    def waits(self) -> Waits:
        """The client's waits in progress, and its stop."""

    @property
    def poll_interval(self) -> float:
        """Seconds between polls."""

    @property
    def telemetry(self) -> Hooks | None:
        """The client's traces and metrics (``None``: off)."""

    async def fetch(self, order_id: str, *, cleanup: bool = False) -> Order:
        """One order's current state (``cleanup``: retry until the cleanup deadline)."""

    async def finish(self, order: Order, action: str, *, cleanup: bool = False) -> Refund:
        """Ban or cancel ``order``; ConflictError (with the order re-read) if not PENDING."""

    def seconds_left(self, order: Order) -> float:
        """Seconds until the order expires, on the server's clock."""

    def paused_for(self) -> float:
        """Seconds until the gate a 429 closed opens again."""

    def settled(self, order: Order) -> None:
        """The order will not get (another) code: bookkeeping may forget it."""

    def waiting(self, order: Order, seconds: float, action: str) -> None:
        """A wait began that refunds by ``action`` after ``seconds`` (for the journal)."""

    def not_waiting(self, order_id: str) -> None:
        """A wait stopped without an outcome: the order is its holder's again."""

    def kept(self, order_id: str) -> None:
        """The program keeps the order after all (``on_timeout="keep"``)."""

    def refund_started(self, order_id: str, action: str) -> None:
        """A refund of ``order_id`` began (the journal makes it due at once)."""

    def refund_over(self, order_id: str) -> None:
        """That refund ended, whichever way."""

    def verified(self, order: Order, *, block: bool = False) -> None:
        """The order's code came (``block``: and its ``activation()`` block ended well)."""

    def failed(self, order: Order, failure: Failure, detail: str = "") -> None:
        """The order's verification failed: no code, or the step after it raised."""


@attrs.define(eq=False)
class Running:
    """One wait in progress, as the client's stop sees it."""

    order: Order
    #: What the stop does with the order: the wait's ``on_timeout``.
    action: OnTimeout
    watch: Watch | None = None
    stopped: bool = False
    #: The stop's ban or cancel of the order, when it made one.
    refund: asyncio.Task[Settled] | None = None
    #: What keeps the order instead ("the journal ...", "the fleet"), when something does.
    keeper: str | None = None

    def was_stopped(self) -> bool:
        """Whether the stop ended this wait (read after an await: it may have, meanwhile)."""
        return self.stopped


class Stopped(Exception):  # noqa: N818 - an outcome passed between the helpers, never raised to users
    """A wait ended by the client's stop."""

    def __init__(self, running: Running) -> None:
        super().__init__(running.order.id)
        self.running = running


class Waits:
    """The waits of one client in progress, and the stop that gives them up.

    A stop (``Client.stop()``, ``aclose()``, a stop signal) gives every wait up as its
    ``on_timeout`` says (design.md, money rule 9): the ban or cancel starts at once, in
    the background, and the waiter is woken to hear of it. When a journal or a fleet
    keeps what the client owes (``keeper``), the waits only end: their rows stay as
    they are, to be decided as after a crash. Waits begun after the stop end at once,
    the same way; purchases are refused.
    """

    def __init__(self) -> None:
        self._running: set[Running] = set()
        self._refunds: dict[str, asyncio.Task[Settled]] = {}
        self.stopped = False
        #: Set as a stop begins, before it knows who keeps the waits (a fleet's answer):
        #: purchases are refused from then on.
        self.refusing = False
        #: Whether the program asked for the stop (``stop()``, a stop signal), not a close.
        self.asked = False
        #: Set once the client is closed: nothing can be sent, nor given up, any more.
        self.closed = False
        self.keeper: str | None = None

    def __len__(self) -> int:
        return len(self._running)

    def start(self, ops: OrderOps, order: Order, action: OnTimeout) -> Running:
        """A wait on ``order`` begins (already stopped, on a stopped client)."""
        if self.closed:
            raise ClientClosedError("the gsim Client was closed; it cannot wait for codes")
        running = Running(order, action)
        if self.stopped:
            self._give_up(ops, running)
        else:
            self._running.add(running)
        return running

    def end(self, running: Running) -> None:
        """That wait is over."""
        self._running.discard(running)

    def stop(self, ops: OrderOps, keeper: str | None) -> None:
        """Give every wait up now (once); ``keeper`` keeps the orders instead."""
        if self.stopped:
            return
        self.stopped = self.refusing = True
        self.keeper = keeper
        running, self._running = self._running, set()
        for each in running:
            self._give_up(ops, each)
        for each in running:
            if each.watch is not None:
                each.watch.done.set()  # the waiter sees ``stopped`` as it wakes
        if running:
            log.info(
                "stopping: %d wait(s) given up%s",
                len(running),
                f"; {keeper} keeps their orders" if keeper else "",
            )

    def _give_up(self, ops: OrderOps, running: Running) -> None:
        running.stopped = True
        running.keeper = self.keeper
        order = running.order
        if self.keeper is not None or running.action == "keep" or is_settled(order):
            return
        task = self._refunds.get(order.id)
        if task is None:
            task = ops.background.spawn(settle(ops, order, running.action))
            self._refunds[order.id] = task
        running.refund = task

    def refund_of(self, order_id: str) -> asyncio.Task[Settled] | None:
        """The stop's ban or cancel of ``order_id``, if it made one."""
        return self._refunds.get(order_id)

    def refuse(self, what: str) -> None:
        """Raise ``ClientClosedError`` if the client has stopped: ``what`` is not begun."""
        if self.closed:
            raise ClientClosedError("this gsim Client is closed; create a new one")
        if self.refusing:
            raise ClientClosedError(f"the gsim Client is stopping: {what} was not begun")


def check_wait_args(timeout: float | None, on_timeout: str, poll_interval: float | None) -> None:
    """Validate the common arguments of the waiting helpers."""
    v.choice("on_timeout", on_timeout, _ON_TIMEOUT)
    if timeout is not None:
        v.positive_seconds("timeout", timeout, allow_zero=True)
    if poll_interval is not None:
        v.positive_seconds("poll_interval", poll_interval)


@traced("gsim.orders.wait_for_code", wait_args, waited_result, via=via_ops)
async def wait(
    ops: OrderOps,
    order: Order,
    *,
    timeout: float | None,
    on_timeout: OnTimeout,
    poll_interval: float | None,
    on_stop: OnTimeout | None = None,
) -> Order:
    """The order once it has a code; raises NoCodeError/CodeTimeoutError otherwise.

    The client's stop gives the order up as ``on_stop`` says (default: ``on_timeout``).
    """
    seconds = ops.seconds_left(order) if timeout is None else timeout
    if on_timeout != "keep" and not is_settled(order):
        ops.waiting(order, seconds, on_timeout)
    try:
        final = await watch_until(
            ops,
            order,
            timeout=timeout,
            poll_interval=poll_interval,
            on_stop=on_timeout if on_stop is None else on_stop,
        )
    except Stopped as stop:
        return await stopped(ops, stop.running)
    except BaseException:
        # Cancelled: the order is left as it is, its holder's. Once the client stops,
        # a journal or fleet keeps the wait's row as it is, as after a crash.
        if not ops.waits.stopped:
            ops.not_waiting(order.id)
        raise
    if final is not None:
        return final
    return await give_up(ops, order, on_timeout, seconds)


async def watch_until(
    ops: OrderOps,
    order: Order,
    *,
    timeout: float | None,
    poll_interval: float | None,
    on_stop: OnTimeout,
) -> Order | None:
    """The order once it has a code; ``None`` when ``timeout`` passed first.

    Raises ``Stopped`` when the client stops (or has stopped) meanwhile: the stop gave
    the order up as ``on_stop`` says.
    """
    if order.sms_code is not None:
        return order
    if order.status in TERMINAL_WITHOUT_CODE:
        raise no_code(order)
    seconds = ops.seconds_left(order) if timeout is None else timeout
    waits = ops.waits
    running = waits.start(ops, order, on_stop)
    if running.stopped:
        raise Stopped(running)
    try:
        watch = running.watch = ops.watcher.watch(order, poll_interval or ops.poll_interval)
        try:
            with anyio.move_on_after(seconds):
                await watch.done.wait()
        finally:
            ops.watcher.unwatch(watch)
    finally:
        waits.end(running)
    if running.was_stopped() and not (
        watch.done.is_set() and watch.error is None and is_settled(watch.order)
    ):
        raise Stopped(running)  # unless the order settled first (a code raced the stop)
    if not watch.done.is_set():
        return None
    if watch.error is not None:
        raise watch.error
    final = watch.order
    ops.settled(final)
    if final.sms_code is not None:
        return final
    raise no_code(final)


def no_code(order: Order) -> NoCodeError:
    """The error for an order that ended without a code."""
    return NoCodeError(
        f"order {order.id} ({order.phone_number}) ended {order.status} without a code",
        order=order,
    )


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.3g} s"


async def give_up(ops: OrderOps, order: Order, action: OnTimeout, waited: float) -> Order:
    """After a timeout: ban/cancel for a refund and raise, or return a code that raced in.

    The refund runs in a task of its own; the caller gets control back once it is done
    or, when the server has paused the client, after that pause plus a few seconds,
    with the refund left to finish (``CodeTimeoutError.wait_refund()``).
    """
    what = f"no code for order {order.id} ({order.phone_number}) after {_seconds(waited)}"
    if action == "keep":
        ops.kept(order.id)
        raise CodeTimeoutError(f"{what}; the order was kept", order=order)
    task = ops.background.spawn(settle(ops, order, action))
    paused = ops.paused_for()
    done = await ops.background.wait_for(task, paused + C.CLEANUP_GRACE)
    if done and task.cancelled():  # the client closed past its deadline meanwhile
        raise CodeTimeoutError(
            f"{what}; the {action} did not land before the client closed", order=order
        )
    if not done:
        why = f"the server paused this client for {paused:.0f} s" if paused else "it failed"
        raise CodeTimeoutError(
            f"{what}; the {action} is still under way ({why}) and is tried again until it "
            "lands while the client is open: await the error's wait_refund() for the refund",
            order=order,
            pending=task,
        )
    result = task.result()
    if result.order.sms_code is not None:
        log.info("code for order %s arrived just before the %s", order.id, action)
        return result.order
    raise CodeTimeoutError(f"{what}; {result.note}", order=result.order, refunded=result.refunded)


async def stopped(ops: OrderOps, running: Running) -> Order:
    """A wait the client's stop ended: the order with a code that raced the stop, or
    ``ClientClosedError`` saying what became of the order (with ``.order``, ``.refunded``).
    """
    order = running.order
    what = f"the client stopped while waiting for a code for order {order.id}"
    task = running.refund
    if task is None:
        if running.keeper is not None:
            how = (
                f"{running.keeper} keeps it and decides as after a crash (a later run may "
                "take it back, else it is refunded when due)"
            )
        elif running.action == "keep" and not is_settled(order):
            how = "the order was kept (on_timeout='keep')"
        else:
            how = f"the order is {order.status}"
        raise ClientClosedError(f"{what}; {how}", order=order)
    done = await ops.background.wait_for(task, ops.paused_for() + C.CLEANUP_GRACE)
    if done and task.cancelled():  # the client closed past its deadline meanwhile
        raise ClientClosedError(
            f"{what}; its {running.action} did not land before the client closed", order=order
        )
    if not done:
        raise ClientClosedError(
            f"{what}; its {running.action} is still under way and is tried until the client "
            "closes (aclose() waits for it)",
            order=order,
            pending=task,
        )
    result = task.result()
    if result.order.sms_code is not None:
        log.info("code for order %s arrived just before the stop's %s", order.id, running.action)
        return result.order
    raise ClientClosedError(f"{what}; {result.note}", order=result.order, refunded=result.refunded)


@attrs.frozen
class Settled:
    """How a cleanup ended: the order's last known state, and what we got back."""

    order: Order
    refunded: Decimal | None
    note: str


@traced("gsim.orders.refund", settle_args, settled_result, via=via_ops)
async def settle(ops: OrderOps, order: Order, action: str) -> Settled:
    """Ban or cancel ``order`` for a refund; never given up while the client is open.

    Failures are tried again with backoff, and the server's pauses are waited out,
    until the order is refunded or settled otherwise (design.md, money rule 7); only
    the client closing stops it (a journal then keeps the refund for the next run).
    If the order is no longer PENDING, a code may have come: a RECEIVED order without
    its code yet (or a status we do not know) is watched until the code or a final
    status shows, so a paid code is never given up.
    """
    target = OrderStatus.BANNED if action == "ban" else OrderStatus.CANCELLED
    current = order
    failures = 0
    ops.refund_started(order.id, action)
    try:
        while True:
            try:
                refund = await ops.finish(current, action, cleanup=True)
            except ConflictError as exc:
                current = exc.order or current
            except ClientClosedError as exc:
                return Settled(current, None, f"the {action} did not land: {exc}")
            except (NotFoundError, UnauthorizedError, ForbiddenError) as exc:
                # Not this account's order, or the key is gone: no try can ever land.
                log.warning("the %s of order %s cannot be made: %s", action, order.id, exc)
                return Settled(current, None, f"the {action} cannot be made: {exc}")
            except GsimError as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "the %s of order %s failed (%s); trying again until it lands",
                        action,
                        order.id,
                        exc,
                    )
                await anyio.sleep(_backoff(ops.poll_interval, failures) + ops.paused_for())
                continue
            else:
                done = "banned" if action == "ban" else "cancelled"
                final = attrs.evolve(current, status=target)
                ops.settled(final)
                if failures:
                    log.info("order %s %s after %d failed tries", order.id, done, failures)
                return Settled(final, refund.refunded, f"{done}, {refund.refunded} refunded")
            while True:
                if current.sms_code is not None:
                    ops.settled(current)
                    return Settled(current, None, "a code arrived")
                if current.status in TERMINAL_WITHOUT_CODE:
                    ops.settled(current)
                    return Settled(current, None, f"the order is already {current.status}")
                if current.status == OrderStatus.PENDING:
                    break  # back to PENDING (or a stale read): ban/cancel again
                await anyio.sleep(ops.poll_interval)
                try:
                    current = current.merged(await ops.fetch(current.id, cleanup=True))
                except ClientClosedError as exc:
                    return Settled(current, None, f"the {action} did not land: {exc}")
                except GsimError:
                    continue
    finally:
        ops.refund_over(order.id)


def _backoff(interval: float, failures: int) -> float:
    """Seconds before trying a failed refund again: doubling from the poll interval."""
    return min(max(interval, 0.05) * 2.0 ** min(failures - 1, 10), C.REFUND_BACKOFF_CAP)


@attrs.frozen
class WaitResult:
    """One order's outcome from ``as_completed``: ``code`` or ``error`` is set."""

    order: Order
    code: str | None = None
    error: GsimError | None = None


class AsCompleted:
    """``async for result in client.orders.as_completed(orders)``: results as they come.

    Each order is watched until it gets a code, ends without one, or its timeout
    passes. What happens on a timeout (ban, cancel) happens when the caller takes that
    result, never behind its back: leaving the loop (``break``), even while keeping a
    reference to this iterator, leaves the other orders as they are.
    """

    def __init__(
        self,
        ops: OrderOps,
        orders: Sequence[Order | str],
        resolve: Callable[[str], Awaitable[Order]],
        *,
        timeout: float | None,
        on_timeout: OnTimeout,
        poll_interval: float | None,
    ) -> None:
        self._ops = ops
        self._on_timeout = on_timeout
        self._left = len(orders)
        self._results: asyncio.Queue[tuple[Order, str | None, GsimError | None, bool]] = (
            asyncio.Queue()
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._items = list(orders)
        self._resolve = resolve
        self._timeout = timeout
        self._poll_interval = poll_interval

    def __aiter__(self) -> AsCompleted:
        return self

    async def __anext__(self) -> WaitResult:
        if not self._started:
            self._started = True
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._one(item)) for item in self._items]
        if self._left <= 0:
            await self.aclose()
            raise StopAsyncIteration
        order, code, error, timed_out = await self._results.get()
        self._left -= 1
        if timed_out:
            # The timeout's consequence happens now that the caller takes the result.
            try:
                final = await give_up(self._ops, order, self._on_timeout, self._waited(order))
            except GsimError as exc:
                return self._judged(WaitResult(order=getattr(exc, "order", order), error=exc))
            return self._judged(WaitResult(order=final, code=final.sms_code))
        return self._judged(WaitResult(order=order, code=code, error=error))

    def _judged(self, result: WaitResult) -> WaitResult:
        """Tell the spend guard's breaker how the order's verification went."""
        error = result.error
        if result.code is not None:
            self._ops.verified(result.order)
        elif isinstance(error, NoCodeError) and not (
            isinstance(error, CodeTimeoutError) and self._on_timeout == "keep"
        ):
            self._ops.failed(result.order, "no_code")
        return result

    def _waited(self, order: Order) -> float:
        return self._timeout if self._timeout is not None else self._ops.seconds_left(order)

    async def _one(self, item: Order | str) -> None:
        order = item if isinstance(item, Order) else None
        try:
            if order is None:
                order = await self._resolve(str(item))
            try:
                final = await watch_until(
                    self._ops,
                    order,
                    timeout=self._timeout,
                    poll_interval=self._poll_interval,
                    on_stop=self._on_timeout,
                )
            except Stopped as stop:
                final = await stopped(self._ops, stop.running)
        except NoCodeError as exc:
            self._results.put_nowait((exc.order, None, exc, False))
        except Exception as exc:  # every order gets its result, whatever went wrong
            error = exc if isinstance(exc, GsimError) else GsimError(f"{type(exc).__name__}: {exc}")
            if error is not exc:
                error.__cause__ = exc
            if isinstance(exc, ClientClosedError) and exc.order is not None:
                order = exc.order
            self._results.put_nowait((order or _stub(str(item)), None, error, False))
        else:
            if final is None:
                assert order is not None
                self._results.put_nowait((order, None, None, True))
            else:
                self._results.put_nowait((final, final.sms_code, None, False))

    async def aclose(self) -> None:
        """Stop waiting on the orders not yet returned (they are left as they are)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._tasks = []

    def __del__(self) -> None:
        for task in self._tasks:
            task.cancel()


def _stub(order_id: str) -> Order:
    return Order(
        id=order_id,
        service="",
        phone_number="",
        status=OrderStatus("UNKNOWN"),
        price=Decimal(0),
    )


class Activation:
    """``async with client.orders.activation(...) as act``: a number that refunds itself.

    ``act.order`` / ``act.phone_number`` are the number bought; ``await
    act.wait_for_code()`` returns its code. Leaving the block without a code gets the
    money back: the order is banned after a code timeout and cancelled on any other
    exit (an exception, a cancelled task, the client closing), in a task of its own so
    it also happens under cancellation; ``wait_for_code(on_timeout="keep")`` keeps it.
    ``act.refunded`` then says how much came back.
    """

    def __init__(
        self,
        ops: OrderOps,
        buy: Callable[[], Awaitable[Order]],
        quote: Callable[[], Awaitable[list[Operator]]] | None,
        *,
        what: str,
        operator: str | None,
        max_price: Decimal | None,
        register: Callable[[Activation], None],
        swallow_no_code: bool = False,
        admit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._ops = ops
        # The spend guard's check, before any request (the price check's included).
        self._admit = admit
        #: Whether the breaker was told how this order's verification went.
        self._judged = False
        # orders.activations(): a wait of this order that ends without a code ends the
        # try, not the loop, once the order was refunded.
        self._swallow_no_code = swallow_no_code
        self._buy = buy
        self._quote = quote
        self._what = what
        self._operator = operator
        self._max_price = max_price
        self._register = register
        self._order: Order | None = None
        self._cleanup: asyncio.Future[Settled] | None = None
        self._kept = False
        #: The code, once ``wait_for_code`` returned it.
        self.code: str | None = None
        #: What the cleanup on exit gave back, if it ran.
        self.refunded: Decimal | None = None

    @property
    def order(self) -> Order:
        """The order bought on entering the block (its latest known state)."""
        if self._order is None:
            raise RuntimeError("use 'async with client.orders.activation(...) as act' first")
        return self._order

    @property
    def phone_number(self) -> str:
        """The number to enter in the service's sign-up form."""
        return self.order.phone_number

    async def __aenter__(self) -> Activation:
        if self._admit is not None:
            await self._admit()
        if self._max_price is not None:
            await self._check_price()
        order = await self._buy()
        self._order = order
        self._register(self)
        if self._max_price is not None and order.price > self._max_price:
            result = await self._refund()
            if result is not None and result.order.sms_code is not None:
                code = result.order.sms_code
                self._order = result.order
                raise PriceTooHighError(
                    f"order {order.id} came back at {order.price}, above max_price "
                    f"{self._max_price}, and its code arrived before it could be cancelled: "
                    f"it was charged; the code is on this error (.code, .order)",
                    price=order.price,
                    max_price=self._max_price,
                    order=result.order,
                    code=code,
                )
            raise PriceTooHighError(
                f"order {order.id} came back at {order.price}, above max_price "
                f"{self._max_price}; it was cancelled (refunded: {self.refunded})",
                price=order.price,
                max_price=self._max_price,
                order=self._order,
            )
        return self

    async def _check_price(self) -> None:
        assert self._max_price is not None
        assert self._quote is not None
        operators = await self._quote()
        wanted = self._operator or "any"
        offers = [o for o in operators if o.id == wanted] or [o for o in operators if o.count > 0]
        if not offers:
            return  # nothing to compare with; the price is checked after buying
        price = min(o.price for o in offers)
        if price > self._max_price:
            raise PriceTooHighError(
                f"{self._what} costs {price}, above max_price {self._max_price}; "
                "nothing was bought",
                price=price,
                max_price=self._max_price,
            )

    async def wait_for_code(
        self,
        timeout: float | None = None,
        *,
        on_timeout: OnTimeout = "ban",
        poll_interval: float | None = None,
    ) -> str:
        """Wait for the code and return it, as [`wait_for_code`][gsim_async.wait_for_code] does."""
        check_wait_args(timeout, on_timeout, poll_interval)
        if self._cleanup is not None:
            raise ClientClosedError(
                f"order {self.order.id} was already cancelled (the client is closing)"
            )
        try:
            final = await wait(
                self._ops,
                self.order,
                timeout=timeout,
                on_timeout=on_timeout,
                poll_interval=poll_interval,
                # A stop ends the block: its order is cancelled, as on any other exit.
                on_stop="cancel",
            )
        except NoCodeError as exc:
            self._order = exc.order
            if isinstance(exc, CodeTimeoutError) and exc.refunded is not None:
                self.refunded = exc.refunded
            if isinstance(exc, CodeTimeoutError) and exc.refund_task is not None:
                # The ban is still under way: leaving the block waits for it, no cancel.
                self._cleanup = exc.refund_task
            # on_timeout="keep" keeps the order, leaving the block included.
            self._kept = isinstance(exc, CodeTimeoutError) and on_timeout == "keep"
            if not self._kept and not self._judged:
                self._judged = True
                self._ops.failed(exc.order, "no_code")
            raise
        except ClientClosedError as exc:
            # The client stopped under the wait: what it did with the order is known.
            if exc.order is not None:
                self._order = exc.order
            if exc.refunded is not None:
                self.refunded = exc.refunded
            if exc.refund_task is not None:
                self._cleanup = exc.refund_task
            raise
        self._order = final
        self.code = final.sms_code
        assert self.code is not None
        return self.code

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        # bool | None, not bool: type checkers then do not take every block for one
        # that may swallow its exceptions (only a try of orders.activations() does).
        order = self._order
        finished = order is None or self.code is not None or self._kept
        if not finished and not (order is not None and is_settled(order) and self._cleanup is None):
            await self._refund()
        self._judge(exc)
        if self._swallow_no_code and isinstance(exc, NoCodeError) and order is not None:
            return exc.order.id == order.id
        return None

    def _judge(self, exc: BaseException | None) -> None:
        """Tell the spend guard's breaker how the block's verification went.

        A block left by cancellation, an interrupt or the client closing is no verdict
        on the number; one left by an exception after its code came is a failure (the
        step after the code failed), as is one left without a code.
        """
        if self._order is None or self._judged or self._kept:
            return
        if isinstance(exc, ClientClosedError) or not isinstance(exc, (Exception, type(None))):
            return
        self._judged = True
        if self.code is not None or self._order.sms_code is not None:
            if exc is None:
                self._ops.verified(self._order, block=True)
            else:
                self._ops.failed(self._order, "after_code", type(exc).__name__)
        else:
            self._ops.failed(self._order, "no_code")

    async def _refund(self) -> Settled | None:
        """Cancel the order (once, whoever asks first) and record what came back.

        Waits for the refund a bounded time (beyond any pause the server imposed);
        past it the refund goes on in the background and ``None`` is returned.
        """
        if self._cleanup is None:
            # A stop may have begun giving the order up already: that refund is the one.
            self._cleanup = self._ops.waits.refund_of(self.order.id) or (
                self._ops.background.spawn(settle(self._ops, self.order, "cancel"))
            )
        task = self._cleanup
        limit = C.CLEANUP_TIMEOUT + self._ops.paused_for()
        try:
            done = await self._ops.background.wait_for(task, limit)
        except asyncio.CancelledError:
            # Cancelled while waiting (shielded, it waited on): what came back still counts.
            if task.done() and not task.cancelled() and task.exception() is None:
                self._record(task.result())
            raise
        if not done or task.cancelled():  # cancelled: the client closed past its deadline
            log.warning(
                "the refund of order %s did not land within %.0f s; it is tried again "
                "until it lands while the client is open",
                self.order.id,
                limit,
            )
            return None
        result = task.result()
        self._record(result)
        return result

    def _record(self, result: Settled) -> None:
        """What the cleanup gave back: the order's state, the refund, a code that raced."""
        self._order = result.order
        if result.refunded is not None:
            self.refunded = result.refunded
        if result.order.sms_code is not None and self.code is None:
            # The code raced the refund: it was paid for, so it is kept, not dropped.
            self.code = result.order.sms_code

    def closing(self) -> asyncio.Future[Settled] | None:
        """The client is closing under this block: refund the order now, if it needs it."""
        if self._order is None or self.code is not None or self._kept:
            return None
        if is_settled(self._order):
            return None
        if self._cleanup is None:
            self._cleanup = self._ops.waits.refund_of(self.order.id) or (
                self._ops.background.spawn(settle(self._ops, self.order, "cancel"))
            )
        return self._cleanup


class OpenActivations:
    """The activation blocks of one client that are still open (weakly)."""

    def __init__(self) -> None:
        self._open: weakref.WeakSet[Activation] = weakref.WeakSet()

    def add(self, activation: Activation) -> None:
        """An activation bought its number."""
        self._open.add(activation)

    def holds(self, order_id: str) -> bool:
        """Whether an open block is using ``order_id``."""
        return any(a._order is not None and a._order.id == order_id for a in list(self._open))

    async def close(self, background: Background, timeout: float) -> None:
        """Refund every open activation's order, within ``timeout`` seconds."""
        tasks = [t for t in (a.closing() for a in list(self._open)) if t is not None]
        if tasks:
            await background.wait_all(list(tasks), timeout)


__all__ = [
    "Activation",
    "AsCompleted",
    "OnTimeout",
    "OpenActivations",
    "OrderOps",
    "Running",
    "Settled",
    "Stopped",
    "WaitResult",
    "Waits",
    "check_wait_args",
    "give_up",
    "settle",
    "stopped",
    "wait",
    "watch_until",
]
