"""The soak: a fleet on one key for 10 minutes while members die and stall and Redis fails.

design.md's soak row (issue 23): 8 fleet members, 10 minutes, a 20 req/s limit, 5 % of
answers dropped, a member killed every minute (started again at once, on its own file
journal with ``--file-journals``), one member stalled 20 s, Redis restarted empty once
and a Sentinel failover once: 0 double charges, 0 orders left charged at the end, dead
members' orders refunded p95 <= 45 s after death, the stalled member's codes delivered,
the accepted rate after the wipe >= 0.8x before, RSS flat after warm-up.

* The sandbox runs in its own process: codes after 5-60 s, 10 % of numbers never get
  one, a 20 req/s limit per key (``Retry-After`` as the sandbox computes it: the whole
  seconds until a token is back), and 5 % of all answers dropped after the server
  acted (``drop_after_rate``: a purchase charged, a cancel refunded, only the answer
  lost).
* Redis is a Sentinel group (``benchmarks._redis.SentinelGroup``: a primary, a replica,
  three Sentinels; no persistence) and the members are given its
  ``redis+sentinel://`` URL. The Sentinels take the primary for down after
  ``--sentinel-down-after`` seconds (5), so that a quick restart is not a failover.
* 8 members, each a real process with ``Client(fleet=RedisFleet(url))`` (the default
  ``dead_after``, 35 s; with ``--file-journals``, also its own ``journal=`` file, kept
  across its restarts), run ``activation()`` + ``wait_for_code(timeout=90)`` loops,
  enough of them to ask for more than the limit allows: the fleet's gate, not the
  demand, sets the pace.
* Every minute one member (in turn) is killed with SIGKILL and started again at once.
  A member whose Redis cannot be reached when its client opens fails to start
  (``FleetError``): the harness starts it again every second, as a supervisor would,
  and counts the retries.
* Three more events, each half-way between two kills: about a quarter in, Redis
  **restarted empty** (the primary SIGKILLed and started again on its port at once,
  before the Sentinels judge it down; the replica then resyncs from the empty primary);
  about half-way, one member **stalled** (SIGSTOP for ``--stall`` seconds, then
  SIGCONT; shorter than ``dead_after``: it must lose nothing), chosen among those not
  about to be killed; about three quarters in, a **failover** (the primary SIGKILLed
  and left down until the Sentinels promote the replica).
* At the end every member stops its loops (leaving a block cancels its order) while
  its client stays open, the fleet settles (the leader refunds what the last killed
  member owed) for up to a minute, then the members close and exit.

Members print what they asked for, bought, got and ended as JSON lines, with what the
SDK logged; the audit reads the sandbox's ledger: orders charged twice or bought beyond
what the members asked for, orders held by two members, orders still charged and PENDING
at the end, codes returned against the ledger's; how soon each killed member's open
orders were refunded after its death; the stalled member's codes and whether any of its
orders were refunded behind its back; the accepted rate in the minute before each Redis
event against the minute from 20 s after Redis answers again. Each member's RSS is read
from ``/proc`` every few seconds: after a first minute of warm-up, the next minute
against its last.

Without file journals a member that died within ``dead_after`` before Redis lost
everything may not have been taken over yet: its rows lived only in Redis, and nobody
can refund what it owed (a member on the same machine whose process is gone is taken
over within a heartbeat or two, so the window is that short). Such orders are reported
apart, not as a failure of the run; with file journals the restarted member refunds them.

    python -m benchmarks.soak [--minutes 10] [--json soak.json] [--file-journals]
    python -m benchmarks.soak --smoke        # about 1.5 minutes, scaled down

The smoke run keeps the 20 req/s limit and scales the rest down: 75 s, 4 members, a
kill every 15 s, codes after 1-10 s, a 6 s stall, the same Redis events; it judges the
money and the codes, and reports the rates, refund times and RSS (too short to judge).
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
import re
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
from benchmarks._redis import RedisProcess, SentinelGroup, redis_cli

#: An instance's RSS may grow this much from the minute after its warm-up to its last
#: minute and still count as flat (allocator noise, caches filling to their caps).
MAX_RSS_GROWTH = 0.10
#: design.md: a dead fleet member's orders are refunded within this many seconds (p95).
REFUND_WITHIN = 45.0
#: design.md: the accepted rate from 20 s after Redis answers again, against before.
RATE_AFTER = 0.8
#: RedisFleet's default dead_after: a member silent this long is taken over.
DEAD_AFTER = 35.0
#: Activations asked for per request the limit allows: the fleet waits at its gate.
OVER_DEMAND = 1.3
#: Requests an activation costs, roughly: its purchase, its share of the polls, a
#: cancel for one in ten, a retry for a dropped answer.
REQUESTS_PER_ACTIVATION = 1.25
#: Seconds before a member's death within which an order nobody held was made: its
#: purchase on the wire when it died (the sandbox answers within milliseconds).
WIRE_BEFORE_DEATH = 10.0
#: Exit status of a member whose client could not open (FleetError).
FLEET_ERROR_EXIT = 3
#: Seconds before the loops stop within which a code delivered to the stalled member
#: may still be on its way to it (a poll round behind the gate) when its loop is
#: cancelled: such codes are listed, not counted against it.
CODE_MARGIN = 10.0


@dataclasses.dataclass
class Config:
    """What one soak does; the defaults are design.md's."""

    minutes: float = 10.0
    members: int = 8
    #: Concurrent activation loops per member (None: enough to ask for more than the limit).
    concurrency: int | None = None
    kill_every: float = 60.0
    #: Seconds a member is stopped (SIGSTOP) before it is continued.
    stall: float = 20.0
    #: Seconds into the run of the stall, the wipe and the failover (None: half-way
    #: between two kills, near a half, a quarter and three quarters of the run).
    stall_at: float | None = None
    wipe_at: float | None = None
    failover_at: float | None = None
    #: Seconds of silence before the Sentinels take the primary for down.
    sentinel_down_after: float = 5.0
    #: The rate after a Redis event: a window this long, from this many seconds after
    #: Redis answers again, against the same window before the event.
    rate_after: float = 20.0
    rate_window: float = 60.0
    #: Seconds between attempts to start a member whose client could not open.
    start_retry: float = 1.0
    rate: float = 20.0
    drop: float = 0.05
    delays: tuple[float, float] = (5.0, 60.0)
    no_code: float = 0.1
    timeout: float = 90.0
    interval: float = 2.0
    #: After the loops stop: until the ledger has not moved for ``settle_quiet`` seconds
    #: (nothing bought, the same orders PENDING), ``settle`` seconds at most.
    settle: float = 240.0
    settle_quiet: float = 20.0
    #: Seconds of an instance's life that are warm-up, and the length of each RSS window.
    warmup: float = 60.0
    rss_every: float = 5.0
    file_journals: bool = False
    seed: int = 5
    #: A smoke run: too short to judge rates, refund times and RSS, reported only.
    smoke: bool = False

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

    def victim(self, k: int) -> int:
        """The slot the ``k``-th kill hits: each in turn."""
        return k % self.members

    def _between_kills(self, fraction: float) -> float:
        # The point half-way between two kills nearest to ``fraction`` of the run (the
        # earlier on a tie): away from both kills.
        k = math.ceil(fraction * self.duration / self.kill_every - 1.0)
        return (max(k, 0) + 0.5) * self.kill_every

    @property
    def wipe(self) -> float:
        return self.wipe_at if self.wipe_at is not None else self._between_kills(0.25)

    @property
    def stall_start(self) -> float:
        return self.stall_at if self.stall_at is not None else self._between_kills(0.5)

    @property
    def failover(self) -> float:
        return self.failover_at if self.failover_at is not None else self._between_kills(0.75)

    @property
    def stalled_slot(self) -> int:
        """The member stalled: none killed during or soon after its stall.

        Preferably one never killed again (its codes are followed to the end of the
        run), then the one whose nearest kill is furthest from the stall.
        """
        start, end = self.stall_start, self.stall_start + self.stall

        def score(slot: int) -> tuple[bool, float, int]:
            times = [at for k, at in enumerate(self.kills) if self.victim(k) == slot]
            later = any(at >= start for at in times)
            gap = min((min(abs(at - start), abs(at - end)) for at in times), default=math.inf)
            return (not later, gap, -slot)

        return max(range(self.members), key=score)


