"""The one path every request takes: pacing, sending, retrying, decoding, errors.

``Transport.request`` is the loop; what to do after each attempt is decided by
``gsim_async._retry.decide`` (a pure function), aiohttp's failures are classified
by one table in ``gsim_async._http``, and the rate gate and the send rate live in
``gsim_async._pacing``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import platform
import random
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import aiohttp
import anyio
import attrs
import cattrs

from . import _constants as C
from . import _rate_headers
from ._clock import ServerClock
from ._converter import Decoder, dumps, loads
from ._exceptions import (
    ERROR_CODES,
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    GsimError,
    OutcomeUnknownError,
    RateLimitedError,
)
from ._http import Answer, NoAnswer, Session, classify, read_body
from ._pacing import Pacing, Priority
from ._retry import Action, Operation, RetryEvent, RetryHook, backoff, decide, parse_retry_after
from ._telemetry import Hooks, Pending
from ._version import __version__

T = TypeVar("T")

log = logging.getLogger("gsim_async")

USER_AGENT = (
    f"gsim-async/{__version__} aiohttp/{aiohttp.__version__} Python/{platform.python_version()}"
)

_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
# Any advertised limit shows in one of these (RateLimit-Policy never comes alone).
_ADVERT_HEADERS = ("RateLimit", "RateLimit-Remaining", "X-RateLimit-Remaining")


@attrs.frozen
class Settings:
    """What may differ between views of one client (``with_options``)."""

    api_key: str = attrs.field(repr=False)
    base_url: str
    timeout: float = C.DEFAULT_TIMEOUT
    connect_timeout: float = C.DEFAULT_CONNECT_TIMEOUT
    max_retries: int = C.DEFAULT_MAX_RETRIES
    backoff_base: float = C.DEFAULT_BACKOFF_BASE
    backoff_cap: float = C.DEFAULT_BACKOFF_CAP
    max_retry_after: float = C.DEFAULT_MAX_RETRY_AFTER
    max_response_size: int = C.DEFAULT_MAX_RESPONSE_SIZE
    proxy: str | None = None


class Shared:
    """What every view of one client shares: session, pacing, clock, counters, hooks."""

    def __init__(
        self,
        session: Session,
        pacing: Pacing,
        on_retry: RetryHook | None,
        telemetry: Hooks | None = None,
    ) -> None:
        self.session = session
        self.pacing = pacing
        self.clock = ServerClock()
        self.on_retry = on_retry
        #: Traces and metrics (``None``: off, or OpenTelemetry not installed).
        self.telemetry = telemetry
        self.rng = random.Random()
        #: Requests put on the wire (attempts, retries included).
        self.requests_sent = 0
        #: Run once before the first request (a fleet joins then, in the running loop).
        self.starter: Callable[[], Coroutine[Any, Any, None]] | None = None
        self._starting: asyncio.Task[None] | None = None

    async def ready(self) -> None:
        """Run the one-time starter, once, whoever asks first."""
        if self.starter is None:
            return
        if self._starting is None:
            # In an empty context: what it starts (a fleet's loops, recovery) runs for the
            # client's life, not inside the span of whichever call came first.
            self._starting = contextvars.Context().run(
                asyncio.get_running_loop().create_task, self.starter()
            )
        await asyncio.shield(self._starting)
        self.starter = None


class LostAnswerError(GsimError):
    """A purchase may have been carried out (internal: the namespace reconciles it).

    ``happened``: the server answered 2xx, so it certainly was. ``data``: the answer's
    JSON when it was JSON but not of the expected shape. ``sent`` / ``sent_mono``:
    when the attempt left (wall clock, monotonic).
    """

    def __init__(
        self, reason: str, *, happened: bool, sent: float, sent_mono: float, data: Any = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.happened = happened
        self.sent = sent
        self.sent_mono = sent_mono
        self.data = data


class _Secret(str):
    """A header value that keeps the key out of reprs (tracebacks with locals, debuggers)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<redacted>'"


