"""Under a 20 req/s limit: 1,000 activations started together, and steady demand.

**Activations** (design.md: "1,000 activations started together under an unknown 20 req/s
limit, ``Retry-After: 60``" and "the same with the limit told or advertised"). The
sandbox (its own process) rate-limits the key with its token bucket (burst = the bucket
size, the sandbox's default: one second of the rate) and answers every 429 with a fixed
``Retry-After``; codes arrive after uniform delays. A child process starts N
``async with gsim.orders.activation("telegram", "russia") as act: await
act.wait_for_code(timeout=...)`` at once, in four variants:

* ``unknown``: a default ``Client``: it has to learn the limit (slow start, first 429);
* ``told``: ``Client(max_requests_per_second=<the limit>)``;
* ``headers-x`` / ``headers-ietf``: the sandbox advertises its bucket in every answer
  (``X-RateLimit-*``, or the IETF draft's ``RateLimit`` + ``RateLimit-Policy``).

Measured: the 429s the sandbox sent, and the share of all requests they are; the pauses
the client met — its ``on_retry`` events whose reason starts with "429", grouped into
one pause while their ``[t, t + delay]`` overlap (a request sent before the pause began
meets its 429 inside it); the time from the start to the last code returned; where the
requests went (per route); the send rate pacing settled at (a private read, diagnostic
only). The floor is ``(N - burst) / rate`` plus the longest code delay the sandbox drew
(the last purchase cannot leave before then, nor its code arrive sooner); targets:
unknown ``<= 1`` pause, ``<= 2 %`` 429s, time ``<= 1.1 x (floor + Retry-After)``;
told/advertised 0 429s and time ``<= 1.15 x floor``.

**Steady state** (design.md: "steady waiting under a 20 req/s limit, after the first
minute: >= 85 % of the limit used when needed, <= 1 % 429s"): W concurrent
``orders.get`` loops, far more than the limit allows, for the whole run. The parent
samples the sandbox's counters (control API, never counted) and measures, in a window
that opens once the first pause is over plus a settling time: accepted requests as a
fraction of the limit, and the share of 429s. "Settled" is the first moment after the
last 429 at which the trailing 2-second (real-time equivalent) accepted rate reaches
85 % of the limit. Baseline, same run: the same loops in plain aiohttp without pacing.

Time scaling (``--time-scale S``): durations are divided by S and rates multiplied by
it, so the limit is ``20 * S`` req/s with a bucket of ``20 * S``, ``Retry-After`` is
``60 / S`` (whole seconds, as the sandbox sends them: at least 1), code delays
``5-60 s / S``, the poll interval ``2 s / S``; the floor is computed from the scaled
figures, so it is the real floor divided by S (up to the burst, which is one second of
the rate, not 20 requests). What does not scale is the client's own constants (its
initial rate of 10 req/s, its per-answer slow-start step, its probe intervals): a scaled
run ramps through a 10x larger rate range in the same number of answers. At 1/10 the
slow start alone takes ~6-8 s (60-80 s real-time equivalent, against ~3 s in real time),
and the bucket (one second of the rate) is 20 % of N instead of 2 %, which a client
pacing evenly at the limit (told, IETF policy) cannot use: the unknown-limit time and
the told/advertised margins are pessimistic at 1/10. ``--time-scale 1 --only
activations,steady`` gives the real-time figures (~15 minutes). The ``Retry-After: 1``
steady variant runs in real time at any scale (1 s cannot be scaled down in whole
seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from ._common import (
    Clock,
    Json,
    SandboxProcess,
    fmt,
    markdown_table,
    progress,
    route_summary,
    run_child,
    running_sandbox,
    status_count,
)

#: design.md's figures, real time.
REAL_LIMIT = 20.0
REAL_RETRY_AFTER = 60
REAL_DELAYS = (5.0, 60.0)
REAL_INTERVAL = 2.0
#: Steady state: settling time allowed after the first pause, and the window measured.
REAL_SETTLE = 5.0
REAL_WINDOW = 60.0

#: Targets.
MAX_PAUSES_UNKNOWN = 1
MAX_429_SHARE_UNKNOWN = 0.02
UNKNOWN_SLACK = 1.1
KNOWN_SLACK = 1.15
MIN_LIMIT_USED = 0.85
MAX_429_SHARE_STEADY = 0.01
MAX_SETTLE_S = 5.0

VARIANTS: dict[str, str] = {
    "unknown": "limit unknown to the client",
    "told": "told: `max_requests_per_second`",
    "headers-x": "advertised: `X-RateLimit-*` headers",
    "headers-ietf": "advertised: IETF `RateLimit` + `RateLimit-Policy` headers",
}


@dataclasses.dataclass(frozen=True)
class LimitTiming:
    """The limit, its Retry-After, code delays and poll interval at one time scale."""

    scale: float
    real_retry_after: int = REAL_RETRY_AFTER

    @property
    def rate(self) -> float:
        return REAL_LIMIT * self.scale

    @property
    def burst(self) -> float:
        return max(1.0, self.rate)  # the sandbox's default bucket

    @property
    def retry_after(self) -> int:
        return max(1, round(self.real_retry_after / self.scale))

    @property
    def delays(self) -> tuple[float, float]:
        return (REAL_DELAYS[0] / self.scale, REAL_DELAYS[1] / self.scale)

    @property
    def interval(self) -> float:
        return REAL_INTERVAL / self.scale

    def describe(self) -> str:
        if self.scale == 1:
            return (
                f"real time: {self.rate:g} req/s (bucket {self.burst:g}), "
                f"Retry-After {self.retry_after} s"
            )
        return (
            f"time scaled 1/{self.scale:g}: {self.rate:g} req/s (bucket {self.burst:g}), "
            f"Retry-After {self.retry_after} s, code delays {self.delays[0]:g}-"
            f"{self.delays[1]:g} s, poll interval {self.interval:g} s; "
            f"times x{self.scale:g} = real-time equivalents"
        )


def group_pauses(events: Sequence[Sequence[Any]]) -> list[Json]:
    """429 ``on_retry`` events ``(t, delay, reason, ...)`` grouped into pauses.

    One pause while the events' ``[t, t + delay]`` overlap: a request sent before the
    gate closed meets its 429 inside the pause it belongs to.
    """
    pauses: list[Json] = []
    for t, delay, reason, *_ in sorted(events, key=lambda e: e[0]):
        if not str(reason).startswith("429"):
            continue
        if pauses and t <= pauses[-1]["end"]:
            pauses[-1]["end"] = max(pauses[-1]["end"], t + delay)
            pauses[-1]["events"] += 1
        else:
            pauses.append({"start": t, "end": t + delay, "events": 1})
    return pauses


async def sample_stats(
    sb: SandboxProcess, every: float, samples: list[tuple[float, int, int]], stop: asyncio.Event
) -> None:
    """Append (time, requests served, 429s) from the sandbox's counters until ``stop``."""
    while not stop.is_set():
        stats = await sb.stats()
        samples.append((time.time(), int(stats["total"]), status_count(stats, 429)))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


