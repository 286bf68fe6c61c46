"""Traces and metrics (``gsim-async[otel]``), read with the OpenTelemetry SDK's in-memory
exporters, against the sandbox over real HTTP: spans and their parents, the HTTP
semantic conventions, retries and pauses as events, metrics that match the sandbox's
ledger, no secret anywhere, the off switch, and an SDK that imports without OpenTelemetry.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import fast_client
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis_server import RedisServer, redis_server

import gsim_async
from gsim_async.sandbox import Sandbox

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["redis_server"]  # the fixture, imported for the fleet's gauge


class Recorder:
    """An SDK tracer and meter provider whose spans and metrics stay in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    @property
    def telemetry(self) -> gsim_async.Telemetry:
        return gsim_async.Telemetry(self.tracer_provider, self.meter_provider)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        return [s for s in found if name is None or s.name == name]

    def points(self, metric: str) -> list[Any]:
        """Every data point of ``metric`` collected now (callbacks run)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        found.extend(m.data.data_points)
        return found

    def total(self, metric: str, where: dict[str, object] | None = None) -> float:
        """The sum of ``metric`` (a counter's value, a histogram's count) at ``where``."""
        total = 0.0
        for point in self.points(metric):
            if any(point.attributes.get(k) != v for k, v in (where or {}).items()):
                continue
            if isinstance(point, HistogramDataPoint):
                total += point.count
            else:
                assert isinstance(point, NumberDataPoint)
                total += point.value
        return total

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def otel() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.shutdown()


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if parent_of(s) == parent.context.span_id]


def attempts_of(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in children(spans, parent) if s.kind is SpanKind.CLIENT]


# -- spans --------------------------------------------------------------------------------


async def test_each_call_is_a_span_with_a_client_span_per_attempt(
    sandbox: Sandbox, otel: Recorder
) -> None:
    async with fast_client(sandbox, telemetry=otel.telemetry) as gsim:
        await gsim.balance()
        order = await gsim.orders.create("telegram", "russia")
        await gsim.orders.get(order.id)
        refund = await gsim.orders.cancel(order)
    spans = otel.spans()
    port = int(sandbox.base_url.rsplit(":", 1)[1])

    (balance,) = otel.spans("gsim.balance")
    assert balance.kind is SpanKind.INTERNAL and balance.parent is None
    (get_balance,) = attempts_of(spans, balance)
    assert get_balance.name == "GET /api/v1/balance"
    assert dict(get_balance.attributes or {}) == {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": port,
        "url.full": f"{sandbox.base_url}/api/v1/balance",
        "url.template": "/api/v1/balance",
        "gsim.priority": "call",
        "http.response.status_code": 200,
    }
    assert get_balance.status.status_code is StatusCode.UNSET

    (create,) = otel.spans("gsim.orders.create")
    attrs = create.attributes or {}
    assert attrs["gsim.service"] == "telegram" and attrs["gsim.country"] == "russia"
    assert attrs["gsim.order.id"] == order.id and attrs["gsim.order.price"] == float(order.price)
    # The purchase, after the account's newest order was read as the baseline.
    assert [s.name for s in attempts_of(spans, create)] == [
        "GET /api/v1/orders",
        "POST /api/v1/orders",
    ]

    (get,) = otel.spans("gsim.orders.get")
    (get_attempt,) = attempts_of(spans, get)
    assert get_attempt.name == "GET /api/v1/orders/{id}"
    assert (get_attempt.attributes or {})["url.full"] == (
        f"{sandbox.base_url}/api/v1/orders/{order.id}"
    )

    (cancel,) = otel.spans("gsim.orders.cancel")
    assert (cancel.attributes or {})["gsim.refund.amount"] == float(refund.refunded)
    (cancel_attempt,) = attempts_of(spans, cancel)
    assert (cancel_attempt.attributes or {})["url.template"] == "/api/v1/orders/{id}/cancel"
    # One trace per call; every span is one of these four traces.
    traces = {s.context.trace_id for s in (balance, create, get, cancel)}
    assert len(traces) == 4 and {s.context.trace_id for s in spans} == traces


async def test_an_error_answer_marks_the_attempt_and_the_call(
    sandbox: Sandbox, otel: Recorder
) -> None:
    async with fast_client(sandbox, telemetry=otel.telemetry) as gsim:
        with pytest.raises(gsim_async.NotFoundError):
            await gsim.orders.get("nosuchorder")
    (get,) = otel.spans("gsim.orders.get")
    assert get.status.status_code is StatusCode.ERROR
    assert get.status.description == "NotFoundError"  # the type, never the message
    assert (get.attributes or {})["error.type"] == "gsim_async.NotFoundError"
    assert (get.attributes or {})["gsim.error.code"] == "NOT_FOUND"
    assert not get.events  # no exception event: its message may name a number
    (attempt,) = attempts_of(otel.spans(), get)
    assert (attempt.attributes or {})["http.response.status_code"] == 404
    assert (attempt.attributes or {})["error.type"] == "404"
    assert attempt.status.status_code is StatusCode.ERROR
    (point,) = [
        p
        for p in otel.points("http.client.request.duration")
        if p.attributes.get("url.template") == "/api/v1/orders/{id}"
    ]
    assert point.attributes["error.type"] == "404" and point.count == 1


async def test_a_wait_and_its_refund_are_spans_and_polls_are_traces_of_their_own(
    sandbox: Sandbox, otel: Recorder
) -> None:
    async with fast_client(sandbox, telemetry=otel.telemetry) as gsim:
        got = await gsim.orders.create("telegram", "russia")
        waiting = asyncio.ensure_future(gsim.orders.wait_for_code(got, timeout=10))
        await anyio.sleep(0.2)
        sandbox.deliver_code(got.id)
        await waiting
        lost = await gsim.orders.create("telegram", "russia")
        with pytest.raises(gsim_async.CodeTimeoutError):
            await gsim.orders.wait_for_code(lost, timeout=0.2)
    spans = otel.spans()
    waits = otel.spans("gsim.orders.wait_for_code")
    ok, timed_out = sorted(waits, key=lambda s: s.start_time or 0)
    assert (ok.attributes or {})["gsim.wait.outcome"] == "code"
    assert (ok.attributes or {})["gsim.order.id"] == got.id
    assert (timed_out.attributes or {})["error.type"] == "gsim_async.CodeTimeoutError"
    assert (timed_out.attributes or {})["gsim.wait.on_timeout"] == "ban"
    # The ban is a span of its own under the wait, with its request under it.
    (refund,) = children(spans, timed_out)
    assert refund.name == "gsim.orders.refund"
    assert (refund.attributes or {})["gsim.refund.action"] == "ban"
    assert (refund.attributes or {})["gsim.order.status"] == "BANNED"
    (ban,) = attempts_of(spans, refund)
    assert ban.name == "POST /api/v1/orders/{id}/ban"
    assert (ban.attributes or {})["gsim.priority"] == "refund"
    # The watcher's polls serve every waiter: each is a root span, never under a wait.
    polls = [s for s in spans if (s.attributes or {}).get("gsim.priority") == "poll"]
    assert polls and all(s.parent is None for s in polls)
    assert not attempts_of(spans, ok)


async def test_a_retry_is_an_event_and_the_resend_a_span_of_its_own(
    sandbox: Sandbox, otel: Recorder
) -> None:
    sandbox.set_faults(drop_before_rate=0.5)
    async with fast_client(sandbox, max_retries=10, telemetry=otel.telemetry) as gsim:
        for _ in range(10):
            await gsim.balance()
    dropped = sandbox.stats.dropped
    assert dropped > 0
    spans = otel.spans()
    calls = otel.spans("gsim.balance")
    events = [e for s in calls for e in s.events if e.name == "gsim.retry"]
    assert len(events) == dropped
    assert all(str((e.attributes or {})["error.type"]).startswith("aiohttp.") for e in events)
    attempts = [a for call in calls for a in attempts_of(spans, call)]
    assert len(attempts) == sandbox.stats.total == 10 + dropped
    failed = [a for a in attempts if "http.response.status_code" not in (a.attributes or {})]
    assert len(failed) == dropped
    assert all(a.status.status_code is StatusCode.ERROR for a in failed)
    for call in calls:
        counts = [
            (a.attributes or {}).get("http.request.resend_count", 0)
            for a in attempts_of(spans, call)
        ]
        assert sorted(counts) == list(range(len(counts)))
    assert otel.total("gsim.retries") == dropped
    assert otel.total("http.client.request.duration") == 10 + dropped


async def test_a_429_pause_is_an_event_and_counted(sandbox: Sandbox, otel: Recorder) -> None:
    sandbox.set_faults(rate_limit=5, retry_after=1)
    async with (
        fast_client(sandbox, max_retries=5, slow_start=False, telemetry=otel.telemetry) as gsim,
        anyio.create_task_group() as tg,
    ):
        for _ in range(12):
            tg.start_soon(gsim.balance)
    throttled = sandbox.stats.by_status.get(429, 0)
    assert throttled >= 1
    assert otel.total("gsim.rate_limit.responses") == throttled
    assert (
        otel.total("http.client.request.duration", {"http.response.status_code": 429}) == throttled
    )
    assert otel.total("gsim.rate_limit.pauses") >= 1
    events = [e for s in otel.spans("gsim.balance") for e in s.events]
    pauses = [e for e in events if e.name == "gsim.rate_limit.pause"]
    assert len(pauses) == throttled
    assert all((e.attributes or {})["gsim.pause.seconds"] == 1 for e in pauses)
    assert any((e.attributes or {})["gsim.pause.new"] for e in pauses)
    retries = [e for e in events if e.name == "gsim.retry"]
    assert {(e.attributes or {})["error.type"] for e in retries} == {"429"}


# -- metrics --------------------------------------------------------------------------------


async def test_money_and_codes_match_the_ledger(sandbox: Sandbox, otel: Recorder) -> None:
    async with fast_client(sandbox, telemetry=otel.telemetry) as gsim:
        orders = [await gsim.orders.create("telegram", "russia") for _ in range(6)]
        waits = [
            asyncio.ensure_future(gsim.orders.wait_for_code(o, timeout=10)) for o in orders[:3]
        ]
        await anyio.sleep(0.3)
        for order in orders[:3]:
            sandbox.deliver_code(order.id)
        await asyncio.gather(*waits)
        await gsim.orders.cancel(orders[3])
        for order in orders[4:]:
            with pytest.raises(gsim_async.CodeTimeoutError):
                await gsim.orders.wait_for_code(order, timeout=0.1)
        offer = (await gsim.rentals.search("US", page_size=1))[0]
        assert offer.monthly_price is not None
        rental = await gsim.rentals.create(offer.phone_number, "LOCAL", "US", offer.monthly_price)
    ledger = sandbox.ledger()
    assert otel.total("gsim.purchases", {"gsim.kind": "order"}) == 6
    assert otel.total("gsim.purchases", {"gsim.kind": "rental"}) == 1
    spent = otel.total("gsim.spend")
    assert spent == pytest.approx(float(ledger.charged))
    assert otel.total("gsim.spend", {"gsim.kind": "rental"}) == pytest.approx(
        float(rental.monthly_price or 0)
    )
    assert otel.total("gsim.refunds") == pytest.approx(float(ledger.refunded))
    assert otel.total("gsim.refunds", {"gsim.refund.action": "ban"}) == pytest.approx(
        float(sum((o.price for o in orders[4:]), Decimal(0)))
    )
    codes = sum(1 for record in sandbox.orders() if record.sms_code is not None)
    assert codes == 3
    assert otel.total("gsim.codes", {"gsim.service": "telegram", "gsim.country": "russia"}) == codes
    (times,) = otel.points("gsim.code.duration")
    assert times.count == codes and times.attributes["gsim.country"] == "russia"
    # From each purchase to its code's sighting, on our own clock: delivered 0.3 s on.
    assert 0.3 <= times.sum / times.count < 5
    # Every request the sandbox served is in http.client.request.duration, by route.
    stats = sandbox.stats
    assert otel.total("http.client.request.duration") == stats.total
    for route, count in stats.by_route.items():
        method, template = route.split(" ", 1)
        measured = otel.total(
            "http.client.request.duration",
            {"http.request.method": method, "url.template": template},
        )
        assert measured == count, route


async def test_gauges_follow_waits_and_journal_rows(
    sandbox: Sandbox, otel: Recorder, tmp_path: Path
) -> None:
    def gauge(name: str) -> float | None:
        points = otel.points(name)
        return points[0].value if points else None

    async with fast_client(sandbox, journal=tmp_path / "gsim.db", telemetry=otel.telemetry) as gsim:
        orders = [await gsim.orders.create("telegram", "russia") for _ in range(3)]
        assert gauge("gsim.journal.rows") == 3  # owed: each until its code or refund
        waits = [asyncio.ensure_future(gsim.orders.wait_for_code(o, timeout=10)) for o in orders]
        await anyio.sleep(0.2)
        assert gauge("gsim.waits") == 3
        assert gauge("gsim.rate_limit.paused") == 0
        assert gauge("gsim.fleet.leader") is None  # no fleet: nothing to report
        for order in orders:
            sandbox.deliver_code(order.id)
        await asyncio.gather(*waits)
        assert gauge("gsim.waits") == 0
        assert gauge("gsim.journal.rows") == 0
        rate = otel.points("gsim.rate_gate.rate")
        assert [p.attributes["gsim.rate_gate.phase"] for p in rate] == ["slow start"]
    # A closed client is no longer reported.
    assert gauge("gsim.waits") is None


async def test_a_fleet_member_reports_its_leadership(
    sandbox: Sandbox, otel: Recorder, redis_server: RedisServer
) -> None:
    from gsim_async.fleet import RedisFleet

    fleet = RedisFleet(redis_server.url, heartbeat=0.3, lease=1.0)
    async with fast_client(sandbox, fleet=fleet, telemetry=otel.telemetry) as gsim:
        await gsim.balance()  # joins the fleet
        with anyio.fail_after(10):
            # The gauge is read by collecting: there is no event to wait on.
            while not [p for p in otel.points("gsim.fleet.leader") if p.value == 1]:  # noqa: ASYNC110
                await anyio.sleep(0.1)


# -- nothing secret, anywhere -----------------------------------------------------------------


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    elif value is not None:
        yield str(value)


def everything_reported(otel: Recorder) -> list[str]:
    """Every string a span or a metric point carries: names, attributes, events, statuses."""
    out: list[str] = []
    for span in otel.spans():
        out.append(span.name)
        out.append(span.status.description or "")
        for key, value in (span.attributes or {}).items():
            out.append(key)
            out.extend(_strings(value))
        for event in span.events:
            out.append(event.name)
            for key, value in (event.attributes or {}).items():
                out.append(key)
                out.extend(_strings(value))
    data = otel.reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out.append(metric.name)
                for point in metric.data.data_points:
                    for key, value in point.attributes.items():
                        out.append(key)
                        out.extend(_strings(value))
    return out


async def test_no_key_phone_number_code_or_message_in_any_attribute(
    sandbox: Sandbox, otel: Recorder
) -> None:
    forward, to, unknown = "+905551234567", "+14155550123", "+15109990000"
    body = "Your reply 4711 is here"
    sms_code = "902211"
    async with fast_client(sandbox, telemetry=otel.telemetry) as gsim:
        # Codes: one waited for, one in an activation, one that raced a refund (409).
        order = await gsim.orders.create("telegram", "russia")
        waiting = asyncio.ensure_future(gsim.orders.wait_for_code(order, timeout=10))
        await anyio.sleep(0.1)
        sandbox.deliver_code(order.id)
        await waiting
        async with gsim.orders.activation("telegram", "russia") as act:
            sandbox.deliver_code(act.order.id)
            await act.wait_for_code(timeout=10)
        raced = await gsim.orders.create("telegram", "russia")
        sandbox.deliver_code(raced.id)
        with pytest.raises(gsim_async.ConflictError):
            await gsim.orders.cancel(raced)
        # Errors whose messages name the number: a timeout, an order that expired.
        with pytest.raises(gsim_async.CodeTimeoutError):
            await gsim.orders.wait_for_code(
                await gsim.orders.create("telegram", "russia"), timeout=0.1
            )
        expired = await gsim.orders.create("telegram", "russia")
        sandbox.set_order_status(expired.id, "EXPIRED", refund=True)
        with pytest.raises(gsim_async.NoCodeError):
            await gsim.orders.wait_for_code(expired, timeout=5)
        await gsim.orders.list()
        # Rentals: a number searched by its digits, rented, forwarded, texted and called.
        offer = (await gsim.rentals.search("US", area_code="510", contains="555", page_size=1))[0]
        assert offer.monthly_price is not None
        rental = await gsim.rentals.create(offer.phone_number, "LOCAL", "US", offer.monthly_price)
        await gsim.rentals.update(rental, forwarding_number=forward)
        await gsim.rentals.send_sms(rental, to, body)
        await gsim.rentals.call(rental, to)
        texted = asyncio.ensure_future(gsim.rentals.wait_for_sms(rental, match=sms_code, timeout=5))
        await anyio.sleep(0.1)
        sandbox.add_inbound_sms(rental.id, to, f"G-{sms_code} is your code")
        message = await texted
        assert sms_code in message.body
        await gsim.rentals.messages(rental)
        await gsim.rentals.get(rental)
        with pytest.raises(gsim_async.ValidationError, match=re.escape(unknown)):
            await gsim.rentals.create(unknown, "LOCAL", "US", "1.00")
    reported = everything_reported(otel)
    assert len(otel.spans()) > 30
    secrets = {sandbox.api_key, forward, to, unknown, body, offer.phone_number, message.body}
    secrets |= {r.phone_number for r in sandbox.orders()}
    codes = {r.sms_code for r in sandbox.orders() if r.sms_code} | {sms_code}
    assert len(codes) == 4
    for secret in secrets:
        for form in {secret, secret.lstrip("+")}:
            leaked = [s for s in reported if form in s]
            assert not leaked, (secret, leaked[:3])
    for code in codes:
        pattern = re.compile(rf"(?<!\d){re.escape(code)}(?!\d)")
        leaked = [s for s in reported if pattern.search(s)]
        assert not leaked, (code, leaked[:3])
    # The digits searched for are redacted from url.full, the key kept.
    (search,) = [s for s in otel.spans() if s.name == "GET /api/v1/rentals/search"]
    assert "contains=REDACTED" in str((search.attributes or {})["url.full"])
    assert "areaCode=REDACTED" in str((search.attributes or {})["url.full"])


# -- the off switch, the application's own providers, and no OpenTelemetry at all ------------


async def test_traces_false_keeps_the_metrics(sandbox: Sandbox, otel: Recorder) -> None:
    only_metrics = gsim_async.Telemetry(otel.tracer_provider, otel.meter_provider, traces=False)
    async with fast_client(sandbox, telemetry=only_metrics) as gsim:
        await gsim.balance()
    assert otel.spans() == []
    assert otel.total("http.client.request.duration") == 1


def test_a_bad_telemetry_argument_is_refused() -> None:
    with pytest.raises(gsim_async.InvalidArgumentError):
        gsim_async.Client("2s_" + "k" * 40, telemetry="yes")  # type: ignore[arg-type]


def _run(script: str, **env: str) -> dict[str, Any]:
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


_GLOBAL = """
    import asyncio, json, os, sys
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import gsim_async
    from gsim_async.sandbox import Sandbox

    imported_with_sdk = any(m.startswith("opentelemetry") for m in sys.modules)

    async def main():
        out = {}
        async with Sandbox(seed=3, auto_deliver=False) as sb:
            options = dict(base_url=sb.base_url, backoff_base=0)
            # Made before the application configures OpenTelemetry: reports all the same.
            early = gsim_async.Client(sb.api_key, **options)
            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            reader = InMemoryMetricReader()
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

            def requests():
                data = reader.get_metrics_data()
                return sum(
                    p.count
                    for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
                    if m.name == "http.client.request.duration" for p in m.data.data_points
                )

            async with early:
                await early.balance()
            out["default"] = [s.name for s in exporter.get_finished_spans()]
            out["default_requests"] = requests()
            exporter.clear()
            async with gsim_async.Client(sb.api_key, telemetry=False, **options) as gsim:
                await gsim.balance()
            out["off"] = [s.name for s in exporter.get_finished_spans()]
            out["off_requests"] = requests() - out["default_requests"]
            os.environ["GSIM_TELEMETRY"] = "off"
            async with gsim_async.Client(sb.api_key, **options) as gsim:
                await gsim.balance()
            out["env_off"] = [s.name for s in exporter.get_finished_spans()]
            async with gsim_async.Client(sb.api_key, telemetry=True, **options) as gsim:
                await gsim.balance()
            out["env_off_but_true"] = [s.name for s in exporter.get_finished_spans()]
        return out

    print(json.dumps(asyncio.run(main())))
