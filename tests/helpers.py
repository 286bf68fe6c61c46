"""Shared test helpers."""

from __future__ import annotations


class StubServer:
    """A tiny real HTTP server answering canned responses, for what no sane API does."""

    def __init__(self) -> None:
        self.responses: dict[tuple[str, str], tuple[int, str, dict[str, str]]] = {}
        self.hits: list[tuple[str, str]] = []
        self.headers: list[dict[str, str]] = []
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