# -- activations ------------------------------------------------------------------------


@dataclasses.dataclass
class ActivationResult:
    """One variant of N activations under the limit; times in seconds."""

    variant: str
    n: int
    scale: float
    rate: float
    burst: float
    retry_after: int
    requests: int
    status_429: int
    by_route: dict[str, int]
    codes: int
    wrong_codes: int
    errors: int
    error_samples: list[str]
    last_code_s: float | None
    longest_delay_s: float | None
    #: Pauses met, as offsets from the start: {"start", "end", "events"}.
    pauses: list[Json]
    #: Pacing's state over time: (s from start, rate or None, phase).
    pacing: list[list[Any]]
    purchase_span_s: float | None
    #: (s from the start, requests served, 429s), sampled from the sandbox's counters.
    samples: list[list[float]]
    cpu_s: float
    wall_s: float
    timed_out: bool

    @property
    def label(self) -> str:
        return VARIANTS[self.variant]

    @property
    def known(self) -> bool:
        return self.variant != "unknown"

    @property
    def share_429(self) -> float | None:
        return self.status_429 / self.requests if self.requests else None

    @property
    def floor_s(self) -> float | None:
        if self.longest_delay_s is None:
            return None
        return max(0.0, self.n - self.burst) / self.rate + self.longest_delay_s

    @property
    def limit_s(self) -> float | None:
        """The target on the time to the last code."""
        floor = self.floor_s
        if floor is None:
            return None
        if self.known:
            return KNOWN_SLACK * floor
        return UNKNOWN_SLACK * (floor + self.retry_after)

    @property
    def complete(self) -> bool:
        return self.codes == self.n and not self.timed_out and not self.wrong_codes

    def checks(self) -> list[tuple[str, bool]]:
        """Each part of the target, and whether it was met."""
        limit = self.limit_s
        on_time = self.last_code_s is not None and limit is not None and self.last_code_s <= limit
        share = self.share_429 if self.share_429 is not None else 1.0
        parts = [("every code", self.complete)]
        if self.known:
            parts += [("0 x 429", self.status_429 == 0)]
        else:
            parts += [
                (f"≤ {MAX_PAUSES_UNKNOWN} pause", len(self.pauses) <= MAX_PAUSES_UNKNOWN),
                (f"≤ {MAX_429_SHARE_UNKNOWN:.0%} 429s", share <= MAX_429_SHARE_UNKNOWN),
            ]
        parts.append(("time", on_time))
        return parts

    @property
    def met(self) -> bool:
        return all(ok for _, ok in self.checks())

    def buying_rate(self) -> float | None:
        """Accepted req/s from the end of the last pause (or the start) to the last purchase.

        As a fraction of the limit: how close to it the client went while it had
        purchases queued (polls included).
        """
        if self.purchase_span_s is None or not self.samples:
            return None
        begin = self.pauses[-1]["end"] if self.pauses else 0.0
        end = self.purchase_span_s
        if end - begin < 0.5 / self.scale:
            return None

        def accepted(t: float) -> float:
            served = bad = 0.0
            for at, total, n429 in self.samples:
                if at > t:
                    break
                served, bad = total, n429
            return served - bad

        return (accepted(end) - accepted(begin)) / (end - begin) / self.rate

    def settled_rate(self) -> float | None:
        """The send rate pacing held at the end (None: unpaced, or not traced)."""
        return self.pacing[-1][1] if self.pacing else None

    def to_dict(self) -> Json:
        data = dataclasses.asdict(self)
        for name in ("label", "share_429", "floor_s", "limit_s", "complete", "met"):
            data[name] = getattr(self, name)
        for name in ("buying_rate", "settled_rate"):
            data[name] = getattr(self, name)()
        data["checks"] = dict(self.checks())
        return data


