"""Fleets: 8 processes x 125 waits against 1 process x 1,000, with and without Redis.

Contenders (each against its own fresh sandbox, every process its own interpreter):

* ``one``: one process buys N orders and waits for every code (the baseline);
* ``eight``: eight processes buy N/8 each and wait, each with its own client (no fleet):
  each one pages through the whole account's pending orders, the others' included;
* ``eight_fleet``: the same with ``Client(fleet=RedisFleet(...))``: one leader polls.

Then the same eight-process fleet under a rate limit (20 req/s and ``Retry-After: 60``,
time-scaled like everything else), starting its activations together: the pauses met
by the whole fleet and the share of requests answered 429.

Requests per code count every request the sandbox served (purchases, polls, the
baseline listing each client makes before its first purchase). A code's delay runs
from its arrival at the sandbox to the moment its waiter had it. Needs ``redis-server``
on ``PATH`` (started on a free port in a temporary directory, never a shared one).

``python -m benchmarks.fleet [--scale 10] [--n 1000] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from ._common import Json, fmt, markdown_table, percentile, progress, run_child, running_sandbox

REAL_INTERVAL = 2.0
REAL_DELAYS = (5.0, 60.0)
REAL_RATE = 20.0
REAL_RETRY_AFTER = 60.0
PROCESSES = 8


@contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server on a free port; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


async def child(config: Json) -> Json:
    """One process: buy its share, wait for every code; what it saw."""
    import gsim_async
    from gsim_async.fleet import RedisFleet

    retries: list[tuple[float, str]] = []
    fleet = (
        RedisFleet(config["redis_url"], namespace=config["namespace"]) if config["fleet"] else None
    )
    records: list[tuple[str, str, float]] = []
    errors: list[str] = []
    cpu0 = time.process_time()
    async with gsim_async.Client(
        config["api_key"],
        base_url=config["base_url"],
        poll_interval=config["interval"],
        fleet=fleet,
        on_retry=lambda e: retries.append((time.time(), e.reason)),
    ) as gsim:

        async def one() -> None:
            try:
                async with gsim.orders.activation("telegram", "russia") as act:
                    code = await act.wait_for_code(timeout=config["timeout"])
                    records.append((act.order.id, code, time.time()))
            except gsim_async.GsimError as exc:
                errors.append(repr(exc)[:200])

        await asyncio.gather(*(one() for _ in range(config["n"])))
        requests = gsim.requests_sent
    return {
        "records": records,
        "errors": errors[:5],
        "error_count": len(errors),
        "retries": retries,
        "requests": requests,
        "cpu_s": time.process_time() - cpu0,
    }


async def contender(
    name: str, *, redis_url: str, n: int, scale: float, limited: bool = False
) -> Json:
    """Run one contender against its own sandbox; its figures."""
    processes = 1 if name == "one" else PROCESSES
    delays = (REAL_DELAYS[0] / scale, REAL_DELAYS[1] / scale)
    async with running_sandbox(7, code_delay=delays, auto_deliver=True) as sb:
        if limited:
            await sb.post(
                "faults",
                {"rate_limit": REAL_RATE * scale, "retry_after": round(REAL_RETRY_AFTER / scale)},
            )
        config = {
            "base_url": sb.base_url,
            "api_key": sb.api_key,
            "redis_url": redis_url,
            "namespace": uuid.uuid4().hex[:8],
            "fleet": name.startswith("eight_fleet"),
            "interval": REAL_INTERVAL / scale,
            "timeout": 3 * REAL_DELAYS[1] / scale + (REAL_RETRY_AFTER / scale if limited else 0),
            "n": n // processes,
        }
        started = time.time()
        results = await asyncio.gather(*(run_child("fleet", config) for _ in range(processes)))
        wall = time.time() - started
        stats = await sb.stats()
        orders = {o["id"]: o for o in await sb.orders()}
    records = [r for result in results for r in result["records"]]
    delays_s = [
        max(0.0, returned - orders[oid]["code_delivered_at"])
        for oid, _, returned in records
        if orders.get(oid, {}).get("code_delivered_at") is not None
    ]
    wrong = sum(1 for oid, code, _ in records if orders.get(oid, {}).get("sms_code") != code)
    throttled = sorted(t for r in results for t, why in r["retries"] if why.startswith("429"))
    pause = REAL_RETRY_AFTER / scale
    pauses = 0
    last = -1e18
    for at in throttled:
        if at - last > pause:  # 429s within one pause belong to one congestion event
            pauses += 1
            last = at
    codes = len(records)
    total = int(stats["total"])
    return {
        "contender": name,
        "processes": processes,
        "codes": codes,
        "wrong_codes": wrong,
        "errors": sum(r["error_count"] for r in results),
        "requests": total,
        "requests_per_code": total / codes if codes else None,
        "p50_s": percentile(delays_s, 50),
        "p99_s": percentile(delays_s, 99),
        "status_429": int(stats["by_status"].get("429", 0)),
        "share_429": int(stats["by_status"].get("429", 0)) / total if total else None,
        "pauses": pauses,
        "wall_s": wall,
        "cpu_s": sum(r["cpu_s"] for r in results),
    }


async def run(*, n: int, scale: float) -> Json:
    """Every contender; the rows of the report."""
    with redis_server() as url:
        rows = []
        for name, limited in (
            ("one", False),
            ("eight", False),
            ("eight_fleet", False),
            ("eight_fleet_limited", True),
        ):
            progress(f"fleet: {name}")
            rows.append(await contender(name, redis_url=url, n=n, scale=scale, limited=limited))
    return {"n": n, "scale": scale, "rows": rows}


def report(result: Json) -> str:
    """The markdown table, every figure beside the one-process baseline."""
    rows = {r["contender"]: r for r in result["rows"]}
    base = rows["one"]["requests_per_code"] or 0
    fleet = rows["eight_fleet"]["requests_per_code"] or 0
    limited = rows["eight_fleet_limited"]
    lines = [
        f"Fleet, N = {result['n']} waits, time scaled 1/{result['scale']:g} "
        f"(delays {REAL_DELAYS[0] / result['scale']:g}-{REAL_DELAYS[1] / result['scale']:g} s, "
        f"interval {REAL_INTERVAL / result['scale']:g} s; limit {REAL_RATE * result['scale']:g} "
        f"req/s, Retry-After {REAL_RETRY_AFTER / result['scale']:g} s)",
        "",
        markdown_table(
            [
                "contender",
                "processes",
                "codes",
                "requests/code",
                "vs 1 process",
                "p99 s",
                "429s",
                "pauses",
                "wall s",
            ],
            [
                [
                    r["contender"],
                    str(r["processes"]),
                    f"{r['codes']} ({r['wrong_codes']} wrong, {r['errors']} errors)",
                    fmt(r["requests_per_code"], 3),
                    fmt((r["requests_per_code"] or 0) / base, 2, "x") if base else "-",
                    fmt(r["p99_s"], 3),
                    f"{r['status_429']} ({fmt((r['share_429'] or 0) * 100, 2)} %)",
                    str(r["pauses"]),
                    fmt(r["wall_s"], 1),
                ]
                for r in result["rows"]
            ],
            "lrrrrrrrr",
        ),
        "",
        f"- fleet requests per code vs one process: {fleet / base:.3f}x (goal <= 1.05x)"
        if base
        else "- no baseline",
        f"- under the limit, pauses met by the whole fleet: {limited['pauses']} (goal <= 1); "
        f"429 share {fmt((limited['share_429'] or 0) * 100, 2)} % (goal <= 2 %)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    result = asyncio.run(run(n=args.n, scale=args.scale))
    print(report(result))
    if args.json_path:
        with open(args.json_path, "w") as out:
            json.dump(result, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
