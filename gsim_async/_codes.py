"""Pulling a verification code out of a message body."""

from __future__ import annotations

import re

# A run of 4-8 digits (optionally split once by a space or dash, as in "123-456"),
# not part of a longer number, a phone number or an amount.
_CODE = re.compile(r"(?<![\d+.,])(\d{3,4}[- ]\d{3,4}|\d{4,8})(?![\d.,]\d)(?!\d)")


def extract_code(text: str | None) -> str | None:
    """The first 4-8 digit verification code in ``text`` (``"123-456"`` → ``"123456"``).

    Returns ``None`` when there is none.
    """
    if not text:
        return None
    for match in _CODE.finditer(text):
        code = re.sub(r"[- ]", "", match.group(1))
        if 4 <= len(code) <= 8:
            return code
    return None
