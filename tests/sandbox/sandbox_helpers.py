"""Plain-aiohttp helpers for the sandbox's own tests (the SDK client is not used here)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import aiohttp
import attrs
from multidict import CIMultiDictProxy

from gsim_async.sandbox import Sandbox

_DEFAULT = object()


@attrs.frozen
class Reply:
    """An answer: status, JSON body (numbers with a fraction as Decimal), raw text, headers."""

    status: int
    text: str
    headers: CIMultiDictProxy[str]

    @property
    def body(self) -> Any:
        return json.loads(self.text, parse_float=Decimal)

    @property
    def error_code(self) -> str:
        return str(self.body["code"])


class Caller:
    """Plain HTTP calls to a sandbox, authenticated with ``key`` unless told otherwise."""

    def __init__(self, session: aiohttp.ClientSession, sb: Sandbox) -> None:
        self.session = session
        self.sb = sb
        self.key: str | None = sb.api_key

    async def request(
        self,
        method: str,
        path: str,
        *,
        key: object = _DEFAULT,
        json: object = None,
        data: str | bytes | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """``path`` is relative to ``/api/v1`` unless it starts with ``/``."""
        url = self.sb.base_url + (path if path.startswith("/") else "/api/v1/" + path)
        all_headers = dict(headers or {})
        used = self.key if key is _DEFAULT else key
        if used is not None:
            all_headers.setdefault("Authorization", f"Bearer {used}")
        async with self.session.request(
            method, url, json=json, data=data, params=params, headers=all_headers
        ) as resp:
            return Reply(resp.status, await resp.text(), resp.headers)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: object = None, **kw: Any) -> Reply:
        return await self.request("POST", path, json=json, **kw)

    async def patch(self, path: str, json: object = None, **kw: Any) -> Reply:
        return await self.request("PATCH", path, json=json, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.request("DELETE", path, **kw)

    async def buy(self, service: str = "telegram", country: str = "russia", **kw: Any) -> Any:
        """POST /orders that must succeed; returns the order."""
        reply = await self.post("orders", {"service": service, "country": country, **kw})
        assert reply.status == 200, reply.text
        return reply.body

    async def offer(self, country: str = "US", type_: str = "Local") -> dict[str, Any]:
        """The ``POST /rentals`` body for the first number a search finds."""
        found = await self.get("rentals/search", params={"country": country, "type": type_})
        number = found.body["numbers"][0]
        return {
            "phoneNumber": number["phoneNumber"],
            "numberType": number["numberType"],
            "country": country,
            "monthlyPrice": float(number["monthlyPrice"]),
        }

    async def rent(self, country: str = "US", type_: str = "Local") -> Any:
        """Search and rent the first number; returns the rental."""
        reply = await self.post("rentals", await self.offer(country, type_))
        assert reply.status == 200, reply.text
        return reply.body
