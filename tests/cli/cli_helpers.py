"""Helpers of the command line tests: a sandbox in a thread, and a ``gsim`` runner."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Callable
from typing import Any, TypeVar

from click.testing import CliRunner, Result

from gsim_async.cli import cli
from gsim_async.sandbox import Sandbox

T = TypeVar("T")


class Served:
    """A sandbox running in a thread; ``call`` runs a function in its loop."""

    def __init__(self, sandbox: Sandbox, loop: asyncio.AbstractEventLoop) -> None:
        self.sandbox = sandbox
        self.loop = loop
        self.base_url = sandbox.base_url
        self.api_key = sandbox.api_key

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the sandbox's thread (its state is not thread-safe)."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(timeout=5)

    @property
    def env(self) -> dict[str, str | None]:
        return {"GSIM_API_KEY": self.api_key, "GSIM_BASE_URL": self.base_url}


class StubApi:
    """Canned answers of a server that behaves like the published API, not the sandbox.

    ``answers[(method, path)]`` is ``(status, json body)``; paths start after ``/api/v1``.
    """

    def __init__(self) -> None:
        # An empty account: a client lists it once before its first purchase.
        empty = {"orders": [], "total": 0, "page": 1, "limit": 1, "totalPages": 0}
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {
            ("GET", "/orders"): (200, empty),
            ("GET", "/rentals"): (200, {"rentals": [], "total": 0, "page": 1}),
        }
        self.hits: list[tuple[str, str]] = []
        self.base_url = ""
        self.api_key = "2s_" + "s" * 40

    @property
    def env(self) -> dict[str, str | None]:
        return {"GSIM_API_KEY": self.api_key, "GSIM_BASE_URL": self.base_url}


class Gsim:
    """Runs ``gsim`` in-process against a sandbox; checks the key never shows."""

    def __init__(self, env: dict[str, str | None], key: str) -> None:
        self.env = env
        self.key = key

    def __call__(self, *args: str, input: str | None = None) -> Result:
        result = CliRunner().invoke(cli, list(args), env=self.env, input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert self.key not in result.stdout
        assert self.key not in result.stderr
        assert "Traceback" not in result.stderr
        return result

    def json(self, *args: str) -> Any:
        """``gsim --json ARGS``, which must succeed, parsed."""
        result = self("--json", *args)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)
