"""Per-request overhead: client CPU per ``GET /orders/{id}``, SDK versus raw aiohttp.

One child process alternates batches of the same GETs (same server, same order ids,
same concurrency) through each variant and measures its own CPU time per batch:

* ``raw``: ``aiohttp`` ``session.get`` + ``resp.read()`` + ``json.loads`` — the baseline;
* ``sdk``: ``client.orders.get(order_id)`` — what the target is about;
* ``raw_sdk_options`` (diagnostic): raw aiohttp, but with the SDK's headers, timeout
  and request options on a connector configured like the SDK's: what aiohttp itself
  charges for them;
* ``sdk_untyped`` (diagnostic): the SDK's transport with the JSON left as dicts (no
  cattrs models); together these split the overhead into aiohttp options, the SDK's
  transport code, and model conversion.

Each repeat runs every variant once, in rotating order. The target's figure is the
median over repeats of each repeat's SDK/raw ratio (paired: both ran back to back, so a
drift in machine load cancels out); the median CPU microseconds per request of each
variant, and their ratio, are shown beside it. A last, network-free measurement times
the body decoding alone (``json.loads`` versus the SDK's ``loads`` + ``structure(…,
Order)``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from ._common import Json, fmt, markdown_table, median, progress, run_child, running_sandbox

VARIANTS: dict[str, str] = {
    "raw": "raw aiohttp + `json.loads` (baseline)",
    "sdk": "SDK `client.orders.get` (typed `Order`)",
    "raw_sdk_options": "raw aiohttp with the SDK's headers, timeout and options (diagnostic)",
    "sdk_untyped": "SDK transport, JSON left as dicts (diagnostic)",
}


@dataclasses.dataclass
class OverheadResult:
    """CPU µs per request for each variant, per repeat; decoding costs in µs."""

    requests_per_batch: int
    repeats: int
    concurrency: int
    cpu_us: dict[str, list[float]]
    wall_us: dict[str, list[float]]
    decode_us: dict[str, float]

    def median_cpu(self, variant: str) -> float | None:
        return median(self.cpu_us[variant])

    @property
    def ratio(self) -> float | None:
        """SDK over raw, medians of CPU per request."""
        sdk, raw = self.median_cpu("sdk"), self.median_cpu("raw")
        return sdk / raw if sdk is not None and raw else None

    @property
    def paired_ratio(self) -> float | None:
        """Median over repeats of that repeat's SDK/raw ratio (robust to drifting load).

        The figure design.md's target is about (<= 1.15x).
        """
        pairs = [s / r for s, r in zip(self.cpu_us["sdk"], self.cpu_us["raw"], strict=True) if r]
        return median(pairs)

    def to_dict(self) -> Json:
        data = dataclasses.asdict(self)
        data["median_cpu_us"] = {v: self.median_cpu(v) for v in self.cpu_us}
        data["ratio"] = self.ratio
        data["paired_ratio"] = self.paired_ratio
        return data


async def run_overhead(
    seed: int, *, requests: int, repeats: int, concurrency: int = 16, ramp: bool = True
) -> OverheadResult:
    """Start a sandbox and measure every variant in one child process.

    ``ramp=False`` (the smoke run) builds the client with ``slow_start=False`` instead
    of sending it through its ~12 s slow start: the pacing state the ramp ends in.
    """
    progress(f"overhead: {repeats} repeats x {requests:,} GETs per variant")
    async with running_sandbox(seed) as sb:
        config = {
            "base_url": sb.base_url,
            "api_key": sb.api_key,
            "requests": requests,
            "repeats": repeats,
            "concurrency": concurrency,
            "slow_start": ramp,
        }

        data = await run_child("overhead", config)
    return OverheadResult(
        requests_per_batch=requests,
        repeats=repeats,
        concurrency=concurrency,
        cpu_us=data["cpu_us"],
        wall_us=data["wall_us"],
        decode_us=data["decode_us"],
    )


def overhead_table(result: OverheadResult) -> str:
    """The per-variant table of scenario 3."""
    raw = result.median_cpu("raw")
    rows = []
    for variant, label in VARIANTS.items():
        if variant not in result.cpu_us:
            continue
        cpu = result.median_cpu(variant)
        spread = result.cpu_us[variant]
        rows.append(
            [
                label,
                fmt(cpu, 0),
                f"{min(spread):,.0f}-{max(spread):,.0f}" if spread else "-",
                fmt(cpu / raw if cpu is not None and raw else None, 2, "x"),
                fmt(median(result.wall_us[variant]), 0),
            ]
        )
    for name, label in (
        ("json_loads", "decode only: `json.loads` (no network)"),
        ("sdk_decode", "decode only: SDK `loads` + `structure(…, Order)`"),
    ):
        rows.append([label, fmt(result.decode_us.get(name), 1), "-", "-", "-"])
    return markdown_table(
        ["variant", "CPU µs/request (median)", "range over repeats", "vs raw", "wall µs/request"],
        rows,
        "lrrrr",
    )


# -- the child -------------------------------------------------------------------------


async def child(config: Json) -> Json:
    """Alternate batches of every variant; CPU per request of each batch."""
    import gsim_async
    from gsim_async._converter import decoder, loads

    decode_order = decoder(gsim_async.Order)

    api = config["base_url"] + "/api/v1"
    headers = {"Authorization": f"Bearer {config['api_key']}"}
    count, concurrency = config["requests"], config["concurrency"]
    sdk_headers = {
        **headers,
        "User-Agent": f"gsim-async/bench aiohttp/{aiohttp.__version__}",
        "Accept": "application/json",
    }
    sdk_timeout = aiohttp.ClientTimeout(total=30.0, sock_connect=10.0)
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300)
        ) as like_sdk,
        gsim_async.Client(
            config["api_key"],
            base_url=config["base_url"],
            slow_start=config.get("slow_start", True),
        ) as gsim,
    ):
        ids = []
        for _ in range(50):
            async with session.post(
                f"{api}/orders", json={"service": "telegram", "country": "russia"}
            ) as resp:
                resp.raise_for_status()
                ids.append(json.loads(await resp.read())["id"])
        # Half of them with a code, as a poll would see them.
        for order_id in ids[::2]:
            async with session.post(
                f"{config['base_url']}/_sandbox/orders/{order_id}/deliver"
            ) as resp:
                resp.raise_for_status()

        async def raw(i: int) -> None:
            async with session.get(f"{api}/orders/{ids[i % len(ids)]}") as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"status {resp.status}")
            json.loads(body)

        async def raw_sdk_options(i: int) -> None:
            async with like_sdk.request(
                "GET",
                f"{api}/orders/{ids[i % len(ids)]}",
                headers=sdk_headers,
                timeout=sdk_timeout,
                allow_redirects=False,
                raise_for_status=False,
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"status {resp.status}")
            json.loads(body)

        async def sdk(i: int) -> None:
            await gsim.orders.get(ids[i % len(ids)])

        # Private: the diagnostic is dropped if the transport is ever reorganised.
        transport = getattr(gsim, "_transport", None)

        async def sdk_untyped(i: int) -> None:
            assert transport is not None
            await transport.request("GET", f"/orders/{ids[i % len(ids)]}", _as_is)

        variants: dict[str, Callable[[int], Awaitable[None]]] = {
            "raw": raw,
            "sdk": sdk,
            "raw_sdk_options": raw_sdk_options,
        }
        if callable(getattr(transport, "request", None)):
            variants["sdk_untyped"] = sdk_untyped
        for fn in variants.values():  # warm up connections and caches
            await _batch(fn, min(count, 500), concurrency)
        # The SDK starts slowly (it has not met a rate limit yet); what is measured is
        # the request path once that ramp is over, as in a long-running client.
        for _ in range(100):
            if transport is None or transport.pacing.rate is None:
                break
            await _batch(sdk, min(count, 2000), concurrency)
        cpu_us: dict[str, list[float]] = {name: [] for name in variants}
        wall_us: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for repeat in range(config["repeats"]):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in order:
                cpu, wall = await _batch(variants[name], count, concurrency)
                cpu_us[name].append(cpu / count * 1e6)
                wall_us[name].append(wall / count * 1e6)
        async with session.get(f"{api}/orders/{ids[0]}") as resp:
            body = await resp.read()
    number = 20_000
    decode_us = {
        "json_loads": min(timeit.repeat(lambda: json.loads(body), number=number, repeat=3))
        / number
        * 1e6,
        "sdk_decode": min(timeit.repeat(lambda: decode_order(loads(body)), number=number, repeat=3))
        / number
        * 1e6,
    }
    return {"cpu_us": cpu_us, "wall_us": wall_us, "decode_us": decode_us}


def _as_is(data: Any) -> Any:
    return data


async def _batch(
    fn: Callable[[int], Awaitable[None]], count: int, concurrency: int
) -> tuple[float, float]:
    """Run ``count`` calls from ``concurrency`` workers; (CPU seconds, wall seconds)."""
    counter = iter(range(count))

    async def worker() -> None:
        for i in counter:
            await fn(i)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu0, time.perf_counter() - wall0
