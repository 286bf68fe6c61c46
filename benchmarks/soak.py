"""The soak: a fleet on one key for 10 minutes while members die and Redis loses everything.

design.md: 8 fleet members, 10 minutes, a 20 req/s limit, 5 % of answers dropped, a
member killed every minute, Redis restarted once: 0 double charges, 0 orders left
charged at the end, RSS flat after warm-up.

* The sandbox runs in its own process: codes after 5-60 s, 10 % of numbers never get
  one, a 20 req/s limit per key (``Retry-After`` as the sandbox computes it: the whole
  seconds until a token is back), and 5 % of all answers dropped after the server
  acted (``drop_after_rate``: a purchase charged, a cancel refunded, only the answer
  lost).
* 8 members, each a real process with ``Client(fleet=RedisFleet(url))`` (with
  ``--file-journals``, also its own ``journal=`` file, kept across its restarts), run
  ``activation()`` + ``wait_for_code(timeout=90)`` loops, enough of them to ask for
  more than the limit allows: the fleet's gate, not the demand, sets the pace.
* Every minute one member (in turn) is killed with SIGKILL and started again at once.
* Redis (no persistence) is stopped once, mid-run, between two kills, and started
  again on the same port after ``--redis-down`` seconds: it comes back empty.
* At the end every member stops its loops (leaving a block cancels its order) while
  its client stays open, the fleet settles (the leader refunds what the last killed
  member owed) for up to a minute, then the members close and exit.

Members print what they asked for, bought, got and ended as JSON lines; the audit
reads the sandbox's ledger: orders charged twice or bought beyond what the members
asked for, orders held by two members, orders still charged and PENDING at the end,
codes returned against the ledger's. Each member's RSS is read from ``/proc`` every
few seconds: after a first minute of warm-up, the next minute against its last.

    python -m benchmarks.soak [--minutes 10] [--json soak.json] [--file-journals]
    python -m benchmarks.soak --smoke        # about 1.5 minutes, scaled down

The smoke run keeps the 20 req/s limit and scales the rest down: 1 minute, 4
members, a kill every 20 s, codes after 1-10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the package importable from the checkout.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    ROOT,
    Json,
    child_env,
    fmt,
    markdown_table,
    progress,
    running_sandbox,
)
from benchmarks._redis import RedisProcess

#: An instance's RSS may grow this much from the minute after its warm-up to its last
#: minute and still count as flat (allocator noise, caches filling to their caps).
MAX_RSS_GROWTH = 0.10
#: design.md: a dead fleet member's orders are refunded within this many seconds.
REFUND_WITHIN = 30.0
#: Seconds after a member's death by which the leader has taken its rows over.
TAKEN_OVER_WITHIN = 15.0
#: Activations asked for per request the limit allows: the fleet waits at its gate.
OVER_DEMAND = 1.3
#: Requests an activation costs, roughly: its purchase, its share of the polls, a
#: cancel for one in ten, a retry for a dropped answer.
REQUESTS_PER_ACTIVATION = 1.25


@dataclasses.dataclass
class Config:
    """What one soak does; the defaults are design.md's."""

    minutes: float = 10.0
    members: int = 8
    #: Concurrent activation loops per member (None: enough to ask for more than the limit).
    concurrency: int | None = None
    kill_every: float = 60.0
    #: Seconds into the run at which Redis is stopped (None: between two kills, mid-run).
    redis_at: float | None = None
    redis_down: float = 3.0
    rate: float = 20.0
    drop: float = 0.05
    delays: tuple[float, float] = (5.0, 60.0)
    no_code: float = 0.1
    timeout: float = 90.0
    interval: float = 2.0
    settle: float = 60.0
    #: Seconds of an instance's life that are warm-up, and the length of each RSS window.
    warmup: float = 60.0
    rss_every: float = 5.0
    file_journals: bool = False
    seed: int = 5

    @property
    def duration(self) -> float:
        return self.minutes * 60.0

    @property
    def per_member(self) -> int:
        if self.concurrency is not None:
            return self.concurrency
        mean = (1 - self.no_code) * sum(self.delays) / 2 + self.no_code * self.timeout
        wanted = self.rate * OVER_DEMAND / REQUESTS_PER_ACTIVATION * mean
        return max(1, math.ceil(wanted / self.members))

    @property
    def kills(self) -> list[float]:
        count = math.ceil(self.duration / self.kill_every) - 1
        return [self.kill_every * (k + 1) for k in range(max(count, 0))]

    @property
    def redis_restart(self) -> float:
        if self.redis_at is not None:
            return self.redis_at
        # Between two kills around the middle, long enough after the first that the
        # leader has taken the dead member's rows over (FLEET_DEAD_AFTER, 10 s, and a
        # sweep). Rows of a member that died just before Redis lost everything are lost
        # with it: --redis-at sets that case up on purpose.
        middle = math.floor(self.duration / 2 / self.kill_every) * self.kill_every
        return middle + max(self.kill_every / 2, TAKEN_OVER_WITHIN)


