"""The library's logger: silent by default, to stderr with ``GSIM_LOG=debug|info``.

Like ``OPENAI_LOG``: a quick look at what the SDK does without writing logging code.
The key is never in a log line (the transport only logs method, path, status, time).
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("gsim_async")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


def setup() -> None:
    """Silence by default; honour ``GSIM_LOG`` once, at import."""
    log.addHandler(logging.NullHandler())
    level = _LEVELS.get(os.environ.get("GSIM_LOG", "").strip().lower())
    if level is None:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s gsim_async] %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