async def run_activations(
    n: int, timing: LimitTiming, seed: int, variants: Sequence[str] = tuple(VARIANTS)
) -> list[ActivationResult]:
    """Every variant against a fresh sandbox (same seed: the same code delays)."""
    results = []
    for variant in variants:
        progress(f"activations: N={n:,} {variant}, {timing.rate:g} req/s")
        results.append(await run_activation_variant(variant, n, timing, seed))
    return results


async def run_activation_variant(
    variant: str, n: int, timing: LimitTiming, seed: int
) -> ActivationResult:
    rate, retry_after = timing.rate, timing.retry_after
    high = timing.delays[1]
    expected = max(0.0, n - timing.burst) / rate + high
    # Generous: a wait that times out is a failure of the client, reported as such.
    wait_timeout = 2 * expected + 3 * retry_after + 30 * timing.interval
    deadline = wait_timeout + expected + 3 * retry_after + 30
    async with running_sandbox(seed, code_delay=timing.delays, auto_deliver=True) as sb:
        faults: Json = {"rate_limit": rate, "retry_after": retry_after}
        if variant.startswith("headers-"):
            faults["rate_limit_headers"] = variant.removeprefix("headers-")
        await sb.post("faults", faults)
        await sb.post("stats/reset")
        samples: list[tuple[float, int, int]] = []
        stop = asyncio.Event()
        config: Json = {
            "mode": "activations",
            "base_url": sb.base_url,
            "api_key": sb.api_key,
            "n": n,
            "interval": timing.interval,
            "told": rate if variant == "told" else None,
            "wait_timeout": wait_timeout,
            "deadline": deadline,
            "trace_every": max(timing.interval / 2, 0.01),
        }
        sampler = asyncio.ensure_future(
            sample_stats(sb, max(timing.interval / 4, 0.02), samples, stop)
        )
        try:
            child = await run_child("limits", config, timeout=deadline + 60)
        finally:
            stop.set()
            await sampler
        stats = await sb.stats()
        records = {o["id"]: o for o in await sb.orders()}
    started = child["started_at"]
    wrong = 0
    returned: list[float] = []
    for order_id, code, at in child["records"]:
        record = records.get(order_id)
        if record is None or record["sms_code"] != code:
            wrong += 1
        else:
            returned.append(at)
    delays = [
        o["code_delivered_at"] - o["created_at"]
        for o in records.values()
        if o["code_delivered_at"] is not None
    ]
    created = [o["created_at"] for o in records.values()]
    pauses = [
        {"start": p["start"] - started, "end": p["end"] - started, "events": p["events"]}
        for p in group_pauses(child["retries"])
    ]
    return ActivationResult(
        variant=variant,
        n=n,
        scale=timing.scale,
        rate=rate,
        burst=timing.burst,
        retry_after=retry_after,
        requests=int(stats["total"]),
        status_429=status_count(stats, 429),
        by_route={k: int(v) for k, v in stats["by_route"].items()},
        codes=len(returned),
        wrong_codes=wrong,
        errors=int(child["errors"]),
        error_samples=list(child["error_samples"]),
        last_code_s=max(returned) - started if returned else None,
        longest_delay_s=max(delays) if delays else None,
        pauses=pauses,
        pacing=child["pacing"],
        purchase_span_s=max(created) - started if created else None,
        samples=[[t - started, total, bad] for t, total, bad in samples if t >= started - 0.05],
        cpu_s=float(child["cpu_s"]),
        wall_s=float(child["wall_s"]),
        timed_out=bool(child["timed_out"]),
    )