# -- one member instance, seen from the harness ---------------------------------------


@dataclasses.dataclass
class Instance:
    """One member process: what it said, and its RSS over time."""

    slot: int
    generation: int
    proc: asyncio.subprocess.Process
    started: float  # seconds into the run
    ended: float | None = None
    killed: bool = False
    killed_wall: float | None = None  # time.time() of the SIGKILL (the ledger's clock)
    asks: set[int] = dataclasses.field(default_factory=set)
    bought: dict[int, str] = dataclasses.field(default_factory=dict)
    codes: dict[str, str] = dataclasses.field(default_factory=dict)
    ends: dict[int, tuple[str, str]] = dataclasses.field(default_factory=dict)
    warnings: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    #: Everything the SDK logged at INFO or above: (seconds into the run, level, message).
    logs: list[tuple[float, str, str]] = dataclasses.field(default_factory=list)
    rss: list[tuple[float, int]] = dataclasses.field(default_factory=list)  # (age s, KiB)
    done: Json | None = None
    ready: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    stopped: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return f"m{self.slot}.{self.generation}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def on(self, event: Json) -> None:
        kind = event.get("event")
        seq = event.get("s")
        if kind == "ask":
            self.asks.add(int(seq))
        elif kind == "bought":
            self.bought[int(seq)] = str(event["id"])
        elif kind == "code":
            self.codes[str(event["id"])] = str(event["code"])
        elif kind == "end":
            self.ends[int(seq)] = (str(event["outcome"]), str(event.get("error", "")))
        elif kind == "log":
            message, level = str(event["message"]), str(event["level"])
            self.logs.append((float(event["t"]), level, message))
            if level != "INFO":
                self.warnings[_shape(message)] += 1
        elif kind == "ready":
            self.ready.set()
        elif kind == "stopped":
            self.stopped.set()
        elif kind == "done":
            self.done = event

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.on(event)

    async def tell(self, command: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()

    def sample_rss(self, now: float) -> None:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                self.rss.append((now - self.started, int(line.split()[1])))
                return


def _shape(message: str) -> str:
    """A log message with its ids and numbers blanked, so that alike ones count together."""
    words = message.split()[:14]
    return " ".join("#" if any(c.isdigit() for c in word) else word for word in words)


async def _start(cfg: Config, slot: int, generation: int, common: Json, now: float) -> Instance:
    config = dict(common, slot=slot)
    if cfg.file_journals:
        config["journal"] = str(Path(common["journal_dir"]) / f"member-{slot}.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.soak",
        "--member",
        json.dumps(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=child_env(),
        cwd=ROOT,
    )
    instance = Instance(slot=slot, generation=generation, proc=proc, started=now)
    instance.reader = asyncio.ensure_future(instance.read())
    return instance


# -- the run ---------------------------------------------------------------------------


async def run(cfg: Config) -> Json:
    """The whole soak; everything measured, as JSON."""
    redis = RedisProcess()
    redis.start()
    journal_dir = tempfile.TemporaryDirectory(prefix="gsim-bench-soak-")
    instances: list[Instance] = []
    timeline: list[Json] = []
    minutes: list[Json] = []
    try:
        async with running_sandbox(
            cfg.seed,
            code_delay=cfg.delays,
            auto_deliver=True,
            balance="100000000",
            no_code_ratio=cfg.no_code,
        ) as sb:
            await sb.post("faults", {"rate_limit": cfg.rate, "drop_after_rate": cfg.drop})
            await sb.post("stats/reset")
            common: Json = {
                "base_url": sb.base_url,
                "api_key": sb.api_key,
                "redis_url": redis.url,
                "namespace": uuid.uuid4().hex[:8],
                "concurrency": cfg.per_member,
                "timeout": cfg.timeout,
                "interval": cfg.interval,
                "journal_dir": journal_dir.name,
            }
            t0 = time.monotonic()

            def now() -> float:
                return time.monotonic() - t0

            progress(
                f"soak: {cfg.members} members x {cfg.per_member} activation loops for "
                f"{cfg.minutes:g} min; kills at {', '.join(f'{k:g}' for k in cfg.kills)} s; "
                f"Redis down at {cfg.redis_restart:g} s for {cfg.redis_down:g} s"
            )
            instances = list(
                await asyncio.gather(
                    *(_start(cfg, slot, 0, common, now()) for slot in range(cfg.members))
                )
            )
            live: dict[int, Instance] = {i.slot: i for i in instances}
            await asyncio.wait_for(asyncio.gather(*(i.ready.wait() for i in instances)), 60)
            sampler = asyncio.ensure_future(_sample(cfg, live, now))
            counter = asyncio.ensure_future(_per_minute(cfg, sb, minutes, now))

            events: list[tuple[float, str, int]] = [
                (at, "kill", k % cfg.members) for k, at in enumerate(cfg.kills)
            ]
            events.append((cfg.redis_restart, "redis", -1))
            events.sort()
            for at, what, slot in events:
                await asyncio.sleep(max(0.0, at - now()))
                if what == "kill":
                    victim = live[slot]
                    victim.killed_wall = time.time()
                    victim.proc.send_signal(signal.SIGKILL)
                    await victim.proc.wait()
                    victim.killed, victim.ended = True, now()
                    replacement = await _start(cfg, slot, victim.generation + 1, common, now())
                    instances.append(replacement)
                    live[slot] = replacement
                    timeline.append({"at": now(), "event": f"killed {victim.label}"})
                    progress(f"soak: {now():.0f} s: killed {victim.label} (pid {victim.pid})")
                    try:
                        await asyncio.wait_for(replacement.ready.wait(), 60)
                    except asyncio.TimeoutError:
                        progress(f"soak: {replacement.label} did not start")
                else:
                    redis.stop()
                    timeline.append({"at": now(), "event": "Redis stopped"})
                    progress(f"soak: {now():.0f} s: Redis stopped")
                    await asyncio.sleep(cfg.redis_down)
                    redis.start()
                    timeline.append({"at": now(), "event": "Redis started again, empty"})
                    progress(f"soak: {now():.0f} s: Redis started again (empty)")
            await asyncio.sleep(max(0.0, cfg.duration - now()))

            # The end: stop the loops, let the fleet settle, then close the members.
            sampler.cancel()
            stop_at = now()
            timeline.append({"at": stop_at, "event": "members stop their loops"})
            progress(f"soak: {stop_at:.0f} s: stopping the members' loops")
            running = list(live.values())
            await asyncio.gather(*(i.tell("stop") for i in running))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(i.stopped.wait() for i in running)), 90)
            settled_after = await _settle(sb, cfg.settle, max(5.0, 3 * cfg.interval))
            timeline.append({"at": now(), "event": "settled" if settled_after else "not settled"})
            # The audit's ledger: the members stopped, the fleet still up.
            settled_ledger = await sb.get("ledger")
            await asyncio.gather(*(i.tell("exit") for i in running))
            for instance in running:
                try:
                    await asyncio.wait_for(instance.proc.wait(), 60)
                except asyncio.TimeoutError:
                    instance.proc.kill()
                    await instance.proc.wait()
                instance.ended = now()
            counter.cancel()
            for instance in instances:
                if instance.reader is not None:
                    await instance.reader
            await sb.post("faults/reset")
            stats = await sb.stats()
            ledger = await sb.get("ledger")
            wall = now()
    finally:
        for instance in instances:
            if instance.proc.returncode is None:
                instance.proc.kill()
                await instance.proc.wait()
        redis.close()
        journal_dir.cleanup()
    return {
        "config": dataclasses.asdict(cfg) | {"per_member": cfg.per_member},
        "wall_s": wall,
        "stop_at_s": stop_at,
        "settled_after_s": settled_after,
        "timeline": timeline,
        "minutes": minutes,
        "audit": audit(instances, settled_ledger),
        "after_exit": {
            "left_charged": sorted(
                o["id"]
                for o in ledger["orders"]
                if o["status"] == "PENDING" and _money(o["refunded"]) == 0
            ),
            "orders": len(ledger["orders"]),
        },
        "requests": _requests(stats, stop_at, cfg),
        "rss": rss_table_rows(instances, cfg),
        "members": [_member_json(i) for i in instances],
    }