# -- one member instance, seen from the harness ---------------------------------------


@dataclasses.dataclass
class Instance:
    """One member process: what it said, and its RSS over time."""

    slot: int
    generation: int
    proc: asyncio.subprocess.Process
    started: float  # seconds into the run
    attempt: int = 0  # starts that failed before this one (FleetError)
    ended: float | None = None
    killed: bool = False
    killed_wall: float | None = None  # time.time() of the SIGKILL (the ledger's clock)
    asks: set[int] = dataclasses.field(default_factory=set)
    bought: dict[int, str] = dataclasses.field(default_factory=dict)
    bought_at: dict[str, float] = dataclasses.field(default_factory=dict)  # wall clock
    codes: dict[str, str] = dataclasses.field(default_factory=dict)
    code_at: dict[str, float] = dataclasses.field(default_factory=dict)
    ends: dict[int, tuple[str, str]] = dataclasses.field(default_factory=dict)
    end_at: dict[int, float] = dataclasses.field(default_factory=dict)
    warnings: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    #: Everything the SDK logged at INFO or above: (wall clock, level, message).
    logs: list[tuple[float, str, str]] = dataclasses.field(default_factory=list)
    rss: list[tuple[float, int]] = dataclasses.field(default_factory=list)  # (age s, KiB)
    done: Json | None = None
    start_error: str | None = None
    stderr: Path | None = None
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
        seq = int(event.get("s", -1))
        at = float(event.get("t", 0.0))
        if kind == "ask":
            self.asks.add(seq)
        elif kind == "bought":
            self.bought[seq] = str(event["id"])
            self.bought_at[str(event["id"])] = at
        elif kind == "code":
            self.codes[str(event["id"])] = str(event["code"])
            self.code_at[str(event["id"])] = at
        elif kind == "end":
            self.ends[seq] = (str(event["outcome"]), str(event.get("error", "")))
            self.end_at[seq] = at
        elif kind == "log":
            message, level = str(event["message"]), str(event["level"])
            self.logs.append((at, level, message))
            if level != "INFO":
                self.warnings[_shape(message)] += 1
        elif kind == "ready":
            self.ready.set()
        elif kind == "fleet-error":
            self.start_error = str(event.get("error", ""))
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

    def open_at(self, wall: float) -> list[str]:
        """Orders it had bought by ``wall`` and not yet ended (code, refund) by then."""
        ended = {self.bought[s] for s, at in self.end_at.items() if s in self.bought and at <= wall}
        return [
            order_id
            for order_id, at in self.bought_at.items()
            if at <= wall
            and order_id not in ended
            and not (order_id in self.code_at and self.code_at[order_id] <= wall)
        ]


def _shape(message: str) -> str:
    """A log message with its ids and numbers blanked, so that alike ones count together."""
    words = message.split()[:14]
    return " ".join("#" if any(c.isdigit() for c in word) else word for word in words)


async def _spawn(
    cfg: Config, slot: int, generation: int, attempt: int, common: Json, now: float
) -> Instance:
    config = dict(common, slot=slot)
    directory = Path(common["journal_dir"])
    if cfg.file_journals:
        config["journal"] = str(directory / f"member-{slot}.db")
    # What a member prints on stderr (a traceback) is kept: its tail goes in the JSON.
    stderr = directory / f"m{slot}.{generation}.{attempt}.stderr"
    with stderr.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.soak",
            "--member",
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=sink,
            env=child_env(),
            cwd=ROOT,
        )
    instance = Instance(
        slot=slot, generation=generation, proc=proc, started=now, attempt=attempt, stderr=stderr
    )
    instance.reader = asyncio.ensure_future(instance.read())
    return instance


# -- the run ---------------------------------------------------------------------------


