"""Attempts with fresh numbers: codes obtained, tries and money per code, at 50 % delivery.

N codes are wanted at once from a sandbox (its own process) where half the numbers
never receive a code. Each contender runs in its own process against its own fresh
sandbox (same seed) and the figures come from the sandbox's ledger and counters:

* ``single`` (the baseline): one ``orders.activation()`` per code — a number, a wait,
  a refund when no code came, no second try;
* ``by_hand``: ``activation()`` in a ``for`` loop of up to ``attempts`` tries, as one
  writes it without the SDK's loop;
* ``activations``: ``orders.activations("telegram", "russia", attempts=...)``;
* ``fallback``: ``orders.activations("telegram", ["russia", "kazakhstan"], ...)``,
  each try moving on to the next country (kazakhstan is cheaper: 0.12 vs 0.18).

Time is scaled down by ``--time-scale`` (default 20): code delays of 5-60 s, a 2 s
poll interval and a 120 s wait per try (the issue's example) become 0.25-3 s, 0.1 s
and 6 s. Money is exact: ``charged`` is every purchase, ``paid`` what stayed charged
after the refunds of the numbers without a code.

    python -m benchmarks.attempts [--n 200] [--attempts 3] [--json attempts.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import platform
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the package importable from the checkout.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Json, fmt, markdown_table, progress, run_child, running_sandbox

CONTENDERS: dict[str, str] = {
    "single": "baseline: one `activation()` per code",
    "by_hand": "`activation()` retried by hand",
    "activations": "`orders.activations()`, russia",
    "fallback": "`orders.activations()`, russia then kazakhstan",
}

REAL_DELAYS = (5.0, 60.0)
REAL_INTERVAL = 2.0
REAL_TIMEOUT = 120.0
DELIVERY_RATE = 0.5
CENT = Decimal("0.01")


@dataclasses.dataclass
class Result:
    """One contender's run, from the sandbox's ledger and counters."""

    contender: str
    n: int
    attempts: int
    codes: int
    tries: int
    charged: Decimal
    refunded: Decimal
    requests: int
    left_pending: int
    unrefunded: int
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

    def per_code(self, value: float | Decimal | int) -> float | None:
        return float(value) / self.codes if self.codes else None

    def to_dict(self) -> Json:
        data = dataclasses.asdict(self)
        for name in ("charged", "refunded"):
            data[name] = str(data[name])
        data.update(
            label=self.label,
            paid=str(self.paid),
            tries_per_code=self.per_code(self.tries),
            charged_per_code=self.per_code(self.charged),
            paid_per_code=self.per_code(self.paid),
            requests_per_code=self.per_code(self.requests),
        )
        return data


async def run_contender(contender: str, args: argparse.Namespace) -> Result:
    """One contender in a child process against a fresh sandbox; audited by the ledger."""
    scale = args.time_scale
    delays = (REAL_DELAYS[0] / scale, REAL_DELAYS[1] / scale)
    async with running_sandbox(
        args.seed,
        code_delay=delays,
        auto_deliver=True,
        no_code_ratio=1 - DELIVERY_RATE,
    ) as sb:
        await sb.post("stats/reset")
        data = await run_child(
            "attempts",
            {
                "contender": contender,
                "base_url": sb.base_url,
                "api_key": sb.api_key,
                "n": args.n,
                "attempts": args.attempts,
                "interval": REAL_INTERVAL / scale,
                "timeout": REAL_TIMEOUT / scale,
            },
        )
        stats = await sb.stats()
        ledger = await sb.get("ledger")
    refunds: dict[str, Any] = ledger["refunds_by_order"]
    unrefunded = sum(
        1
        for o in ledger["orders"]
        if o["sms_code"] is None
        and Decimal(str(refunds.get(o["id"], "0"))) != Decimal(str(o["price"]))
    )
    received = sum(1 for o in ledger["orders"] if o["sms_code"] is not None)
    if received != data["codes"]:
        raise RuntimeError(f"{contender}: {data['codes']} codes returned, {received} received")
    return Result(
        contender=contender,
        n=args.n,
        attempts=1 if contender == "single" else args.attempts,
        codes=int(data["codes"]),
        tries=len(ledger["orders"]),
        charged=Decimal(str(ledger["charged"])).quantize(CENT),
        refunded=Decimal(str(ledger["refunded"])).quantize(CENT),
        requests=int(stats["total"]),
        left_pending=int(ledger["orders_by_status"].get("PENDING", 0)),
        unrefunded=unrefunded,
        balanced=bool(ledger["balanced"]),
        errors=int(data["errors"]),
        error_samples=list(data["error_samples"]),
        wall_s=float(data["wall_s"]),
    )


def table(results: list[Result]) -> str:
    rows = [
        [
            r.label,
            str(r.attempts),
            f"{r.codes}/{r.n}",
            f"{r.tries}",
            fmt(r.per_code(r.tries), 2),
            fmt(r.per_code(r.charged), 3),
            fmt(r.per_code(r.paid), 3),
            f"{r.charged:.2f} / {r.refunded:.2f}",
            fmt(r.per_code(r.requests), 1),
            str(r.left_pending),
            str(r.unrefunded),
            fmt(r.wall_s, 1),
        ]
        for r in results
    ]
    return markdown_table(
        [
            "contender",
            "tries allowed",
            "codes",
            "numbers bought",
            "tries/code",
            "USD charged/code",
            "USD paid/code",
            "charged / refunded USD",
            "requests/code",
            "left PENDING",
            "unrefunded",
            "wall s",
        ],
        rows,
        "lrrrrrrrrrrr",
    )


def write_json(path: Path, args: argparse.Namespace, results: list[Result]) -> None:
    report = {
        "n": args.n,
        "attempts": args.attempts,
        "seed": args.seed,
        "time_scale": args.time_scale,
        "delivery_rate": DELIVERY_RATE,
        "results": [r.to_dict() for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


async def main(args: argparse.Namespace) -> int:
    results = []
    for contender in args.contenders:
        progress(f"attempts: {args.n} codes wanted, {contender}")
        results.append(await run_contender(contender, args))
    scale = args.time_scale
    print(
        f"attempts: {args.n} codes wanted at once, {DELIVERY_RATE:.0%} of numbers get a code, "
        f"telegram (russia 0.18 USD, kazakhstan 0.12 USD); code delays "
        f"{REAL_DELAYS[0] / scale:g}-{REAL_DELAYS[1] / scale:g} s, wait per try "
        f"{REAL_TIMEOUT / scale:g} s, poll {REAL_INTERVAL / scale:g} s (time scaled 1/{scale:g}); "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    print()
    print(table(results))
    clean = all(r.left_pending == 0 and r.unrefunded == 0 and r.balanced for r in results)
    print()
    print(
        "every number without a code refunded, none left PENDING, ledgers balanced"
        if clean
        else "MONEY CHECK FAILED: see left PENDING / unrefunded"
    )
    if args.json:
        write_json(Path(args.json), args, results)
    errors = sum(r.errors for r in results)
    if errors:
        print(f"unexpected errors: {errors}, e.g. {results[0].error_samples}", file=sys.stderr)
    return 0 if clean and not errors else 1


# -- the child: one contender ----------------------------------------------------------


async def child(config: Json) -> Json:
    """Want ``n`` codes at once the contender's way; count what came back."""
    import gsim_async
    from gsim_async import NoCodeError, NoNumberAvailableError

    contender = config["contender"]
    timeout = config["timeout"]
    attempts = config["attempts"]
    errors: list[str] = []
    started = time.perf_counter()
    async with gsim_async.Client(
        config["api_key"], base_url=config["base_url"], poll_interval=config["interval"]
    ) as gsim:

        async def once() -> bool:
            try:
                async with gsim.orders.activation("telegram", "russia") as act:
                    await act.wait_for_code(timeout=timeout)
            except NoCodeError:
                return False
            return True

        async def by_hand() -> bool:
            for _ in range(attempts):
                if await once():
                    return True
            return False

        async def loop(countries: list[str]) -> bool:
            try:
                async for act in gsim.orders.activations("telegram", countries, attempts=attempts):
                    async with act:
                        await act.wait_for_code(timeout=timeout)
            except (NoCodeError, NoNumberAvailableError):
                return False
            return True

        async def one() -> bool:
            try:
                if contender == "single":
                    return await once()
                if contender == "by_hand":
                    return await by_hand()
                if contender == "activations":
                    return await loop(["russia"])
                return await loop(["russia", "kazakhstan"])
            except gsim_async.GsimError as exc:
                errors.append(repr(exc))
                return False

        outcomes = await asyncio.gather(*(one() for _ in range(config["n"])))
    return {
        "codes": sum(outcomes),
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_s": time.perf_counter() - started,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="codes wanted at once")
    parser.add_argument("--attempts", type=int, default=3, help="tries allowed per code")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-scale", type=float, default=20.0, help="1 is real time")
    parser.add_argument(
        "--contenders",
        type=lambda s: s.split(","),
        default=list(CONTENDERS),
        help=f"comma-separated, of {','.join(CONTENDERS)}",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.n <= 10_000 or not 1 <= args.attempts <= 20 or args.time_scale <= 0:
        parser.error("--n must be 1..10,000, --attempts 1..20, --time-scale above 0")
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; known: {list(CONTENDERS)}")
    return args


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(parse_args())))
