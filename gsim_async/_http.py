"""The HTTP layer under the transport: one aiohttp session, one send, one error table.

``send`` either returns the server's ``Answer`` or raises ``NoAnswer``,
which says whether the request provably never left (``unsent``: the connection could
not be opened, nothing can have happened) or may have been carried out. Every aiohttp
failure is classified by one table, ``_FAILURES`` (httpx's ``map_exceptions``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy

from . import _constants as C
from ._exceptions import ClientClosedError, InvalidArgumentError

_ConnectTimeout: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(aiohttp, "ConnectionTimeoutError", None),) if t is not None
)


class Answer(NamedTuple):
    """What the server sent back."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class NoAnswer(Exception):  # noqa: N818 - an outcome, caught by the transport, never raised to users
    """No usable answer.

    ``unsent``: the request provably never reached the server. ``timeout``: its
    deadline passed. ``transient``: trying again may help.
    """

    def __init__(
        self, reason: str, *, unsent: bool, timeout: bool = False, transient: bool = True
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unsent = unsent
        self.timeout = timeout
        self.transient = transient


_Say = Callable[[BaseException, float], str]

# (aiohttp errors, provably unsent, a timeout, worth retrying, what to say): first match wins.
_FAILURES: tuple[tuple[tuple[type[BaseException], ...], bool, bool, bool, _Say], ...] = (
    ((aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError), True, False, False,
     lambda e, t: f"TLS error: {e}"),
    ((aiohttp.ClientConnectorError,), True, False, True,
     lambda e, t: f"could not connect: {getattr(e, 'os_error', None) or e}"),
    (_ConnectTimeout, True, True, True, lambda e, t: "timed out opening a connection"),
    ((asyncio.TimeoutError, aiohttp.ServerTimeoutError), False, True, True,
     lambda e, t: f"no response within {t:g} s"),
    ((aiohttp.ServerDisconnectedError,), False, False, True,
     lambda e, t: "the server closed the connection without a response"),
    ((aiohttp.ClientError,), False, False, True,
     lambda e, t: f"connection error: {type(e).__name__}: {e}"),
)  # fmt: skip


def classify(exc: Exception, timeout: float) -> NoAnswer | None:
    """The ``NoAnswer`` an aiohttp failure means (by ``_FAILURES``), or None."""
    if isinstance(exc, NoAnswer):
        return exc
    for types, unsent, timed_out, transient, say in _FAILURES:
        if types and isinstance(exc, types):
            failure = NoAnswer(
                say(exc, timeout), unsent=unsent, timeout=timed_out, transient=transient
            )
            failure.__cause__ = exc
            return failure
    return None


class TooLarge(NoAnswer):
    """The body was over the size limit: the same request would bring the same body."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"response body over the {limit}-byte limit ({size} bytes)",
            unsent=False,
            transient=False,
        )


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


class Session:
    """One aiohttp session for every view of a client, bound to one event loop."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        connection_limit: int = C.DEFAULT_CONNECTION_LIMIT,
        dns_cache_ttl: int | None = C.DEFAULT_DNS_CACHE_TTL,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._connection_limit = connection_limit
        self._dns_cache_ttl = dns_cache_ttl
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def get(self) -> aiohttp.ClientSession:
        """The aiohttp session, created on first use inside the running loop."""
        if self.closed:
            raise ClientClosedError("this gsim Client is closed; create a new one")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ClientClosedError(
                "gsim Client must be used from a running asyncio event loop "
                "(inside an 'async def' run by asyncio.run or anyio.run)"
            ) from None
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise ClientClosedError(
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

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the client was first used in."""
        return self._loop

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


async def read_body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes (counted decompressed, as it is read)."""
    length = resp.content_length
    if length is not None and length > limit:
        raise TooLarge(length, limit)
    if length is not None and "Content-Encoding" not in resp.headers:
        return await resp.read()
    # A small gzip body can inflate far past its Content-Length.
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise TooLarge(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)