class Transport:
    """Sends every request of one client view."""

    def __init__(self, settings: Settings, shared: Shared) -> None:
        self.settings = settings
        self.shared = shared
        self._api_root = settings.base_url + C.API_PREFIX
        self._headers = {
            "Authorization": _Secret(f"Bearer {settings.api_key}"),
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        # `connect` also bounds the wait for a pooled connection: failing there proves
        # the request was never written (aiohttp raises ConnectionTimeoutError).
        self._timeout = aiohttp.ClientTimeout(
            total=settings.timeout,
            connect=settings.connect_timeout,
            sock_connect=settings.connect_timeout,
        )

    def derive(self, **changes: Any) -> Transport:
        """A transport with other settings over the same session, pacing and clock."""
        return Transport(attrs.evolve(self.settings, **changes), self.shared)

    @property
    def clock(self) -> ServerClock:
        """What we know of the server's clock."""
        return self.shared.clock

    @property
    def pacing(self) -> Pacing:
        """The client's rate gate and send rate."""
        return self.shared.pacing

    # -- the request loop -------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        decode: Decoder[T],
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        op: Operation = Operation.SAFE,
        max_retries: int | None = None,
        priority: Priority = Priority.CALL,
        sent_log: list[float] | None = None,
        before_send: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """Send one API call (``path`` below ``/api/v1``) and return its decoded body.

        Retries what ``op`` allows; ``sent_log`` collects when each attempt left (wall
        clock), for a purchase's bookkeeping; ``before_send()`` is awaited once, when the
        first attempt has its turn and is about to leave (a journal's intent: written
        then, not while the request still waits for the rate gate). Raises an
        ``APIError`` subclass for an error answer, ``APIConnectionError`` /
        ``APITimeoutError`` when no answer came,
        ``OutcomeUnknownError`` when a ``ONCE`` request may have gone through, and
        ``LostAnswerError`` when a ``PURCHASE`` may have (the caller reconciles it).
        """
        shared = self.shared
        session = shared.session.get()  # a closed client, or another loop: fail at once
        if shared.starter is not None:
            await shared.ready()
        body = dumps(json).encode() if json is not None else None
        retries = self.settings.max_retries if max_retries is None else max_retries
        pacing = shared.pacing
        tel = shared.telemetry
        pending: Pending | None = None  # events for the next attempt's span (polls)
        attempt = 0
        maybe_done = False  # an earlier attempt may have been carried out
        while True:
            ticket = pacing.try_acquire(priority) or await (
                pacing.acquire(priority) if tel is None else tel.turn(pacing, priority)
            )
            # Wall-clock send times are for purchases' bookkeeping only.
            sent = time.time() if op is not Operation.SAFE else 0.0
            sent_mono = ticket.sent_at
            if sent_log is not None:
                sent_log.append(sent)
            if before_send is not None:
                try:
                    await before_send()
                except BaseException:
                    pacing.done(ticket, accepted=False)
                    raise
                before_send = None
            try:
                if tel is None:
                    answer = await self._send(session, method, path, params, body)
                else:
                    notes, pending = pending, None
                    answer = await tel.http(
                        self._send, session, method, path, params, body, priority, attempt, notes
                    )
            except NoAnswer as failure:
                pacing.done(ticket, accepted=False)
                error: GsimError = _no_answer_error(failure, method, C.API_PREFIX + path)
                pause = 0.0
                action = decide(op, None, unsent=failure.unsent, transient=failure.transient)
                maybe_happened = not failure.unsent
            else:
                status = answer.status
                pacing.done(ticket, accepted=status != 429, advert=_advert(answer))
                if 200 <= status < 300:
                    return self._decode(answer, decode, method, path, op, sent, sent_mono)
                error = _api_error(answer, method, C.API_PREFIX + path)
                action = decide(op, status, error.code)
                pause = 0.0
                if action is Action.PAUSE:
                    assert isinstance(error, RateLimitedError)
                    fresh = tel is not None and not pacing.paused_for
                    pause = pacing.throttled(ticket, self._pause(error.retry_after))
                    if tel is not None:
                        pending = tel.paused(pause, fresh, priority, pending)
                maybe_happened = status >= 500 and error.code != "PROVIDER_ERROR"
            if action is Action.LOST:
                raise self._lost(error, op, sent, sent_mono)
            if action is Action.RAISE or attempt >= retries:
                if isinstance(error, APIError):
                    error.attempts, error.after_lost_answer = attempt + 1, maybe_done
                raise error
            attempt += 1
            maybe_done = maybe_done or maybe_happened
            if action is Action.PAUSE:
                self._notify(method, path, attempt, pause, _reason(error))
                if tel is not None:
                    pending = tel.retried(method, path, attempt, pause, error, priority, pending)
            else:
                delay = backoff(
                    attempt, self.settings.backoff_base, self.settings.backoff_cap, self.shared.rng
                )
                self._notify(method, path, attempt, delay, _reason(error))
                if tel is not None:
                    pending = tel.retried(method, path, attempt, delay, error, priority, pending)
                if delay:
                    await anyio.sleep(delay)

    def _pause(self, retry_after: float | None) -> float:
        # No Retry-After: the API documents "retry after 60 seconds".
        wait = C.DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        return min(wait, self.settings.max_retry_after)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
    ) -> Answer:
        self.shared.requests_sent += 1
        started = time.perf_counter()
        try:
            async with session.request(
                method,
                self._api_root + path,
                params=params,
                data=body,
                headers=self._json_headers if body is not None else self._headers,
                timeout=self._timeout,
                allow_redirects=False,
                raise_for_status=False,
                proxy=self.settings.proxy,
            ) as resp:
                answer = Answer(
                    resp.status,
                    resp.headers,
                    await read_body(resp, self.settings.max_response_size),
                )
        except Exception as exc:
            failure = classify(exc, self.settings.timeout)
            if failure is None:
                raise
            _log(method, path, f"failed ({failure.reason})", started)
            raise failure from failure.__cause__
        self.shared.clock.observe_date(answer.headers.get("Date"))
        _log(method, path, answer.status, started)
        return answer

    def _decode(
        self,
        answer: Answer,
        decode: Decoder[T],
        method: str,
        path: str,
        op: Operation,
        sent: float,
        sent_mono: float,
    ) -> T:
        data: Any = None
        try:
            data = loads(answer.body)
            return decode(data)
        except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as exc:
            detail = _describe_bad_body(exc, answer.body)
        what = f"the server answered {answer.status} with a body we could not read ({detail})"
        if op is Operation.PURCHASE:
            # A 2xx means it happened: never buy again after one.
            raise LostAnswerError(
                what, happened=True, sent=sent, sent_mono=sent_mono, data=data
            ) from None
        if op is Operation.ONCE:
            what += "; the request was carried out"
        raise APIResponseValidationError(
            what,
            status=answer.status,
            method=method,
            path=C.API_PREFIX + path,
            headers=answer.headers,
        ) from None

    @staticmethod
    def _lost(error: GsimError, op: Operation, sent: float, sent_mono: float) -> GsimError:
        reason = _reason(error, long=True)
        if op is Operation.PURCHASE:
            return LostAnswerError(reason, happened=False, sent=sent, sent_mono=sent_mono)
        lost = OutcomeUnknownError(
            f"{reason}; the request was sent and may have been carried out",
            method=getattr(error, "method", ""),
            path=getattr(error, "path", ""),
        )
        lost.__cause__ = error
        return lost

    def _notify(self, method: str, path: str, attempt: int, delay: float, reason: str) -> None:
        log.info("retrying %s %s in %.2f s (retry %d): %s", method, path, delay, attempt, reason)
        hook = self.shared.on_retry
        if hook is not None:
            try:
                hook(RetryEvent(method, C.API_PREFIX + path, attempt, delay, reason))
            except Exception:
                log.exception("on_retry hook raised; ignored")


