"""What every command shares: the global options, the client, the event loop, exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn

import click

from .._client import Client
from .._constants import DEFAULT_POLL_INTERVAL
from .._exceptions import GsimError, InvalidArgumentError, MessageTimeoutError, NoCodeError
from ._output import Output

log = logging.getLogger("gsim_async")

#: Exit statuses; scripts may rely on them.
OK = 0
API_ERROR = 1
USAGE = 2
NO_CODE = 3
INTERRUPTED = 130  # 128 + SIGINT, as shells report it

#: The embedded sandbox of ``--sandbox``: codes arrive after a few seconds.
SANDBOX_CODE_DELAY = (2.0, 5.0)
SANDBOX_POLL_INTERVAL = 0.5

Command = Callable[[Client], Awaitable[int | None]]


class App:
    """The global options, and the machinery that runs a command's coroutine."""

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        sandbox: bool,
        as_json: bool,
        verbose: int,
        poll_interval: float | None = None,
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url
        self.poll_interval = poll_interval
        self.sandbox = sandbox
        self.out = Output(as_json)
        self.verbose = verbose
        #: Set once Ctrl-C (or SIGTERM) asked the command to stop.
        self.interrupted = False

    def __repr__(self) -> str:
        # Never the key, whatever prints this.
        return f"<gsim App base_url={self.base_url!r} sandbox={self.sandbox}>"

    def run(self, command: Command) -> NoReturn:
        """Run ``command(client)`` in a fresh event loop and exit with its status."""
        raise click.exceptions.Exit(self.run_plain(lambda: self._with_client(command)))

    def run_plain(self, work: Callable[[], Awaitable[int | None]]) -> int:
        """Run ``work()`` in a fresh event loop; errors become one line and a status."""
        with debug_logging(self.verbose):
            try:
                return asyncio.run(self._guarded(work))
            except KeyboardInterrupt:  # where the loop cannot handle signals (Windows)
                self.out.error("interrupted", code="INTERRUPTED", exit_code=INTERRUPTED)
                return INTERRUPTED

    async def _with_client(self, command: Command) -> int | None:
        async with contextlib.AsyncExitStack() as stack:
            if self.sandbox:
                from ..sandbox import Sandbox

                sb = await stack.enter_async_context(Sandbox(code_delay=SANDBOX_CODE_DELAY))
                self.out.note(f"embedded sandbox at {sb.base_url}: no account, no money spent")
                client = Client(
                    sb.api_key,
                    base_url=sb.base_url,
                    poll_interval=self.poll_interval or SANDBOX_POLL_INTERVAL,
                )
            else:
                if not self._api_key:
                    raise click.UsageError(
                        "no API key: pass --api-key or set GSIM_API_KEY (or try --sandbox)"
                    )
                client = Client(
                    self._api_key,
                    base_url=self.base_url or None,
                    poll_interval=self.poll_interval or DEFAULT_POLL_INTERVAL,
                )
            await stack.enter_async_context(client)
            return await command(client)

    async def _guarded(self, work: Callable[[], Awaitable[int | None]]) -> int:
        interrupts = _Interrupts(self)
        interrupts.install()
        try:
            return (await work()) or OK
        except asyncio.CancelledError:
            if not self.interrupted:
                raise
            self.out.error("interrupted", code="INTERRUPTED", exit_code=INTERRUPTED)
            return INTERRUPTED
        except click.ClickException:
            raise
        except GsimError as exc:
            status = exit_status(exc)
            self.out.failure(exc, status)
            return status
        except Exception as exc:
            log.debug("unexpected error", exc_info=True)
            self.out.error(
                f"unexpected {type(exc).__name__}: {exc} (a bug in gsim-async; "
                "-v shows where it happened)",
                code=type(exc).__name__,
            )
            return API_ERROR
        finally:
            interrupts.remove()


def exit_status(exc: GsimError) -> int:
    """The exit status an SDK error means."""
    if isinstance(exc, (NoCodeError, MessageTimeoutError)):
        return NO_CODE
    if isinstance(exc, InvalidArgumentError):
        return USAGE
    return API_ERROR


class _Interrupts:
    """Ctrl-C and SIGTERM cancel the command's task, so its cleanup (refunds) runs."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._installed: list[tuple[signal.Signals, Any]] = []

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            try:
                self._loop.add_signal_handler(sig, self._fire)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # Windows, or not the main thread: Ctrl-C stays KeyboardInterrupt
            self._installed.append((sig, previous))

    def _fire(self) -> None:
        if self._app.interrupted:
            self._app.out.note("stopping: still getting refunds, one moment ...")
            return
        self._app.interrupted = True
        if self._task is not None:
            self._task.cancel()

    def remove(self) -> None:
        for sig, previous in self._installed:
            self._loop.remove_signal_handler(sig)
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(sig, previous)
        self._installed.clear()


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is now (rich's live display swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def debug_logging(verbose: int) -> Iterator[None]:
    """``-v``: the SDK's DEBUG log (requests, poll rounds) on stderr; ``-vv`` adds aiohttp's."""
    if not verbose:
        yield
        return
    names = ["gsim_async"] + (["aiohttp"] if verbose > 1 else [])
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min|h)?", re.IGNORECASE)
_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """An option's seconds, given as ``90``, ``90s``, ``5m`` or ``1.5h``."""
    if value is None:
        return None
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise click.BadParameter(f"{value!r} is not a duration (e.g. 90, 90s, 5m, 1h)")
    number, unit = match.groups()
    return float(number) * _UNITS[(unit or "").lower()]


#: Keyword arguments of a click option that takes a duration.
DURATION: dict[str, Any] = {"callback": duration, "metavar": "DURATION"}

pass_app = click.make_pass_decorator(App)