class Soak:
    """One soak run: the members, the events, and what was seen."""

    def __init__(self, cfg: Config, sb: Any, group: SentinelGroup, journal_dir: str) -> None:
        self.cfg = cfg
        self.sb = sb
        self.group = group
        self.common: Json = {
            "base_url": sb.base_url,
            "api_key": sb.api_key,
            "redis_url": group.url,
            "namespace": uuid.uuid4().hex[:8],
            "concurrency": cfg.per_member,
            "timeout": cfg.timeout,
            "interval": cfg.interval,
            "journal_dir": journal_dir,
        }
        self.t0 = time.monotonic()
        self.instances: list[Instance] = []  # every instance that started
        self.live: dict[int, Instance] = {}
        self.starting: dict[int, asyncio.Task[None]] = {}
        self.start_failures: list[Json] = []
        self.timeline: list[Json] = []
        self.samples: list[tuple[float, int, int]] = []  # (s into the run, total, 429)
        self.redis_events: list[Json] = []
        self.stall: Json = {}
        self.skipped_kills: list[Json] = []
        self.minute_rows: list[Json] = []
        self.probes: list[Json] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def note(self, event: str, **fields: Any) -> None:
        self.timeline.append({"at": self.now(), "event": event, **fields})
        progress(f"soak: {self.now():.0f} s: {event}")

    # -- members --------------------------------------------------------------------------

    async def bring_up(self, slot: int, generation: int) -> None:
        """Start the member of ``slot``; while its client cannot open, again every second."""
        attempt = 0
        while True:
            instance = await _spawn(self.cfg, slot, generation, attempt, self.common, self.now())
            self.live[slot] = instance
            ready = asyncio.ensure_future(instance.ready.wait())
            exited = asyncio.ensure_future(instance.proc.wait())
            await asyncio.wait({ready, exited}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            exited.cancel()
            if instance.ready.is_set():
                self.instances.append(instance)
                return
            if instance.proc.returncode is None:
                instance.proc.kill()
                await instance.proc.wait()
            if instance.reader is not None:
                await instance.reader
            instance.ended = self.now()
            why = instance.start_error or (
                f"exit status {instance.proc.returncode}: {_tail(instance.stderr)[-300:]}"
                if instance.proc.returncode not in (None, -signal.SIGKILL)
                else "not ready within 60 s"
            )
            self.start_failures.append(
                {"member": instance.label, "attempt": attempt, "at": self.now(), "error": why}
            )
            progress(f"soak: {self.now():.0f} s: {instance.label} failed to start: {why[:160]}")
            attempt += 1
            if self.now() > self.cfg.duration:
                return
            await asyncio.sleep(self.cfg.start_retry)

    async def kill(self, slot: int) -> None:
        task = self.starting.get(slot)
        if task is not None and not task.done():
            self.skipped_kills.append({"at": self.now(), "slot": slot})
            self.note(f"m{slot} is still starting: not killed")
            return
        victim = self.live[slot]
        victim.killed_wall = time.time()
        victim.proc.send_signal(signal.SIGKILL)
        await victim.proc.wait()
        victim.killed, victim.ended = True, self.now()
        self.note(f"killed {victim.label}", member=victim.label, pid=victim.pid)
        self.starting[slot] = asyncio.ensure_future(self.bring_up(slot, victim.generation + 1))

    async def stall_member(self, slot: int) -> None:
        task = self.starting.get(slot)
        if task is not None and not task.done():
            await task
        victim = self.live[slot]
        victim.proc.send_signal(signal.SIGSTOP)
        stopped = time.time()
        self.stall = {"member": victim.label, "at": self.now(), "stopped_wall": stopped}
        self.note(f"stalled {victim.label} (SIGSTOP)", member=victim.label)
        try:
            await asyncio.sleep(self.cfg.stall)
        finally:
            victim.proc.send_signal(signal.SIGCONT)
            self.stall |= {"resumed_wall": time.time(), "resumed_at": self.now()}
            self.note(f"continued {victim.label} (SIGCONT)", member=victim.label)

    # -- Redis ------------------------------------------------------------------------------

    def _primary(self) -> tuple[RedisProcess, int]:
        port = self.group.primary_port()
        for server in (self.group.primary, self.group.replica):
            if server.port == port:
                return server, port
        raise RuntimeError(f"the Sentinels name no primary of ours (port {port})")

    async def wipe(self) -> None:
        """The primary SIGKILLed and started again on its port at once: empty."""
        server, port = await asyncio.to_thread(self._primary)
        at, wall = self.now(), time.time()

        marker = f"gsim-soak-marker-{uuid.uuid4().hex[:8]}"

        def restart() -> tuple[int, bool]:
            # A key of our own, written before: gone after the restart proves it empty
            # (members write theirs again within a moment: the key count cannot tell).
            redis_cli(server.port, "SET", marker, "1")
            keys = int(redis_cli(server.port, "DBSIZE") or -1)
            server.kill()
            server.start()
            return keys, redis_cli(server.port, "EXISTS", marker) == "0"

        keys, empty = await asyncio.to_thread(restart)
        back = self.now()
        event: Json = {
            "event": "wipe",
            "at": at,
            "wall": wall,
            "back": back,
            "keys_before": keys,
            "came_back_empty": empty,
        }
        self.redis_events.append(event)
        self.note(
            f"Redis primary (:{port}, {keys} keys) killed and started again"
            + (", empty" if empty else ", NOT empty")
        )
        # Still the primary once the Sentinels' down-after has passed: not a failover.
        await asyncio.sleep(self.cfg.sentinel_down_after + 3)
        named = await asyncio.to_thread(self.group.primary_port)
        event["failed_over"] = named != port
        replica = self.group.replica if server is self.group.primary else self.group.primary
        # The replica resyncs from the restarted primary in full: on a loaded machine that
        # takes a few seconds more.
        for _ in range(40):
            info = await asyncio.to_thread(redis_cli, replica.port, "INFO", "replication")
            event["replica_linked"] = "master_link_status:up" in info
            if event["replica_linked"]:
                break
            await asyncio.sleep(0.5)

    async def failover(self) -> None:
        """The primary SIGKILLed and left down until the Sentinels promote the replica."""
        server, port = await asyncio.to_thread(self._primary)
        at, wall = self.now(), time.time()
        await asyncio.to_thread(server.kill)
        self.note(f"Redis primary (:{port}) killed; waiting for the Sentinels' failover")

        def promoted() -> int | None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                named = self.group.primary_port()
                if named is not None and named != port:
                    return named
                time.sleep(0.1)
            return None

        named = await asyncio.to_thread(promoted)
        back = self.now()
        self.redis_events.append(
            {"event": "failover", "at": at, "wall": wall, "back": back, "promoted": named}
        )
        self.note(
            f"Sentinels promoted :{named} ({back - at:.1f} s after the primary died)"
            if named is not None
            else "no failover within 60 s"
        )

    # -- what the fleet keeps in Redis (a diagnosis) ---------------------------------------

    def _read_fleet(self) -> Json:
        """The fleet's per-member counters of purchases on the wire and lost, and whether
        another buyer was flagged, as the primary holds them now."""
        _, port = self._primary()
        pattern = f"gsim:*:{self.common['namespace']}:*"
        keys = redis_cli(port, "--scan", "--pattern", pattern).split()
        seen: Json = {"wire": {}, "lost": {}, "foreign": None, "keys": len(keys)}
        for key in keys:
            kind = key.rsplit(":", 2)[-2] if key.count(":") >= 2 else ""
            if kind in ("wire", "lost"):
                pairs = redis_cli(port, "HGETALL", key).split()
                counts = {m: int(n) for m, n in zip(pairs[0::2], pairs[1::2], strict=False)}
                seen[kind][key.rsplit(":", 1)[-1]] = counts
            elif key.endswith(":foreign"):
                seen["foreign"] = {
                    "order": redis_cli(port, "GET", key),
                    "ttl": int(redis_cli(port, "TTL", key) or -2),
                }
        return seen

    async def probe(self, label: str) -> None:
        at = self.now()
        try:
            seen = await asyncio.to_thread(self._read_fleet)
        except (RuntimeError, OSError, ValueError) as exc:
            seen = {"error": repr(exc)}
        self.probes.append({"label": label, "at": at} | seen)

    async def probing(self) -> None:
        """Probes before and after each Redis event (the end's comes after the settle)."""
        cfg = self.cfg
        times = [
            (cfg.wipe - 2, "2 s before the wipe"),
            (cfg.wipe + 10, "10 s after the wipe"),
            (cfg.wipe + 60, "60 s after the wipe"),
            (cfg.failover - 2, "2 s before the failover"),
            (cfg.failover + 30, "30 s after the failover"),
        ]
        for at, label in sorted(t for t in times if 0 < t[0] < cfg.duration):
            await asyncio.sleep(max(0.0, at - self.now()))
            await self.probe(label)

    # -- counters ---------------------------------------------------------------------------

    async def count(self) -> None:
        """The sandbox's counters every second: the accepted rate around each event."""
        while True:
            stats = await self.sb.stats()
            total, throttled = int(stats["total"]), int(stats["by_status"].get("429", 0))
            self.samples.append((self.now(), total, throttled))
            await asyncio.sleep(1.0)

    async def sample_rss(self) -> None:
        while True:
            for instance in list(self.live.values()):
                instance.sample_rss(self.now())
            await asyncio.sleep(self.cfg.rss_every)

    # -- the whole run ----------------------------------------------------------------------

    def schedule(self) -> list[tuple[float, str, int]]:
        cfg = self.cfg
        events = [(at, "kill", cfg.victim(k)) for k, at in enumerate(cfg.kills)]
        events += [
            (cfg.wipe, "wipe", -1),
            (cfg.stall_start, "stall", cfg.stalled_slot),
            (cfg.failover, "failover", -1),
        ]
        return sorted(e for e in events if e[0] < cfg.duration)

    async def go(self) -> Json:
        cfg = self.cfg
        progress(
            f"soak: {cfg.members} members x {cfg.per_member} activation loops for "
            f"{cfg.minutes:g} min; kills at {', '.join(f'{k:g}' for k in cfg.kills)} s; "
            f"Redis restarted empty at {cfg.wipe:g} s, m{cfg.stalled_slot} stalled "
            f"{cfg.stall:g} s at {cfg.stall_start:g} s, failover at {cfg.failover:g} s"
        )
        self.t0 = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(self.bring_up(slot, 0) for slot in range(cfg.members))), 180
        )
        counter = asyncio.ensure_future(self.count())
        sampler = asyncio.ensure_future(self.sample_rss())
        minutes = asyncio.ensure_future(self.per_minute())
        probing = asyncio.ensure_future(self.probing())
        handlers: list[asyncio.Task[None]] = []
        for at, what, slot in self.schedule():
            await asyncio.sleep(max(0.0, at - self.now()))
            if what == "kill":
                job = self.kill(slot)
            elif what == "stall":
                job = self.stall_member(slot)
            elif what == "wipe":
                job = self.wipe()
            else:
                job = self.failover()
            handlers.append(asyncio.ensure_future(job))
        await asyncio.sleep(max(0.0, cfg.duration - self.now()))
        await asyncio.gather(*handlers)
        await asyncio.gather(*self.starting.values())

        # The end: stop the loops, let the fleet settle, then close the members.
        sampler.cancel()
        stop_at, stop_wall = self.now(), time.time()
        self.note("members stop their loops")
        running = [i for i in self.live.values() if i.proc.returncode is None]
        await asyncio.gather(*(i.tell("stop") for i in running))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(i.stopped.wait() for i in running)), 90)
        # Refunds a member's journal has scheduled (an earlier run's orders, due at a time
        # it logged) are owed, not lost: the ledger is read once they are due.
        due = _scheduled_refunds(self.instances)
        if due > time.time():
            self.note(f"waiting {due - time.time():.0f} s for the refunds journals scheduled")
            await asyncio.sleep(min(due - time.time() + 5.0, cfg.settle))
        settled_after = await _settle(self.sb, cfg.settle, cfg.settle_quiet)
        self.note("settled" if settled_after is not None else "not settled")
        # The audit's ledger: the members stopped, the fleet still up.
        settled_ledger = await self.sb.get("ledger")
        probing.cancel()
        await self.probe("the loops stopped, the ledger settled")
        counter.cancel()
        minutes.cancel()
        await asyncio.gather(*(i.tell("exit") for i in running))
        for instance in running:
            try:
                await asyncio.wait_for(instance.proc.wait(), 60)
            except asyncio.TimeoutError:
                instance.proc.kill()
                await instance.proc.wait()
            instance.ended = self.now()
        for instance in self.instances:
            if instance.reader is not None:
                await instance.reader
        await self.sb.post("faults/reset")
        stats = await self.sb.stats()
        ledger = await self.sb.get("ledger")
        return {
            "config": dataclasses.asdict(cfg)
            | {
                "per_member": cfg.per_member,
                "kills": cfg.kills,
                "wipe_at_s": cfg.wipe,
                "stall_at_s": cfg.stall_start,
                "stalled_slot": cfg.stalled_slot,
                "failover_at_s": cfg.failover,
                "dead_after": DEAD_AFTER,
            },
            "wall_s": self.now(),
            "stop_at_s": stop_at,
            "stop_wall": stop_wall,
            "settled_after_s": settled_after,
            "timeline": self.timeline,
            "minutes": self.minute_rows,
            "redis_events": [
                e | _rates(self.samples, e, cfg) for e in sorted(self.redis_events, key=_at)
            ],
            "start_failures": self.start_failures,
            "fleet_in_redis": self.probes,
            "skipped_kills": self.skipped_kills,
            "audit": audit(self.instances, settled_ledger, cfg, self.redis_events, stop_wall),
            "stall": stall_audit(self.instances, self.stall, settled_ledger, stop_wall),
            "after_exit": {
                "left_charged": sorted(
                    o["id"]
                    for o in ledger["orders"]
                    if o["status"] == "PENDING" and _money(o["refunded"]) == 0
                ),
                "orders": len(ledger["orders"]),
            },
            "requests": _requests(stats, stop_at, cfg),
            "orders": _compact(settled_ledger),
            "rss": rss_table_rows(self.instances, cfg),
            "members": [_member_json(i) for i in self.instances],
        }

    async def per_minute(self) -> None:
        """The sandbox's counters at every kill interval, for the table over time."""
        previous: Json | None = None
        every = self.cfg.kill_every
        while True:
            await asyncio.sleep(every - self.now() % every)
            stats = await self.sb.stats()
            row = {
                "at": round(self.now()),
                "total": int(stats["total"]),
                "429": int(stats["by_status"].get("429", 0)),
                "dropped": int(stats["dropped"]),
                "bought": int(
                    stats.get("by_route_status", {}).get("POST /api/v1/orders", {}).get("200", 0)
                ),
            }
            base = previous or dict.fromkeys(row, 0)
            self.minute_rows.append({k: row[k] - base[k] if k != "at" else row[k] for k in row})
            previous = row


