"""A fleet under its engine's ordinary faults: Redis wiped, a member stalled, a member dead.

Real member processes (``Client(fleet=RedisFleet(url))``) on one key against the sandbox
in its own process, and a real ``redis-server``:

* **wipe** and **failover**: 4 members each keep 30 ``create()`` +
  ``wait_for_code(timeout=60)`` loops going under a 20 req/s limit (429 with
  ``Retry-After: 10``, no limit headers), codes after 1-8 s: the loops ask for more than
  the limit allows. At 45 s Redis is killed and started again on the same port, empty
  (wipe), or a Sentinel-managed primary (``redis+sentinel://``) is SIGKILLed and the
  Sentinels promote its replica, which may have lagged (failover). The accepted rate
  from 20 s in to the fault is the baseline; after, the window from 20 s to 55 s after
  Redis answers again (design.md: at least 0.8 times before), with the 429s, the waits
  lost (a ``CodeTimeoutError`` on an order whose code the ledger delivered), orders
  charged twice and orders left charged.
* **stall**: a leader and a member with 10 orders waiting (``timeout=90``); the member
  is stopped (SIGSTOP) for ``--stall`` seconds, half its codes delivered meanwhile, then
  continued. Orders refunded while it was stopped, codes it got, and how long its waits
  took to end after it resumed. Run twice: shorter than the death threshold (nothing may
  be refunded behind its back) and longer (refunded by the fleet; its waits end within a
  heartbeat of its return, saying so).
* **kill**: a member with 20 waits is SIGKILLed; seconds from its death to the last
  refund, on one host (the leader can see the process is gone) and as if on another
  (only the heartbeat tells).

    python -m benchmarks.fleet_faults [--scenarios wipe,failover,stall,kill] [--json out.json]
    python -m benchmarks.fleet_faults --smoke     # shorter, scaled down
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import ROOT, Json, child_env, fmt, markdown_table, progress, running_sandbox
from benchmarks._redis import RedisProcess, SentinelGroup

#: design.md: the accepted rate from 20 s after Redis answers again, against before.
RATE_AFTER_WIPE = 0.8
#: design.md: a dead member's orders are refunded within this many seconds of its death.
REFUND_WITHIN = 45.0


@dataclasses.dataclass
class Config:
    members: int = 4
    loops: int = 30
    rate: float = 20.0
    retry_after: int = 10
    #: Short enough that the loops ask for more than the limit allows; every number gets
    #: its code, so a wait that times out is a code lost.
    delays: tuple[float, float] = (1.0, 8.0)
    no_code: float = 0.0
    timeout: float = 60.0
    interval: float = 2.0
    wipe_at: float = 45.0
    after: float = 55.0
    stalls: tuple[float, ...] = (15.0, 45.0)
    stall_orders: int = 10
    kill_orders: int = 20
    seed: int = 7


# -- the member ------------------------------------------------------------------------


async def member(config: Json) -> None:
    """One fleet member: loops of create() + wait_for_code(), or a batch of waits."""
    import logging

    import gsim_async
    from gsim_async.fleet import RedisFleet

    def say(event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "t": time.time(), **fields}, separators=(",", ":"))
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    class Relay(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            say("log", level=record.levelname, message=record.getMessage()[:300])

    logger = logging.getLogger("gsim_async")
    logger.setLevel(logging.INFO)
    logger.addHandler(Relay(logging.INFO))
    fleet = RedisFleet(config["redis_url"], namespace=config["namespace"])
    async with gsim_async.Client(
        config["api_key"],
        base_url=config["base_url"],
        poll_interval=config["interval"],
        fleet=fleet,
        journal=False,
    ) as gsim:
        await gsim.balance()  # joins the fleet
        say("ready", pid=os.getpid())
        mode = config["mode"]
        stop = asyncio.Event()

        async def one(order: gsim_async.Order) -> None:
            try:
                code = await gsim.orders.wait_for_code(order, timeout=config["timeout"])
            except gsim_async.CodeTimeoutError as exc:
                say("end", id=order.id, outcome="timeout", error=str(exc)[:300])
            except gsim_async.NoCodeError as exc:
                say("end", id=order.id, outcome="no code", error=str(exc)[:300])
            except gsim_async.GsimError as exc:
                say("end", id=order.id, outcome="error", error=repr(exc)[:300])
            else:
                say("end", id=order.id, outcome="code", code=code)

        if mode == "loops":

            async def loop() -> None:
                while not stop.is_set():
                    try:
                        order = await gsim.orders.create("telegram", "russia")
                    except gsim_async.GsimError as exc:
                        say("buy-error", error=repr(exc)[:300])
                        await asyncio.sleep(1.0)
                        continue
                    say("bought", id=order.id)
                    await one(order)

            tasks = [asyncio.ensure_future(loop()) for _ in range(config["loops"])]
        elif mode == "waits":
            orders = [
                await gsim.orders.create("telegram", "russia") for _ in range(config["count"])
            ]
            say("bought-all", ids=[o.id for o in orders])
            tasks = [asyncio.ensure_future(one(o)) for o in orders]
        else:
            tasks = []
        line = await asyncio.to_thread(sys.stdin.readline)
        stop.set()
        if line.strip() == "stop":
            await asyncio.gather(*tasks, return_exceptions=True)
        # Closing gives the waits still running up (a whole fleet closing together: the
        # last member refunds what the others left to it), as a program stopped does;
        # cancelling them would leave their orders as they are (money rule 4).
        await gsim.aclose()
        await asyncio.gather(*tasks, return_exceptions=True)
    say("done")


class Member:
    """A member process and what it said."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Json] = []
        self.ready = asyncio.Event()
        self.bought_all: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, config: Json, env: dict[str, str] | None = None) -> Member:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import asyncio, json, sys; from benchmarks.fleet_faults import member; "
            "asyncio.run(member(json.loads(sys.argv[1])))",
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**child_env(), **(env or {})},
            cwd=ROOT,
        )
        self = cls(proc)
        await asyncio.wait_for(self.ready.wait(), 30)
        return self

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            if event["event"] == "ready":
                self.ready.set()
            elif event["event"] == "bought-all" and not self.bought_all.done():
                self.bought_all.set_result(list(event["ids"]))

    def ends(self) -> list[Json]:
        return [e for e in self.events if e["event"] == "end"]

    def logs(self) -> list[str]:
        return [f"{e['level']} {e['message']}" for e in self.events if e["event"] == "log"]

    async def close(self, how: str = "exit") -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.write(f"{how}\n".encode())
                await self.proc.stdin.drain()
            try:
                await asyncio.wait_for(self.proc.wait(), 60)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self.reader