def _log(method: str, path: str, outcome: object, started: float) -> None:
    if log.isEnabledFor(logging.DEBUG):
        elapsed = (time.perf_counter() - started) * 1000
        log.debug("%s %s%s -> %s in %.1f ms", method, C.API_PREFIX, path, outcome, elapsed)


def _advert(answer: Answer) -> _rate_headers.RateAdvert | None:
    headers = answer.headers
    for name in _ADVERT_HEADERS:
        if name in headers:
            return _rate_headers.parse(headers)
    return None


def _reason(error: GsimError, *, long: bool = False) -> str:
    if isinstance(error, APIError):
        if long:
            return f"the server answered {error.status} ({error.message})"
        return f"{error.status} {error.code or 'error'}"
    if isinstance(error, APIConnectionError):
        return error.reason
    return str(error)


def _no_answer_error(failure: NoAnswer, method: str, path: str) -> APIConnectionError:
    cls = APITimeoutError if failure.timeout else APIConnectionError
    error = cls(failure.reason, method=method, path=path)
    error.__cause__ = failure.__cause__
    return error


def _describe_bad_body(exc: Exception, body: bytes) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc))[:300]
    if isinstance(exc, (TypeError, KeyError)):
        return str(exc)[:300]
    return f"not JSON: {excerpt(body)!r}"


def excerpt(body: bytes, size: int = 160) -> str:
    """A short, tag-free excerpt of a body, for error messages."""
    text = body[:4096].decode("utf-8", "replace")
    text = _SPACE.sub(" ", _TAGS.sub(" ", text)).strip()
    return text[:size] + ("…" if len(text) > size else "")


def _api_error(answer: Answer, method: str, path: str) -> APIError:
    status, body = answer.status, answer.body
    code: str | None = None
    message: str | None = None
    try:
        payload = loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        raw_code, raw_message = payload.get("code"), payload.get("error")
        code = raw_code if isinstance(raw_code, str) else None
        message = raw_message if isinstance(raw_message, str) else None
    if message is None:
        text = excerpt(body)
        message = f"non-JSON error response: {text}" if text else "empty error response"
    if 300 <= status < 400:
        message = f"unexpected redirect to {answer.headers.get('Location', '?')!r} (not followed)"
    headers = answer.headers
    if status == 429:
        # A 429 is a rejection whoever sent it (a proxy's page has no code of ours).
        return RateLimitedError(
            message,
            retry_after=parse_retry_after(answer.headers.get("Retry-After")),
            status=status,
            code=code,
            method=method,
            path=path,
            headers=headers,
        )
    cls = ERROR_CODES.get(code or "", APIError)
    return cls(message, status=status, code=code, method=method, path=path, headers=headers)