async def _sample(cfg: Config, live: dict[int, Instance], now: Any) -> None:
    while True:
        for instance in list(live.values()):
            instance.sample_rss(now())
        await asyncio.sleep(cfg.rss_every)


async def _per_minute(cfg: Config, sb: Any, minutes: list[Json], now: Any) -> None:
    """The sandbox's counters at every kill interval, for the table over time."""
    previous: Json | None = None
    while True:
        await asyncio.sleep(cfg.kill_every - now() % cfg.kill_every)
        stats = await sb.stats()
        row = {
            "at": round(now()),
            "total": int(stats["total"]),
            "429": int(stats["by_status"].get("429", 0)),
            "dropped": int(stats["dropped"]),
            "bought": int(
                stats.get("by_route_status", {}).get("POST /api/v1/orders", {}).get("200", 0)
            ),
        }
        if previous is not None:
            minutes.append({k: row[k] - previous[k] if k != "at" else row[k] for k in row})
        else:
            minutes.append(dict(row))
        previous = row


async def _settle(sb: Any, within: float, quiet: float) -> float | None:
    """Seconds until no order is PENDING and none was bought for ``quiet`` seconds.

    (Purchases a stopped loop had queued at the rate gate still go out, and are then
    refunded.) None: not within ``within``.
    """
    started = time.monotonic()
    count, quiet_since = -1, None
    while True:
        orders = await sb.orders()
        now = time.monotonic()
        if len(orders) != count or any(o["status"] == "PENDING" for o in orders):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        count = len(orders)
        if quiet_since is not None and now - quiet_since >= quiet:
            return now - started
        if now - started > within:
            return None
        await asyncio.sleep(1.0)


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