def _base(sb: Any, url: str, cfg: Config) -> Json:
    return {
        "base_url": sb.base_url,
        "api_key": sb.api_key,
        "redis_url": url,
        "namespace": f"bench-{uuid.uuid4().hex[:8]}",
        "interval": cfg.interval,
        "timeout": cfg.timeout,
    }


async def _counts(sb: Any) -> tuple[int, int]:
    stats = await sb.stats()
    return int(stats["total"]), int(stats["by_status"].get("429", 0))


# -- wipe ------------------------------------------------------------------------------


async def wipe(cfg: Config) -> Json:
    """Redis restarted empty under load: the accepted rate before and after."""
    progress("fleet faults: wipe")
    with RedisProcess() as redis:

        def restart() -> None:
            assert redis.process is not None
            redis.process.kill()
            redis.process.wait()
            redis.process = None
            redis.start()

        return await _under_load(cfg, redis.url, restart, "Redis killed and started again, empty")


async def failover(cfg: Config) -> Json:
    """The Sentinels' primary killed under load: the accepted rate before and after."""
    progress("fleet faults: failover")
    with SentinelGroup() as group:

        def fail_over() -> None:
            group.kill_primary()
            group.wait_failover()

        return await _under_load(cfg, group.url, fail_over, "primary killed, replica promoted")


async def _under_load(cfg: Config, url: str, fault: Any, what: str) -> Json:
    """Members in loops on ``url``; ``fault()`` at ``wipe_at``: rates before and after."""
    async with running_sandbox(
        cfg.seed, code_delay=cfg.delays, auto_deliver=True, no_code_ratio=cfg.no_code
    ) as sb:
        await sb.post("faults", {"rate_limit": cfg.rate, "retry_after": cfg.retry_after})
        base = _base(sb, url, cfg)
        members = await asyncio.gather(
            *(Member.start({**base, "mode": "loops", "loops": cfg.loops})
              for _ in range(cfg.members))
        )  # fmt: skip
        t0 = time.monotonic()
        samples: list[tuple[float, int, int]] = []

        async def sample() -> None:
            while True:
                total, throttled = await _counts(sb)
                samples.append((time.monotonic() - t0, total, throttled))
                await asyncio.sleep(1.0)

        sampler = asyncio.ensure_future(sample())
        await asyncio.sleep(cfg.wipe_at)
        await asyncio.to_thread(fault)
        back = time.monotonic() - t0
        progress(f"fleet faults: {what}; Redis answers again at {back:.0f} s")
        await asyncio.sleep(cfg.after + 1)
        sampler.cancel()
        await asyncio.gather(*(m.close("exit") for m in members))
        ledger = await sb.orders()
    before = _rate(samples, 20.0, cfg.wipe_at)
    after = _rate(samples, back + 20, back + cfg.after)
    delivered = {o["id"]: o for o in ledger if o.get("code_delivered_at")}
    ends = [e for m in members for e in m.ends()]
    lost = [
        e["id"]
        for e in ends
        if e["outcome"] == "timeout"
        and e["id"] in delivered
        and float(delivered[e["id"]]["code_delivered_at"]) < float(e["t"]) - cfg.interval - 1
    ]
    charged_twice = sum(1 for o in ledger if float(o["charged"]) > float(o["price"]))
    return {
        "before": before,
        "after": after,
        "ratio": after / before if before else None,
        "throttled_after": _between(samples, back, back + cfg.after, 2),
        "throttled_before": _between(samples, 0, cfg.wipe_at, 2),
        "waits": len(ends),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "timeouts": sum(1 for e in ends if e["outcome"] == "timeout"),
        "charged_twice": charged_twice,
        "left_charged": sum(
            1 for o in ledger if o["status"] == "PENDING" and not float(o["refunded"])
        ),
    }


