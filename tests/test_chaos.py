"""The chaos run: 1,000 activations under every fault at once; no money or code lost."""

from __future__ import annotations

from decimal import Decimal

import anyio
import pytest

import gsim_async
from gsim_async.sandbox import Faults, Sandbox

pytestmark = pytest.mark.anyio

N = 1000
INITIAL = Decimal("1000")


async def test_chaos_thousand_activations_lose_no_money_and_no_code(
    no_key_in_logs: list[str],
) -> None:
    faults = Faults(
        drop_before_rate=0.05,
        drop_after_purchase_rate=0.05,
        provider_error_rate=0.05,
        html_502_rate=0.02,
        latency=(0.0, 0.05),
        rate_limit=400,
    )
    returned: dict[str, str] = {}  # order id -> code handed to its caller
    owners: dict[str, int] = {}  # order id -> which activation held it
    failures: list[BaseException] = []
    texts: list[str] = []

    async with Sandbox(
        seed=2024,
        balance=INITIAL,
        code_delay=(0.3, 2.5),
        no_code_ratio=0.1,
        faults=faults,
    ) as sb:
        async with gsim_async.Client(
            sb.api_key,
            base_url=sb.base_url,
            poll_interval=0.25,
            max_retries=10,
            backoff_base=0.05,
            backoff_cap=0.5,
            max_retry_after=1,
            connection_limit=64,
        ) as gsim:

            async def activate(n: int) -> None:
                try:
                    async with gsim.orders.activation("telegram", "russia") as act:
                        assert act.order.id not in owners, "order handed to two callers"
                        owners[act.order.id] = n
                        texts.append(repr(act.order))
                        code = await act.wait_for_code(timeout=4)
                        returned[act.order.id] = code
                except gsim_async.GsimError as exc:
                    failures.append(exc)
                    texts.extend((str(exc), repr(exc)))

            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    for n in range(N):
                        tg.start_soon(activate, n)
            texts.append(repr(gsim))
        sb.clear_faults()
        ledger = sb.ledger()
        stats = sb.stats
        records = {r.id: r for r in sb.orders()}

    by_status = ledger.orders_by_status
    received = {i: r for i, r in records.items() if r.status == "RECEIVED"}
    cost = sum((r.price for r in received.values()), Decimal(0))
    no_code = [e for e in failures if isinstance(e, gsim_async.NoCodeError)]
    other = [e for e in failures if not isinstance(e, gsim_async.NoCodeError)]
    print(
        f"\nchaos: {N} activations, {stats.total} requests "
        f"({stats.dropped} dropped, {stats.by_status.get(503, 0)} 503, "
        f"{stats.by_status.get(502, 0)} 502, {stats.by_status.get(429, 0)} 429)\n"
        f"  orders {len(records)}: {dict(by_status)}\n"
        f"  codes returned {len(returned)}, no-code errors {len(no_code)}, "
        f"other errors {len(other)}\n"
        f"  charged {ledger.charged}, refunded {ledger.refunded}, "
        f"balance {ledger.balance} = {INITIAL} - {cost}"
    )
    assert not other, f"unexpected errors: {other[:3]}"
    # No purchase charged twice: every order the sandbox created belongs to one caller.
    assert set(records) == set(owners)
    assert len(owners) == N
    # No order left PENDING; every other order refunded in full.
    assert by_status.get("PENDING", 0) == 0
    for order_id, record in records.items():
        if record.status == "RECEIVED":
            assert returned.get(order_id) == record.sms_code, f"code of {order_id} lost"
        else:
            assert ledger.refunds_by_order.get(order_id) == record.price
    assert set(returned) == set(received)
    assert ledger.balanced
    assert ledger.balance == INITIAL - cost
    # The faults really happened.
    assert stats.dropped > 0 and stats.by_status.get(503, 0) > 0
    assert stats.by_status.get(502, 0) > 0 and stats.by_status.get(429, 0) > 0
    # The key is in no log line (checked by the autouse fixture), no error, no repr.
    assert no_key_in_logs
    assert not [t for t in texts if sb.api_key in t]
