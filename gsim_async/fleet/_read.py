"""Reading a fleet's state out of its Redis, without joining it (``RedisFleet.status``).

Plain reads in non-transactional pipelines: every key of one fleet shares one hash
slot (the prefix is a hash tag), so on a Cluster each pipeline goes to one node. Two
round trips: the fleet's own keys, then the per-member keys the first names. Nothing
is written (no heartbeat, no probe; a replica serves it), and nothing that cannot go
in a pipeline on a Cluster (PUBLISH, KEYS, INFO) is sent.

Liveness is judged by the fleet's own rule (``Member.alive``): a member that beat
within ``dead_after`` is alive, unless its process is provably gone (on this machine,
``_process.gone``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import redis.asyncio as aioredis

from .. import _constants as C
from .._exceptions import InvalidArgumentError
from .._http import check_base_url
from ._connect import Opened, Target, _run
from ._process import gone
from ._status import (
    FleetStatus,
    GateStatus,
    LeaderStatus,
    MemberState,
    MemberStatus,
    Obligations,
    TakeOver,
    Throttle,
)

#: Seconds a Redis call may take (the members' own bound).
_TIMEOUT = 2.0
#: Registrations of waits counted per member at most; beyond, only the total is read
#: (a read of them all costs ~4 ms per 1,000 with redis-py's own parser).
COUNT_MAX = 20_000
#: Seconds of accepted answers ``GateStatus.accepted_rate`` is measured over, ending
#: this long ago (members write their counts four times a second).
_ACCEPTED_WINDOW = 10.0
_ACCEPTED_LAG = 0.5
#: A member is SILENT after this many heartbeats without one.
_SILENT_BEATS = 3

# Redis' clock, where the fleet's scripts read it: the node that serves the fleet's slot.
_NOW = "return redis.call('TIME')"


def credentials(api_key: str | None, base_url: str | None) -> tuple[str, str]:
    """The key and server a fleet belongs to, as ``Client`` resolves them (environment too)."""
    key = api_key if api_key is not None else os.environ.get("GSIM_API_KEY")
    if not key or not key.strip():
        raise InvalidArgumentError(
            "no API key: the fleet's keys in Redis are named after a hash of it; pass "
            "status(api_key=...) or set GSIM_API_KEY"
        )
    url = base_url if base_url is not None else os.environ.get("GSIM_BASE_URL")
    return key.strip(), check_base_url(url or C.DEFAULT_BASE_URL)


class Reader:
    """Reads one fleet's state, over a connection kept between reads (``--watch``)."""

    def __init__(self, target: Target, prefix: str, *, heartbeat: float, dead_after: float):
        self._target = target
        self._prefix = prefix
        self._heartbeat = heartbeat
        self._dead_after = dead_after
        self._opened: Opened | None = None

    async def __aenter__(self) -> Reader:
        # ``None``: no probe key, so nothing is written (a member's open writes one).
        self._opened = await self._target.open(None, timeout=_TIMEOUT, connections=2)
        return self

    async def __aexit__(self, *exc: object) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            await opened.aclose()

    async def read(self) -> FleetStatus:
        """The fleet now; ``FleetError`` (what, where) when Redis fails."""
        if self._opened is None:
            raise RuntimeError("the reader is not open")
        client: aioredis.Redis = self._opened.client
        return await _run(self._target.where, _TIMEOUT, self._read(client))  # type: ignore[no-any-return]

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    async def _read(self, client: aioredis.Redis) -> FleetStatus:
        wall = time.time()
        first = int((wall - _ACCEPTED_LAG - _ACCEPTED_WINDOW) * 10)
        slots = [str(s) for s in range(first, first + int(_ACCEPTED_WINDOW * 10))]
        pipe = client.pipeline(transaction=False)
        pipe.eval(_NOW, 1, self._key("members"))
        pipe.zrange(self._key("members"), 0, -1, withscores=True)
        pipe.hgetall(self._key("epochs"))
        pipe.hgetall(self._key("info"))
        pipe.smembers(self._key("journaled"))
        pipe.get(self._key("leader"))
        pipe.pttl(self._key("leader"))
        pipe.hgetall(self._key("gate"))
        pipe.hmget(self._key("acc"), slots)
        pipe.lrange(self._key("throttles"), 0, -1)
        pipe.hlen(self._key("held"))
        pipe.hlen(self._key("watch"))
        pipe.exists(self._key("foreign"))
        (
            clock, beats, epochs, infos, journaled, leader, lease_ms, gate, accepted,
            throttles, held_total, watch_total, foreign,
        ) = await pipe.execute()  # fmt: skip
        now_ms = int(clock[0]) * 1000 + int(clock[1]) // 1000
        beats = {str(m): float(s) for m, s in beats}
        epochs = {str(m): str(e) for m, e in epochs.items()}
        infos = {str(m): _json(v) for m, v in infos.items()}
        journaled = {str(m) for m in journaled}

        # The members without a heartbeat: taken over (``revoked``), or owing rows
        # nobody took yet. Any other in ``info`` left long ago without saying so.
        unbeaten = sorted((set(infos) | set(epochs) | journaled) - set(beats))
        rows_of = sorted(journaled)
        pipe = client.pipeline(transaction=False)
        for member in unbeaten:
            pipe.get(self._key("revoked", member))
            pipe.hlen(self._key("taken", member))
        for member in rows_of:
            pipe.hvals(self._key("owed", member))
        count_watch = int(watch_total) <= COUNT_MAX
        if count_watch:
            pipe.hkeys(self._key("watch"))
        answers = iter(await pipe.execute())
        taken: dict[str, TakeOver] = {}
        for member in unbeaten:
            revoked, rows = next(answers), next(answers)
            if revoked:
                by, _, at = str(revoked).partition(":")
                taken[member] = TakeOver(by=by, at=_ms(at), rows=int(rows))
        owed = {member: _obligations(next(answers)) for member in rows_of}
        waiting = Counter(str(f).rpartition("|")[2] for f in (next(answers) if count_watch else ()))
        # The total as counted, when it was: one moment for the total and the members.
        watch_total = waiting.total() if count_watch else watch_total

        leading = _leader(leader, lease_ms, epochs)
        # A member that left has no heartbeat, no epoch and no rows: not listed.
        owing = {m for m, rows in owed.items() if rows.total}
        listed = set(beats) | set(taken) | {m for m in unbeaten if m in epochs or m in owing}
        recent = _throttles(throttles)
        throttled = Counter(t.member for t in recent)
        members = [
            self._member(
                member,
                now_ms,
                beat=beats.get(member),
                info=infos.get(member),
                epoch=epochs.get(member),
                leader=leading is not None and leading.valid and leading.member == member,
                waiting=waiting.get(member, 0) if count_watch else None,
                obligations=owed.get(member, Obligations()),
                taken_over=taken.get(member),
                throttled=throttled.get(member, 0),
            )
            for member in listed
        ]
        members.sort(key=_order)
        return FleetStatus(
            prefix=self._prefix,
            where=self._target.where,
            read_at=_at(now_ms),
            members=tuple(members),
            leader=leading,
            gate=_gate(gate, accepted, now_ms),
            throttles=recent,
            waiting=int(watch_total),
            ownership_records=int(held_total),
            foreign_buyer=bool(foreign),
            dead_after=self._dead_after,
            heartbeat=self._heartbeat,
        )

    def _member(
        self,
        member: str,
        now_ms: int,
        *,
        beat: float | None,
        info: Any,
        epoch: str | None,
        leader: bool,
        waiting: int | None,
        obligations: Obligations,
        taken_over: TakeOver | None,
        throttled: int,
    ) -> MemberStatus:
        info = info if isinstance(info, dict) else {}
        silent = None if beat is None else max(0.0, (now_ms - beat) / 1000)
        process_gone = beat is not None and gone(info)
        if silent is None or process_gone or silent >= self._dead_after:
            state = MemberState.DEAD
        elif silent > _SILENT_BEATS * self._heartbeat:
            state = MemberState.SILENT
        else:
            state = MemberState.ALIVE
        since = info.get("since")
        joined = (
            datetime.fromtimestamp(since, timezone.utc) if isinstance(since, (int, float)) else None
        )
        # Its clock (``since``) against Redis' (the heartbeat): never below zero.
        age = None if joined is None or beat is None else max(0.0, beat / 1000 - joined.timestamp())
        pid = info.get("pid")
        host = info.get("host")
        return MemberStatus(
            id=member,
            state=state,
            host=host if isinstance(host, str) else None,
            pid=pid if isinstance(pid, int) else None,
            joined_at=joined,
            age=age,
            last_heartbeat=None if beat is None else _at(beat),
            silent_for=silent,
            epoch=int(epoch) if epoch is not None and epoch.isdigit() else None,
            leader=leader,
            process_gone=process_gone,
            held=obligations.held,
            waiting=waiting,
            obligations=obligations,
            taken_over=taken_over,
            throttled=throttled,
        )