def _rate(samples: Sequence[tuple[float, int, int]], start: float, end: float) -> float | None:
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return None
    (t1, total1, thr1), (t2, total2, thr2) = inside[0], inside[-1]
    return ((total2 - thr2) - (total1 - thr1)) / (t2 - t1)


def _between(samples: Sequence[tuple[float, int, int]], start: float, end: float, i: int) -> int:
    inside = [s for s in samples if start <= s[0] <= end]
    return int(inside[-1][i] - inside[0][i]) if len(inside) >= 2 else 0


# -- stall -----------------------------------------------------------------------------


async def stall(cfg: Config, seconds: float) -> Json:
    """A member stopped for ``seconds`` with orders waiting."""
    progress(f"fleet faults: stall {seconds:.0f} s")
    async with running_sandbox(cfg.seed) as sb:
        with RedisProcess() as redis:
            base = _base(sb, redis.url, cfg) | {"timeout": 90.0}
            leader = await Member.start({**base, "mode": "idle"})
            await asyncio.sleep(1.0)  # it leads
            victim = await Member.start({**base, "mode": "waits", "count": cfg.stall_orders})
            ids = await asyncio.wait_for(victim.bought_all, 60)
            await asyncio.sleep(2.0)  # registered with the leader
            victim.proc.send_signal(signal.SIGSTOP)
            stopped = time.time()
            half = ids[: len(ids) // 2]
            await asyncio.sleep(min(5.0, seconds / 2))
            for order_id in half:
                await _deliver(sb, order_id)
            await asyncio.sleep(seconds - min(5.0, seconds / 2))
            orders = {o["id"]: o for o in await sb.orders()}
            refunded_while = [i for i in ids if orders[i]["status"] in ("BANNED", "CANCELLED")]
            victim.proc.send_signal(signal.SIGCONT)
            resumed = time.time()
            # The rest of the codes come after it resumed.
            await asyncio.sleep(1.0)
            for order_id in ids[len(half) :]:
                await _deliver(sb, order_id)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_until(lambda: len(victim.ends()) >= len(ids)), 100)
            ends = victim.ends()
            await victim.close("exit")
            await leader.close("exit")
        ledger = {o["id"]: o for o in await sb.orders()}
    took = [float(e["t"]) - resumed for e in ends]
    return {
        "stall_s": seconds,
        "orders": len(ids),
        "refunded_while_stopped": len(refunded_while),
        "codes": sum(1 for e in ends if e["outcome"] == "code"),
        "codes_delivered": sum(1 for i in ids if ledger[i].get("code_delivered_at")),
        "ended": len(ends),
        "max_end_after_resume_s": max(took) if took else None,
        "outcomes": sorted({e["outcome"] for e in ends}),
        "sample_error": next((e.get("error") for e in ends if e.get("error")), None),
        "left_charged": sum(
            1 for i in ids if ledger[i]["status"] == "PENDING" and not float(ledger[i]["refunded"])
        ),
        "stopped_at": stopped,
    }


async def _deliver(sb: Any, order_id: str) -> None:
    """A code for ``order_id``, unless the order has ended (refunded behind its back)."""
    import aiohttp

    with contextlib.suppress(aiohttp.ClientResponseError):
        await sb.post(f"orders/{order_id}/deliver", {})


async def _until(predicate: Any) -> None:
    while not predicate():  # noqa: ASYNC110 - polls a child's output
        await asyncio.sleep(0.1)


# -- kill ------------------------------------------------------------------------------


