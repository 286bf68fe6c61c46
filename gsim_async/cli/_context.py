"""What every command shares: the global options, the client, the event loop, exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .. import _stop
from .._client import Client
from .._constants import DEFAULT_POLL_INTERVAL
from .._exceptions import (
    GsimError,
    GuardError,
    InvalidArgumentError,
    JournalInUseError,
    MessageTimeoutError,
    NoCodeError,
    NotFoundError,
    ValidationError,
)
from .._guard_config import Breaker, SpendLimit, parse_duration
from .._journal import Journal, open_rows
from ._output import Output

if TYPE_CHECKING:
    from ..fleet import RedisFleet

log = logging.getLogger("gsim_async")

#: Exit statuses; scripts may rely on them.
OK = 0
API_ERROR = 1
USAGE = 2
NO_CODE = 3
GUARD = 4  # the spend guard refused a purchase (a limit reached, a breaker open)
INTERRUPTED = 130  # 128 + SIGINT, as shells report it

#: Default journal files (``journal.db``, ``journal-2.db``, ...): commands running at
#: once each take one.
JOURNAL_FILES = 8

#: The embedded sandbox of ``--sandbox``: codes arrive after a few seconds.
SANDBOX_CODE_DELAY = (2.0, 5.0)
SANDBOX_POLL_INTERVAL = 0.5

Command = Callable[[Client], Awaitable[int | None]]
#: Turns an error into a hint for the user, or None.
Hint = Callable[[GsimError], str | None]


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
        journal: str | None = None,
        no_journal: bool = False,
        fleet: str | None = None,
        spend_limit: SpendLimit | None = None,
        breaker: int | None = None,
        breaker_cooldown: float | None = None,
    ) -> None:
        self.api_key = api_key
        #: The fleet's Redis named by --fleet (GSIM_FLEET_URL is the Client's own default).
        self.fleet = fleet
        self.spend_limit = spend_limit
        self.breaker = breaker
        self.breaker_cooldown = breaker_cooldown
        self.journal = journal
        self.no_journal = no_journal
        self.base_url = base_url
        self.poll_interval = poll_interval
        self.sandbox = sandbox
        self.out = Output(as_json)
        self.verbose = verbose
        #: Set once Ctrl-C (or SIGTERM) asked the command to stop.
        self.interrupted = False
        #: Set once SIGTERM stopped the client: every wait given up (design.md, rule 9).
        self.stopped = False
        #: Set by a command that already told the user it was interrupted (a summary).
        self.interruption_reported = False

    def __repr__(self) -> str:
        # Never the key, whatever prints this.
        return f"<gsim App base_url={self.base_url!r} sandbox={self.sandbox}>"

    def guard_options(self) -> dict[str, Any]:
        """The client's spend guard, as the options (or their environment) say."""
        breaker = None
        if self.breaker:
            breaker = (
                Breaker(self.breaker, self.breaker_cooldown)
                if self.breaker_cooldown
                else Breaker(self.breaker)
            )
        return {"spend_limit": self.spend_limit, "breaker": breaker}

    def run(self, command: Command, *, hint: Hint | None = None) -> NoReturn:
        """Run ``command(client)`` in a fresh event loop and exit with its status.

        ``hint`` adds a line of advice to the error the command ends with.
        """
        raise click.exceptions.Exit(self.run_plain(lambda: self._with_client(command), hint=hint))

    def run_plain(
        self, work: Callable[[], Awaitable[int | None]], *, hint: Hint | None = None
    ) -> int:
        """Run ``work()`` in a fresh event loop; errors become one line and a status."""
        with debug_logging(self.verbose):
            try:
                return asyncio.run(self._guarded(work, hint))
            except KeyboardInterrupt:  # where the loop cannot handle signals (Windows)
                self.out.error("interrupted", code="INTERRUPTED", exit_code=INTERRUPTED)
                return INTERRUPTED

    async def _with_client(self, command: Command) -> int | None:
        async with contextlib.AsyncExitStack() as stack:
            if self.sandbox:
                from ..sandbox import Sandbox

                sb = await stack.enter_async_context(Sandbox(code_delay=SANDBOX_CODE_DELAY))
                self.out.note(f"embedded sandbox at {sb.base_url}: no account, no money spent")
                # The embedded sandbox dies with the command: a journal of it would only
                # hold rows nobody can act on, unless one was asked for.
                # Nor a fleet: GSIM_FLEET_URL names the production one on a fleet's host.
                client = Client(
                    sb.api_key,
                    base_url=sb.base_url,
                    poll_interval=self.poll_interval or SANDBOX_POLL_INTERVAL,
                    journal=False if self.no_journal or not self.journal else self.journal,
                    fleet=self._fleet() or False,
                    **self.guard_options(),
                )
            else:
                if not self.api_key:
                    raise click.UsageError(
                        "no API key: pass --api-key or set GSIM_API_KEY (or try --sandbox)"
                    )
                client = self._client(
                    self.api_key,
                    base_url=self.base_url or None,
                    poll_interval=self.poll_interval or DEFAULT_POLL_INTERVAL,
                    fleet=self._fleet(),
                    **self.guard_options(),
                )
            await stack.enter_async_context(client)
            return await command(client)

    def _fleet(self) -> RedisFleet | None:
        """The fleet --fleet names (``None``: the client's default, GSIM_FLEET_URL)."""
        if not self.fleet:
            return None
        from ..fleet import RedisFleet

        return RedisFleet(self.fleet)

    def _client(self, api_key: str, **options: Any) -> Client:
        """The client, with its journal: the one asked for, or the first free default one.

        Several ``gsim`` commands may run at once; each default journal file holds one
        live client, so a command takes the first that is free (a killed command's file
        is free again, and the next command to take it recovers what it left).
        """
        if self.no_journal:
            return Client(api_key, journal=False, **options)
        # No command takes orders back: an earlier run's are refunded when due, at once
        # for a get-code whose run was killed.
        if self.journal:
            return Client(api_key, journal=Journal(self.journal, grace=0), **options)
        folder = state_dir()
        names = ["journal.db", *(f"journal-{n}.db" for n in range(2, JOURNAL_FILES + 1))]
        # A file a killed command left rows in goes first: this command recovers them.
        names.sort(key=lambda name: open_rows(folder / name) == 0)
        for name in names:
            try:
                return Client(api_key, journal=Journal(folder / name, grace=0), **options)
            except JournalInUseError:
                continue
        log.warning("every default journal is in use; this command keeps none")
        return Client(api_key, journal=False, **options)

    async def _guarded(self, work: Callable[[], Awaitable[int | None]], hint: Hint | None) -> int:
        interrupts = _Interrupts(self)
        interrupts.install()
        try:
            return (await work()) or OK
        except asyncio.CancelledError:
            if not self.interrupted:
                raise
            if not self.interruption_reported:
                self.out.error("interrupted", code="INTERRUPTED", exit_code=INTERRUPTED)
            return INTERRUPTED
        except click.ClickException:
            raise
        except GsimError as exc:
            status = exit_status(exc)
            self.out.failure(exc, status, hint=hint(exc) if hint is not None else None)
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