def _at(event: Json) -> float:
    return float(event["at"])


async def run(cfg: Config) -> Json:
    """The whole soak; everything measured, as JSON."""
    journal_dir = tempfile.TemporaryDirectory(prefix="gsim-bench-soak-")
    group = SentinelGroup(down_after=int(cfg.sentinel_down_after * 1000))
    soak: Soak | None = None
    try:
        await asyncio.to_thread(group.start)
        async with running_sandbox(
            cfg.seed,
            code_delay=cfg.delays,
            auto_deliver=True,
            balance="100000000",
            no_code_ratio=cfg.no_code,
        ) as sb:
            await sb.post("faults", {"rate_limit": cfg.rate, "drop_after_rate": cfg.drop})
            await sb.post("stats/reset")
            soak = Soak(cfg, sb, group, journal_dir.name)
            return await soak.go()
    finally:
        if soak is not None:
            for instance in [*soak.instances, *soak.live.values()]:
                if instance.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        instance.proc.send_signal(signal.SIGCONT)
                        instance.proc.kill()
                    await instance.proc.wait()
        await asyncio.to_thread(group.close)
        journal_dir.cleanup()


async def _settle(sb: Any, within: float, quiet: float) -> float | None:
    """Seconds until the ledger stops moving: nothing bought and the same orders PENDING
    for ``quiet`` seconds (none, when the fleet owes nothing more).

    (Purchases a stopped loop had queued at the rate gate still go out, and are then
    refunded.) None: not within ``within``.
    """
    started = time.monotonic()
    seen: tuple[int, frozenset[str]] | None = None
    quiet_since = started
    while True:
        orders = await sb.orders()
        now = time.monotonic()
        state = (len(orders), frozenset(o["id"] for o in orders if o["status"] == "PENDING"))
        if state != seen:
            seen, quiet_since = state, now
        if not state[1] and now - quiet_since >= min(quiet, 5.0):
            return now - started
        if now - quiet_since >= quiet:
            return now - started
        if now - started > within:
            return None
        await asyncio.sleep(1.0)


_SCHEDULED = re.compile(r"of an earlier run is (?:cancelled|banned) in (\d+) s")


def _scheduled_refunds(instances: Sequence[Any]) -> float:
    """The latest time (Unix) a live member logged one of its journal's refunds as due."""
    latest = 0.0
    for instance in instances:
        if instance.proc.returncode is not None:
            continue  # died with its schedule: the leader or its restart took it over
        for at, _level, message in instance.logs:
            found = _SCHEDULED.search(message)
            if found is not None:
                latest = max(latest, at + float(found.group(1)))
    return latest


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


def _p95(values: Sequence[float]) -> float | None:
    return sorted(values)[int(0.95 * (len(values) - 1))] if values else None


def _spread(values: Sequence[float]) -> Json:
    return {
        "count": len(values),
        "median_s": statistics.median(values) if values else None,
        "p95_s": _p95(values),
        "max_s": max(values, default=None),
        "over_goal": sum(1 for d in values if d > REFUND_WITHIN),
    }


