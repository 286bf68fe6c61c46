"""Verification at scale, and under a rate limit: the SDK's waiting versus the naive loop.

N concurrent orders get their codes after delays drawn uniformly from a range (the
sandbox's ``--code-delay``, same seed, so every contender faces the same delays).
Each contender runs in its own process against its own fresh sandbox:

* ``sdk_wait``: ``gsim_async.wait_for_code`` per order (one task each), default strategy;
* ``sdk_per_order``: the same with per-order polling forced — a *benchmark-only* patch
  of ``Watcher._list_cost`` (there is no public switch), to show what the lists save;
* ``sdk_as_completed``: ``client.orders.as_completed`` over all orders;
* ``naive``: gsim-api.md's usage example in plain aiohttp — one task per order, sleep
  an interval, ``GET /orders/{id}``, repeat; a non-200 answer (a 429) is simply
  retried at the next interval, as that example would.

Time is scaled down by ``time_scale`` (default 10): delays 5-60 s at a 2 s interval
become 0.5-6 s at 0.2 s, the same ratios; under a rate limit the server's limit is
scaled up by the same factor (20 req/s becomes 200 req/s), so the requests per poll
interval the limit allows are the same. Two things do not scale: the sandbox's
``Retry-After`` (at least 1 s, which the SDK honours and the naive loop ignores) and
the client's CPU time per poll round, so a scaled run is, if anything, harder on the
SDK than real time; ``--time-scale 1`` runs in real time.

A code's delay is measured from its arrival at the sandbox (``code_delivered_at`` in
``/_sandbox/orders``, wall clock) to the moment the caller's wait returned it
(``time.time()`` in the contender), or from the start of the wait when that came later
(``as_completed`` starts waiting only once every order is bought).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import time
from typing import Any

import aiohttp

from ._common import (
    Clock,
    Json,
    fmt,
    markdown_table,
    peak_rss_bytes,
    percentile,
    progress,
    route_summary,
    rss_bytes,
    run_child,
    running_sandbox,
    status_count,
)

CONTENDERS: dict[str, str] = {
    "sdk_wait": "SDK `wait_for_code` (default strategy)",
    "sdk_per_order": "SDK `wait_for_code`, per-order polling forced (benchmark-only patch)",
    "sdk_as_completed": "SDK `orders.as_completed`",
    "naive": "naive loop, plain aiohttp (gsim-api.md example)",
}

#: The real-world parameters of design.md's targets; divided by the time scale.
REAL_INTERVAL = 2.0
REAL_DELAYS = (5.0, 60.0)
REAL_RATE_LIMIT = 20.0


@dataclasses.dataclass(frozen=True)
class Timing:
    """Poll interval, code delays and rate limit at one time scale."""

    scale: float

    @property
    def interval(self) -> float:
        return REAL_INTERVAL / self.scale

    @property
    def delays(self) -> tuple[float, float]:
        return (REAL_DELAYS[0] / self.scale, REAL_DELAYS[1] / self.scale)

    @property
    def rate_limit(self) -> float:
        return REAL_RATE_LIMIT * self.scale

    def describe(self) -> str:
        low, high = self.delays
        return (
            f"code delays {low:g}-{high:g} s, poll interval {self.interval:g} s "
            f"(= {REAL_DELAYS[0]:g}-{REAL_DELAYS[1]:g} s at {REAL_INTERVAL:g} s, "
            f"time scaled 1/{self.scale:g})"
        )


@dataclasses.dataclass
class ContenderResult:
    """One contender's run; times in seconds, memory in bytes."""

    scenario: str
    contender: str
    n: int
    interval: float
    rate_limit: float | None
    requests: int
    phase_requests: int
    purchases: int
    codes: int
    wrong_codes: int
    errors: int
    error_samples: list[str]
    status_429: int
    p50_s: float | None
    p99_s: float | None
    max_s: float | None
    last_code_s: float | None
    wall_s: float
    cpu_s: float
    peak_rss: int | None
    idle_rss: int | None
    timed_out: bool
    #: Requests per API route ("POST /api/v1/orders": ...), from the sandbox.
    by_route: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        return CONTENDERS[self.contender]

    @property
    def requests_per_code(self) -> float | None:
        return self.requests / self.codes if self.codes else None

    @property
    def share_429(self) -> float | None:
        """429s among the requests of the measured phase (the waits, under a limit)."""
        return self.status_429 / self.phase_requests if self.phase_requests else None

    def to_dict(self) -> Json:
        data = dataclasses.asdict(self)
        data["label"] = self.label
        data["requests_per_code"] = self.requests_per_code
        data["share_429"] = self.share_429
        return data


