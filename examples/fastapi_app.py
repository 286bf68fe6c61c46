"""A verification service on FastAPI: numbers handed out over HTTP, their codes fetched later.

    POST   /verifications        {"service": "telegram", "country": "russia"}
                                 -> 201 {"id", "phone_number", "status": "waiting", "code": null}
    GET    /verifications/{id}   ?wait=20: hold the request up to 20 s for its code
                                 -> {"status": "waiting" | "received" | "refunded", "code"}
    DELETE /verifications/{id}   give the number up now (refunded unless its code came)
    GET    /balance              the account's balance
    GET    /healthz              200 while the client is open

Run it (``GSIM_API_KEY`` set, or ``GSIM_BASE_URL`` at a sandbox:
``python -m gsim_async.sandbox --port 8080``)::

    pip install gsim-async fastapi uvicorn
    uvicorn fastapi_app:app --timeout-graceful-shutdown 25

One ``gsim_async.Client`` lives as long as the application: the lifespan opens it and
closes it, and a dependency hands it to the endpoints. Each number handed out is held
by a task of the application until its code comes, its wait times out
(``CODE_TIMEOUT`` seconds, default 300) or it is given up: never by the request that
bought it, which ends at once. When the server stops (SIGTERM, Ctrl-C), uvicorn waits
up to ``--timeout-graceful-shutdown`` for requests in flight (long polls last at most
``MAX_WAIT``), then the lifespan gives up every number still waiting (refunded) before
the client closes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Literal, TypedDict

import anyio
from anyio.abc import TaskGroup, TaskStatus
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import gsim_async

log = logging.getLogger("verifications")

#: Seconds a number waits for its code before it is banned and refunded.
CODE_TIMEOUT = float(os.environ.get("CODE_TIMEOUT", "300"))
#: The longest a GET may hold a request for a code. Keep it below uvicorn's
#: --timeout-graceful-shutdown, and that below the grace your orchestrator gives
#: (Kubernetes: 30 s), so that a stop lets every long poll answer.
MAX_WAIT = 20.0
#: Seconds a finished verification's outcome is kept for GET.
KEEP_OUTCOME = 600.0


class VerificationRequest(BaseModel):
    service: str = "telegram"
    country: str = "russia"
    max_price: Decimal | None = None


Status = Literal["waiting", "received", "refunded"]


class Verification(BaseModel):
    id: str
    phone_number: str
    status: Status
    code: str | None = None


@dataclass
class Held:
    """A number handed out (its activation), and whether it is over."""

    act: gsim_async.Activation
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)

    def view(self) -> Verification:
        order, code = self.act.order, self.act.code
        status: Status = "received" if code else "refunded" if self.done.is_set() else "waiting"
        return Verification(id=order.id, phone_number=order.phone_number, status=status, code=code)


class Desk:
    """Numbers held by the application's tasks, each until its code or its refund."""

    def __init__(self, gsim: gsim_async.Client, tasks: TaskGroup, *, timeout: float) -> None:
        self.gsim = gsim
        self.timeout = timeout
        self._tasks = tasks
        self._held: dict[str, Held] = {}

    async def hand_out(self, wanted: VerificationRequest) -> Held:
        """Buy a number; a task of the application holds it from now on."""
        held: Held = await self._tasks.start(self._hold, wanted)
        return held

    def get(self, order_id: str) -> Held | None:
        return self._held.get(order_id)

    async def _hold(self, wanted: VerificationRequest, *, task_status: TaskStatus[Held]) -> None:
        act = self.gsim.orders.activation(
            wanted.service, wanted.country, max_price=wanted.max_price
        )
        held = Held(act)
        try:
            with held.scope:  # DELETE cancels it
                # Leaving the block without a code (timeout, DELETE, shutdown) refunds it;
                # a code that raced the refund is kept on act.code.
                async with act:
                    self._held[act.order.id] = held
                    task_status.started(held)
                    try:
                        await act.wait_for_code(timeout=self.timeout)
                    except gsim_async.NoCodeError:
                        pass  # no code in time (banned), or the order ended without one
                    except gsim_async.GsimError as exc:
                        # Not the task group's business: one number's trouble must not
                        # end every other number's wait.
                        log.warning("waiting for order %s failed: %s", act.order.id, exc)
        finally:
            held.done.set()
        await anyio.sleep(KEEP_OUTCOME)
        del self._held[act.order.id]