def _accepted(samples: Sequence[tuple[float, int, int]], start: float, end: float) -> Json:
    """Accepted requests per second and 429s between ``start`` and ``end`` (run seconds)."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return {"per_s": None, "429": None, "from_s": start, "to_s": end}
    (t1, total1, thr1), (t2, total2, thr2) = inside[0], inside[-1]
    return {
        "per_s": ((total2 - thr2) - (total1 - thr1)) / (t2 - t1),
        "429": thr2 - thr1,
        "from_s": t1,
        "to_s": t2,
    }


def _rates(samples: Sequence[tuple[float, int, int]], event: Json, cfg: Config) -> Json:
    """The window before a Redis event against the window from 20 s after it was back."""
    at, back = float(event["at"]), float(event["back"])
    before = _accepted(samples, at - cfg.rate_window, at)
    start = back + cfg.rate_after
    after = _accepted(samples, start, start + cfg.rate_window)
    ratio = after["per_s"] / before["per_s"] if after["per_s"] and before["per_s"] else None
    # A window cut short by the end of the run says less: the report says how long.
    return {
        "before": before,
        "after": after,
        "ratio": ratio,
        "throttled_through": _accepted(samples, at, start + cfg.rate_window)["429"],
    }


def audit(
    instances: Sequence[Instance],
    ledger: Json,
    cfg: Config,
    redis_events: Sequence[Json],
    stop_wall: float,
) -> Json:
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

    # How soon the fleet refunded what each killed member still had open at its death.
    refund_at = {e["ref"]: float(e["at"]) for e in ledger["entries"] if e["kind"] == "order_refund"}
    after_death: list[float] = []
    wire_after_death: list[float] = []
    deaths: list[Json] = []
    for instance in instances:
        if not instance.killed or instance.killed_wall is None:
            continue
        died = instance.killed_wall
        open_ids = instance.open_at(died)
        # Its purchases on the wire when it died: orders nobody held, made just before
        # (or just after: the server may still have been reading the request).
        wire_ids = [
            i
            for i in unheld
            if died - WIRE_BEFORE_DEATH <= float(orders[i]["created_at"]) <= died + 5
        ]
        row: Json = {
            "member": instance.label,
            "died_wall": died,
            "open_ids": open_ids,
            "on_the_wire_ids": wire_ids,
        }
        for name, ids, sink in (
            ("open", open_ids, after_death),
            ("on_the_wire", wire_ids, wire_after_death),
        ):
            fates: collections.Counter[str] = collections.Counter()
            delays = []
            for order_id in ids:
                order = orders.get(order_id, {})
                at = refund_at.get(order_id)
                if at is not None:
                    fates["refunded"] += 1
                    delays.append(max(0.0, at - died))
                elif order.get("status") == "RECEIVED":
                    fates["code arrived (kept)"] += 1
                else:
                    fates[str(order.get("status"))] += 1
            sink.extend(delays)
            row |= {
                name: len(ids),
                f"{name}_fates": dict(fates),
                f"{name}_max_s": max(delays, default=None),
                f"{name}_late": sorted(
                    i for i in ids if i in refund_at and refund_at[i] - died > REFUND_WITHIN
                )[:20],
            }
        deaths.append(row)
    after_death.sort()

    # Without file journals, what a member that died shortly before Redis lost everything
    # owed lived only in Redis: if it was not taken over yet, nobody can refund it.
    # Not taken over before Redis lost everything: no member logged a takeover between
    # its death and the event (the deaths are a minute apart: each takeover is its own).
    takeovers = sorted(
        at for i in instances for at, _, m in i.logs if "is gone (" in m and "taking over" in m
    )

    def in_the_hole(died: float) -> bool:
        for event in redis_events:
            lost_at = float(event["wall"])
            if 0 <= lost_at - died <= DEAD_AFTER and not any(
                died <= at <= lost_at for at in takeovers
            ):
                return True
        return False

    hole_deaths = [
        i
        for i in instances
        if not cfg.file_journals and i.killed_wall is not None and in_the_hole(i.killed_wall)
    ]
    in_hole = set()
    for death in deaths:
        if death["member"] in {i.label for i in hole_deaths}:
            in_hole |= set(death["open_ids"]) | set(death["on_the_wire_ids"])
    left_in_hole = sorted(i for i in left_charged if i in in_hole)
    # Why each order was left charged, as far as the members' output tells.
    open_at_death = {i for x in deaths for i in x["open_ids"]}
    wire_at_death = {i for x in deaths for i in x["on_the_wire_ids"]}
    unknown_text = " ".join(e for i in instances for o, e in i.ends.values() if o == "error")
    told_text = " ".join(m for i in instances for _, _, m in i.logs if "cannot be told" in m)
    why_left: dict[str, str] = {}
    for order_id in left_charged:
        if order_id in wire_at_death:
            why = "a killed member's purchase on the wire at its death"
        elif order_id in open_at_death:
            why = "a killed member's order open at its death"
        elif float(orders[order_id]["created_at"]) >= stop_wall:
            why = "bought after the loops stopped (a stopped loop's purchase; nobody named it)"
        elif order_id in unknown_text:
            why = "named by an OutcomeUnknownError raised to a loop (its answer was lost)"
        elif order_id in told_text:
            why = "named by 'an earlier run's purchase cannot be told'"
        elif order_id not in holders:
            why = "nobody held it, no member named it"
        else:
            why = "held by " + ", ".join(holders[order_id])
        why_left[order_id] = why
    left_charged_rest = sorted(i for i in left_charged if i not in in_hole)
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
        "refunds_after_death": _spread(after_death + wire_after_death),
        "refunds_after_death_held": _spread(after_death),
        "refunds_after_death_on_the_wire": _spread(wire_after_death),
        "deaths": deaths,
        "unresolved_asks": dict(unresolved),
        "errors": dict(errors),
        "unheld": len(unheld),
        "unheld_fates": dict(unheld_fates),
        "bought_beyond_asks": beyond,
        "held_by_two": shared,
        "charged_twice": charged_twice,
        "refunded_twice": refunded_twice,
        "double_charges": beyond + len(shared) + len(charged_twice),
        "left_charged": left_charged_rest,
        "left_charged_in_hole": left_in_hole,
        "left_charged_why": why_left,
        "left_charged_by_why": dict(collections.Counter(why_left.values())),
        "hole_deaths": [i.label for i in hole_deaths],
        "left_charged_detail": [
            dict(orders[i], holders=holders.get(i, [])) for i in left_charged[:20]
        ],
        "ended_unrefunded": ended_unrefunded,
        "balanced": bool(ledger["balanced"]),
        "warnings": dict(
            sum((i.warnings for i in instances), collections.Counter()).most_common(25)
        ),
    }


def stall_audit(instances: Sequence[Instance], stall: Json, ledger: Json, stop_wall: float) -> Json:
    """The stalled member: its codes, and whether the fleet took anything from it."""
    if not stall:
        return {}
    victim = next(i for i in instances if i.label == stall["member"])
    stopped, resumed = float(stall["stopped_wall"]), float(stall["resumed_wall"])
    # Followed until its loops stopped (or it died), less the last poll rounds.
    until = min(stop_wall, victim.killed_wall or math.inf) - CODE_MARGIN
    orders: dict[str, Json] = {o["id"]: o for o in ledger["orders"]}
    mine = set(victim.bought.values())
    waiting = victim.open_at(stopped)
    delivered = {
        i: float(orders[i]["code_delivered_at"])
        for i in mine
        if i in orders
        and orders[i].get("code_delivered_at") is not None
        and float(orders[i]["code_delivered_at"]) >= stopped
    }
    counted = {i for i, at in delivered.items() if at <= until}
    got = {i for i in counted if victim.codes.get(i) == orders[i].get("sms_code")}
    while_stopped = {i for i, at in delivered.items() if at <= resumed}
    refunds = {e["ref"]: float(e["at"]) for e in ledger["entries"] if e["kind"] == "order_refund"}
    refunded_while_stopped = sorted(i for i in mine if stopped <= refunds.get(i, -1) <= resumed)
    taken_over_waits = [
        error for outcome, error in victim.ends.values() if "taken over by the fleet" in error
    ]
    told_taken = [m for _, _, m in victim.logs if "took it for dead" in m]
    # A takeover of a member that is still running: only the stalled one can be that.
    silent_takeovers = [
        f"{i.label}: {m}"
        for i in instances
        for at, _, m in i.logs
        if "silent too long" in m and stopped <= at <= resumed + 10
    ]
    ends_after = [at for s, at in victim.end_at.items() if at >= resumed]
    codes_after = [at for i, at in victim.code_at.items() if i in while_stopped]
    return {
        "member": victim.label,
        "stall_s": resumed - stopped,
        "at_s": stall["at"],
        "waiting_when_stopped": len(waiting),
        "codes_delivered": len(counted),
        "codes_returned": len(got),
        "codes_missing": sorted(counted - got)[:20],
        "codes_delivered_while_stopped": len(while_stopped),
        "codes_delivered_while_stopped_returned": sum(
            1 for i in while_stopped if victim.codes.get(i) == orders[i].get("sms_code")
        ),
        "codes_delivered_at_the_stop": len(set(delivered) - counted),
        "first_code_after_resume_s": min(codes_after) - resumed if codes_after else None,
        "last_code_after_resume_s": max(codes_after) - resumed if codes_after else None,
        "first_end_after_resume_s": min(ends_after) - resumed if ends_after else None,
        "refunded_while_stopped": refunded_while_stopped,
        "waits_taken_over": taken_over_waits[:5],
        "taken_over_count": len(taken_over_waits),
        "told_taken_over": told_taken[:3],
        "silent_takeovers": silent_takeovers[:5],
        "behind_its_back": len(refunded_while_stopped)
        + len(taken_over_waits)
        + len(told_taken)
        + len(silent_takeovers),
        "followed_until_wall": until,
    }


def _compact(ledger: Json) -> list[list[Any]]:
    """Every order of the settled ledger, for a diagnosis: id, status, made, code at, refund at."""
    refund_at = {e["ref"]: e["at"] for e in ledger["entries"] if e["kind"] == "order_refund"}
    return [
        [o["id"], o["status"], o["created_at"], o["code_delivered_at"], refund_at.get(o["id"])]
        for o in ledger["orders"]
    ]


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


def _tail(path: Path | None) -> str:
    try:
        return path.read_text(errors="replace")[-2000:] if path is not None else ""
    except OSError:
        return ""


def _member_json(instance: Instance) -> Json:
    return {
        "member": instance.label,
        "attempt": instance.attempt,
        "killed": instance.killed,
        "asks": len(instance.asks),
        "bought": len(instance.bought),
        "codes": len(instance.codes),
        "ends": dict(collections.Counter(outcome for outcome, _ in instance.ends.values())),
        "end_errors": dict(
            collections.Counter(_shape(error) for _, error in instance.ends.values() if error)
        ),
        "done": instance.done,
        "stderr": _tail(instance.stderr),
        "rss": instance.rss,
        "logs": instance.logs,
        "bought_ids": sorted(instance.bought.values()),
        "errors": [
            [instance.end_at.get(seq), error]
            for seq, (outcome, error) in sorted(instance.ends.items())
            if outcome == "error"
        ],
    }


# -- the report ------------------------------------------------------------------------


def _event(result: Json, name: str) -> Json | None:
    return next((e for e in result["redis_events"] if e["event"] == name), None)


def _rate_check(result: Json, name: str, title: str) -> tuple[str, str, str, bool | None]:
    cfg = result["config"]
    event = _event(result, name)
    goal = f">= {RATE_AFTER}x the {cfg['rate_window']:g} s before"
    what = (
        f"accepted rate from {cfg['rate_after']:g} s after Redis answers again over "
        f"{cfg['rate_window']:g} s, after {title}"
    )
    if event is None:
        return (what, goal, "not run", False)
    before, after = event["before"], event["after"]
    span = (after["to_s"] - after["from_s"]) if after["per_s"] is not None else 0.0
    measured = (
        f"{fmt(after['per_s'], 1)} req/s vs {fmt(before['per_s'], 1)}: "
        f"{fmt(event['ratio'], 2)}x ({span:.0f} s measured; 429s from the event on: "
        f"{event['throttled_through'] if event['throttled_through'] is not None else '-'})"
    )
    met = event["ratio"] is not None and event["ratio"] >= RATE_AFTER
    return (what, goal, measured, None if cfg["smoke"] else met)


def checks(result: Json) -> list[tuple[str, str, str, bool | None]]:
    """(what, goal, measured, met: None when only reported) for design.md's soak row."""
    a, st, cfg = result["audit"], result["stall"], result["config"]
    flat = [r for r in result["rss"] if r["growth"] is not None]
    worst = max((r["growth"] for r in flat), default=None)
    d = a["refunds_after_death"]
    hole = a["left_charged_in_hole"]
    req = result["requests"]
    rows: list[tuple[str, str, str, bool | None]] = [
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
            f"{len(a['left_charged'])}"
            + (
                f" (and {len(hole)} of members that died within dead_after before a Redis "
                "wipe, without file journals: reported apart)"
                if hole
                else ""
            ),
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
            "killed members' orders (open at the death, or bought by a purchase on the wire "
            "then) refunded after the death, p50 / p95 / max",
            f"p95 <= {REFUND_WITHIN:g} s",
            (
                f"{fmt(d['median_s'], 1)} / {fmt(d['p95_s'], 1)} / {fmt(d['max_s'], 1)} s "
                f"({d['count']:,} orders, {d['over_goal']} after more than {REFUND_WITHIN:g} s; "
                f"on the wire at the death: {_spread_line(a['refunds_after_death_on_the_wire'])})"
                if d["count"]
                else "no order was open at a death"
            ),
            # A smoke run reports the time only: 75 s on a loaded CI machine is no
            # measure of it (times belong to the full run).
            None
            if cfg["smoke"]
            else bool(d["count"]) and d["p95_s"] is not None and d["p95_s"] <= REFUND_WITHIN,
        ),
    ]
    if st:
        rows += [
            (
                f"the stalled member's codes ({st['member']}, stopped {st['stall_s']:.0f} s): "
                "delivered to its orders while it was stopped or after, returned to it",
                "all",
                f"{st['codes_returned']} of {st['codes_delivered']} ("
                f"{st['codes_delivered_while_stopped_returned']} of "
                f"{st['codes_delivered_while_stopped']} delivered while it was stopped; "
                f"{st['waiting_when_stopped']} orders waiting when stopped)",
                st["codes_delivered"] > 0 and st["codes_returned"] == st["codes_delivered"],
            ),
            (
                f"the stalled member's orders refunded or taken over behind its back "
                f"(stall {st['stall_s']:.0f} s < dead_after {DEAD_AFTER:g} s)",
                "none",
                f"{st['behind_its_back']} ({len(st['refunded_while_stopped'])} refunded while "
                f"stopped, {st['taken_over_count']} waits ended 'taken over by the fleet', "
                f"{len(st['silent_takeovers'])} takeovers of a silent member logged)",
                st["behind_its_back"] == 0,
            ),
        ]
    else:
        rows.append(("the stalled member", "stalled once", "no stall ran", False))
    rows += [
        _rate_check(result, "wipe", "Redis restarted empty"),
        _rate_check(result, "failover", "the Sentinel failover"),
        (
            "429s over the run",
            "reported",
            f"{req['429']:,} of {req['total']:,} requests "
            f"({fmt((req['share_429'] or 0) * 100, 2)} %)",
            None,
        ),
        (
            f"RSS growth after warm-up ({len(flat)} member instances sampled >= "
            f"{3 * cfg['warmup']:g} s)",
            f"<= {MAX_RSS_GROWTH:.0%}",
            "-" if worst is None else f"worst {worst:+.1%}",
            None if cfg["smoke"] else (worst is not None and worst <= MAX_RSS_GROWTH),
        ),
        ("ledger balanced", "yes", "yes" if a["balanced"] else "no", a["balanced"]),
        (
            "the Redis events as planned (wipe: back empty, no failover; failover: replica "
            "promoted)",
            "yes",
            _events_line(result),
            _events_ok(result),
        ),
        (
            "member starts refused (FleetError: Redis unreachable when its client opened), "
            "retried every second",
            "reported",
            _failures_line(result),
            None,
        ),
    ]
    return rows