# -- the parent: one sandbox and one child process per contender ----------------------


async def run_contender(
    scenario: str,
    contender: str,
    n: int,
    timing: Timing,
    seed: int,
    *,
    rate_limited: bool = False,
) -> ContenderResult:
    """Run one contender in a child process against a fresh sandbox; measure it."""
    high = timing.delays[1]
    interval = timing.interval
    # Generous: a wait that times out is a failure of the contender, reported as such.
    patience = 150 if rate_limited else 60
    wait_timeout = high + patience * interval
    async with running_sandbox(seed, code_delay=timing.delays, auto_deliver=True) as sb:
        await sb.post("stats/reset")
        config: Json = {
            "contender": contender,
            "base_url": sb.base_url,
            "api_key": sb.api_key,
            "n": n,
            "interval": interval,
            "wait_timeout": wait_timeout,
            "deadline": wait_timeout + 30 + n / 50,
            "prebuy": rate_limited,
            "rate_limit": timing.rate_limit if rate_limited else None,
        }
        child = await run_child("verification", config)
        stats = await sb.stats()
        records = {o["id"]: o for o in await sb.orders()}
    delays: list[float] = []
    wrong = 0
    for order_id, code, wait_started, returned in child["records"]:
        record = records.get(order_id)
        if record is None or record["sms_code"] != code:
            wrong += 1
            continue
        # A code that came before the caller started waiting (as_completed waits only
        # after buying everything) counts from the start of the wait.
        arrived = max(record["code_delivered_at"], wait_started)
        delays.append(returned - arrived)
    returned_at = [r[3] for r in child["records"]]
    phase_requests = int(stats["total"])
    # Under a limit the counters were reset once the purchases were made.
    requests = phase_requests + (int(child["purchased"]) if rate_limited else 0)
    return ContenderResult(
        scenario=scenario,
        contender=contender,
        n=n,
        interval=interval,
        rate_limit=config["rate_limit"],
        requests=requests,
        phase_requests=phase_requests,
        purchases=int(child["purchased"]),
        codes=len(delays),
        wrong_codes=wrong,
        errors=int(child["errors"]),
        error_samples=list(child["error_samples"]),
        status_429=status_count(stats, 429),
        p50_s=percentile(delays, 50),
        p99_s=percentile(delays, 99),
        max_s=max(delays) if delays else None,
        last_code_s=max(returned_at) - child["started_at"] if returned_at else None,
        wall_s=float(child["wall_s"]),
        cpu_s=float(child["cpu_s"]),
        peak_rss=child["peak_rss"],
        idle_rss=child["idle_rss"],
        timed_out=bool(child["timed_out"]),
        by_route={k: int(v) for k, v in stats["by_route"].items()},
    )


#: At and above this size only the SDK's default ways of waiting run (unless asked): the
#: naive loop and forced per-order polling would send ~15 requests per code, more than
#: the sandbox serves at the poll cadence, and measure the sandbox, not the client.
SDK_ONLY_FROM = 10_000
SDK_DEFAULT = ["sdk_wait", "sdk_as_completed"]


async def run_scale(
    sizes: list[int],
    timing: Timing,
    seed: int,
    contenders: list[str] | None = None,
    *,
    sdk_only_from: int | None = SDK_ONLY_FROM,
) -> list[ContenderResult]:
    """Scenario 1: every contender at every size, no rate limit.

    From ``sdk_only_from`` waiting orders (None: never) only :data:`SDK_DEFAULT` run.
    """
    results = []
    for n in sizes:
        chosen = contenders or list(CONTENDERS)
        if sdk_only_from is not None and n >= sdk_only_from:
            chosen = [c for c in chosen if c in SDK_DEFAULT]
        for contender in chosen:
            progress(f"scale: N={n:,} {contender}")
            results.append(await run_contender("scale", contender, n, timing, seed))
    return results


