"""How the API writes a moment: RFC 3339, in the style a test asks for.

gsim documents ``2024-03-15T10:00:00.000Z`` but a client must read any RFC
3339 form, so the sandbox can write the same instant other ways too. Digits
come from the exact decimal value of the sandbox time (``repr`` of the float),
so every style shows the same instant, truncated to the digits it shows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from decimal import Decimal

TIMESTAMP_STYLES = ("ms", "s", "us", "offset", "varied")
# Offsets a real server might use, in minutes east of UTC (non-zero: a shifted wall time).
_OFFSETS = (330, -480, 540, -210, 60, -300, 345, 840, -720, 180)


def render(epoch: float, style: str, rng: random.Random) -> str:
    """``epoch`` (Unix seconds) in ``style``; "varied" draws a form from ``rng``."""
    if style == "ms":
        return _format(epoch, 3)
    if style == "s":
        return _format(epoch, 0)
    if style == "us":
        return _format(epoch, 6)
    if style == "offset":
        return _format(epoch, 3, offset=0)
    if style != "varied":
        raise ValueError(f"unknown timestamp style {style!r}")
    zone = rng.randrange(4)
    offset = None if zone < 2 else 0 if zone == 2 else rng.choice(_OFFSETS)
    return _format(
        epoch,
        rng.randrange(10),
        separator=rng.choice("Tt"),
        utc="z" if zone == 1 else "Z",
        offset=offset,
    )


def _format(
    epoch: float, digits: int, *, separator: str = "T", utc: str = "Z", offset: int | None = None
) -> str:
    """RFC 3339 with ``digits`` fraction digits; ``offset`` minutes, or ``utc`` if None."""
    nanos = int(Decimal(repr(epoch)).scaleb(9))  # truncates; sandbox times are positive
    seconds, fraction = divmod(nanos, 1_000_000_000)
    if offset is None:
        zone = utc
    else:
        seconds += offset * 60
        hours, minutes = divmod(abs(offset), 60)
        zone = f"{'-' if offset < 0 else '+'}{hours:02d}:{minutes:02d}"
    t = time.gmtime(seconds)
    frac = f".{fraction:09d}"[: digits + 1] if digits else ""
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}{separator}"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}{frac}{zone}"
    )


class Timestamps:
    """Writes the API's timestamps in the style currently chosen (read at every call)."""

    __slots__ = ("_rng", "_style")

    def __init__(self, style: Callable[[], str], seed: int) -> None:
        self._style = style
        # A stream of its own: varied timestamps do not shift the faults' or codes' draws.
        self._rng = random.Random(f"{seed}:timestamps")

    @property
    def style(self) -> str:
        """The current style; a text rendered in it may be reused unless it is "varied"."""
        return self._style()

    def __call__(self, epoch: float) -> str:
        return render(epoch, self._style(), self._rng)
