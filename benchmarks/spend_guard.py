"""The spend guard when the step after the code fails: what it stops, on the ledger.

The failure users of SMS-verification bots report most (github.com/wenfxl/openai-cpa
issue 101): codes arrive, the step after them (making the account) fails, the bot
catches the error, waits a moment and buys the next number, and the balance drains.
Here a bot of ``--workers`` tasks does exactly that for ``--duration`` seconds:

    while running:
        try:
            async with gsim.orders.activation("telegram", "russia") as act:
                code = await act.wait_for_code(timeout=...)
                await make_account(act.phone_number, code)   # always fails
        except Exception:
            await asyncio.sleep(pause)                        # and tries again

Each contender runs in its own process against its own fresh sandbox (same seed;
every code arrives after 0.2-0.6 s), and the money comes from the sandbox's ledger:

* ``none`` (the baseline): no guard, as the bot runs today;
* ``breaker``: ``Client(breaker=Breaker(5, cooldown=...))``;
* ``spend_limit``: ``Client(spend_limit=SpendLimit(...))``;
* ``both``: the two together;
* ``fleet``: the breaker, in two processes of one fleet (``RedisFleet`` on a real
  ``redis-server``), each a bot of half the workers: the count is the fleet's.

A refused purchase sends nothing; the bot counts it, waits its pause, and tries again.

    python -m benchmarks.spend_guard [--duration 60] [--workers 8] [--json guard.json]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import platform
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the package importable from the checkout.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Json, fmt, markdown_table, progress, run_child, running_sandbox

CONTENDERS: dict[str, str] = {
    "none": "baseline: no guard",
    "breaker": "`Breaker(5)`",
    "spend_limit": "`SpendLimit`",
    "both": "`Breaker(5)` + `SpendLimit`",
    "fleet": "`Breaker(5)`, 2 processes of one fleet",
}

CODE_DELAY = (0.2, 0.6)
POLL = 0.1
CENT = Decimal("0.01")


@dataclasses.dataclass
class Result:
    """One contender's run, from the sandbox's ledger and the bots' counts."""

    contender: str
    attempts: int
    bought: int
    codes: int
    refused: int
    refused_by: dict[str, int]
    charged: Decimal
    refunded: Decimal
    requests: int
    purchase_requests: int
    left_pending: int
    balanced: bool
    errors: int
    error_samples: list[str]
    wall_s: float

    @property
    def label(self) -> str:
        return CONTENDERS[self.contender]

    @property
    def paid(self) -> Decimal:
        return self.charged - self.refunded

    def to_dict(self) -> Json:
        data = dataclasses.asdict(self)
        for name in ("charged", "refunded"):
            data[name] = str(data[name])
        data.update(label=self.label, paid=str(self.paid))
        return data