async def run_rate_limited(n: int, timing: Timing, seed: int) -> list[ContenderResult]:
    """Scenario 2: SDK and naive with the server limited once the orders are bought."""
    results = []
    for contender in ("sdk_wait", "naive"):
        progress(f"rate limit: N={n:,} {contender}, {timing.rate_limit:g} req/s")
        results.append(
            await run_contender("rate_limit", contender, n, timing, seed, rate_limited=True)
        )
    return results


def _mb(value: int | None) -> str:
    return fmt(None if value is None else value / 2**20, 0)


def scale_table(results: list[ContenderResult]) -> str:
    """The per-contender table of scenario 1."""
    rows = [
        [
            f"{r.n:,}",
            r.label,
            fmt(r.requests_per_code, 2),
            f"{r.requests:,}",
            f"{r.status_429:,}",
            f"{r.codes:,}/{r.n:,}" + (f" ({r.errors} failed)" if r.errors else ""),
            fmt(r.p50_s, 3),
            fmt(r.p99_s, 3),
            fmt(r.wall_s, 1),
            fmt(r.cpu_s, 2),
            _mb(r.peak_rss),
            route_summary(r.by_route),
        ]
        for r in results
    ]
    return markdown_table(
        [
            "N",
            "contender",
            "requests/code",
            "requests",
            "429s",
            "codes",
            "p50 s",
            "p99 s",
            "wall s",
            "client CPU s",
            "peak RSS MiB",
            "requests by route",
        ],
        rows,
        "rlrrrrrrrrrl",
    )


def rate_limit_table(results: list[ContenderResult]) -> str:
    """The per-contender table of scenario 2."""
    rows = [
        [
            f"{r.n:,}",
            r.label,
            f"{r.phase_requests:,}",
            f"{r.status_429:,}",
            fmt(None if r.share_429 is None else r.share_429 * 100, 2, " %"),
            f"{r.codes:,}/{r.n:,}" + (f" ({r.errors} failed)" if r.errors else ""),
            fmt(r.p99_s, 2),
            fmt(r.last_code_s, 1),
            fmt(r.cpu_s, 2),
        ]
        for r in results
    ]
    return markdown_table(
        [
            "N",
            "contender",
            "requests while waiting",
            "429s",
            "429 share",
            "codes",
            "p99 s",
            "last code s",
            "client CPU s",
        ],
        rows,
        "rlrrrrrrr",
    )


# -- the child: one contender ----------------------------------------------------------


async def child(config: Json) -> Json:
    """Run one contender (in its own process) and report what it saw."""
    records: list[tuple[str, str, float, float]] = []
    errors: list[str] = []
    state: dict[str, Any] = {"purchased": 0}
    idle = rss_bytes()
    started_at = time.time()
    clock = Clock()
    run = _naive(config, records, errors, state) if config["contender"] == "naive" else None
    if run is None:
        run = _sdk(config, records, errors, state)
    timed_out = False
    try:
        await asyncio.wait_for(run, config["deadline"])
    except asyncio.TimeoutError:
        timed_out = True
    return {
        "records": records,
        "errors": len(errors),
        "error_samples": errors[:3],
        "purchased": state["purchased"],
        "started_at": state.get("waits_from", started_at),
        "cpu_s": clock.cpu(),
        "wall_s": clock.wall(),
        "idle_rss": idle,
        "peak_rss": peak_rss_bytes(),
        "timed_out": timed_out,
    }


async def _limit_server(base_url: str, rate: float) -> None:
    """Switch the sandbox's rate limit on and restart its counters (control API)."""
    async with aiohttp.ClientSession(base_url + "/_sandbox/") as control:
        async with control.post("faults", json={"rate_limit": rate}) as resp:
            resp.raise_for_status()
        async with control.post("stats/reset") as resp:
            resp.raise_for_status()