def audit(instances: Sequence[Instance], ledger: Json) -> Json:
    """What the ledger says, checked against what the members asked for and got."""
    orders: dict[str, Json] = {o["id"]: o for o in ledger["orders"]}
    holders: dict[str, list[str]] = collections.defaultdict(list)
    for instance in instances:
        for seq, order_id in instance.bought.items():
            holders[order_id].append(f"{instance.label}#{seq}")
    asks = sum(len(i.asks) for i in instances)
    # Asks that bought nothing the member knew of: in flight when it was killed, ended in
    # an error, or cancelled while buying at the stop. Each may still have bought one.
    unresolved: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    for instance in instances:
        for seq in instance.asks - set(instance.bought):
            outcome, error = instance.ends.get(seq, ("killed in flight", ""))
            if outcome == "killed in flight" and not instance.killed:
                outcome = "never ended"
            unresolved[outcome] += 1
        for outcome, error in instance.ends.values():
            if outcome == "error":
                errors[error.split("(")[0]] += 1
    unheld = sorted(set(orders) - set(holders))
    unheld_fates = collections.Counter(
        "refunded" if _money(orders[i]["refunded"]) > 0 else orders[i]["status"] for i in unheld
    )
    beyond = max(0, len(unheld) - sum(unresolved.values()))
    shared = {order_id: who for order_id, who in holders.items() if len(who) > 1}
    charged_twice = sorted(
        i for i, o in orders.items() if _money(o["charged"]) > _money(o["price"])
    )
    refunded_twice = sorted(
        i for i, o in orders.items() if _money(o["refunded"]) > _money(o["charged"])
    )
    left_charged = sorted(
        i for i, o in orders.items() if o["status"] == "PENDING" and _money(o["refunded"]) == 0
    )
    ended_unrefunded = sorted(
        i
        for i, o in orders.items()
        if o["status"] not in ("PENDING", "RECEIVED")
        and _money(o["refunded"]) < _money(o["charged"])
    )
    returned: dict[str, str] = {}
    for instance in instances:
        returned.update(instance.codes)
    wrong = sorted(i for i, code in returned.items() if orders.get(i, {}).get("sms_code") != code)
    received = [i for i, o in orders.items() if o["status"] == "RECEIVED"]
    killed_holders = {
        order_id
        for instance in instances
        if instance.killed
        for order_id in instance.bought.values()
    }
    unreturned = [i for i in received if i not in returned]
    by_status = collections.Counter(o["status"] for o in orders.values())
    # How soon the fleet refunded what each killed member held without a code.
    refund_at = {e["ref"]: float(e["at"]) for e in ledger["entries"] if e["kind"] == "order_refund"}
    after_death: list[float] = []
    for instance in instances:
        if not instance.killed or instance.killed_wall is None:
            continue
        for order_id in instance.bought.values():
            at = refund_at.get(order_id)
            if at is not None and at >= instance.killed_wall:
                after_death.append(at - instance.killed_wall)
    after_death.sort()
    return {
        "orders": len(orders),
        "asks": asks,
        "held": len(holders),
        "by_status": dict(by_status),
        "codes_arrived": len(received),
        "codes_returned": len(returned),
        "wrong_codes": wrong,
        "codes_not_returned": {
            "held by a killed member": sum(1 for i in unreturned if i in killed_holders),
            "held by nobody (on the wire at a kill)": sum(1 for i in unreturned if i in unheld),
            "other": sum(1 for i in unreturned if i not in killed_holders and i not in unheld),
        },
        "refunded": sum(1 for o in orders.values() if _money(o["refunded"]) > 0),
        "refunds_after_death": {
            "count": len(after_death),
            "median_s": statistics.median(after_death) if after_death else None,
            "p95_s": after_death[int(0.95 * (len(after_death) - 1))] if after_death else None,
            "max_s": after_death[-1] if after_death else None,
            "over_30_s": sum(1 for d in after_death if d > REFUND_WITHIN),
        },
        "unresolved_asks": dict(unresolved),
        "errors": dict(errors),
        "unheld": len(unheld),
        "unheld_fates": dict(unheld_fates),
        "bought_beyond_asks": beyond,
        "held_by_two": shared,
        "charged_twice": charged_twice,
        "refunded_twice": refunded_twice,
        "double_charges": beyond + len(shared) + len(charged_twice),
        "left_charged": left_charged,
        "left_charged_detail": [
            dict(orders[i], holders=holders.get(i, [])) for i in left_charged[:20]
        ],
        "ended_unrefunded": ended_unrefunded,
        "balanced": bool(ledger["balanced"]),
        "warnings": dict(
            sum((i.warnings for i in instances), collections.Counter()).most_common(25)
        ),
    }