def _spread_line(d: Json) -> str:
    if not d["count"]:
        return "none refunded"
    return f"{d['count']} refunded, p50 {fmt(d['median_s'], 1)} s, max {fmt(d['max_s'], 1)} s"


def _events_ok(result: Json) -> bool:
    wipe, failover = _event(result, "wipe"), _event(result, "failover")
    return (
        wipe is not None
        and wipe["came_back_empty"]
        and not wipe.get("failed_over", True)
        and failover is not None
        and failover["promoted"] is not None
    )


def _events_line(result: Json) -> str:
    parts = []
    wipe, failover = _event(result, "wipe"), _event(result, "failover")
    if wipe is not None:
        parts.append(
            f"wipe at {wipe['at']:.0f} s ({wipe['keys_before']} keys): back after "
            f"{wipe['back'] - wipe['at']:.1f} s "
            + ("empty, " if wipe["came_back_empty"] else "NOT empty, ")
            + ("the Sentinels failed over" if wipe.get("failed_over") else "still the primary")
            + (", replica resynced" if wipe.get("replica_linked") else ", replica not linked")
        )
    if failover is not None:
        parts.append(
            f"failover at {failover['at']:.0f} s: "
            + (
                f"replica promoted after {failover['back'] - failover['at']:.1f} s"
                if failover["promoted"] is not None
                else "no promotion"
            )
        )
    return "; ".join(parts) or "none ran"


