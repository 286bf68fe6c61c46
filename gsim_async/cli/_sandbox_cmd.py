"""``gsim sandbox``: serve the gsim API sandbox until Ctrl-C."""

from __future__ import annotations

import asyncio
import shlex
from decimal import Decimal, InvalidOperation

import click

from ._context import App, pass_app


def _delays(text: str) -> tuple[float, float]:
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not 0 <= parts[0] <= parts[1]:
        raise click.BadParameter(f"expected LOW,HIGH seconds with LOW <= HIGH, got {text!r}")
    return parts[0], parts[1]


@click.command("sandbox")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on (0 picks a free one).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of every random choice (numbers, codes, delays).",
)
@click.option("--balance", default="100", show_default=True, help="Opening balance in USD.")
@click.option(
    "--code-delay",
    default="1,5",
    show_default=True,
    metavar="LOW,HIGH",
    help="Seconds until a code arrives by itself.",
)
@click.option(
    "--no-auto-deliver",
    is_flag=True,
    help="Codes arrive only through the control API (/_sandbox/).",
)
@pass_app
def sandbox(
    app: App,
    port: int,
    host: str,
    seed: int,
    balance: str,
    code_delay: str,
    no_auto_deliver: bool,
) -> None:  # fmt: skip
    """Serve a local gsim API sandbox (no account, no money).

    It runs until Ctrl-C, and prints its base URL and its own API key (a sandbox key,
    worth nothing) as an `export` line to paste into another shell, where `gsim` then
    talks to it.
    """
    from ..sandbox import Sandbox

    delays = _delays(code_delay)
    try:
        opening = Decimal(balance)
    except InvalidOperation:
        raise click.BadParameter(f"not an amount: {balance!r}", param_hint="--balance") from None

    async def serve() -> int:
        sb = Sandbox(
            host=host,
            port=port,
            seed=seed,
            balance=opening,
            code_delay=delays,
            auto_deliver=not no_auto_deliver,
        )
        try:
            await sb.start()
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None
        try:
            url, key = sb.base_url, sb.api_key
            app.out.result(
                {"base_url": url, "api_key": key, "control_url": f"{url}/_sandbox/"},
                f"gsim sandbox listening on [bold]{url}[/] (control API: {url}/_sandbox/)\n"
                "use it from another shell with:\n"
                f"export GSIM_BASE_URL={shlex.quote(url)} GSIM_API_KEY={shlex.quote(key)}",
            )
            app.out.note("Ctrl-C stops it")
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if not app.interrupted:
                raise
        finally:
            await sb.close()
        return 0

    # Ctrl-C is how a server is meant to stop: exit status 0.
    raise click.exceptions.Exit(app.run_plain(serve))
