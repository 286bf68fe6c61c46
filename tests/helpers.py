"""Shared test helpers."""

from __future__ import annotations

import gsim_async
from gsim_async.sandbox import Sandbox


def fast_client(sandbox: Sandbox, **options: object) -> gsim_async.Client:
    """A client of ``sandbox`` that polls fast and never sleeps between retries."""
    settings: dict[str, object] = {
        "base_url": sandbox.base_url,
        "backoff_base": 0,
        "poll_interval": 0.05,
        "max_retry_after": 1,
        "reconcile_window": 1,
    }
    settings.update(options)
    return gsim_async.Client(sandbox.api_key, **settings)  # type: ignore[arg-type]


class StubServer:
    """A tiny real HTTP server answering canned responses, for what no sane API does."""

    def __init__(self) -> None:
        self.responses: dict[tuple[str, str], tuple[int, str, dict[str, str]]] = {}
        self.hits: list[tuple[str, str]] = []
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []
        self.scripts: dict[tuple[str, str], list[tuple[int, str, dict[str, str]]]] = {}
        self.base_url = ""

    def answer(
        self,
        method: str,
        path: str,
        status: int,
        body: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.responses[(method, "/api/v1" + path)] = (status, body, headers or {})

    def script(
        self, method: str, path: str, *answers: tuple[int, str] | tuple[int, str, dict[str, str]]
    ) -> None:
        """Answer successive calls in turn (the last one repeats); status 0 drops the
        connection *after* the request was read, as if processed and the answer lost."""
        self.scripts[(method, "/api/v1" + path)] = [
            (a[0], a[1], a[2] if len(a) > 2 else {})
            for a in answers  # type: ignore[misc]
        ]
