"""What the sandbox sells: services x countries x operators, and rentable numbers.

The data is fixed (not seeded) so tests can rely on it: for example
telegram in russia costs 0.18 through the cheapest operator, as in the
provider's documentation. Only phone numbers and search results are drawn
from the seeded RNG.
"""

from __future__ import annotations

import random
import re
from collections.abc import Container
from decimal import ROUND_HALF_UP, Decimal

import attrs

from . import _errors

CENT = Decimal("0.01")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")

# (id, display name, price in a country with multiplier 1.0)
_SERVICES: tuple[tuple[str, str, str], ...] = (
    ("telegram", "Telegram", "0.15"),
    ("whatsapp", "WhatsApp", "0.25"),
    ("google", "Google", "0.12"),
    ("discord", "Discord", "0.08"),
    ("instagram", "Instagram", "0.10"),
    ("openai", "OpenAI", "0.30"),
    ("facebook", "Facebook", "0.09"),
    ("twitter", "X (Twitter)", "0.11"),
    ("tiktok", "TikTok", "0.07"),
    ("amazon", "Amazon", "0.14"),
    ("microsoft", "Microsoft", "0.13"),
    ("uber", "Uber", "0.16"),
)

# (id, name, ISO, price multiplier, phone prefixes, digits after prefix, operators)
_Row = tuple[str, str, str, str, tuple[str, ...], int, tuple[tuple[str, str], ...]]
_COUNTRIES: tuple[_Row, ...] = (
    ("russia", "Russia", "RU", "1.2", ("+79",), 9,
     (("mts", "MTS"), ("megafon", "MegaFon"), ("beeline", "Beeline"))),
    ("usa", "United States", "US", "2.0",
     ("+1201", "+1212", "+1213", "+1305", "+1312", "+1415", "+1510", "+1617", "+1646", "+1702"), 7,
     (("tmobile", "T-Mobile"), ("verizon", "Verizon"), ("att", "AT&T"))),
    ("uk", "United Kingdom", "GB", "1.8", ("+447",), 9,
     (("ee", "EE"), ("vodafone", "Vodafone"), ("three", "Three"))),
    ("india", "India", "IN", "0.6", ("+916", "+917", "+918", "+919"), 9,
     (("jio", "Jio"), ("airtel", "Airtel"), ("vi", "Vi"))),
    ("indonesia", "Indonesia", "ID", "0.5", ("+628",), 10,
     (("telkomsel", "Telkomsel"), ("indosat", "Indosat"))),
    ("brazil", "Brazil", "BR", "0.9", ("+55119", "+55219"), 8,
     (("vivo", "Vivo"), ("claro", "Claro"), ("tim", "TIM"))),
    ("germany", "Germany", "DE", "1.6", ("+49151", "+49160", "+49176"), 8,
     (("telekom", "Telekom"), ("vodafone", "Vodafone"), ("o2", "O2"))),
    ("kazakhstan", "Kazakhstan", "KZ", "0.8", ("+7700", "+7707", "+7747"), 7,
     (("kcell", "Kcell"), ("beeline", "Beeline"))),
    ("philippines", "Philippines", "PH", "0.7", ("+639",), 9,
     (("globe", "Globe"), ("smart", "Smart"))),
)  # fmt: skip

# Named operators of a country cost base, +10 %, +25 %; "any" takes the cheapest in stock.
_OPERATOR_FACTORS = (Decimal("1.00"), Decimal("1.10"), Decimal("1.25"))


@attrs.define(slots=True)
class Offer:
    """One operator's numbers for one service in one country."""

    service: str
    country: str
    operator: str
    operator_name: str
    price: Decimal
    stock: int


@attrs.frozen(slots=True)
class Country:
    """A country orders can be placed in."""

    id: str
    name: str
    iso: str
    phone_prefixes: tuple[str, ...]
    phone_digits: int

    def phone_number(self, rng: random.Random) -> str:
        """A random E.164 mobile number of this country."""
        prefix = rng.choice(self.phone_prefixes)
        first = rng.choice("23456789")
        rest = "".join(rng.choices("0123456789", k=self.phone_digits - 1))
        return prefix + first + rest