def _pauses(result: ActivationResult) -> str:
    if not result.pauses:
        return "0"
    spans = "; ".join(
        f"{p['start']:.1f}-{p['end']:.1f} s ({p['events']} x 429)" for p in result.pauses
    )
    return f"{len(result.pauses)}: {spans}"


def _pacing(result: ActivationResult) -> str:
    """What pacing did: the phases it went through and the rate it ended at."""
    phases: list[str] = []
    for _, _, phase in result.pacing:
        if not phases or phases[-1] != phase:
            phases.append(phase)
    peak = max((r for _, r, _ in result.pacing if r is not None), default=None)
    end = result.settled_rate()
    return (
        f"{' → '.join(phases) or '-'}; peak {fmt(peak, 1)} req/s, "
        f"end {'unpaced' if end is None else f'{end:,.1f} req/s'}"
    )


def _percent(value: float | None, digits: int) -> str:
    return fmt(None if value is None else value * 100, digits, " %")


def activations_table(results: Sequence[ActivationResult]) -> str:
    rows = [
        [
            r.label,
            f"{r.codes:,}/{r.n:,}" + (f" ({r.errors} failed)" if r.errors else ""),
            f"{r.requests:,}",
            f"{r.status_429:,}",
            fmt(None if r.share_429 is None else r.share_429 * 100, 2, " %"),
            _pauses(r),
            fmt(r.purchase_span_s, 1),
            _percent(r.buying_rate(), 0),
            fmt(r.last_code_s, 1),
            fmt(r.floor_s, 1),
            fmt(r.limit_s, 1),
            route_summary(r.by_route),
            _pacing(r),
            fmt(r.cpu_s, 1),
        ]
        for r in results
    ]
    return markdown_table(
        [
            "variant",
            "codes",
            "requests",
            "429s",
            "429 share",
            "pauses (s from start)",
            "last purchase s",
            "limit used while buying",
            "last code s",
            "floor s",
            "goal s",
            "requests by route",
            "pacing (phases; rate)",
            "client CPU s",
        ],
        rows,
        "lrrrrlrrrrrllr",
    )


# -- steady state -----------------------------------------------------------------------