async def kill(cfg: Config, same_host: bool) -> Json:
    """A member SIGKILLed with waits: seconds from its death to the last refund."""
    progress(f"fleet faults: kill ({'one host' if same_host else 'heartbeat only'})")
    env = {} if same_host else {"_GSIM_FLEET_NO_PROCESS_CHECK": "1"}
    async with running_sandbox(cfg.seed) as sb:
        with RedisProcess() as redis:
            base = _base(sb, redis.url, cfg) | {"timeout": 600.0}
            leader = await Member.start({**base, "mode": "idle"}, env)
            await asyncio.sleep(1.0)
            victim = await Member.start({**base, "mode": "waits", "count": cfg.kill_orders}, env)
            ids = await asyncio.wait_for(victim.bought_all, 60)
            await asyncio.sleep(2.0)
            victim.proc.kill()
            died = time.time()
            await victim.proc.wait()
            await victim.reader
            deadline = time.monotonic() + 120
            last = None
            while time.monotonic() < deadline:
                orders = {o["id"]: o for o in await sb.orders()}
                if all(orders[i]["status"] != "PENDING" for i in ids):
                    last = time.time() - died
                    break
                await asyncio.sleep(0.25)
            await leader.close("exit")
    return {"same_host": same_host, "orders": len(ids), "last_refund_s": last}


# -- the run ---------------------------------------------------------------------------


async def run(cfg: Config, scenarios: Sequence[str]) -> Json:
    result: Json = {"config": dataclasses.asdict(cfg)}
    if "wipe" in scenarios:
        result["wipe"] = await wipe(cfg)
    if "failover" in scenarios:
        result["failover"] = await failover(cfg)
    if "stall" in scenarios:
        result["stall"] = [await stall(cfg, s) for s in cfg.stalls]
    if "kill" in scenarios:
        result["kill"] = [await kill(cfg, True), await kill(cfg, False)]
    return result


def report(result: Json) -> str:
    parts: list[str] = []
    for name, title in (("wipe", "Redis restarted empty"), ("failover", "a Sentinel failover")):
        if name not in result:
            continue
        w = result[name]
        parts.append(f"### {title} under load\n")
        rows = [
            ["accepted req/s before (baseline)", fmt(w["before"], 1)],
            [
                "accepted req/s 20-55 s after Redis answers again",
                f"{fmt(w['after'], 1)} ({fmt(w['ratio'], 2)}x; goal >= {RATE_AFTER_WIPE}x)",
            ],
            ["429s before / after", f"{w['throttled_before']} / {w['throttled_after']}"],
            ["waits ended / timed out", f"{w['waits']} / {w['timeouts']}"],
            ["waits lost (code delivered, wait timed out)", str(w["lost"])],
            ["orders charged twice / left charged", f"{w['charged_twice']} / {w['left_charged']}"],
        ]
        parts.append(markdown_table(["measure", "value"], rows, "lr"))
    if "stall" in result:
        parts.append("\n### A member stalled (SIGSTOP) with orders waiting\n")
        rows = [
            [
                f"{s['stall_s']:.0f} s",
                str(s["orders"]),
                str(s["refunded_while_stopped"]),
                f"{s['codes']} of {s['codes_delivered']}",
                fmt(s["max_end_after_resume_s"], 1, " s"),
                ", ".join(s["outcomes"]),
                str(s["left_charged"]),
            ]
            for s in result["stall"]
        ]
        headers = ["stopped", "orders", "refunded while stopped", "codes got / delivered",
                   "last wait ended after resume", "outcomes", "left charged"]  # fmt: skip
        parts.append(markdown_table(headers, rows, "rrrrrlr"))
        parts.extend(
            f"\n{s['stall_s']:.0f} s: `{s['sample_error']}`"
            for s in result["stall"]
            if s["sample_error"]
        )
    if "kill" in result:
        parts.append("\n### A member killed (SIGKILL) with waits\n")
        rows = [
            [
                "one host (the process is seen gone)" if k["same_host"] else "heartbeat only",
                str(k["orders"]),
                f"{fmt(k['last_refund_s'], 1, ' s')} (goal <= {REFUND_WITHIN:.0f} s)",
            ]
            for k in result["kill"]
        ]
        headers = ["how the death is seen", "orders", "last refund"]
        parts.append(markdown_table(headers, rows, "lrr"))
    return "\n".join(parts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet_faults")
    parser.add_argument("--scenarios", default="wipe,failover,stall,kill")
    parser.add_argument("--smoke", action="store_true", help="shorter and scaled down")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config()
    if args.smoke:
        cfg = dataclasses.replace(
            cfg, members=2, loops=10, wipe_at=25.0, after=30.0, stalls=(5.0,), kill_orders=5
        )
    result = asyncio.run(run(cfg, args.scenarios.split(",")))
    print(report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