def _never_lists(self: object, waiting: int) -> float:
    return float("inf")


async def _sdk(
    config: Json,
    records: list[tuple[str, str, float, float]],
    errors: list[str],
    state: dict[str, Any],
) -> None:
    import gsim_async

    contender = config["contender"]
    if contender == "sdk_per_order":
        from gsim_async._watcher import Watcher

        # Benchmark-only: the watcher believes list pages cost more than per-order GETs,
        # so it polls GET /orders/{id} for every order however many are waiting.
        Watcher._list_cost = _never_lists  # type: ignore[method-assign]
    timeout = config["wait_timeout"]
    async with gsim_async.Client(
        config["api_key"], base_url=config["base_url"], poll_interval=config["interval"]
    ) as gsim:

        async def buy() -> gsim_async.Order:
            order = await gsim.orders.create("telegram", "russia")
            state["purchased"] += 1
            return order

        async def wait(order: gsim_async.Order, started: float) -> None:
            try:
                code = await gsim_async.wait_for_code(order, timeout=timeout)
            except gsim_async.GsimError as exc:
                errors.append(repr(exc))
                return
            records.append((order.id, code, started, time.time()))

        if config["prebuy"] or contender == "sdk_as_completed":
            orders = await asyncio.gather(*(buy() for _ in range(config["n"])))
            if config["rate_limit"] is not None:
                await _limit_server(config["base_url"], config["rate_limit"])
                state["waits_from"] = time.time()
            started = time.time()
            if contender == "sdk_as_completed":
                async for result in gsim.orders.as_completed(orders, timeout=timeout):
                    if result.code is None:
                        errors.append(repr(result.error))
                    else:
                        records.append((result.order.id, result.code, started, time.time()))
            else:
                await asyncio.gather(*(wait(order, started) for order in orders))
        else:

            async def one() -> None:
                try:
                    order = await buy()
                except gsim_async.GsimError as exc:
                    errors.append(repr(exc))
                    return
                await wait(order, time.time())

            await asyncio.gather(*(one() for _ in range(config["n"])))


async def _naive(
    config: Json,
    records: list[tuple[str, str, float, float]],
    errors: list[str],
    state: dict[str, Any],
) -> None:
    api = config["base_url"] + "/api/v1"
    interval = config["interval"]
    max_polls = math.ceil(config["wait_timeout"] / interval)
    headers = {"Authorization": f"Bearer {config['api_key']}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def buy() -> str:
            async with session.post(
                f"{api}/orders", json={"service": "telegram", "country": "russia"}
            ) as resp:
                resp.raise_for_status()
                order_id: str = json.loads(await resp.read())["id"]
            state["purchased"] += 1
            return order_id

        async def poll(order_id: str, started: float) -> None:
            for _ in range(max_polls):
                await asyncio.sleep(interval)
                try:
                    async with session.get(f"{api}/orders/{order_id}") as resp:
                        status = resp.status
                        body = await resp.read()
                except aiohttp.ClientError:
                    continue
                if status != 200:
                    continue  # a 429 or a 5xx: try again at the next interval
                order = json.loads(body)
                code = order.get("smsCode")
                if code:
                    records.append((order_id, code, started, time.time()))
                    return
                if order.get("status") in ("EXPIRED", "CANCELLED"):
                    errors.append(f"order {order_id} ended {order['status']}")
                    return
            # No code in time: ban the number for a refund, as the example does.
            with contextlib.suppress(aiohttp.ClientError):
                async with session.post(f"{api}/orders/{order_id}/ban") as resp:
                    await resp.read()
            errors.append(f"no code for order {order_id} after {max_polls} polls")

        if config["prebuy"]:
            order_ids = await asyncio.gather(*(buy() for _ in range(config["n"])))
            if config["rate_limit"] is not None:
                await _limit_server(config["base_url"], config["rate_limit"])
                state["waits_from"] = time.time()
            started = time.time()
            await asyncio.gather(*(poll(order_id, started) for order_id in order_ids))
        else:

            async def one() -> None:
                order_id = await buy()
                await poll(order_id, time.time())

            await asyncio.gather(*(one() for _ in range(config["n"])))