def _requests(stats: Json, stop_at: float, cfg: Config) -> Json:
    by_status: dict[str, int] = stats["by_status"]
    total = int(stats["total"])
    throttled = int(by_status.get("429", 0))
    return {
        "total": total,
        "429": throttled,
        "share_429": throttled / total if total else None,
        "dropped": int(stats["dropped"]),
        "by_route": stats["by_route"],
        "accepted_per_s": (total - throttled) / stop_at if stop_at else None,
        "limit": cfg.rate,
    }


def _window(samples: Sequence[tuple[float, int]], low: float, high: float) -> float | None:
    inside = [kib for age, kib in samples if low <= age < high]
    return statistics.median(inside) if inside else None


def rss_table_rows(instances: Sequence[Instance], cfg: Config) -> list[Json]:
    """Per instance: RSS in the minute after warm-up against its last minute."""
    rows = []
    for instance in instances:
        life = (instance.ended or 0.0) - instance.started
        # Sampled until it died or the loops stopped: the last minute is the sampled one.
        sampled = max((age for age, _ in instance.rss), default=0.0)
        first = last = None
        if sampled >= 3 * cfg.warmup:
            first = _window(instance.rss, cfg.warmup, 2 * cfg.warmup)
            last = _window(instance.rss, sampled - cfg.warmup, sampled + 1)
        rows.append(
            {
                "member": instance.label,
                "pid": instance.pid,
                "started_s": instance.started,
                "ended_s": instance.ended,
                "killed": instance.killed,
                "life_s": life,
                "peak_kib": max((kib for _, kib in instance.rss), default=None),
                "after_warmup_kib": first,
                "last_kib": last,
                "growth": (last / first - 1) if first and last else None,
            }
        )
    return rows


