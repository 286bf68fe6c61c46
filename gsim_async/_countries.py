"""Countries by id, ISO code or name: ``"russia"``, ``"RU"`` and ``"Russia"`` are one country.

Each client keeps the catalogue (``GET /countries``) once it has read it, and resolves
what the caller wrote to the catalogue's id, case-insensitively: an id first, then an
ISO code, then a name.

The server is the judge of ids (design.md, money rule 8): a lowercase id-shaped value
(``"russia"``) is sent as it is when the catalogue does not list it, or was never read
(so the common case costs no request). A catalogue may leave out a country that is out
of stock for a moment, and the server buys nothing for an unknown id: its answer is
what the caller sees. Only ISO codes and names need the catalogue: they are looked up,
the catalogue being read (once) or re-read (when a value is unknown and the copy is not
fresh), and an unknown one raises ``InvalidArgumentError`` naming close matches,
before anything is bought.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
from collections.abc import Awaitable, Callable, Iterable

from ._exceptions import InvalidArgumentError
from ._models import Country

#: A value shaped like a catalogue id: lowercase, no spaces. Sent as it is when the
#: catalogue does not list it. Two letters (``"ru"``) may be an ISO code written small:
#: the catalogue is read for those, but one it does not list still goes to the server.
_ID_SHAPED = re.compile(r"[a-z0-9][a-z0-9_-]*")
#: An unknown value re-reads the catalogue only when the copy is older than this (s):
#: a burst of typos costs one request, a country added since is still found.
REFRESH_AFTER = 10.0
#: How many close matches an error names.
SUGGESTIONS = 5


class CountryCatalogue:
    """One client's copy of the country catalogue, and the lookups that use it."""

    def __init__(self, fetch: Callable[[], Awaitable[list[Country]]]) -> None:
        self._fetch = fetch
        self._keys: dict[str, str] | None = None  # casefolded id / ISO / name -> id
        self._countries: list[Country] = []
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the catalogue was read."""
        return self._keys is not None

    def would_read(self, value: str, *, read: bool = False) -> bool:
        """Whether looking ``value`` up now would read the catalogue (a request)."""
        text = value.strip()
        key = text.casefold()
        if _ID_SHAPED.fullmatch(text):
            return self._keys is None and (read or len(text) == 2)
        return self._keys is None or (
            key not in self._keys and time.monotonic() - self._loaded_at >= REFRESH_AFTER
        )

    def load(self, countries: Iterable[Country]) -> None:
        """Take ``countries`` (the whole catalogue, as ``GET /countries`` lists it)."""
        listed = list(countries)
        keys: dict[str, str] = {}
        # Ids win over ISO codes, which win over names: set the weakest first.
        for attr in ("name", "iso", "id"):
            for country in listed:
                value = getattr(country, attr)
                if isinstance(value, str) and value.strip():
                    keys[value.strip().casefold()] = country.id
        self._keys = keys
        self._countries = listed
        self._loaded_at = time.monotonic()

    async def resolve(self, value: object, *, name: str = "country") -> str:
        """The id to send for ``value``: the catalogue's, or an id-shaped ``value`` itself.

        Raises InvalidArgumentError (naming close matches) for an ISO code or name the
        catalogue does not know.
        """
        country, _ = await self.lookup(value, name=name)
        return country

    async def lookup(
        self, value: object, *, read: bool = False, name: str = "country"
    ) -> tuple[str, bool]:
        """Like ``resolve()``, and whether the catalogue lists the country.

        ``read``: read the catalogue even for an id-shaped value while it is cold (one
        request), so that ``False`` says the catalogue does not list it.
        """
        if not isinstance(value, str) or not value.strip():
            raise InvalidArgumentError(f"{name} must be a non-empty string, got {value!r}")
        text = value.strip()
        key = text.casefold()
        if _ID_SHAPED.fullmatch(text):
            if self._keys is None and (read or len(text) == 2):
                await self._reload()
            listed = self._keys.get(key) if self._keys is not None else None
            # Not listed: the server decides what it is (it may be out of stock for now).
            return (listed, True) if listed is not None else (text, False)
        if self._keys is None or (
            key not in self._keys and time.monotonic() - self._loaded_at >= REFRESH_AFTER
        ):
            await self._reload()
        assert self._keys is not None
        found = self._keys.get(key)
        if found is None:
            raise InvalidArgumentError(self._unknown(name, text))
        return found, True

    async def _reload(self) -> None:
        # Concurrent lookups share one request: whoever holds the lock reads, and the
        # others find a copy newer than the one they saw (or read it, if that failed).
        seen = self._loaded_at
        async with self._lock:
            if self._loaded_at != seen:
                return
            self.load(await self._fetch())

    def _unknown(self, name: str, text: str) -> str:
        spellings: dict[str, str] = {}
        for country in self._countries:
            for value in (country.id, country.iso, country.name):
                if isinstance(value, str) and value.strip():
                    spellings.setdefault(value.casefold(), f"{country.id} ({country.name})")
        close = difflib.get_close_matches(text.casefold(), spellings, n=SUGGESTIONS, cutoff=0.6)
        named = list(dict.fromkeys(spellings[c] for c in close))
        hint = (
            f"; did you mean {', '.join(named)}?"
            if named
            else "; `client.countries()` lists them (by id, ISO code or name)"
        )
        return f"{name} {text!r:.60} is not a known country id, ISO code or name{hint}"


__all__ = ["CountryCatalogue"]