"""


def test_the_applications_global_providers_need_no_code_and_false_turns_them_off() -> None:
    out = _run(_GLOBAL)
    assert out["default"] == ["GET /api/v1/balance", "gsim.balance"]
    assert out["default_requests"] == 1
    assert out["off"] == [] and out["off_requests"] == 0
    assert out["env_off"] == []
    assert out["env_off_but_true"] == ["GET /api/v1/balance", "gsim.balance"]


_WITHOUT = """
    import sys
    sys.modules["opentelemetry"] = None  # as if gsim-async[otel] were not installed
    import asyncio, json
    import gsim_async
    from gsim_async.sandbox import Sandbox

    async def main():
        async with Sandbox(seed=3, auto_deliver=False) as sb:
            for telemetry in (None, True, gsim_async.Telemetry()):
                async with gsim_async.Client(
                    sb.api_key, base_url=sb.base_url, poll_interval=0.05, telemetry=telemetry
                ) as gsim:
                    order = await gsim.orders.create("telegram", "russia")
                    waiting = asyncio.ensure_future(gsim.orders.wait_for_code(order, timeout=5))
                    await asyncio.sleep(0.1)
                    sb.deliver_code(order.id)
                    await waiting
            return len(sb.orders())

    bought = asyncio.run(main())
    print(json.dumps({
        "bought": bought,
        "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m]),
        "hooks": "gsim_async._otel" in sys.modules,
    }))