def state_dir() -> Path:
    """Where the command line keeps its journals: the user's state directory (XDG)."""
    if sys.platform == "win32":  # pragma: no cover - Windows
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    else:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gsim-async"


def exit_status(exc: GsimError) -> int:
    """The exit status an SDK error means."""
    if isinstance(exc, (NoCodeError, MessageTimeoutError)):
        return NO_CODE
    if isinstance(exc, InvalidArgumentError):
        return USAGE
    if isinstance(exc, GuardError):
        return GUARD
    return API_ERROR


def worst_status(errors: list[GsimError]) -> int:
    """The exit status of a run that ended with ``errors`` (no codes among them)."""
    if errors and all(isinstance(e, GuardError) for e in errors):
        return GUARD
    return API_ERROR if errors else OK


#: What to do about a purchase the spend guard refused.
GUARD_HINT = (
    "`gsim guard` shows the spend limit and the breakers; `gsim guard reset` closes a "
    "breaker (the limit frees up as its window rolls and as refunds come)"
)


def catalogue_hint(service: str | None, country: str | None = None) -> Hint:
    """Where to look up the ids of a command that names a service, country or operator.

    An unknown id is a 400 or 404 from the API, whose message may or may not say which
    id it did not know: the hint names the listing that has it, or both.
    """

    def hint(exc: GsimError) -> str | None:
        if isinstance(exc, GuardError):
            return GUARD_HINT
        if not isinstance(exc, (NotFoundError, ValidationError)):
            return None
        said = exc.message.lower()
        services = "`gsim services` lists the service ids"
        countries = "`gsim countries" + (f" --service {service}" if service else "") + "`"
        countries += " lists the country ids"
        if "operator" in said and service and country:
            return f"`gsim operators {service} {country}` lists the operators"
        if "country" in said and "service" not in said:
            return countries
        if "service" in said and "country" not in said:
            return services
        return f"{services}, {countries}"

    return hint