@dataclasses.dataclass
class SteadyResult:
    """One steady-demand run (SDK or the plain-aiohttp baseline) under the limit."""

    contender: str
    scale: float
    rate: float
    retry_after: int
    workers: int
    settle_allowed_s: float
    window_s: float
    #: Where the window opens when no 429 came at all ("after the first minute").
    first_minute_s: float
    #: The run was cut short (smoke): a window that does not fit opens there instead.
    capped: bool
    #: (s from the child's start, requests served, 429s), sampled from the sandbox.
    samples: list[list[float]]
    pauses: list[Json]
    pacing: list[list[Any]]
    errors: int
    error_samples: list[str]
    cpu_s: float
    by_route: dict[str, int]

    def _at(self, t: float) -> tuple[float, float]:
        """(requests, 429s) served by time ``t`` (the last sample at or before it)."""
        total = n429 = 0.0
        for at, tot, bad in self.samples:
            if at > t:
                break
            total, n429 = tot, bad
        return total, n429

    @property
    def first_429_s(self) -> float | None:
        return next((t for t, _, bad in self.samples if bad > 0), None)

    @property
    def last_429_s(self) -> float | None:
        if not self.samples or self.samples[-1][2] == 0:
            return None
        final = self.samples[-1][2]
        return next(t for t, _, bad in self.samples if bad >= final)

    @property
    def window(self) -> tuple[float, float] | None:
        """The measured window: from the end of the first pause plus settling."""
        first = self.first_429_s
        if self.contender != "sdk":
            start = self.settle_allowed_s  # the baseline never pauses
        elif first is None:
            start = self.first_minute_s  # never limited: after the first minute
        else:
            start = first + self.retry_after + self.settle_allowed_s
        end = start + self.window_s
        last = self.samples[-1][0] if self.samples else 0.0
        if last < end - 1e-6 and self.capped:
            start, end = self.first_minute_s, self.first_minute_s + self.window_s
        if last < end - 1e-6:
            return None
        return start, end

    def window_counts(self) -> tuple[float, float] | None:
        """(requests, 429s) in the window."""
        window = self.window
        if window is None:
            return None
        (t0, b0), (t1, b1) = self._at(window[0]), self._at(window[1])
        return t1 - t0, b1 - b0

    @property
    def used(self) -> float | None:
        """Accepted requests in the window as a fraction of what the limit allows."""
        counts = self.window_counts()
        if counts is None:
            return None
        return (counts[0] - counts[1]) / (self.rate * self.window_s)

    @property
    def share_429(self) -> float | None:
        counts = self.window_counts()
        if counts is None or not counts[0]:
            return None
        return counts[1] / counts[0]

    @property
    def settled_after_s(self) -> float | None:
        """From the first 429 to when the trailing accepted rate reached 85 % for good."""
        first, last = self.first_429_s, self.last_429_s
        if first is None or last is None:
            return None
        trail = 2.0 / self.scale
        for t, total, bad in self.samples:
            if t < last + trail:
                continue
            total0, bad0 = self._at(t - trail)
            if (total - bad) - (total0 - bad0) >= MIN_LIMIT_USED * self.rate * trail:
                return t - first
        return None

    def to_dict(self) -> Json:
        data = dataclasses.asdict(self)
        for name in ("first_429_s", "last_429_s", "window", "used", "share_429"):
            data[name] = getattr(self, name)
        data["settled_after_s"] = self.settled_after_s
        return data


@dataclasses.dataclass
class SteadyRun:
    """One steady variant: the SDK and its baseline."""

    name: str
    timing: LimitTiming
    sdk: SteadyResult
    naive: SteadyResult | None

    @property
    def short_retry_after(self) -> bool:
        return self.timing.real_retry_after == 1

    def checks(self) -> list[tuple[str, bool]]:
        used, share = self.sdk.used, self.sdk.share_429
        parts = [
            (f"≥ {MIN_LIMIT_USED:.0%} used", used is not None and used >= MIN_LIMIT_USED),
            (
                f"≤ {MAX_429_SHARE_STEADY:.0%} 429s",
                share is not None and share <= MAX_429_SHARE_STEADY and not self.sdk.errors,
            ),
        ]
        if self.short_retry_after:
            settled = self.sdk.settled_after_s
            parts.append((f"settles ≤ {MAX_SETTLE_S:g} s", settled is not None
                          and settled <= MAX_SETTLE_S))  # fmt: skip
        return parts

    @property
    def met(self) -> bool:
        return all(ok for _, ok in self.checks())

    def to_dict(self) -> Json:
        return {
            "name": self.name,
            "scale": self.timing.scale,
            "rate": self.timing.rate,
            "retry_after": self.timing.retry_after,
            "sdk": self.sdk.to_dict(),
            "naive": self.naive.to_dict() if self.naive else None,
            "checks": dict(self.checks()),
            "met": self.met,
        }


async def run_steady(
    timing: LimitTiming,
    seed: int,
    *,
    name: str,
    window: float,
    settle: float,
    workers: int = 32,
    baseline: bool = True,
    max_duration: float | None = None,
) -> SteadyRun:
    """The SDK's loops, then the baseline's, each against a fresh limited sandbox.

    ``max_duration`` caps each run (the smoke run); the window then opens at a third of
    it if no 429 came.
    """
    progress(
        f"steady: {name}, {timing.rate:g} req/s, Retry-After {timing.retry_after} s, "
        f"{workers} loops"
    )
    sdk = await _steady_contender("sdk", timing, seed, window, settle, workers, max_duration)
    naive = None
    if baseline:
        naive = await _steady_contender(
            "naive", timing, seed, window, settle, workers, max_duration
        )
    return SteadyRun(name, timing, sdk, naive)