"""


def test_without_opentelemetry_the_sdk_imports_and_works() -> None:
    out = _run(_WITHOUT)
    assert out == {"bought": 3, "otel": [], "hooks": False}


def test_importing_the_sdk_does_not_import_opentelemetry() -> None:
    out = _run(
        """
        import json, sys
        import gsim_async
        before = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        gsim_async.Client("2s_" + "k" * 40, base_url="http://127.0.0.1:9", telemetry=False)
        off = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        gsim_async.Client("2s_" + "k" * 40, base_url="http://127.0.0.1:9")
        print(json.dumps({"before": before, "off": off,
                          "on": "opentelemetry.trace" in sys.modules}))
        """
    )
    assert out == {"before": [], "off": [], "on": True}


async def test_sync_client_spans_are_children_of_the_callers_span(
    sandbox: Sandbox, otel: Recorder
) -> None:
    tracer = otel.tracer_provider.get_tracer("the application")

    def work() -> None:
        with (
            gsim_async.SyncClient(
                sandbox.api_key, base_url=sandbox.base_url, telemetry=otel.telemetry
            ) as gsim,
            tracer.start_as_current_span("handler"),
        ):
            gsim.balance()

    await anyio.to_thread.run_sync(work)
    (handler,) = otel.spans("handler")
    (balance,) = otel.spans("gsim.balance")
    assert parent_of(balance) == handler.context.span_id
    assert balance.context.trace_id == handler.context.trace_id
    assert trace.get_current_span() is trace.INVALID_SPAN