class _Interrupts:
    """Ctrl-C and SIGTERM cancel the command's task, so its cleanup (refunds) runs.

    SIGTERM (a service manager or a container runtime stopping the command) also
    stops the client first, as ``gsim_async.run()`` does: every wait is given up as
    its ``--on-timeout`` says (an activation's order cancelled), or left to the
    journal, and refunds get three quarters of a 10 s grace, the server's pauses
    included, so that the command exits in time, naming what it leaves.
    """

    def __init__(self, app: App) -> None:
        self._app = app
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._installed: list[tuple[signal.Signals, Any]] = []

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            try:
                self._loop.add_signal_handler(sig, self._fire, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # Windows, or not the main thread: Ctrl-C stays KeyboardInterrupt
            self._installed.append((sig, previous))

    def _fire(self, sig: signal.Signals) -> None:
        app = self._app
        if app.interrupted:
            if sig == signal.SIGTERM:
                _stop.stop_all(0.0, loop=self._loop)  # told twice: no more waiting
                return
            app.out.note("stopping: still getting refunds, one moment ...")
            return
        app.interrupted = True
        if sig == signal.SIGTERM:
            app.stopped = True
            if not app.out.json:
                _stop.show_warnings()  # what cannot be refunded in time is named
            _stop.stop_all(_stop.refund_budget(_stop.DEFAULT_GRACE), loop=self._loop)
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


def duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """An option's seconds, given as ``90``, ``90s``, ``5m``, ``1.5h`` or ``1d``."""
    if value is None:
        return None
    try:
        return parse_duration("duration", value).total_seconds()
    except InvalidArgumentError:
        raise click.BadParameter(f"{value!r} is not a duration (e.g. 90, 90s, 5m, 1h)") from None


def positive_duration(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> float | None:
    """A duration that must be more than zero (a zero timeout would buy and refund at once)."""
    seconds = duration(ctx, param, value)
    if seconds is not None and seconds <= 0:
        raise click.BadParameter(f"{value!r} is not a positive duration (e.g. 90s, 5m)")
    return seconds


#: Keyword arguments of a click option that takes a duration (zero allowed).
DURATION: dict[str, Any] = {"callback": duration, "metavar": "DURATION"}
#: Keyword arguments of a click option that takes a duration above zero.
POSITIVE_DURATION: dict[str, Any] = {"callback": positive_duration, "metavar": "DURATION"}


class Group(click.Group):
    """A group of commands listed in the order they were added, with whole help lines."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # the order they were added in: most used first

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Bare `gsim` (or `gsim rentals`) asks what there is: help, and success.
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(OK)
        return super().parse_args(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click cuts each line's help to fit with "..."; wrap the first sentence instead.
        rows = [
            (name, command.get_short_help_str(limit=1_000))
            for name in self.list_commands(ctx)
            if (command := self.get_command(ctx, name)) is not None and not command.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


pass_app = click.make_pass_decorator(App)