class Catalogue:
    """Services, countries, operators with prices and stock (stock goes down on purchase)."""

    def __init__(self, stock: int = 100_000) -> None:
        self.service_names: dict[str, str] = {sid: name for sid, name, _ in _SERVICES}
        self.countries: dict[str, Country] = {}
        self._offers: dict[tuple[str, str], list[Offer]] = {}
        for cid, cname, iso, mult, prefixes, digits, operators in _COUNTRIES:
            self.countries[cid] = Country(cid, cname, iso, prefixes, digits)
            for sid, _, base in _SERVICES:
                offers = []
                for (oid, oname), factor in zip(operators, _OPERATOR_FACTORS, strict=False):
                    price = (Decimal(base) * Decimal(mult) * factor).quantize(CENT, ROUND_HALF_UP)
                    offers.append(Offer(sid, cid, oid, oname, max(price, CENT), stock))
                self._offers[sid, cid] = offers
        self.version = 0  # bumped on every stock change; keys the rendered-JSON caches

    def offers(self, service: str, country: str) -> list[Offer]:
        """The named operators for a service in a country, cheapest first."""
        return self._offers[service, country]

    def check_service(self, service: str, field: str = "service") -> None:
        """Raise 400 VALIDATION_ERROR naming ``field`` for an unknown service id."""
        if service not in self.service_names:
            raise _errors.validation(f"{field} {service!r} is not a known service id")

    def check_country(self, country: str, field: str = "country") -> None:
        """Raise 400 VALIDATION_ERROR naming ``field`` for an unknown country id."""
        if country not in self.countries:
            raise _errors.validation(f"{field} {country!r} is not a known country id")

    def check_operator(self, operator: str, field: str = "operator") -> None:
        """Raise 400 VALIDATION_ERROR naming ``field`` for an operator of no country."""
        if not any(o.operator == operator for offers in self._offers.values() for o in offers):
            raise _errors.validation(f"{field} {operator!r} is not a known operator id")

    def choose(self, service: str, country: str, operator: str | None) -> Offer:
        """The offer a purchase takes its number from; raises the API's errors."""
        self.check_service(service)
        self.check_country(country)
        offers = self._offers[service, country]
        if operator is None or operator == "any":
            for offer in offers:
                if offer.stock > 0:
                    return offer
            raise _errors.provider_error(f"no numbers available for {service} in {country}")
        for offer in offers:
            if offer.operator == operator:
                if offer.stock <= 0:
                    raise _errors.provider_error(
                        f"no numbers available for {service} in {country} on {operator}"
                    )
                return offer
        raise _errors.validation(f"operator {operator!r} is not available in {country}")

    def take(self, offer: Offer) -> None:
        """One number of ``offer`` was sold."""
        offer.stock -= 1
        self.version += 1

    def set_stock(self, service: str, country: str, operator: str | None, count: int) -> None:
        """Set the stock of one operator (or of every operator with ``None``/``"any"``)."""
        self.check_service(service)
        self.check_country(country)
        if count < 0:
            raise ValueError("count must be >= 0")
        matched = False
        for offer in self._offers[service, country]:
            if operator in (None, "any", offer.operator):
                offer.stock = count
                matched = True
        if not matched:
            raise ValueError(f"operator {operator!r} is not available in {country}")
        self.version += 1

    # -- wire payloads (camelCase, Decimal money) --

    def services_payload(self) -> list[dict[str, object]]:
        """``GET /services``."""
        result: list[dict[str, object]] = []
        for sid, name in self.service_names.items():
            prices = []
            count = 0
            for cid in self.countries:
                for offer in self._offers[sid, cid]:
                    prices.append(offer.price)
                    count += offer.stock
            result.append({"id": sid, "name": name, "minPrice": min(prices), "count": count})
        return result

    def countries_payload(self, service: str | None) -> list[dict[str, object]]:
        """``GET /countries``, for one service or across all of them."""
        services = [service] if service is not None else list(self.service_names)
        result: list[dict[str, object]] = []
        for cid, country in self.countries.items():
            prices = []
            count = 0
            for sid in services:
                for offer in self._offers[sid, cid]:
                    prices.append(offer.price)
                    count += offer.stock
            result.append(
                {
                    "id": cid,
                    "name": country.name,
                    "iso": country.iso,
                    "minPrice": min(prices),
                    "count": count,
                }
            )
        return result

    def operators_payload(self, service: str, country: str) -> list[dict[str, object]]:
        """``GET /operators``: "any" (cheapest price in stock, total count) then each operator."""
        offers = self._offers[service, country]
        in_stock = [o.price for o in offers if o.stock > 0]
        any_price = min(in_stock) if in_stock else offers[0].price
        result: list[dict[str, object]] = [
            {"id": "any", "name": "Any", "price": any_price, "count": sum(o.stock for o in offers)}
        ]
        result.extend(
            {"id": o.operator, "name": o.operator_name, "price": o.price, "count": o.stock}
            for o in offers
        )
        return result


# -- rentals --------------------------------------------------------------