def _failures_line(result: Json) -> str:
    failures = result["start_failures"]
    if not failures:
        return "0"
    members = collections.Counter(f["member"] for f in failures)
    return f"{len(failures)} retries (" + ", ".join(f"{m} x{n}" for m, n in members.items()) + ")"


def _fates_line(deaths: Sequence[Json], name: str) -> str:
    fates: collections.Counter[str] = collections.Counter()
    for death in deaths:
        fates.update(death[f"{name}_fates"])
    return f"{sum(x[name] for x in deaths):,} in {len(deaths)} deaths: " + (
        ", ".join(f"{k} {v:,}" for k, v in fates.items()) or "-"
    )


def _probe_row(probe: Json) -> list[str]:
    if "error" in probe:
        return [probe["label"], f"{probe['at']:.0f}", "-", "-", probe["error"][:80]]

    def below_zero(kind: str) -> str:
        counts = [n for per_key in probe[kind].values() for n in per_key.values()]
        negative = [n for n in counts if n < 0]
        return f"{len(negative)} of {len(counts)}" + (f" (min {min(negative)})" if negative else "")

    flag = probe["foreign"]
    return [
        probe["label"],
        f"{probe['at']:.0f}",
        below_zero("wire"),
        below_zero("lost"),
        "no" if flag is None else f"yes: {flag['order']} (expires in {flag['ttl']} s)",
    ]


def _verdict(met: bool | None) -> str:
    return "reported" if met is None else "met" if met else "**missed**"