async def _steady_contender(
    contender: str,
    timing: LimitTiming,
    seed: int,
    window: float,
    settle: float,
    workers: int,
    max_duration: float | None,
) -> SteadyResult:
    rate, retry_after = timing.rate, timing.retry_after
    sample_every = min(0.1, 0.2 / timing.scale)
    if contender == "sdk":
        # Slow start from 10 req/s reaches the limit within ~2 s x ln(rate/5); then the
        # pause, the settling time and the window.
        ramp = 2 * math.log(max(rate, 10) / 5) + 2
        duration = 2 * ramp + retry_after + settle + window
    else:
        window = min(window, 5.0)  # hammering: a few seconds show it
        duration = settle + window
    # A little past the window's end, so a sample falls after it.
    duration += 5 * sample_every
    first_minute = REAL_WINDOW / timing.scale
    capped = max_duration is not None and duration > max_duration
    if max_duration is not None and duration > max_duration:
        duration = max_duration
        window = min(window, duration / 3)
        first_minute = duration / 3
    async with running_sandbox(seed) as sb:
        ids = [
            (await sb.post("orders", {"service": "telegram", "country": "russia"}))["id"]
            for _ in range(50)
        ]
        await sb.post("faults", {"rate_limit": rate, "retry_after": retry_after})
        await sb.post("stats/reset")
        samples: list[tuple[float, int, int]] = []
        stop = asyncio.Event()
        config: Json = {
            "mode": "steady",
            "contender": contender,
            "base_url": sb.base_url,
            "api_key": sb.api_key,
            "ids": ids,
            "workers": workers,
            "duration": duration,
            "deadline": duration + retry_after + 30,
            "trace_every": sample_every * 2,
        }
        sampler = asyncio.ensure_future(sample_stats(sb, sample_every, samples, stop))
        try:
            child = await run_child("limits", config, timeout=duration + retry_after + 90)
        finally:
            stop.set()
            await sampler
        stats = await sb.stats()
    started = child["started_at"]
    # A sample taken before the child began counts nothing: drop them.
    series = [[t - started, total, bad] for t, total, bad in samples if t >= started - 0.05]
    pauses = [
        {"start": p["start"] - started, "end": p["end"] - started, "events": p["events"]}
        for p in group_pauses(child["retries"])
    ]
    return SteadyResult(
        contender=contender,
        scale=timing.scale,
        rate=rate,
        retry_after=retry_after,
        workers=workers,
        settle_allowed_s=settle,
        window_s=window,
        first_minute_s=first_minute,
        capped=capped,
        samples=series,
        pauses=pauses,
        pacing=child["pacing"],
        errors=int(child["errors"]),
        error_samples=list(child["error_samples"]),
        cpu_s=float(child["cpu_s"]),
        by_route={k: int(v) for k, v in stats["by_route"].items()},
    )


def steady_table(runs: Sequence[SteadyRun]) -> str:
    rows = []
    for run in runs:
        for res in (run.sdk, run.naive):
            if res is None:
                continue
            window = res.window
            counts = res.window_counts()
            label = (
                "SDK, `orders.get` loops"
                if res.contender == "sdk"
                else "plain aiohttp loops, no pacing (baseline)"
            )
            rates = [r for _, r, _ in res.pacing if r is not None]
            rows.append(
                [
                    run.name,
                    label,
                    fmt(res.first_429_s, 2),
                    str(len(res.pauses)) if res.contender == "sdk" else "-",
                    fmt(res.settled_after_s, 2) if res.contender == "sdk" else "-",
                    "-" if window is None else f"{window[0]:.1f}-{window[1]:.1f}",
                    "-" if counts is None else f"{counts[0]:,.0f}",
                    fmt(None if res.used is None else res.used * 100, 1, " %"),
                    fmt(None if res.share_429 is None else res.share_429 * 100, 2, " %"),
                    fmt(rates[-1] if rates else None, 1),
                    fmt(res.cpu_s, 1),
                ]
            )
    return markdown_table(
        [
            "variant",
            "contender",
            "first 429 s",
            "pauses",
            "settled after s",
            "window s",
            "requests in window",
            "limit used",
            "429 share",
            "pacing rate at end",
            "client CPU s",
        ],
        rows,
        "llrrrrrrrrr",
    )