NUMBER_TYPES = ("LOCAL", "MOBILE", "TOLL_FREE")
# The search query spells types as Local/Mobile/TollFree; numberType in bodies as LOCAL/...
SEARCH_TYPES = {"Local": "LOCAL", "Mobile": "MOBILE", "TollFree": "TOLL_FREE"}
BASE_MONTHLY = {"LOCAL": Decimal("1.15"), "MOBILE": Decimal("2.00"), "TOLL_FREE": Decimal("2.50")}
RENTAL_MARKUP = Decimal("1.30")
SMS_FEE = Decimal("0.05")


def marked_up(base: Decimal) -> Decimal:
    """The monthly price charged for a base price from search (1.15 -> 1.50)."""
    return (base * RENTAL_MARKUP).quantize(CENT, ROUND_HALF_UP)


@attrs.frozen(slots=True)
class _Area:
    prefix: str  # national digits after the country code
    locality: str | None
    region: str | None


@attrs.frozen(slots=True)
class _RentalCountry:
    calling_code: str
    nsn_digits: int  # national significant number length
    nanp: bool
    areas: dict[str, tuple[_Area, ...]]  # number type -> areas


def _areas(*rows: tuple[str, str | None, str | None]) -> tuple[_Area, ...]:
    return tuple(_Area(*row) for row in rows)


_NANP_TOLL_FREE = _areas(*((p, None, None) for p in ("800", "833", "844", "855", "866", "877")))
_US_AREAS = _areas(
    ("510", "Oakland", "CA"),
    ("415", "San Francisco", "CA"),
    ("213", "Los Angeles", "CA"),
    ("212", "New York", "NY"),
    ("646", "New York", "NY"),
    ("312", "Chicago", "IL"),
    ("617", "Boston", "MA"),
    ("206", "Seattle", "WA"),
    ("305", "Miami", "FL"),
    ("512", "Austin", "TX"),
)
_CA_AREAS = _areas(
    ("416", "Toronto", "ON"),
    ("604", "Vancouver", "BC"),
    ("514", "Montreal", "QC"),
    ("403", "Calgary", "AB"),
)

RENTAL_COUNTRIES: dict[str, _RentalCountry] = {
    "US": _RentalCountry("1", 10, True, {
        "LOCAL": _US_AREAS, "MOBILE": _US_AREAS, "TOLL_FREE": _NANP_TOLL_FREE}),
    "CA": _RentalCountry("1", 10, True, {
        "LOCAL": _CA_AREAS, "MOBILE": _CA_AREAS, "TOLL_FREE": _NANP_TOLL_FREE}),
    "GB": _RentalCountry("44", 10, False, {
        "LOCAL": _areas(("20", "London", "England"), ("161", "Manchester", "England"),
                        ("121", "Birmingham", "England"), ("131", "Edinburgh", "Scotland")),
        "MOBILE": _areas(("7400", None, None), ("7700", None, None), ("7900", None, None)),
        "TOLL_FREE": _areas(("800", None, None), ("808", None, None))}),
    "DE": _RentalCountry("49", 10, False, {
        "LOCAL": _areas(("30", "Berlin", "BE"), ("40", "Hamburg", "HH"),
                        ("89", "Munich", "BY"), ("221", "Cologne", "NW")),
        "MOBILE": _areas(("151", None, None), ("160", None, None), ("176", None, None)),
        "TOLL_FREE": _areas(("800", None, None),)}),
    "NL": _RentalCountry("31", 9, False, {
        "LOCAL": _areas(("20", "Amsterdam", "NH"), ("10", "Rotterdam", "ZH")),
        "MOBILE": _areas(("6", None, None),),
        "TOLL_FREE": _areas(("800", None, None),)}),
    "AU": _RentalCountry("61", 9, False, {
        "LOCAL": _areas(("2", "Sydney", "NSW"), ("3", "Melbourne", "VIC"),
                        ("7", "Brisbane", "QLD")),
        "MOBILE": _areas(("4", None, None),),
        "TOLL_FREE": _areas(("1800", None, None),)}),
}  # fmt: skip


@attrs.frozen(slots=True)
class AvailableNumber:
    """A number offered by ``GET /rentals/search``; remembered so a purchase can be checked."""

    phone_number: str
    friendly_name: str
    locality: str | None
    region: str | None
    iso_country: str
    number_type: str
    voice: bool
    sms: bool
    mms: bool
    base_price: Decimal

    def payload(self) -> dict[str, object]:
        """The search result on the wire (plus numberType and the base monthlyPrice)."""
        return {
            "friendlyName": self.friendly_name,
            "phoneNumber": self.phone_number,
            "locality": self.locality,
            "region": self.region,
            "isoCountry": self.iso_country,
            "numberType": self.number_type,
            "monthlyPrice": self.base_price,
            "capabilities": {"voice": self.voice, "SMS": self.sms, "MMS": self.mms},
        }


