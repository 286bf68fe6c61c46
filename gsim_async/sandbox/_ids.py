"""Seeded names: opaque ids, Twilio-style sids and API keys.

One random stream per kind, so creating another key does not shift the ids
drawn after it.
"""

from __future__ import annotations

import random
import string

_ALNUM = string.ascii_lowercase + string.digits
_KEY_CHARS = string.ascii_letters + string.digits


class Ids:
    """Draws unused ids and keys from the sandbox's seed."""

    def __init__(self, seed: int) -> None:
        self._keys = random.Random(f"{seed}:keys")
        self._ids = random.Random(f"{seed}:ids")
        self._used: set[str] = set()

    def new_id(self) -> str:
        """An unused opaque id: ``cm`` + 23 lowercase alphanumerics."""
        while True:
            new = "cm" + "".join(self._ids.choices(_ALNUM, k=23))
            if new not in self._used:
                self._used.add(new)
                return new

    def new_sid(self, prefix: str) -> str:
        """A Twilio-style sid: ``SM``/``CA`` + 32 hex digits."""
        return prefix + "".join(self._ids.choices("0123456789abcdef", k=32))

    def new_key(self) -> str:
        """A key shaped like gsim's: ``2s_`` + 40 letters and digits (may repeat; check)."""
        return "2s_" + "".join(self._keys.choices(_KEY_CHARS, k=40))
