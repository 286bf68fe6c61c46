"""The one path every request takes: session, auth, pacing, retries, limits, errors."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import platform
import random
import re
import ssl
import time
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import anyio
import attrs
import cattrs
from multidict import CIMultiDictProxy

from . import _constants as C
from ._converter import dumps, loads, structure
from ._exceptions import (
    ERROR_CODES,
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    InvalidArgumentError,
    OutcomeUnknownError,
    RateLimitedError,
)
from ._ratelimit import AdaptiveRate, RateGate
from ._retry import Operation, RetryEvent, RetryHook, backoff, parse_retry_after
from ._version import __version__

T = TypeVar("T")

log = logging.getLogger("gsim_async")

USER_AGENT = (
    f"gsim-async/{__version__} aiohttp/{aiohttp.__version__} Python/{platform.python_version()}"
)

_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_ConnectTimeout: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(aiohttp, "ConnectionTimeoutError", None),) if t is not None
)


@attrs.frozen
class Settings:
    """Everything a Transport needs to know; immutable so ``with_options`` can copy it."""

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


def check_base_url(url: str) -> str:
    """Refuse a base URL that would send the key in clear text to another machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(f"base_url must be an http(s) URL, got {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise InvalidArgumentError(
            "base_url uses plain http:// to a non-loopback host, which would send the API "
            "key unencrypted; use https:// (http:// is allowed for 127.0.0.1/localhost only)"
        )
    if parts.query or parts.fragment:
        raise InvalidArgumentError("base_url must not have a query or fragment")
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Secret(str):
    """A header value that keeps the key out of reprs (tracebacks with locals, debuggers)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<redacted>'"


class _UnsentError(Exception):
    """The request provably never reached the server (connection not opened)."""

    def __init__(self, reason: str, *, transient: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class _UnknownOutcomeError(Exception):
    """The request may have been processed: sent, then no (usable) answer."""

    def __init__(self, reason: str, *, timeout: bool = False, transient: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timeout = timeout
        self.transient = transient


class Pool:
    """What every view of one client shares: session, event loop, rate gate, pacing."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        connection_limit: int = C.DEFAULT_CONNECTION_LIMIT,
        dns_cache_ttl: int | None = C.DEFAULT_DNS_CACHE_TTL,
        ssl_context: ssl.SSLContext | None = None,
        max_requests_per_second: float | None = None,
        on_retry: RetryHook | None = None,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._connection_limit = connection_limit
        self._dns_cache_ttl = dns_cache_ttl
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self.gate = RateGate()
        self.rate = AdaptiveRate(max_requests_per_second)
        self.on_retry = on_retry
        self.rng = random.Random()
        #: Requests put on the wire (attempts, retries included).
        self.requests_sent = 0
        #: Server clock minus ours, in seconds, from the last ``Date`` header seen.
        self.clock_offset = 0.0
        self._last_date: str | None = None

    def observe_date(self, header: str | None) -> None:
        """Learn the server's clock from a response's ``Date`` header (1 s resolution)."""
        if header is None or header == self._last_date:
            return
        self._last_date = header
        try:
            server = parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError, IndexError):
            return
        # The header truncates to the second: the server's time is half a second on.
        self.clock_offset = server + 0.5 - time.time()

    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session, created on first use inside the running loop."""
        if self.closed:
            raise RuntimeError("this gsim Client is closed; create a new one")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "gsim Client must be used from a running asyncio event loop "
                "(inside an 'async def' run by asyncio.run or anyio.run)"
            ) from None
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "this gsim Client was first used in another event loop; "
                "create one Client per event loop"
            )
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._connection_limit,
                ttl_dns_cache=self._dns_cache_ttl,
                use_dns_cache=self._dns_cache_ttl is not None,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(connector=connector)
            # aiohttp silently resends an idempotent request once when a connection
            # drops; our retry policy must be the only one, so max_retries=0 means 0.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self._session

    async def aclose(self) -> None:
        """Close the session we created (a caller's own session is left open)."""
        if self.closed:
            return
        self.closed = True
        if self._session is not None and self._owns_session:
            await self._session.close()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        session = getattr(self, "_session", None)
        if (
            getattr(self, "_owns_session", False)
            and session is not None
            and not getattr(self, "closed", True)
            and not session.closed
        ):
            _warn(
                "gsim Client was not closed; use 'async with Client(...)' or "
                "'await client.aclose()'",
                ResourceWarning,
                source=self,
                stacklevel=2,
            )


class Transport:
    """Sends every request of one Client (or of a ``with_options`` view of it)."""

    def __init__(self, settings: Settings, pool: Pool) -> None:
        self.settings = settings
        self.pool = pool
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

    def server_now(self) -> datetime:
        """Now, on the server's clock as far as its ``Date`` headers tell."""
        return datetime.fromtimestamp(time.time() + self.pool.clock_offset, timezone.utc)

    def derive(self, **changes: Any) -> Transport:
        """A transport with other settings over the same session, gate and pacing."""
        return Transport(attrs.evolve(self.settings, **changes), self.pool)

    @property
    def closed(self) -> bool:
        """Whether the client was closed."""
        return self.pool.closed

    @property
    def requests_sent(self) -> int:
        """Requests put on the wire by the client (all views), retries included."""
        return self.pool.requests_sent

    async def aclose(self) -> None:
        """Close the shared session."""
        await self.pool.aclose()

    # -- requests --------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        cast_to: type[T],
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        op: Operation = Operation.SAFE,
        max_retries: int | None = None,
    ) -> T:
        """Send one API call (``path`` below ``/api/v1``) and return its parsed body.

        Retries what ``op`` allows (see design.md, "Money and codes are never lost").
        Raises an ``APIError`` subclass for an error answer, ``APIConnectionError`` /
        ``APITimeoutError`` when no answer came, ``OutcomeUnknownError`` when a
        ``PURCHASE`` or ``ONCE`` request may have gone through.
        """
        pool = self.pool
        session = pool.session()
        full_path = C.API_PREFIX + path
        url = self._api_root + path
        data = dumps(json).encode() if json is not None else None
        headers = self._json_headers if data is not None else self._headers
        retries = self.settings.max_retries if max_retries is None else max_retries
        attempt = 0
        lost_answer = False
        while True:
            # Checked before awaiting: the common case (open gate, no pacing) costs nothing.
            if pool.gate.remaining:
                await pool.gate.wait()
            if pool.rate.rate is not None:
                await pool.rate.acquire()
            started = time.perf_counter()
            error: Exception
            try:
                status, resp_headers, body = await self._send(
                    session, method, url, params, data, headers
                )
            except _UnsentError as exc:
                self._log(method, full_path, None, started, exc.reason)
                error = APIConnectionError(exc.reason, method=method, path=full_path)
                if not exc.transient:
                    raise error from exc.__cause__
                reason = exc.reason
            except _UnknownOutcomeError as exc:
                self._log(method, full_path, None, started, exc.reason)
                if op is not Operation.SAFE:
                    raise OutcomeUnknownError(
                        f"{exc.reason}; the request was sent and may have been processed",
                        method=method,
                        path=full_path,
                    ) from exc.__cause__
                cls = APITimeoutError if exc.timeout else APIConnectionError
                error = cls(exc.reason, method=method, path=full_path)
                if not exc.transient:
                    raise error from exc.__cause__
                reason = exc.reason
                lost_answer = True
            else:
                self._log(method, full_path, status, started, None)
                throttled = status == 429
                pool.rate.record(throttled=throttled)
                if status < 300 and status >= 200:
                    return self._decode(body, cast_to, method, full_path, op)
                error = _api_error(status, resp_headers, body, method, full_path)
                if throttled:
                    assert isinstance(error, RateLimitedError)
                    wait = self._throttle_pause(error.retry_after)
                    pool.gate.close_for(wait)
                    if attempt >= retries:
                        error.attempts = attempt + 1
                        error.after_lost_answer = lost_answer
                        raise error
                    attempt += 1
                    self._notify(method, full_path, attempt, wait, f"429 {error.code or ''}")
                    continue
                if status == 503 and error.code == "PROVIDER_ERROR":
                    pass  # provably rejected, nothing charged: retry whatever the operation
                elif status >= 500 or status == 408:
                    if op is not Operation.SAFE:
                        raise OutcomeUnknownError(
                            f"the server answered {status} ({error.message}); "
                            "the request may have been processed",
                            method=method,
                            path=full_path,
                        ) from error
                else:
                    error.attempts = attempt + 1
                    error.after_lost_answer = lost_answer
                    raise error
                reason = f"{status} {error.code or 'error'}"
                # A proxy's 5xx may hide a request that went through; a provider error
                # provably did not.
                lost_answer = lost_answer or error.code != "PROVIDER_ERROR"
            if attempt >= retries:
                if isinstance(error, APIError):
                    error.attempts = attempt + 1
                    error.after_lost_answer = lost_answer
                raise error
            attempt += 1
            delay = backoff(
                attempt, self.settings.backoff_base, self.settings.backoff_cap, pool.rng
            )
            self._notify(method, full_path, attempt, delay, reason)
            if delay:
                await anyio.sleep(delay)

    def _throttle_pause(self, retry_after: float | None) -> float:
        # No Retry-After: the API documents "retry after 60 seconds".
        wait = C.DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        return min(wait, self.settings.max_retry_after)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str],
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        self.pool.requests_sent += 1
        try:
            async with session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                raise_for_status=False,
                proxy=self.settings.proxy,
            ) as resp:
                body = await self._read(resp)
                self.pool.observe_date(resp.headers.get("Date"))
                return resp.status, resp.headers, body
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            raise _UnsentError(f"TLS error: {exc}", transient=False) from exc
        except aiohttp.ClientConnectorError as exc:
            raise _UnsentError(f"could not connect: {exc.os_error or exc}") from exc
        except _ConnectTimeout as exc:
            raise _UnsentError("timed out opening a connection") from exc
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise _UnknownOutcomeError(
                f"no response within {self.settings.timeout:g} s", timeout=True
            ) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise _UnknownOutcomeError(
                "the server closed the connection without a response"
            ) from exc
        except aiohttp.ClientError as exc:
            raise _UnknownOutcomeError(f"connection error: {type(exc).__name__}: {exc}") from exc

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self.settings.max_response_size
        length = resp.content_length
        if length is not None and length > limit:
            raise _TooLargeError(length, limit)
        if length is not None and "Content-Encoding" not in resp.headers:
            return await resp.read()
        # Counted as it is read, decompressed: a small gzip body can inflate far past
        # its Content-Length.
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise _TooLargeError(size, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def _decode(self, body: bytes, cast_to: type[T], method: str, path: str, op: Operation) -> T:
        try:
            data = loads(body)
            return structure(data, cast_to)
        except (ValueError, TypeError, cattrs.BaseValidationError) as exc:
            detail = _describe_bad_body(exc, body)
            if op is not Operation.SAFE:
                # The server said yes, but we cannot tell to what: treat as unknown.
                raise OutcomeUnknownError(
                    f"the response could not be read ({detail}); "
                    "the request may have been processed",
                    method=method,
                    path=path,
                ) from None
            raise APIResponseValidationError(
                f"unexpected response body: {detail}", status=200, method=method, path=path
            ) from None

    def _notify(self, method: str, path: str, attempt: int, delay: float, reason: str) -> None:
        log.info("retrying %s %s in %.2f s (retry %d): %s", method, path, delay, attempt, reason)
        hook = self.pool.on_retry
        if hook is not None:
            try:
                hook(RetryEvent(method, path, attempt, delay, reason))
            except Exception:
                log.exception("on_retry hook raised; ignored")

    @staticmethod
    def _log(
        method: str, path: str, status: int | None, started: float, failure: str | None
    ) -> None:
        if log.isEnabledFor(logging.DEBUG):
            elapsed = (time.perf_counter() - started) * 1000
            log.debug(
                "%s %s -> %s in %.1f ms", method, path, status or f"failed ({failure})", elapsed
            )


class _TooLargeError(_UnknownOutcomeError):
    def __init__(self, size: int, limit: int) -> None:
        # The same request would bring the same body: not worth a retry.
        super().__init__(
            f"response body over the {limit}-byte limit ({size} bytes)", transient=False
        )


def _describe_bad_body(exc: Exception, body: bytes) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc))[:300]
    return f"not JSON: {_excerpt(body)!r}"


def _excerpt(body: bytes, size: int = 160) -> str:
    text = body[:4096].decode("utf-8", "replace")
    text = _SPACE.sub(" ", _TAGS.sub(" ", text)).strip()
    return text[:size] + ("…" if len(text) > size else "")


def _api_error(
    status: int, headers: Mapping[str, str], body: bytes, method: str, path: str
) -> APIError:
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
        excerpt = _excerpt(body)
        message = f"non-JSON error response: {excerpt}" if excerpt else "empty error response"
    if 300 <= status < 400:
        message = f"unexpected redirect to {headers.get('Location', '?')!r} (not followed)"
    cls = ERROR_CODES.get(code or "", APIError)
    if status == 429:
        # A 429 is a rejection whoever sent it (a proxy's page has no code of ours).
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return RateLimitedError(
            message, retry_after=retry_after, status=status, code=code, method=method, path=path
        )
    return cls(message, status=status, code=code, method=method, path=path)