# -- the child --------------------------------------------------------------------------


async def child(config: Json) -> Json:
    """One contender, in its own process."""
    retries: list[tuple[float, float, str, str, str]] = []
    errors: list[str] = []
    state: Json = {"records": [], "pacing": [], "timed_out": False}
    clock = Clock()
    if config["mode"] == "activations":
        run = _activations(config, retries, errors, state)
    elif config["contender"] == "sdk":
        run = _steady_sdk(config, retries, errors, state)
    else:
        run = _steady_naive(config, errors, state)
    try:
        await asyncio.wait_for(run, config["deadline"])
    except asyncio.TimeoutError:
        state["timed_out"] = True
    return {
        "started_at": state.get("started_at", time.time()),
        "records": state["records"],
        "retries": retries,
        "pacing": state["pacing"],
        "errors": len(errors),
        "error_samples": errors[:3],
        "cpu_s": clock.cpu(),
        "wall_s": clock.wall(),
        "timed_out": state["timed_out"],
    }


def _client(config: Json, retries: list[tuple[float, float, str, str, str]]) -> Any:
    import gsim_async

    def on_retry(event: gsim_async.RetryEvent) -> None:
        retries.append((time.time(), event.delay, event.reason, event.method, event.path))

    extra: Json = {}
    if config.get("told"):
        extra["max_requests_per_second"] = config["told"]
    return gsim_async.Client(
        config["api_key"],
        base_url=config["base_url"],
        poll_interval=config.get("interval", 2.0),
        on_retry=on_retry,
        **extra,
    )


async def _trace(gsim: Any, state: Json, every: float) -> None:
    """Pacing's rate and phase over time (private attributes: a diagnostic only)."""
    pacing = gsim._transport.pacing
    started = state["started_at"]
    while True:
        state["pacing"].append([round(time.time() - started, 3), pacing.rate, pacing.phase.value])
        await asyncio.sleep(every)


async def _activations(
    config: Json,
    retries: list[tuple[float, float, str, str, str]],
    errors: list[str],
    state: Json,
) -> None:
    import gsim_async

    records: list[tuple[str, str, float]] = state["records"]
    async with _client(config, retries) as gsim:

        async def one() -> None:
            try:
                async with gsim.orders.activation("telegram", "russia") as act:
                    code = await act.wait_for_code(timeout=config["wait_timeout"])
                    records.append((act.order.id, code, time.time()))
            except gsim_async.GsimError as exc:
                errors.append(repr(exc))

        state["started_at"] = time.time()
        tracer = asyncio.ensure_future(_trace(gsim, state, config["trace_every"]))
        try:
            await asyncio.gather(*(one() for _ in range(config["n"])))
        finally:
            tracer.cancel()


async def _steady_sdk(
    config: Json,
    retries: list[tuple[float, float, str, str, str]],
    errors: list[str],
    state: Json,
) -> None:
    import gsim_async

    ids: list[str] = config["ids"]
    async with _client(config, retries) as gsim:
        state["started_at"] = time.time()
        stop_at = state["started_at"] + config["duration"]

        async def loop(i: int) -> None:
            while time.time() < stop_at:
                try:
                    await gsim.orders.get(ids[i % len(ids)])
                except gsim_async.GsimError as exc:
                    errors.append(repr(exc))
                i += 1

        tracer = asyncio.ensure_future(_trace(gsim, state, config["trace_every"]))
        try:
            await asyncio.gather(*(loop(i) for i in range(config["workers"])))
        finally:
            tracer.cancel()


async def _steady_naive(config: Json, errors: list[str], state: Json) -> None:
    api = config["base_url"] + "/api/v1"
    ids: list[str] = config["ids"]
    headers = {"Authorization": f"Bearer {config['api_key']}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        state["started_at"] = time.time()
        stop_at = state["started_at"] + config["duration"]

        async def loop(i: int) -> None:
            while time.time() < stop_at:
                try:
                    async with session.get(f"{api}/orders/{ids[i % len(ids)]}") as resp:
                        await resp.read()
                except aiohttp.ClientError as exc:
                    errors.append(repr(exc))
                i += 1

        await asyncio.gather(*(loop(i) for i in range(config["workers"])))