_STATES = {MemberState.ALIVE: 0, MemberState.SILENT: 1, MemberState.DEAD: 2}


def _order(member: MemberStatus) -> tuple[Any, ...]:
    joined = member.joined_at.timestamp() if member.joined_at is not None else float("inf")
    return (_STATES[member.state], joined, member.id)


def _json(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _at(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _ms(text: Any) -> datetime | None:
    try:
        return _at(float(text))
    except (TypeError, ValueError):
        return None


def _leader(holder: Any, lease_ms: Any, epochs: dict[str, str]) -> LeaderStatus | None:
    if not holder:
        return None
    member, _, epoch = str(holder).rpartition(":")
    if not member:
        member, epoch = epoch, ""
    ttl = int(lease_ms) if lease_ms is not None else -2
    return LeaderStatus(
        member=member,
        epoch=int(epoch) if epoch.isdigit() else None,
        lease_left=ttl / 1000 if ttl >= 0 else None,
        valid=epochs.get(member) == epoch,
    )


def _gate(fields: dict[str, str], accepted: Sequence[Any], now_ms: int) -> GateStatus | None:
    if not fields:
        return None
    try:
        rate: float | None = float(fields.get("rate") or "nan")
    except ValueError:
        rate = None
    if rate is not None and (not math.isfinite(rate) or rate <= 0):  # '': unpaced
        rate = None
    try:
        until = float(fields.get("until") or 0)
    except ValueError:
        until = 0.0
    paused_for = max(0.0, (until - now_ms) / 1000)
    answers = sum(int(n) for n in accepted if n is not None)
    return GateStatus(
        phase=fields.get("phase"),
        rate=rate,
        paused_for=paused_for,
        paused_until=_at(until) if paused_for > 0 else None,
        accepted_rate=answers / _ACCEPTED_WINDOW,
    )


def _throttles(entries: Iterable[Any]) -> tuple[Throttle, ...]:
    found = []
    for entry in entries:
        at, asked, new, member = [*str(entry).split(":", 3), "", "", ""][:4]
        moment = _ms(at)
        if moment is None:
            continue
        try:
            retry_after = float(asked) / 1000
        except ValueError:
            retry_after = 0.0
        found.append(
            Throttle(at=moment, member=member, retry_after=retry_after, began_pause=new == "1")
        )
    return tuple(found)


def _obligations(rows: Iterable[Any]) -> Obligations:
    counts: Counter[str] = Counter()
    due: float | None = None
    for text in rows:
        row = _json(text)
        if not isinstance(row, dict):
            continue
        if row.get("state") == "wire":
            counts["purchases"] += 1
            continue
        purpose = str(row.get("purpose") or "order")
        kind = str(row.get("kind") or "order")
        if kind == "rental" or purpose == "rental":
            counts["rentals"] += 1
        elif purpose in ("wait", "activation", "refund"):
            counts[purpose + "s"] += 1
        else:
            counts["orders"] += 1
        deadline = row.get("deadline")
        if isinstance(deadline, (int, float)) and (due is None or deadline < due):
            due = float(deadline)
    return Obligations(
        purchases=counts["purchases"],
        orders=counts["orders"],
        waits=counts["waits"],
        activations=counts["activations"],
        refunds=counts["refunds"],
        rentals=counts["rentals"],
        next_due=None if due is None else datetime.fromtimestamp(due, timezone.utc),
    )


__all__ = ["COUNT_MAX", "Reader", "credentials"]