def _member_json(instance: Instance) -> Json:
    return {
        "member": instance.label,
        "killed": instance.killed,
        "asks": len(instance.asks),
        "bought": len(instance.bought),
        "codes": len(instance.codes),
        "ends": dict(collections.Counter(outcome for outcome, _ in instance.ends.values())),
        "done": instance.done,
        "rss": instance.rss,
        "logs": instance.logs,
    }


# -- the report ------------------------------------------------------------------------


def checks(result: Json) -> list[tuple[str, str, str, bool]]:
    """(what, goal, measured, met) for design.md's soak row."""
    a = result["audit"]
    flat = [r for r in result["rss"] if r["growth"] is not None]
    worst = max((r["growth"] for r in flat), default=None)
    return [
        (
            "double charges",
            "0",
            f"{a['double_charges']} ({a['bought_beyond_asks']} bought beyond the asks, "
            f"{len(a['held_by_two'])} held by two members, {len(a['charged_twice'])} "
            "charged twice)",
            a["double_charges"] == 0,
        ),
        (
            "orders left charged at the end (PENDING, not refunded)",
            "0",
            f"{len(a['left_charged'])}",
            not a["left_charged"],
        ),
        (
            "orders ended without their refund",
            "0",
            f"{len(a['ended_unrefunded'])}",
            not a["ended_unrefunded"],
        ),
        (
            "codes returned that differ from the ledger's",
            "0",
            f"{len(a['wrong_codes'])}",
            not a["wrong_codes"],
        ),
        (
            f"RSS growth after warm-up ({len(flat)} member instances sampled >= "
            f"{3 * result['config']['warmup']:g} s)",
            f"<= {MAX_RSS_GROWTH:.0%}",
            "-" if worst is None else f"worst {worst:+.1%}",
            worst is not None and worst <= MAX_RSS_GROWTH,
        ),
        ("ledger balanced", "yes", "yes" if a["balanced"] else "no", a["balanced"]),
    ]


def _death_line(a: Json) -> str:
    d = a["refunds_after_death"]
    if not d["count"]:
        return "none"
    return (
        f"{d['count']:,}: median {fmt(d['median_s'], 1)} s, p95 {fmt(d['p95_s'], 1)} s, "
        f"max {fmt(d['max_s'], 1)} s; {d['over_30_s']} after more than {REFUND_WITHIN:g} s"
    )