def _capabilities(number_type: str, rng: random.Random) -> tuple[bool, bool, bool]:
    if number_type == "MOBILE":
        return True, True, True
    if number_type == "TOLL_FREE":
        return True, True, False
    # Some landlines take no SMS, as on the real market; the filters see both kinds.
    sms = rng.random() < 0.8
    return rng.random() < 0.95 or not sms, sms, sms and rng.random() < 0.7


def _friendly(spec: _RentalCountry, phone: str) -> str:
    national = phone[1 + len(spec.calling_code) :]
    return f"({national[:3]}) {national[3:6]}-{national[6:]}" if spec.nanp else phone


def _placed(
    phone: str, number_type: str | None, iso: str | None
) -> tuple[str, str, _RentalCountry, _Area] | None:
    """The served country, number type and area that ``phone``'s digits fall in, if any."""
    for country, spec in RENTAL_COUNTRIES.items():
        national = phone[1 + len(spec.calling_code) :]
        if iso not in (None, country) or not phone.startswith("+" + spec.calling_code):
            continue
        if len(national) != spec.nsn_digits:
            continue
        for kind in NUMBER_TYPES if number_type is None else (number_type,):
            for area in spec.areas[kind]:
                if national.startswith(area.prefix):
                    return country, kind, spec, area
    return None


def describe_number(phone: str, number_type: str | None, iso: str | None) -> AvailableNumber:
    """A number search never offered, made rentable: its country and type come from its
    digits (a known area of a served country) or from ``number_type`` and ``iso``.

    Raises 400 VALIDATION_ERROR when neither tells them.
    """
    if number_type is not None and number_type not in NUMBER_TYPES:
        raise _errors.validation(f"numberType must be one of {', '.join(NUMBER_TYPES)}")
    placed = _placed(phone, number_type, iso)
    if placed is not None:
        iso, number_type, spec, area = placed
        friendly, locality, region = _friendly(spec, phone), area.locality, area.region
    elif number_type is None or iso is None:
        raise _errors.validation(
            f"cannot tell the country and type of {phone}: give number_type and country"
        )
    else:
        friendly, locality, region = phone, None, None
    return AvailableNumber(
        phone_number=phone,
        friendly_name=friendly,
        locality=locality,
        region=region,
        iso_country=iso,
        number_type=number_type,
        voice=True,
        sms=True,
        mms=number_type != "TOLL_FREE",
        base_price=BASE_MONTHLY[number_type],
    )


def search_numbers(
    rng: random.Random,
    iso: str,
    number_type: str,
    *,
    count: int,
    area_code: str | None,
    contains: str | None,
    sms: bool | None,
    voice: bool | None,
    taken: Container[str],
) -> list[AvailableNumber]:
    """Up to ``count`` numbers matching the filters; none for an unknown country or area."""
    spec = RENTAL_COUNTRIES.get(iso)
    if spec is None:
        return []
    areas = spec.areas[number_type]
    if area_code is not None:
        areas = tuple(a for a in areas if a.prefix == area_code)
    if not areas:
        return []
    found: list[AvailableNumber] = []
    seen: set[str] = set()
    for _ in range(count * 20):
        if len(found) >= count:
            break
        area = rng.choice(areas)
        free = spec.nsn_digits - len(area.prefix)
        if contains is not None and len(contains) > free:
            return []
        # NANP exchanges never start with 0 or 1.
        digits = [rng.choice("23456789") if spec.nanp and i == 0 else rng.choice("0123456789")
                  for i in range(free)]  # fmt: skip
        if contains is not None:
            at = rng.randrange(free - len(contains) + 1)
            digits[at : at + len(contains)] = list(contains)
            if spec.nanp and digits[0] in "01":
                continue
        national = area.prefix + "".join(digits)
        phone = f"+{spec.calling_code}{national}"
        if phone in seen or phone in taken:
            continue
        has_voice, has_sms, has_mms = _capabilities(number_type, rng)
        if (sms is not None and has_sms != sms) or (voice is not None and has_voice != voice):
            continue
        seen.add(phone)
        found.append(
            AvailableNumber(
                phone_number=phone,
                friendly_name=_friendly(spec, phone),
                locality=area.locality,
                region=area.region,
                iso_country=iso,
                number_type=number_type,
                voice=has_voice,
                sms=has_sms,
                mms=has_mms,
                base_price=BASE_MONTHLY[number_type],
            )
        )
    return found
