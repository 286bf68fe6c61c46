"""The ``/api/v1`` handlers (docs/architecture.md, "The sandbox"): parse the wire, call the books.

Both purchases (``POST /orders``, ``POST /rentals``) go through one path,
``Api.purchase``, which is where the faults a purchase can meet apply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web

from . import _catalogue, _errors
from ._accounts import Account
from ._faults import FaultInjector, drop
from ._http import (
    bool_field,
    bool_param,
    choice_param,
    digits_param,
    int_param,
    iso_field,
    iso_param,
    json_object,
    json_response,
    money_field,
    one_param,
    phone_field,
    reply,
    required_str,
)
from ._json import dumps
from ._orders import ORDER_STATUSES
from ._rentals import RENTAL_STATUSES, Call, Message, page_of
from ._state import State
from ._tasks import Background
from ._timestamps import Timestamps

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: ``/rentals/{id}``, whose id is never ``search`` (that path is the search resource).
RENTAL = "/rentals/{id:(?!search$)[^/]+}"
Q = TypeVar("Q")
P = TypeVar("P")


class Api:
    """Handlers of ``/api/v1`` bound to one sandbox's state and faults."""

    def __init__(
        self, state: State, injector: FaultInjector, background: Background, ts: Timestamps
    ) -> None:
        self.state = state
        self.injector = injector
        self.background = background
        self.ts = ts
        self._cache: dict[str, tuple[int, str]] = {}

    def routes(self) -> list[tuple[str, str, Handler]]:
        """Every documented route under ``/api/v1``.

        ``/rentals/search`` is a resource of its own: ``{id}`` never matches
        ``search``, so ``PATCH /rentals/search`` is a 405 like ``POST``, and their
        ``Allow`` names only its own methods.
        """
        return [
            ("GET", "/balance", self.balance),
            ("GET", "/services", self.services),
            ("GET", "/countries", self.countries),
            ("GET", "/operators", self.operators),
            ("GET", "/orders", self.list_orders),
            ("POST", "/orders", self.create_order),
            ("GET", "/orders/{id}", self.get_order),
            ("POST", "/orders/{id}/cancel", self.cancel_order),
            ("POST", "/orders/{id}/ban", self.ban_order),
            ("GET", "/rentals/search", self.search_rentals),
            ("GET", "/rentals", self.list_rentals),
            ("POST", "/rentals", self.create_rental),
            ("GET", RENTAL, self.get_rental),
            ("PATCH", RENTAL, self.update_rental),
            ("DELETE", RENTAL, self.delete_rental),
            ("GET", "/rentals/{id}/sms", self.list_sms),
            ("POST", "/rentals/{id}/sms", self.send_sms),
            ("GET", "/rentals/{id}/calls", self.list_calls),
            ("POST", "/rentals/{id}/calls", self.place_call),
        ]

    # -- shared steps --

    def _account(self, request: web.Request) -> Account:
        return self.state.accounts.authenticate(request.headers.get("Authorization"))

    async def purchase(
        self,
        quote: Callable[[], Q],
        place: Callable[[Q], P],
        render: Callable[[P], object],
    ) -> web.StreamResponse:
        """Buy what ``quote`` offers, meeting on the way the faults a purchase can meet.

        Validated at once (its 4xx answers at once), then: a provider 503, the
        processing time (the purchase is checked again and takes effect at its
        end, even if the client hangs up), a drop after charging, an
        unreadable 200.
        """
        injector = self.injector
        if injector.roll(injector.faults.drop_purchase_before_rate):
            return drop()  # cut before the application saw it: nothing happens
        quoted = quote()
        if injector.roll(injector.faults.provider_error_rate):
            raise _errors.provider_error()
        delay = injector.purchase_delay()
        if delay > 0.0:
            # Shielded: a client that hangs up does not stop a purchase under way.
            placed = await asyncio.shield(self.background.spawn(_place_later(delay, quote, place)))
        else:
            placed = place(quoted)
        if injector.faults.purchase_answer_delay > 0.0:
            await asyncio.sleep(injector.faults.purchase_answer_delay)
        if injector.roll(injector.faults.drop_after_purchase_rate):
            return drop()
        return self._happened(render(placed))

    def _happened(self, payload: object) -> web.Response:
        """The 200 of an action that happened (charged, created, sent), maybe unreadable."""
        text = dumps(payload)
        if self.injector.roll(self.injector.faults.unreadable_2xx_rate):
            # Cut in half: a JSON object missing its end, which no parser accepts.
            text = text[: len(text) // 2]
        return json_response(text)

    def _cached(self, key: str, build: Callable[[], object]) -> web.Response:
        # Catalogue answers change only with stock; re-render after a purchase.
        version = self.state.catalogue.version
        hit = self._cache.get(key)
        if hit is None or hit[0] != version:
            hit = (version, dumps(build()))
            self._cache[key] = hit
        return json_response(hit[1])

    # -- account and catalogue --

    async def balance(self, request: web.Request) -> web.Response:
        """GET /balance."""
        account = self._account(request)
        return reply({"balance": account.balance, "currency": "USD"})

    async def services(self, request: web.Request) -> web.Response:
        """GET /services."""
        self._account(request)
        return self._cached("services", self.state.catalogue.services_payload)

    async def countries(self, request: web.Request) -> web.Response:
        """GET /countries?service=."""
        self._account(request)
        catalogue = self.state.catalogue
        service = one_param(request.query, "service")
        if service is not None:
            catalogue.check_service(service)  # an empty one is no service id either
        hidden = self.injector.faults.countries_hidden

        def listed() -> list[dict[str, object]]:
            return [c for c in catalogue.countries_payload(service) if c["id"] not in hidden]

        return self._cached(f"countries:{service}:{','.join(hidden)}", listed)

    async def operators(self, request: web.Request) -> web.Response:
        """GET /operators?service=&country= (both required)."""
        self._account(request)
        catalogue = self.state.catalogue
        service = one_param(request.query, "service")
        country = one_param(request.query, "country")
        if not service:
            raise _errors.validation("service is required")
        if not country:
            raise _errors.validation("country is required")
        catalogue.check_service(service)
        catalogue.check_country(country)
        return self._cached(
            f"operators:{service}:{country}",
            lambda: catalogue.operators_payload(service, country),
        )

    # -- orders --

    async def list_orders(self, request: web.Request) -> web.Response:
        """GET /orders?page=&limit=&status=, newest first."""
        account = self._account(request)
        query = request.query
        page = int_param(query, "page", 1, None)
        limit = int_param(query, "limit", 20, 100)
        status = choice_param(query, "status", ORDER_STATUSES)
        items, total = self.state.orders.page(account, status, page, limit)
        ts = self.ts
        if self.injector.faults.list_omits_code:
            shown: list[object] = [o.listed_without_code(ts) for o in items]
        else:
            shown = [o.wire(ts) for o in items]
        return reply(
            {
                "orders": shown,
                "total": total,
                "page": page,
                "limit": limit,
                "totalPages": -(-total // limit),
            }
        )

    async def create_order(self, request: web.Request) -> web.StreamResponse:
        """POST /orders: charge and return a PENDING order."""
        account = self._account(request)
        body = await json_object(request)
        service = required_str(body, "service")
        country = required_str(body, "country")
        operator = body.get("operator")
        # Documented: omit it for any; null is not one of its values.
        if "operator" in body and (not isinstance(operator, str) or not operator):
            raise _errors.validation("operator must be a non-empty string (omit it for any)")
        orders = self.state.orders
        return await self.purchase(
            lambda: orders.quote(account, service, country, operator),
            lambda offer: orders.place(account, offer, buyer=request.remote),
            lambda order: order.purchase_payload(self.ts),
        )

    async def get_order(self, request: web.Request) -> web.Response:
        """GET /orders/{id}."""
        order_id = request.match_info["id"]
        delay = self.injector.order_latency.get(order_id)
        if delay:
            await asyncio.sleep(delay)
        order = self.state.orders.get(self._account(request), order_id)
        return json_response(order.wire(self.ts).text)

    async def cancel_order(self, request: web.Request) -> web.Response:
        """POST /orders/{id}/cancel: refund a PENDING order."""
        return self._end_order(request, "CANCELLED")

    async def ban_order(self, request: web.Request) -> web.Response:
        """POST /orders/{id}/ban: report the number, refund a PENDING order."""
        return self._end_order(request, "BANNED")

    def _end_order(self, request: web.Request, status: str) -> web.Response:
        account = self._account(request)
        if self.injector.roll(self.injector.faults.refund_error_rate):
            raise _errors.provider_error()
        refunded = self.state.orders.end(account, request.match_info["id"], status)
        return reply({"success": True, "refunded": refunded})

    # -- rentals --

    async def search_rentals(self, request: web.Request) -> web.Response:
        """GET /rentals/search?country=&type=&smsEnabled=&voiceEnabled=&areaCode=&contains=."""
        self._account(request)
        query = request.query
        country = iso_param(query, "country")
        # The search spells types Local, Mobile, TollFree; LOCAL... is the purchase's spelling.
        search_type = choice_param(query, "type", _catalogue.SEARCH_TYPES) or "Local"
        number_type = _catalogue.SEARCH_TYPES[search_type]
        sms = bool_param(query, "smsEnabled")
        voice = bool_param(query, "voiceEnabled")
        area_code = digits_param(query, "areaCode", "digits, e.g. 510")
        contains = digits_param(query, "contains", "a pattern of digits, e.g. 555")
        page_size = int_param(query, "pageSize", 20, 50)
        numbers = self.state.rentals.search(
            country,
            number_type,
            page_size=page_size,
            area_code=area_code,
            contains=contains,
            sms=sms,
            voice=voice,
        )
        return reply({"numbers": [n.payload() for n in numbers]})

    async def list_rentals(self, request: web.Request) -> web.Response:
        """GET /rentals?page=&limit=&status= (answer has no limit/totalPages, as documented)."""
        account = self._account(request)
        query = request.query
        page = int_param(query, "page", 1, None)
        limit = int_param(query, "limit", 20, 100)
        status = choice_param(query, "status", RENTAL_STATUSES)
        items, total = self.state.rentals.page(account, status, page, limit)
        ts = self.ts
        return reply({"rentals": [r.payload(ts) for r in items], "total": total, "page": page})

    async def create_rental(self, request: web.Request) -> web.StreamResponse:
        """POST /rentals: buy a number found by search, at the provider's markup."""
        account = self._account(request)
        body = await json_object(request)
        phone = phone_field(body, "phoneNumber")
        number_type = required_str(body, "numberType")
        if number_type not in _catalogue.NUMBER_TYPES:
            raise _errors.validation(
                f"numberType must be one of {', '.join(_catalogue.NUMBER_TYPES)}"
            )
        iso = iso_field(body, "country")
        price = money_field(body, "monthlyPrice")
        rentals = self.state.rentals
        return await self.purchase(
            lambda: rentals.quote(account, phone, number_type, iso, price),
            lambda offered: rentals.place(account, offered, buyer=request.remote),
            lambda rental: rental.payload(self.ts),
        )

    async def get_rental(self, request: web.Request) -> web.Response:
        """GET /rentals/{id}: the rental with its recent messages and calls."""
        rental = self.state.rentals.get(self._account(request), request.match_info["id"])
        return reply(rental.payload(self.ts, detail=True))

    async def update_rental(self, request: web.Request) -> web.Response:
        """PATCH /rentals/{id}: set only the fields sent; answer with exactly those."""
        account = self._account(request)
        rental_id = request.match_info["id"]
        rentals = self.state.rentals
        rentals.get(account, rental_id)
        body = await json_object(request)
        # Validate every field before applying any, so a bad request changes nothing.
        auto_renew = bool_field(body, "autoRenew") if "autoRenew" in body else None
        voicemail = bool_field(body, "voicemailEnabled") if "voicemailEnabled" in body else None
        forwarding: str | None = None
        if body.get("forwardingNumber") is not None:
            forwarding = phone_field(body, "forwardingNumber")
        name = body.get("friendlyName")
        # Only forwardingNumber documents null (to turn forwarding off).
        if "friendlyName" in body and (not isinstance(name, str) or len(name) > 64):
            raise _errors.validation("friendlyName must be a string of at most 64 characters")
        fields: dict[str, Any] = {}
        if auto_renew is not None:
            fields["autoRenew"] = auto_renew
        if "forwardingNumber" in body:
            fields["forwardingNumber"] = forwarding  # null turns forwarding off
        if voicemail is not None:
            fields["voicemailEnabled"] = voicemail
        if "friendlyName" in body:
            fields["friendlyName"] = name
        rental = rentals.update(account, rental_id, fields)
        return reply({"id": rental.id, **fields})

    async def delete_rental(self, request: web.Request) -> web.Response:
        """DELETE /rentals/{id}: release the number (the rental stays listed as CANCELLED)."""
        self.state.rentals.release(self._account(request), request.match_info["id"])
        return json_response('{"success":true}')

    async def list_sms(self, request: web.Request) -> web.Response:
        """GET /rentals/{id}/sms?page=&limit=, newest first."""
        rental = self.state.rentals.get(self._account(request), request.match_info["id"])
        return self._rental_page(request, "messages", rental.messages)

    async def send_sms(self, request: web.Request) -> web.Response:
        """POST /rentals/{id}/sms: queue an SMS and charge the per-SMS fee."""
        account = self._account(request)
        rental_id = request.match_info["id"]
        rentals = self.state.rentals
        rentals.get(account, rental_id)
        body = await json_object(request)
        to = phone_field(body, "to")
        text = body.get("body")
        if text is None:
            raise _errors.validation("body is required")
        if not isinstance(text, str) or not 1 <= len(text) <= 1600:
            raise _errors.validation("body must be a string of 1 to 1600 characters")
        message = rentals.send_sms(account, rental_id, to, text)
        sid = self.state.ids.new_sid("SM")
        return self._happened({"id": message.id, "status": "queued", "twilioSid": sid})

    async def list_calls(self, request: web.Request) -> web.Response:
        """GET /rentals/{id}/calls?page=&limit=, newest first."""
        rental = self.state.rentals.get(self._account(request), request.match_info["id"])
        return self._rental_page(request, "calls", rental.calls)

    async def place_call(self, request: web.Request) -> web.Response:
        """POST /rentals/{id}/calls: start a call."""
        account = self._account(request)
        rental_id = request.match_info["id"]
        rentals = self.state.rentals
        rentals.get(account, rental_id)
        body = await json_object(request)
        to = phone_field(body, "to")
        call = rentals.place_call(account, rental_id, to)
        sid = self.state.ids.new_sid("CA")
        return self._happened({"id": call.id, "status": call.status, "twilioSid": sid})

    def _rental_page(
        self, request: web.Request, key: str, records: Sequence[Message] | Sequence[Call]
    ) -> web.Response:
        """One page of a rental's SMS or calls: ``{key: [...], "total": n}``."""
        page = int_param(request.query, "page", 1, None)
        limit = int_param(request.query, "limit", 50, 100)
        items: Sequence[Message | Call] = page_of(records, page, limit)
        ts = self.ts
        return reply({key: [r.payload(ts) for r in items], "total": len(records)})


async def _place_later(delay: float, quote: Callable[[], Q], place: Callable[[Q], P]) -> P:
    await asyncio.sleep(delay)
    # Checked again: the stock or the money may have gone while this one was processed.
    return place(quote())