def report(result: Json) -> str:
    cfg = result["config"]
    a, req = result["audit"], result["requests"]
    low, high = cfg["delays"]
    lines = [
        f"Soak: {cfg['members']} fleet members x {cfg['per_member']} activation loops, "
        f"{cfg['minutes']:g} min, {cfg['rate']:g} req/s limit, {cfg['drop']:.0%} of answers "
        f"dropped after the server acted, codes after {low:g}-{high:g} s "
        f"({cfg['no_code']:.0%} never), wait timeout {cfg['timeout']:g} s, poll interval "
        f"{cfg['interval']:g} s; a member killed every {cfg['kill_every']:g} s, Redis down "
        f"at {cfg['redis_at'] if cfg['redis_at'] is not None else 'mid-run'} for "
        f"{cfg['redis_down']:g} s; file journals {'on' if cfg['file_journals'] else 'off'}. "
        f"Wall {result['wall_s']:.0f} s; settled "
        + (
            f"{result['settled_after_s']:.0f} s after the stop."
            if result["settled_after_s"] is not None
            else f"**not** within {cfg['settle']:g} s."
        ),
        "",
        markdown_table(
            ["design.md (soak)", "goal", "measured", "verdict"],
            [[w, g, m, "met" if ok else "**missed**"] for w, g, m, ok in checks(result)],
            "llll",
        ),
        "",
        markdown_table(
            ["ledger", "count"],
            [
                ["activations asked for", f"{a['asks']:,}"],
                ["orders bought (ledger)", f"{a['orders']:,}"],
                ["orders held by a member", f"{a['held']:,}"],
                ["orders by status", ", ".join(f"{k} {v:,}" for k, v in a["by_status"].items())],
                [
                    "codes arrived / returned to a member",
                    f"{a['codes_arrived']:,} / {a['codes_returned']:,}",
                ],
                [
                    "codes arrived, not returned",
                    ", ".join(f"{k}: {v}" for k, v in a["codes_not_returned"].items()),
                ],
                ["orders refunded", f"{a['refunded']:,}"],
                ["killed members' orders refunded after the death (by the fleet)", _death_line(a)],
                [
                    "asks without an order the member knew of",
                    ", ".join(f"{k}: {v}" for k, v in a["unresolved_asks"].items()) or "0",
                ],
                [
                    "orders nobody held, and their fate",
                    f"{a['unheld']}: "
                    + (", ".join(f"{k} {v}" for k, v in a["unheld_fates"].items()) or "-"),
                ],
                [
                    "errors raised to the loops",
                    ", ".join(f"{k} {v}" for k, v in a["errors"].items()) or "0",
                ],
                [
                    "requests (sandbox)",
                    f"{req['total']:,}; 429: {req['429']:,} "
                    f"({fmt((req['share_429'] or 0) * 100, 2)} %); dropped: {req['dropped']:,}",
                ],
                [
                    "accepted requests per second (limit)",
                    f"{fmt(req['accepted_per_s'], 1)} ({req['limit']:g})",
                ],
            ],
            "lr",
        ),
        "",
        "Over time (sandbox counters per interval):",
        "",
        markdown_table(
            ["until s", "requests", "429", "dropped", "purchases", "events"],
            [
                [
                    str(m["at"]),
                    f"{m['total']:,}",
                    f"{m['429']:,}",
                    f"{m['dropped']:,}",
                    f"{m['bought']:,}",
                    "; ".join(
                        e["event"]
                        for e in result["timeline"]
                        if m["at"] - cfg["kill_every"] <= e["at"] < m["at"]
                    ),
                ]
                for m in result["minutes"]
            ],
            "rrrrrl",
        ),
        "",
        f"RSS per member instance (MiB): the minute after {cfg['warmup']:g} s of warm-up "
        "against its last sampled minute (until it was killed or the loops stopped; "
        "instances sampled for at least three such minutes):",
        "",
        markdown_table(
            [
                "member",
                "from-to s",
                "life s",
                "ended",
                "after warm-up",
                "last minute",
                "growth",
                "peak",
            ],
            [
                [
                    r["member"],
                    f"{r['started_s']:.0f}-{fmt(r['ended_s'], 0)}",
                    f"{r['life_s']:.0f}",
                    "killed" if r["killed"] else "stopped",
                    fmt(None if r["after_warmup_kib"] is None else r["after_warmup_kib"] / 1024, 1),
                    fmt(None if r["last_kib"] is None else r["last_kib"] / 1024, 1),
                    "-" if r["growth"] is None else f"{r['growth']:+.1%}",
                    fmt(None if r["peak_kib"] is None else r["peak_kib"] / 1024, 1),
                ]
                for r in result["rss"]
            ],
            "lrrlrrrr",
        ),
    ]
    gone = result["after_exit"]
    lines += [
        "",
        f"After every member closed and exited (the audit above is of the ledger once the "
        f"fleet settled, members still up): {gone['orders']:,} orders, "
        f"{len(gone['left_charged'])} PENDING and not refunded (a whole fleet closed leaves "
        "what it still owed in Redis, for the next member to start).",
    ]
    if a["warnings"]:
        lines += [
            "",
            "Warnings the members logged (ids and numbers blanked):",
            "",
            *(f"- {count} x {message}" for message, count in a["warnings"].items()),
        ]
    if a["left_charged"] or a["double_charges"]:
        lines += ["", "Orders left charged or double charged (first 20):", ""]
        lines += [f"- {json.dumps(o, default=str)}" for o in a["left_charged_detail"]]
        lines += [f"- held by two: {k}: {v}" for k, v in list(a["held_by_two"].items())[:20]]
    return "\n".join(lines)


# -- the member ------------------------------------------------------------------------


