"""``gsim fleet status``: what a fleet looks like, read from its Redis without joining it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator

import click
from rich.console import Group as Stack
from rich.live import Live
from rich.text import Text

from .._exceptions import FleetError
from ..fleet import FleetStatus
from ..fleet._fleet import DEAD_AFTER
from ._context import OK, POSITIVE_DURATION, App, Group, pass_app, positive_duration
from ._fleet_view import render
from ._output import when

#: Seconds between views of ``--watch`` given without a value.
WATCH_INTERVAL = 2.0


def watch_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``--watch [SECONDS]``: a positive duration (``2``, ``500ms``, ``1m``)."""
    return positive_duration(ctx, param, value)


@click.group(cls=Group, no_args_is_help=True)
def fleet() -> None:
    """Look at the fleet: the programs sharing your key through Redis.

    The fleet is the one --fleet URL or GSIM_FLEET_URL names, on the API key and
    server of --api-key and --base-url (a fleet is per key and server).
    """


@fleet.command("status")
@click.option(
    "--watch", "watch", is_flag=False, flag_value=str(WATCH_INTERVAL), default=None,
    callback=watch_option, metavar="[SECONDS]",
    help=f"Show it again every SECONDS (default {WATCH_INTERVAL:g}) until Ctrl-C; with "
    "--json, one JSON document a line.",
)  # fmt: skip
@click.option(
    "--count", type=click.IntRange(1), metavar="N",
    help="With --watch: stop after N views.",
)  # fmt: skip
@click.option(
    "--namespace", metavar="NAME",
    help="The fleet's namespace, if its members give one (RedisFleet(namespace=...)).",
)  # fmt: skip
@click.option(
    "--dead-after", **POSITIVE_DURATION,
    help=f"Judge members as the fleet does with this dead_after (default {DEAD_AFTER:g}s): "
    "silent that long is dead.",
)  # fmt: skip
@pass_app
def status(
    app: App,
    watch: float | None,
    count: int | None,
    namespace: str | None,
    dead_after: float | None,
) -> None:
    """Show its members, leader and gate, what each holds, and 429s.

    Members with their host, pid, age and last heartbeat (alive, silent, or dead as
    the fleet judges them), the leader that polls for all, the rate gate (what it knows
    of the limit, a 429's pause), orders held, waits and obligations per member, and
    the fleet's last 429s. Read from Redis: it joins nothing and writes nothing.
    """
    if count is not None and watch is None:
        raise click.UsageError("--count goes with --watch")
    if app.sandbox:
        raise click.UsageError(
            "--sandbox: an embedded sandbox has no fleet to show; to look at a fleet on a "
            "sandbox, pass that sandbox's --base-url and --api-key"
        )
    url = app.fleet or os.environ.get("GSIM_FLEET_URL")
    if not url:
        raise click.UsageError("no fleet: pass --fleet URL or set GSIM_FLEET_URL")
    if not app.api_key:
        raise click.UsageError(
            "no API key: a fleet's keys in Redis are named after a hash of it; pass "
            "--api-key or set GSIM_API_KEY"
        )
    api_key, base_url = app.api_key, app.base_url

    async def go() -> int:
        from ..fleet import RedisFleet

        options = {} if dead_after is None else {"dead_after": dead_after}
        fleet = RedisFleet(url, namespace=namespace, **options)
        async with fleet._reader(api_key, base_url) as reader:
            first = await reader.read()
            if watch is None:
                _show(app, first)
                return OK
            with _screen(app) as show:
                return await _watch(app, reader.read, first, show, watch, count)

    raise click.exceptions.Exit(app.run_plain(go))


def _show(app: App, found: FleetStatus) -> None:
    if app.out.json:
        app.out.data(found)
    else:
        app.out.console.print(render(found))


@contextlib.contextmanager
def _screen(app: App) -> Iterator[Callable[[FleetStatus | None, str | None], None]]:
    """Where each view goes: a live display on a terminal, else one after another."""
    if app.out.json or not app.out.console.is_interactive:

        def print_next(found: FleetStatus | None, problem: str | None) -> None:
            if found is not None:
                if not app.out.json:
                    app.out.console.print(f"[dim]-- {when(found.read_at, seconds=True)}[/]")
                _show(app, found)
            if problem is not None:
                app.out.error(problem, code="FleetError")

        yield print_next
        return
    with Live(console=app.out.console, auto_refresh=False, transient=False) as live:
        last: list[FleetStatus] = []

        def redraw(found: FleetStatus | None, problem: str | None) -> None:
            if found is not None:
                last[:] = [found]
            view = render(last[0]) if last else None
            if problem is not None:
                line = Text(f"cannot read the fleet now (retrying): {problem}", style="red")
                view = Stack(view, line) if view is not None else line
            if view is not None:
                live.update(view, refresh=True)

        yield redraw


async def _watch(
    app: App,
    read: Callable[[], Awaitable[FleetStatus]],
    first: FleetStatus,
    show: Callable[[FleetStatus | None, str | None], None],
    interval: float,
    count: int | None,
) -> int:
    """Views every ``interval`` s until Ctrl-C (the ordinary end of a watch: exit 0)."""
    found: FleetStatus | None = first
    problem: str | None = None
    shown = 0
    try:
        while True:
            show(found, problem)
            shown += 1
            if count is not None and shown >= count:
                return OK
            await asyncio.sleep(interval)
            try:
                found, problem = await read(), None
            except FleetError as exc:
                # Redis restarting or failing over: the watch goes on, saying so.
                found, problem = None, str(exc)
    except asyncio.CancelledError:
        if not app.interrupted:
            raise
        return OK  # Ctrl-C (or SIGTERM) is how a watch ends: no error line
