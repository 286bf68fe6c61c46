"""The middleware: what stands between a client and the ``/api/v1`` handlers.

A request meets, in order, the reverse proxy (drop before, HTML 502, gateway
timeout), then the application (rate limit, latency, the handler, errors
rendered as the documented body, the answer maybe dropped after all that); its
answer is counted and gets its ``Date`` and rate-limit headers. ``/_sandbox/``
requests skip all of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from email.utils import formatdate

from aiohttp import web

from . import _control
from ._clock import Clock
from ._errors import ApiError
from ._faults import DroppedResponse, FaultInjector, drop, html_502, html_504
from ._http import error_response
from ._stats import Counters
from ._tasks import Background

log = logging.getLogger("gsim_async.sandbox")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {400: "VALIDATION_ERROR", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


class Pipeline:
    """Faults, counters and headers around every API request of one sandbox."""

    def __init__(
        self, injector: FaultInjector, counters: Counters, clock: Clock, background: Background
    ) -> None:
        self.injector = injector
        self.counters = counters
        self.clock = clock
        self.background = background
        self.route_names: dict[object, str] = {}  # route -> "GET /api/v1/orders/{id}"

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count, inject faults and render errors for everything outside ``/_sandbox/``."""
        if request.path.startswith(_control.PREFIX):
            return await _control.call(request, handler)
        name = self.route_names.get(request.match_info.route)
        if name is None:
            name = f"{request.method} (unmatched)"
        resp = await self._proxy(request, handler)
        if type(resp) is DroppedResponse:
            transport = request.transport
            if transport is not None:
                transport.close()
            self.counters.count(name, 0)
            return resp
        self.counters.count(name, resp.status)
        faults = self.injector.faults
        if faults.rate_limit_headers is not None:
            # After the answer was made, so it counts this request too.
            bucket = self.injector.rate_limit_headers(request.headers.get("Authorization", ""))
            resp.headers.update(bucket)
        date_offset = faults.date_offset
        if date_offset or self.clock.offset:
            # A skewed server clock shows in Date too; a rewriting proxy shifts Date alone.
            # Otherwise aiohttp's own Date is right (and cached, so cheaper).
            resp.headers["Date"] = formatdate(self.clock.now() + date_offset, usegmt=True)
        return resp

    async def _proxy(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """What a reverse proxy in front of the API adds: drops, 502s, gateway timeouts."""
        injector = self.injector
        faults = injector.faults
        if injector.roll(faults.drop_before_rate):
            return drop()
        if injector.roll(faults.html_502_rate):
            return html_502()
        timeout = faults.proxy_timeout
        if timeout is None:
            return await self._application(request, handler)
        # A proxy reads the whole request before passing it on, so the application can
        # still read the body after the proxy has answered.
        await request.read()
        work = self.background.spawn(self._application(request, handler))
        done, _ = await asyncio.wait({work}, timeout=timeout)
        if work in done:
            return work.result()
        # The application goes on; whatever it answers later reaches nobody.
        return html_504()

    async def _application(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The API server itself: its answer (maybe lost on the way back), errors rendered."""
        resp = await self._answer(request, handler)
        # After the handler: whatever the request did is done, only its answer is lost.
        if type(resp) is not DroppedResponse and self.injector.roll(
            self.injector.faults.drop_after_rate
        ):
            return drop()
        return resp

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await self._serve(request, handler)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except web.HTTPException as exc:
            code = _HTTP_CODES.get(exc.status, f"HTTP_{exc.status}")
            return error_response(exc.status, code, exc.reason)
        except Exception as exc:
            log.exception("sandbox handler failed on %s %s", request.method, request.path)
            return error_response(500, "INTERNAL_ERROR", f"sandbox bug: {exc!r}")

    async def _serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        injector = self.injector
        faults = injector.faults
        if faults.rate_limit is not None:
            wait = injector.throttle(request.headers.get("Authorization", ""))
            if wait is not None:
                if not faults.retry_after_header:
                    return error_response(429, "RATE_LIMITED", "rate limit exceeded")
                return error_response(
                    429,
                    "RATE_LIMITED",
                    f"rate limit exceeded, retry after {wait} seconds",
                    {"Retry-After": str(wait)},
                )
        delay = injector.latency()
        if delay > 0.0:
            await asyncio.sleep(delay)
        exc = request.match_info.http_exception
        if exc is not None:
            if exc.status == 405:
                return error_response(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"method {request.method} is not allowed on {request.path}",
                    {"Allow": exc.headers.get("Allow", "")},
                )
            return error_response(404, "NOT_FOUND", f"no such endpoint: {request.path}")
        return await handler(request)