async def member(config: Json) -> None:
    """One fleet member: activation loops until told to stop, then to exit."""
    import logging

    import gsim_async
    from gsim_async.fleet import RedisFleet

    def say(event: str, **fields: Any) -> None:
        sys.stdout.write(json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    class Relay(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            say("log", t=time.time(), level=record.levelname, message=record.getMessage()[:500])

    # INFO too: what a leader took over, and each recovered order's fate (the audit's
    # trail when an order is left charged).
    logger = logging.getLogger("gsim_async")
    logger.setLevel(logging.INFO)
    logger.addHandler(Relay(logging.INFO))
    retries: collections.Counter[str] = collections.Counter()
    fleet = RedisFleet(config["redis_url"], namespace=config["namespace"])
    async with gsim_async.Client(
        config["api_key"],
        base_url=config["base_url"],
        poll_interval=config["interval"],
        fleet=fleet,
        journal=config.get("journal") or False,
        on_retry=lambda e: retries.update([e.reason.split(" ")[0]]),
    ) as gsim:
        await gsim.balance()  # joins the fleet
        say("ready", pid=os.getpid())
        counter = iter(range(1 << 62))
        stopping = asyncio.Event()

        async def loop() -> None:
            while not stopping.is_set():
                seq = next(counter)
                say("ask", s=seq)
                try:
                    async with gsim.orders.activation("telegram", "russia") as act:
                        say("bought", s=seq, id=act.order.id)
                        code = await act.wait_for_code(timeout=config["timeout"])
                        say("code", s=seq, id=act.order.id, code=code)
                except gsim_async.NoCodeError:
                    say("end", s=seq, outcome="no code")
                except gsim_async.GsimError as exc:
                    say("end", s=seq, outcome="error", error=repr(exc)[:300])
                    await asyncio.sleep(1.0)  # not a tight loop if the server refuses
                except asyncio.CancelledError:
                    say("end", s=seq, outcome="stopped")
                    raise

        loops = [asyncio.ensure_future(loop()) for _ in range(config["concurrency"])]
        while (await asyncio.to_thread(sys.stdin.readline)).strip() not in ("stop", ""):
            pass
        stopping.set()
        for task in loops:
            task.cancel()  # leaving each block cancels its order: refunded
        await asyncio.gather(*loops, return_exceptions=True)
        say("stopped")
        # The client stays open (a leader keeps refunding what dead members owed) until
        # the harness has seen the fleet settle.
        while (await asyncio.to_thread(sys.stdin.readline)).strip() not in ("exit", ""):
            pass
        requests = gsim.requests_sent
    say("done", requests=requests, retries=dict(retries))


# -- the command line ------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=None, help="loops per member")
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds between kills")
    parser.add_argument("--redis-at", type=float, default=None, help="seconds into the run")
    parser.add_argument("--redis-down", type=float, default=3.0, help="seconds Redis is down")
    parser.add_argument("--rate", type=float, default=20.0, help="the sandbox's req/s limit")
    parser.add_argument("--drop", type=float, default=0.05, help="share of answers dropped")
    parser.add_argument("--file-journals", action="store_true", help="a journal file each too")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--smoke", action="store_true", help="1 minute, 4 members, kills every 20 s, 1-10 s codes"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--member", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.members < 1 or args.kill_every <= 0:
        parser.error("--minutes and --kill-every must be > 0, --members >= 1")
    return args


def config_of(args: argparse.Namespace) -> Config:
    cfg = Config(
        minutes=args.minutes,
        members=args.members,
        concurrency=args.concurrency,
        kill_every=args.kill_every,
        redis_at=args.redis_at,
        redis_down=args.redis_down,
        rate=args.rate,
        drop=args.drop,
        file_journals=args.file_journals,
        seed=args.seed,
    )
    if args.smoke:
        cfg = dataclasses.replace(
            cfg,
            minutes=1.0,
            members=4,
            kill_every=20.0,
            delays=(1.0, 10.0),
            timeout=15.0,
            interval=0.5,
            settle=30.0,
            warmup=10.0,
            rss_every=1.0,
        )
    return cfg


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.member:
        await member(json.loads(args.member))
        return 0
    cfg = config_of(args)
    result = await run(cfg)
    print(report(result))
    if args.json:
        text = json.dumps(result, indent=2, default=str) + "\n"
        await asyncio.to_thread(Path(args.json).write_text, text)
    return 0 if all(ok for *_, ok in checks(result)) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main()))