class State(TypedDict):
    gsim: gsim_async.Client
    desk: Desk


def get_gsim(request: Request) -> gsim_async.Client:
    """The application's client (a dependency)."""
    gsim: gsim_async.Client = request.state.gsim
    return gsim


def get_desk(request: Request) -> Desk:
    """The application's desk (a dependency)."""
    desk: Desk = request.state.desk
    return desk


Gsim = Annotated[gsim_async.Client, Depends(get_gsim)]
Numbers = Annotated[Desk, Depends(get_desk)]


def create_app(**client_options: Any) -> FastAPI:
    """The application; ``client_options`` go to ``gsim_async.Client``.

    Without them the client reads ``GSIM_API_KEY`` and ``GSIM_BASE_URL``.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with gsim_async.Client(**client_options) as gsim, anyio.create_task_group() as tasks:
            # What the lifespan yields is every request's ``request.state``.
            yield {"gsim": gsim, "desk": Desk(gsim, tasks, timeout=CODE_TIMEOUT)}
            # Shutting down: every number still waiting is given up (refunded), then
            # the client closes.
            tasks.cancel_scope.cancel()

    app = FastAPI(title="Verifications", lifespan=lifespan)

    @app.exception_handler(gsim_async.GsimError)
    async def gsim_error(request: Request, exc: gsim_async.GsimError) -> JSONResponse:
        status = 503
        if isinstance(exc, gsim_async.InsufficientBalanceError):
            status = 402
        elif isinstance(exc, gsim_async.PriceTooHighError):
            status = 409
        elif isinstance(exc, (gsim_async.InvalidArgumentError, gsim_async.ValidationError)):
            status = 422
        elif isinstance(exc, gsim_async.NotFoundError):
            status = 404
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.post("/verifications", status_code=201)
    async def start_verification(wanted: VerificationRequest, desk: Numbers) -> Verification:
        return (await desk.hand_out(wanted)).view()

    @app.get("/verifications/{order_id}")
    async def get_verification(
        order_id: str,
        desk: Numbers,
        gsim: Gsim,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0,
    ) -> Verification:
        held = desk.get(order_id)
        if held is None:
            # Another worker's number, or an old one: as the API tells it, without waiting.
            order = await gsim.orders.get(order_id)
            status: Status = (
                "waiting" if order.status == gsim_async.OrderStatus.PENDING else "refunded"
            )
            return Verification(
                id=order.id,
                phone_number=order.phone_number,
                status="received" if order.sms_code else status,
                code=order.sms_code,
            )
        with anyio.move_on_after(wait):
            await held.done.wait()
        return held.view()

    @app.delete("/verifications/{order_id}")
    async def give_up(order_id: str, desk: Numbers) -> Verification:
        held = desk.get(order_id)
        if held is None:
            raise HTTPException(404, f"no verification {order_id} here")
        held.scope.cancel()
        await held.done.wait()
        return held.view()

    @app.get("/balance")
    async def balance(gsim: Gsim) -> dict[str, str]:
        found = await gsim.balance()
        return {"balance": str(found.balance), "currency": found.currency}

    @app.get("/healthz")
    async def healthz(gsim: Gsim) -> JSONResponse:
        # Cheap on purpose: a probe that called the API would spend its rate limit.
        ok = not gsim.closed
        return JSONResponse({"ok": ok}, status_code=200 if ok else 503)

    return app


app = create_app(poll_interval=float(os.environ.get("POLL_INTERVAL", "2")))
