"""What reading a fleet's status costs: ``RedisFleet.status()`` on fleets of several sizes.

A real ``redis-server`` is filled with a fleet as its members keep it (heartbeats,
epochs, what each wrote of itself, the gate, the last 200 429s, ownership records,
registrations of waits and each member's rows of obligations), at each size below;
then the status is read ``--reads`` times on one open connection (as ``gsim fleet
status --watch`` does) and once per read with a connection of its own (as
``await RedisFleet(url).status()`` does). Beside it, in the same run, the floor: one
round trip to the same Redis (a pipeline of one GET).

    python -m benchmarks.fleet_status [--reads 50] [--json status.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis

from benchmarks._common import Json, fmt, markdown_table, median, percentile, progress
from benchmarks._redis import RedisProcess
from gsim_async.fleet import RedisFleet

API_KEY = "2s_" + "b" * 40
BASE_URL = "https://gsim.io"
#: (members, ownership records, rows owed per member, waits registered per member)
SIZES = [(2, 100, 10, 5), (8, 10_000, 250, 125), (8, 100_000, 2_000, 1_250)]


def _row(order_id: str) -> str:
    """An order owed under a wait, as a member writes its row."""
    row = {"kind": "order", "state": "owed", "purpose": "wait", "item_id": order_id,
           "item": {"id": order_id, "phoneNumber": "+70000000000"},
           "deadline": time.time() + 120, "action": "ban", "sent": time.time()}  # fmt: skip
    return json.dumps(row)


async def fill(redis: aioredis.Redis, prefix: str, size: tuple[int, int, int, int]) -> None:
    """A fleet as its members keep it, written straight into Redis."""
    members, held, owed, waits = size
    now = int(time.time() * 1000)
    ids = [f"{n:016x}" for n in range(1, members + 1)]
    pipe = redis.pipeline(transaction=False)
    for n, member in enumerate(ids):
        pipe.zadd(f"{prefix}:members", {member: now - 200})
        pipe.hset(f"{prefix}:epochs", member, n + 1)
        info = {"host": f"bot-{n}", "pid": 1000 + n, "machine": None, "start": None,
                "since": time.time() - 3600}  # fmt: skip
        pipe.hset(f"{prefix}:info", member, json.dumps(info))
        pipe.sadd(f"{prefix}:journaled", member)
        rows = {f"row-{n}-{r}": _row(f"o{n}-{r}") for r in range(owed)}
        if rows:
            pipe.hset(f"{prefix}:owed:{member}", mapping=rows)
        watch = {f"o{n}-{w}|{member}": json.dumps({"interval": 2.0}) for w in range(waits)}
        if watch:
            pipe.hset(f"{prefix}:watch", mapping=watch)
    pipe.set(f"{prefix}:leader", f"{ids[0]}:1", px=3000)
    pipe.hset(f"{prefix}:gate", mapping={"phase": "learnt", "rate": "17.6", "until": now})
    for t in range(200):
        pipe.lpush(f"{prefix}:throttles", f"{now - t * 1000}:60000:{int(t == 0)}:{ids[0]}")
    await pipe.execute()
    for start in range(0, held, 10_000):
        chunk = {f"h{i}": ids[i % members] for i in range(start, min(held, start + 10_000))}
        await redis.hset(f"{prefix}:held", mapping=chunk)


async def timed(reads: int, read: object) -> list[float]:
    took = []
    for _ in range(reads):
        began = time.perf_counter()
        await read()  # type: ignore[operator]
        took.append(time.perf_counter() - began)
    return took


async def measure(url: str, size: tuple[int, int, int, int], reads: int) -> Json:
    fleet = RedisFleet(url)
    prefix = fleet.prefix(API_KEY, BASE_URL)
    redis = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await redis.flushall()
        await fill(redis, prefix, size)

        async def floor() -> None:
            pipe = redis.pipeline(transaction=False)
            pipe.get(f"{prefix}:leader")
            await pipe.execute()

        floor_times = await timed(reads, floor)
        async with fleet._reader(API_KEY, BASE_URL) as reader:
            kept = await timed(reads, reader.read)
            found = await reader.read()
        fresh = await timed(reads, lambda: fleet.status(API_KEY, base_url=BASE_URL))
    finally:
        await redis.aclose()
    assert len(found.members) == size[0]
    assert found.ownership_records == size[1]
    return {
        "members": size[0],
        "held": size[1],
        "owed_per_member": size[2],
        "waits_per_member": size[3],
        "floor_ms": 1000 * (median(floor_times) or 0),
        "kept_ms": 1000 * (median(kept) or 0),
        "kept_p95_ms": 1000 * (percentile(kept, 95) or 0),
        "fresh_ms": 1000 * (median(fresh) or 0),
    }


async def main(args: argparse.Namespace) -> int:
    results = []
    with RedisProcess() as server:
        for size in SIZES:
            progress(f"fleet status: {size[0]} members, {size[1]} held ...")
            results.append(await measure(server.url, size, args.reads))
    headers = ["members", "ownership records", "owed rows", "waits", "floor (1 round trip)",
               "status, connection kept", "p95", "status, own connection"]  # fmt: skip
    rows = [
        [
            str(r["members"]),
            str(r["held"]),
            str(r["members"] * r["owed_per_member"]),
            str(r["members"] * r["waits_per_member"]),
            fmt(r["floor_ms"], 2, " ms"),
            fmt(r["kept_ms"], 2, " ms"),
            fmt(r["kept_p95_ms"], 2, " ms"),
            fmt(r["fresh_ms"], 2, " ms"),
        ]
        for r in results
    ]
    print(markdown_table(headers, rows, "rrrrrrrr"))
    if args.json:
        report = {"benchmark": "fleet_status", "python": platform.python_version(),
                  "reads": args.reads, "results": results}  # fmt: skip
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")  # noqa: ASYNC240
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=50, help="reads timed per size")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
