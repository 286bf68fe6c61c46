"""p99 from a code's arrival to its caller while one order's ``GET`` takes 10 s.

design.md: "code available → returned to caller, p99 ≤ poll interval + 0.5 s, also while
one order's GET takes 10 s". One order is made slow with the sandbox's
``set_order_latency`` (``POST /_sandbox/orders/{id}/latency``: every ``GET
/orders/{id}`` of it takes 10 s, time-scaled); the figure is the p99 over the *other*
orders, whose codes must not wait behind it. Two cases, each in its own child process
against a fresh sandbox:

* **few waiters** — the watcher polls with per-order ``GET``s (its own choice while at
  most two orders wait): K clients, each waiting on one order at a time, M times in a
  row; half of the clients also wait on a slow order that never gets its code (the
  other half is the baseline of the same run). Codes are delivered through the control
  API after ``uniform(1, 4)`` poll intervals (only the phase of a code against the poll
  rounds matters here);
* **many waiters** — the watcher pages through lists: N orders bought and waited on at
  once with the usual code delays (5-60 s, time-scaled), the first one slow. Baseline:
  the same run without the slow order (fresh sandbox, same seed, same delays).

The requests per route show how the watcher polled. The 0.5 s of the target is not
time-scaled (as in the scale row): it is the client's time to run a round and return.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from typing import Any

import aiohttp

from ._common import (
    Json,
    fmt,
    markdown_table,
    percentile,
    progress,
    route_summary,
    run_child,
    running_sandbox,
)

#: One order's GET takes this long, in real time (divided by the time scale).
REAL_SLOW_GET = 10.0
P99_SLACK_S = 0.5


@dataclasses.dataclass
class SlowGetResult:
    """One run: code delays of the other orders, with or without a slow order."""

    case: str  # "few" or "many"
    slow: bool
    interval: float
    slow_get_s: float
    waiting: int
    delays: list[float]
    slow_order_delay_s: float | None
    by_route: dict[str, int]
    errors: int
    error_samples: list[str]
    cpu_s: float
    wall_s: float

    @property
    def p50_s(self) -> float | None:
        return percentile(self.delays, 50)

    @property
    def p99_s(self) -> float | None:
        return percentile(self.delays, 99)

    @property
    def max_s(self) -> float | None:
        return max(self.delays) if self.delays else None

    @property
    def limit_s(self) -> float:
        return self.interval + P99_SLACK_S

    def to_dict(self) -> Json:
        data = dataclasses.asdict(self)
        for name in ("p50_s", "p99_s", "max_s", "limit_s"):
            data[name] = getattr(self, name)
        return data


@dataclasses.dataclass
class SlowGetCase:
    """A case with its slow run and its baseline (the same run without a slow order)."""

    case: str
    slow: SlowGetResult
    baseline: SlowGetResult

    @property
    def met(self) -> bool:
        p99 = self.slow.p99_s
        return p99 is not None and p99 <= self.slow.limit_s and not self.slow.errors

    def to_dict(self) -> Json:
        return {
            "case": self.case,
            "slow": self.slow.to_dict(),
            "baseline": self.baseline.to_dict(),
            "met": self.met,
        }


async def run_slow_get(
    *,
    scale: float,
    interval: float,
    delays: tuple[float, float],
    seed: int,
    groups: int,
    repeats: int,
    many: int,
) -> list[SlowGetCase]:
    """Both cases; ``groups`` x ``repeats`` codes with few waiters, ``many`` with many."""
    slow_get = REAL_SLOW_GET / scale
    progress(f"slow GET: few waiters ({groups} clients x {repeats} codes), GET {slow_get:g} s")
    few, few_base = await _run("few", True, interval, slow_get, delays, seed, groups, repeats)
    progress(f"slow GET: {many:,} waiting, one GET {slow_get:g} s, and without it")
    many_slow, _ = await _run("many", True, interval, slow_get, delays, seed, 1, many)
    many_base, _ = await _run("many", False, interval, slow_get, delays, seed, 1, many)
    return [SlowGetCase("few", few, few_base), SlowGetCase("many", many_slow, many_base)]


async def _run(
    case: str,
    slow: bool,
    interval: float,
    slow_get: float,
    delays: tuple[float, float],
    seed: int,
    groups: int,
    n: int,
) -> tuple[SlowGetResult, SlowGetResult]:
    """One child; (the run with a slow order, the clients without one in the same run)."""
    auto = case == "many"
    async with running_sandbox(seed, code_delay=delays, auto_deliver=auto) as sb:
        await sb.post("stats/reset")
        config: Json = {
            "case": case,
            "slow": slow,
            "base_url": sb.base_url,
            "api_key": sb.api_key,
            "interval": interval,
            "slow_get": slow_get,
            "groups": groups,
            "n": n,
            "seed": seed,
            "wait_timeout": delays[1] + 60 * interval + 2 * slow_get,
        }
        child = await run_child("slow_get", config)
        stats = await sb.stats()
        records = {o["id"]: o for o in await sb.orders()}

    def delay(order_id: str, code: str, returned: float) -> float | None:
        record = records.get(order_id)
        if record is None or record["sms_code"] != code or record["code_delivered_at"] is None:
            return None
        return returned - float(record["code_delivered_at"])

    by_group: dict[bool, list[float]] = {True: [], False: []}
    wrong = 0
    for order_id, code, returned, with_slow in child["records"]:
        d = delay(order_id, code, returned)
        if d is None:
            wrong += 1
        else:
            by_group[bool(with_slow)].append(d)
    slow_delay = None
    if child["slow_record"] is not None:
        slow_delay = delay(*child["slow_record"])
    routes = {k: int(v) for k, v in stats["by_route"].items()}

    def result(with_slow: bool, values: list[float]) -> SlowGetResult:
        return SlowGetResult(
            case=case,
            slow=with_slow,
            interval=interval,
            slow_get_s=slow_get,
            waiting=n if case == "many" else 2 if with_slow else 1,
            delays=values,
            slow_order_delay_s=slow_delay if with_slow else None,
            by_route=routes,
            errors=int(child["errors"]) + wrong,
            error_samples=list(child["error_samples"]),
            cpu_s=float(child["cpu_s"]),
            wall_s=float(child["wall_s"]),
        )

    # With many waiters one run is one or the other; with few, half the clients of the
    # run had a slow order and half did not.
    return result(slow, by_group[slow]), result(False, by_group[False])


def _slow_cell(case: str, res: SlowGetResult) -> str:
    if not res.slow:
        return "-"
    if case == "few":
        return "never gets one"
    return fmt(res.slow_order_delay_s, 3)


def slow_get_table(cases: list[SlowGetCase]) -> str:
    rows = []
    for c in cases:
        for res, label in ((c.slow, "one order's GET slow"), (c.baseline, "no slow order")):
            rows.append(
                [
                    c.case,
                    label,
                    f"{res.waiting:,}",
                    f"{len(res.delays):,}",
                    fmt(res.p50_s, 3),
                    fmt(res.p99_s, 3),
                    fmt(res.max_s, 3),
                    fmt(res.limit_s, 2),
                    _slow_cell(c.case, res),
                    route_summary(res.by_route),
                ]
            )
    return markdown_table(
        [
            "case",
            "run",
            "waiting per client",
            "codes measured",
            "p50 s",
            "p99 s",
            "max s",
            "goal s",
            "slow order's own code s",
            "requests by route (whole run)",
        ],
        rows,
        "llrrrrrrrl",
    )


# -- the child --------------------------------------------------------------------------


async def child(config: Json) -> Json:
    """Run one case; report (order id, code, returned at, client had a slow order)."""
    import gsim_async

    from ._common import Clock

    records: list[tuple[str, str, float, bool]] = []
    errors: list[str] = []
    slow_record: list[Any] | None = None
    clock = Clock()
    control_url = config["base_url"] + "/_sandbox/"
    interval = config["interval"]
    timeout = config["wait_timeout"]
    rng = random.Random(f"{config['seed']}:slow-get")
    async with aiohttp.ClientSession(control_url) as control:

        async def post(path: str, body: Json | None = None) -> None:
            async with control.post(path, json=body or {}) as resp:
                resp.raise_for_status()

        async def deliver_later(order_id: str, after: float) -> None:
            await asyncio.sleep(after)
            await post(f"orders/{order_id}/deliver")

        async def make_slow(gsim: gsim_async.Client) -> gsim_async.Order:
            order = await gsim.orders.create("telegram", "russia")
            await post(f"orders/{order.id}/latency", {"seconds": config["slow_get"]})
            return order

        async def wait(gsim: gsim_async.Client, order: gsim_async.Order, with_slow: bool) -> None:
            try:
                code = await gsim_async.wait_for_code(order, timeout=timeout, on_timeout="keep")
            except gsim_async.GsimError as exc:
                errors.append(repr(exc))
                return
            records.append((order.id, code, time.time(), with_slow))

        async def few_group(with_slow: bool) -> None:
            async with gsim_async.Client(
                config["api_key"], base_url=config["base_url"], poll_interval=interval
            ) as gsim:
                slow_wait = None
                if with_slow:
                    slow = await make_slow(gsim)
                    slow_wait = asyncio.ensure_future(
                        gsim_async.wait_for_code(slow, timeout=3600, on_timeout="keep")
                    )
                    await asyncio.sleep(interval)  # its first GET is under way
                for _ in range(config["n"]):
                    order = await gsim.orders.create("telegram", "russia")
                    delivery = asyncio.ensure_future(
                        deliver_later(order.id, rng.uniform(1, 4) * interval)
                    )
                    await wait(gsim, order, with_slow)
                    await delivery
                if slow_wait is not None:
                    slow_wait.cancel()
                    await asyncio.gather(slow_wait, return_exceptions=True)

        if config["case"] == "few":
            await asyncio.gather(*(few_group(g % 2 == 0) for g in range(config["groups"])))
        else:
            async with gsim_async.Client(
                config["api_key"], base_url=config["base_url"], poll_interval=interval
            ) as gsim:
                with_slow = bool(config["slow"])
                first = (
                    await make_slow(gsim)
                    if with_slow
                    else await gsim.orders.create("telegram", "russia")
                )

                async def first_wait() -> None:
                    nonlocal slow_record
                    try:
                        code = await gsim_async.wait_for_code(first, timeout=timeout)
                    except gsim_async.GsimError as exc:
                        errors.append(repr(exc))
                        return
                    if with_slow:
                        slow_record = [first.id, code, time.time()]
                    else:
                        records.append((first.id, code, time.time(), False))

                async def one() -> None:
                    try:
                        order = await gsim.orders.create("telegram", "russia")
                    except gsim_async.GsimError as exc:
                        errors.append(repr(exc))
                        return
                    await wait(gsim, order, with_slow)

                await asyncio.gather(first_wait(), *(one() for _ in range(config["n"] - 1)))
    return {
        "records": records,
        "slow_record": slow_record,
        "errors": len(errors),
        "error_samples": errors[:3],
        "cpu_s": clock.cpu(),
        "wall_s": clock.wall(),
    }