def report(result: Json) -> str:
    cfg = result["config"]
    a, req, st = result["audit"], result["requests"], result["stall"]
    low, high = cfg["delays"]
    lines = [
        f"Soak: {cfg['members']} fleet members x {cfg['per_member']} activation loops, "
        f"{cfg['minutes']:g} min, {cfg['rate']:g} req/s limit, {cfg['drop']:.0%} of answers "
        f"dropped after the server acted, codes after {low:g}-{high:g} s "
        f"({cfg['no_code']:.0%} never), wait timeout {cfg['timeout']:g} s, poll interval "
        f"{cfg['interval']:g} s, RedisFleet(dead_after={cfg['dead_after']:g}) on a Sentinel "
        f"group (down-after {cfg['sentinel_down_after']:g} s); a member SIGKILLed every "
        f"{cfg['kill_every']:g} s and started again at once, Redis restarted empty at "
        f"{cfg['wipe_at_s']:g} s, m{cfg['stalled_slot']} stalled {cfg['stall']:g} s at "
        f"{cfg['stall_at_s']:g} s, a failover at {cfg['failover_at_s']:g} s; file journals "
        f"{'on' if cfg['file_journals'] else 'off'}"
        + (" (smoke: rates, refund times and RSS reported, not judged)" if cfg["smoke"] else "")
        + f". Wall {result['wall_s']:.0f} s; settled "
        + (
            f"{result['settled_after_s']:.0f} s after the stop (the ledger unchanged for "
            f"{cfg['settle_quiet']:g} s)."
            if result["settled_after_s"] is not None
            else f"**not** within {cfg['settle']:g} s."
        ),
        "",
        markdown_table(
            ["soak (design.md, issue 23)", "goal", "measured", "verdict"],
            [[w, g, m, _verdict(ok)] for w, g, m, ok in checks(result)],
            "llll",
        ),
    ]
    if not cfg["file_journals"]:
        lines += [
            "",
            "Without file journals, what a member owes lives only in Redis: one that died "
            f"within dead_after ({cfg['dead_after']:g} s) before Redis lost everything, and "
            "was not taken over yet, cannot be taken over by anyone (a member on the same "
            "machine whose process is gone is taken over within a heartbeat or two, so the "
            "window is that short). Orders left charged that way are counted apart: "
            f"{len(a['left_charged_in_hole'])} (members that died within dead_after before a "
            f"Redis event: {', '.join(a['hole_deaths']) or 'none'}). `--file-journals` closes "
            "the hole: the restarted member refunds them.",
        ]
    lines += [
        "",
        "Redis events: the accepted rate (sandbox counters, every second) in the window "
        "before each against the window from "
        f"{cfg['rate_after']:g} s after Redis answered again:",
        "",
        markdown_table(
            [
                "event",
                "at s",
                "answered again s",
                "before req/s",
                "after req/s",
                "ratio",
                "429s from the event to the window's end",
            ],
            [
                [
                    e["event"],
                    f"{e['at']:.0f}",
                    f"{e['back']:.1f}",
                    fmt(e["before"]["per_s"], 1),
                    fmt(e["after"]["per_s"], 1),
                    fmt(e["ratio"], 2),
                    "-" if e["throttled_through"] is None else str(e["throttled_through"]),
                ]
                for e in result["redis_events"]
            ],
            "lrrrrrr",
        ),
    ]
    if st:
        lines += [
            "",
            f"The stall: {st['member']} stopped {st['stall_s']:.1f} s at {st['at_s']:.0f} s "
            f"with {st['waiting_when_stopped']} orders waiting; "
            f"{st['codes_delivered_while_stopped']} codes delivered while it was stopped, "
            f"{st['codes_delivered_while_stopped_returned']} returned to it (the first "
            f"{fmt(st['first_code_after_resume_s'], 1)} s, the last "
            f"{fmt(st['last_code_after_resume_s'], 1)} s after SIGCONT); from the SIGSTOP to "
            f"{CODE_MARGIN:g} s before the loops stopped {st['codes_returned']} of "
            f"{st['codes_delivered']} codes returned"
            + (
                f" ({st['codes_delivered_at_the_stop']} more delivered in the last "
                f"{CODE_MARGIN:g} s, not counted)"
                if st["codes_delivered_at_the_stop"]
                else ""
            )
            + f"; refunded while stopped: {len(st['refunded_while_stopped'])}; waits ended "
            f"'taken over by the fleet': {st['taken_over_count']}.",
        ]
    if result.get("fleet_in_redis"):
        lines += [
            "",
            "What the fleet kept in Redis (a diagnosis: per-member counts of purchases on the "
            "wire and whose answer was lost, summed over the keys; the flag that another "
            "buyer was seen on the API key):",
            "",
            markdown_table(
                ["when", "at s", "wire counts < 0", "lost counts < 0", "another buyer flagged"],
                [_probe_row(x) for x in result["fleet_in_redis"]],
                "lrrrl",
            ),
        ]
    if a["left_charged_why"]:
        lines += [
            "",
            "Orders left charged, by what the members' output tells of each: "
            + "; ".join(f"{v} x {k}" for k, v in a["left_charged_by_why"].items())
            + ".",
        ]
    deaths = a["deaths"]
    lines += [
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
                [
                    "killed members' orders open at the death, and their fate",
                    _fates_line(deaths, "open"),
                ],
                [
                    "orders nobody held made within "
                    f"{WIRE_BEFORE_DEATH:g} s before a death (its purchases on the wire)",
                    _fates_line(deaths, "on_the_wire"),
                ],
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
                ["member starts refused and retried", _failures_line(result)],
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
    if a["left_charged"] or a["left_charged_in_hole"] or a["double_charges"]:
        lines += ["", "Orders left charged or double charged (first 20):", ""]
        lines += [f"- {json.dumps(o, default=str)}" for o in a["left_charged_detail"]]
        lines += [f"- held by two: {k}: {v}" for k, v in list(a["held_by_two"].items())[:20]]
    if st and st["codes_missing"]:
        lines += ["", f"The stalled member's codes not returned: {', '.join(st['codes_missing'])}"]
    return "\n".join(lines)


# -- the member ------------------------------------------------------------------------


async def member(config: Json) -> int:
    """One fleet member: activation loops until told to stop, then to exit."""
    import logging

    import gsim_async
    from gsim_async.fleet import RedisFleet

    def say(event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "t": time.time(), **fields}, separators=(",", ":"))
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    class Relay(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            say("log", level=record.levelname, message=record.getMessage()[:500])

    # INFO too: what a leader took over, and each recovered order's fate (the audit's
    # trail when an order is left charged).
    logger = logging.getLogger("gsim_async")
    logger.setLevel(logging.INFO)
    logger.addHandler(Relay(logging.INFO))
    retries: collections.Counter[str] = collections.Counter()
    fleet = RedisFleet(config["redis_url"], namespace=config["namespace"])
    gsim = gsim_async.Client(
        config["api_key"],
        base_url=config["base_url"],
        poll_interval=config["interval"],
        fleet=fleet,
        journal=config.get("journal") or False,
        on_retry=lambda e: retries.update([e.reason.split(" ")[0]]),
    )
    try:
        await gsim.__aenter__()  # joins the fleet
    except gsim_async.FleetError as exc:
        # Redis unreachable as the client opens (a failover under way): the harness, like
        # a supervisor, starts this member again.
        say("fleet-error", error=str(exc)[:300])
        return FLEET_ERROR_EXIT
    try:
        await gsim.balance()
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
                except gsim_async.NoCodeError as exc:
                    say("end", s=seq, outcome="no code", error=str(exc)[:300])
                except gsim_async.GsimError as exc:
                    say("end", s=seq, outcome="error", error=repr(exc)[:2000])
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
    finally:
        await gsim.aclose()
    say("done", requests=requests, retries=dict(retries))
    return 0


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
    parser.add_argument("--stall", type=float, default=None, help="seconds a member is stopped")
    parser.add_argument("--stall-at", type=float, default=None, help="seconds into the run")
    parser.add_argument("--wipe-at", type=float, default=None, help="seconds into the run")
    parser.add_argument("--failover-at", type=float, default=None, help="seconds into the run")
    parser.add_argument(
        "--sentinel-down-after", type=float, default=5.0, help="the Sentinels' down-after, s"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="the sandbox's req/s limit")
    parser.add_argument("--drop", type=float, default=0.05, help="share of answers dropped")
    parser.add_argument("--file-journals", action="store_true", help="a journal file each too")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="75 s, 4 members, kills every 15 s, 1-10 s codes, a 6 s stall",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--member", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.members < 1 or args.kill_every <= 0:
        parser.error("--minutes and --kill-every must be > 0, --members >= 1")
    if args.stall is not None and args.stall <= 0:
        parser.error("--stall must be > 0")
    return args


def config_of(args: argparse.Namespace) -> Config:
    cfg = Config(
        minutes=args.minutes,
        members=args.members,
        concurrency=args.concurrency,
        kill_every=args.kill_every,
        stall_at=args.stall_at,
        wipe_at=args.wipe_at,
        failover_at=args.failover_at,
        sentinel_down_after=args.sentinel_down_after,
        rate=args.rate,
        drop=args.drop,
        file_journals=args.file_journals,
        seed=args.seed,
    )
    if args.smoke:
        cfg = dataclasses.replace(
            cfg,
            minutes=1.25,
            members=4,
            kill_every=15.0,
            stall=6.0,
            rate_after=5.0,
            rate_window=15.0,
            delays=(1.0, 10.0),
            timeout=15.0,
            interval=0.5,
            settle=60.0,
            settle_quiet=10.0,
            warmup=10.0,
            rss_every=1.0,
            smoke=True,
        )
    if args.stall is not None:
        cfg = dataclasses.replace(cfg, stall=args.stall)
    return cfg


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.member:
        return await member(json.loads(args.member))
    cfg = config_of(args)
    result = await run(cfg)
    if args.json:  # first: a report that fails must not lose what was measured
        text = json.dumps(result, indent=2, default=str) + "\n"
        await asyncio.to_thread(Path(args.json).write_text, text)
    judged = checks(result)
    result["checks"] = [
        {"what": w, "goal": g, "measured": m, "verdict": _verdict(ok)} for w, g, m, ok in judged
    ]
    if args.json:
        text = json.dumps(result, indent=2, default=str) + "\n"
        await asyncio.to_thread(Path(args.json).write_text, text)
    print(report(result))
    return 0 if all(ok is not False for *_, ok in judged) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main()))