async def run_contender(contender: str, args: argparse.Namespace) -> Result:
    """One contender in child processes against a fresh sandbox; audited by the ledger."""
    async with running_sandbox(
        args.seed, code_delay=CODE_DELAY, auto_deliver=True, no_code_ratio=0.0
    ) as sb:
        await sb.post("stats/reset")
        config: Json = {
            "contender": contender,
            "base_url": sb.base_url,
            "api_key": sb.api_key,
            "workers": args.workers,
            "duration": args.duration,
            "pause": args.pause,
            "breaker": args.breaker,
            "cooldown": args.cooldown,
            "spend_limit": args.spend_limit,
        }
        if contender == "fleet":
            from benchmarks._redis import RedisProcess

            with RedisProcess() as redis:
                shared = {
                    **config,
                    "redis_url": redis.url,
                    "namespace": uuid.uuid4().hex[:8],
                    "workers": max(args.workers // 2, 1),
                    "start_at": time.time() + 3.0,
                }
                runs = await asyncio.gather(
                    run_child("spend_guard", shared), run_child("spend_guard", shared)
                )
        else:
            runs = [await run_child("spend_guard", config)]
        stats = await sb.stats()
        ledger = await sb.get("ledger")
    refused_by: dict[str, int] = {}
    for run in runs:
        for kind, n in run["refused_by"].items():
            refused_by[kind] = refused_by.get(kind, 0) + n
    by_route = stats.get("by_route", {})
    return Result(
        contender=contender,
        attempts=sum(int(r["attempts"]) for r in runs),
        bought=len(ledger["orders"]),
        codes=sum(1 for o in ledger["orders"] if o["sms_code"] is not None),
        refused=sum(refused_by.values()),
        refused_by=refused_by,
        charged=Decimal(str(ledger["charged"])).quantize(CENT),
        refunded=Decimal(str(ledger["refunded"])).quantize(CENT),
        requests=int(stats["total"]),
        purchase_requests=int(by_route.get("POST /api/v1/orders", 0)),
        left_pending=int(ledger["orders_by_status"].get("PENDING", 0)),
        balanced=bool(ledger["balanced"]),
        errors=sum(int(r["errors"]) for r in runs),
        error_samples=[s for r in runs for s in r["error_samples"]][:3],
        wall_s=max(float(r["wall_s"]) for r in runs),
    )


def table(results: list[Result]) -> str:
    base = next((r for r in results if r.contender == "none"), None)
    rows = []
    for r in results:
        saved = "-" if base is None or r is base else f"{base.paid - r.paid:.2f}"
        share = (
            "-"
            if base is None or r is base or not base.bought
            else fmt(100 * r.bought / base.bought, 1, " %")
        )
        rows.append(
            [
                r.label,
                str(r.attempts),
                str(r.bought),
                share,
                str(r.codes),
                f"{r.paid:.2f}",
                saved,
                str(r.refused),
                str(r.purchase_requests),
                str(r.requests),
                str(r.left_pending),
            ]
        )
    return markdown_table(
        [
            "contender",
            "purchases tried",
            "orders bought",
            "bought vs baseline",
            "codes (charged)",
            "USD paid",
            "USD saved",
            "refused by the guard",
            "POST /orders",
            "requests",
            "left PENDING",
        ],
        rows,
        "lrrrrrrrrrr",
    )


def write_json(path: Path, args: argparse.Namespace, results: list[Result]) -> None:
    report = {
        "workers": args.workers,
        "duration": args.duration,
        "pause": args.pause,
        "breaker": args.breaker,
        "cooldown": args.cooldown,
        "spend_limit": args.spend_limit,
        "seed": args.seed,
        "results": [r.to_dict() for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


async def main(args: argparse.Namespace) -> int:
    results = []
    for contender in args.contenders:
        progress(f"spend guard: {contender}, {args.workers} workers for {args.duration:g} s")
        results.append(await run_contender(contender, args))
    print(
        f"spend guard: a bot of {args.workers} workers buys telegram numbers in russia "
        f"(0.18 USD) for {args.duration:g} s; every code arrives (after "
        f"{CODE_DELAY[0]:g}-{CODE_DELAY[1]:g} s), the step after it always fails, the bot "
        f"waits {args.pause:g} s after any error and buys again. Breaker({args.breaker}, "
        f"cooldown={args.cooldown:g} s), SpendLimit({args.spend_limit} USD per 24h); "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    print()
    print(table(results))
    clean = all(r.left_pending == 0 and r.balanced for r in results)
    print()
    print(
        "no order left PENDING, ledgers balanced; a refused purchase sent no request"
        if clean and all(r.purchase_requests == r.bought for r in results)
        else "CHECK FAILED: see left PENDING, or POST /orders beside orders bought"
    )
    if args.json:
        write_json(Path(args.json), args, results)
    errors = sum(r.errors for r in results)
    if errors:
        samples = [s for r in results for s in r.error_samples]
        print(f"unexpected errors: {errors}, e.g. {samples[:3]}", file=sys.stderr)
    return 0 if clean and not errors else 1


# -- the child: one bot -------------------------------------------------------------------


class AccountError(Exception):
    """The step after the code failed: the account could not be made."""


async def child(config: Json) -> Json:
    """Run the bot for ``duration`` seconds; count what it tried and what was refused."""
    import gsim_async
    from gsim_async import Breaker, GuardError, SpendLimit

    contender = config["contender"]
    options: dict[str, object] = {}
    if contender in ("breaker", "both", "fleet"):
        options["breaker"] = Breaker(config["breaker"], cooldown=config["cooldown"])
    if contender in ("spend_limit", "both"):
        options["spend_limit"] = SpendLimit(config["spend_limit"])
    if contender == "fleet":
        from gsim_async.fleet import RedisFleet

        options["fleet"] = RedisFleet(
            config["redis_url"], namespace=config["namespace"], heartbeat=0.3, lease=1.0
        )
    attempts = 0
    refused_by: dict[str, int] = {}
    errors: list[str] = []
    async with gsim_async.Client(
        config["api_key"],
        base_url=config["base_url"],
        poll_interval=POLL,
        spend_limit=options.get("spend_limit", False),  # type: ignore[arg-type]
        breaker=options.get("breaker", False),  # type: ignore[arg-type]
        fleet=options.get("fleet"),  # type: ignore[arg-type]
    ) as gsim:
        await gsim.balance()
        await asyncio.sleep(max(config.get("start_at", 0) - time.time(), 0.0))
        started = time.perf_counter()
        deadline = started + config["duration"]

        async def make_account(phone_number: str, code: str) -> None:
            await asyncio.sleep(0.05)
            raise AccountError(f"sign-up with {phone_number} refused the code")

        async def worker() -> None:
            nonlocal attempts
            while time.perf_counter() < deadline:
                attempts += 1
                try:
                    async with gsim.orders.activation("telegram", "russia") as act:
                        code = await act.wait_for_code(timeout=10)
                        await make_account(act.phone_number, code)
                except AccountError:
                    pass
                except GuardError as exc:
                    kind = type(exc).__name__
                    refused_by[kind] = refused_by.get(kind, 0) + 1
                except gsim_async.GsimError as exc:
                    errors.append(repr(exc))
                await asyncio.sleep(config["pause"])

        await asyncio.gather(*(worker() for _ in range(config["workers"])))
        wall = time.perf_counter() - started
    return {
        "attempts": attempts,
        "refused_by": refused_by,
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_s": wall,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=8, help="the bot's concurrent tasks")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds the bot runs")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds after an error")
    parser.add_argument("--breaker", type=int, default=5, help="failures in a row")
    parser.add_argument("--cooldown", type=float, default=20.0, help="breaker cooldown, s")
    parser.add_argument("--spend-limit", default="3.00", help="USD per 24 hours")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--contenders",
        type=lambda s: s.split(","),
        default=list(CONTENDERS),
        help=f"comma-separated, of {','.join(CONTENDERS)}",
    )
    parser.add_argument("--smoke", action="store_true", help="a few seconds, to see it runs")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.workers, args.cooldown = 4.0, 4, 2.0
    if args.workers < 1 or args.duration <= 0 or args.pause < 0 or args.cooldown < 1:
        parser.error("--workers 1+, --duration above 0, --pause 0+, --cooldown 1+ s")
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; known: {list(CONTENDERS)}")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
