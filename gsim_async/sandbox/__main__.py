"""``python -m gsim_async.sandbox``: run the sandbox until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from ._faults import Faults
from ._sandbox import Sandbox


def _delay_range(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH seconds, got {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not 0 <= values[0] <= values[1]:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with 0 <= LOW <= HIGH, got {text!r}")
    return values[0], values[1]


def _money(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected an amount, got {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"expected an amount, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m gsim_async.sandbox",
        description="Run a local gsim API sandbox (API under /api/v1, control under /_sandbox/).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument("--api-key", default=None, help="default API key (drawn from the seed)")
    parser.add_argument("--balance", type=_money, default=Decimal("100"), help="opening balance")
    parser.add_argument(
        "--code-delay", type=_delay_range, default=(1.0, 5.0), metavar="LOW,HIGH",
        help="seconds until a code arrives, uniform (default 1,5)",
    )  # fmt: skip
    parser.add_argument(
        "--no-code-ratio", type=float, default=0.0, help="fraction of orders never getting a code"
    )
    parser.add_argument(
        "--order-ttl", type=float, default=1200.0, help="seconds from purchase to EXPIRED"
    )
    parser.add_argument(
        "--no-auto-deliver", action="store_true", help="codes only arrive via the control API"
    )
    parser.add_argument("--stock", type=int, default=100_000, help="numbers per operator")
    parser.add_argument(
        "--rate-limit", type=float, default=None, help="requests/s per key (429 beyond)"
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Start the sandbox, print where it listens, serve until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Windows has no loop signal handlers; Ctrl-C then arrives as KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    sandbox = Sandbox(
        host=args.host,
        port=args.port,
        seed=args.seed,
        api_key=args.api_key,
        balance=args.balance,
        code_delay=args.code_delay,
        no_code_ratio=args.no_code_ratio,
        order_ttl=args.order_ttl,
        auto_deliver=not args.no_auto_deliver,
        faults=Faults(rate_limit=args.rate_limit),
        stock=args.stock,
    )
    async with sandbox as sb:
        print(f"gsim sandbox listening on {sb.base_url}  api key: {sb.api_key}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"gsim sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
