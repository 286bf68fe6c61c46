"""Money is never lost: the ledger identity after a mixed run; seeded determinism."""

from __future__ import annotations

from decimal import Decimal

import aiohttp
import anyio
import pytest
from sandbox_helpers import Caller

from gsim_async.sandbox import Faults, Sandbox

pytestmark = pytest.mark.anyio


async def test_ledger_identity_after_a_mixed_concurrent_run() -> None:
    faults = Faults(provider_error_rate=0.1, drop_after_purchase_rate=0.1, html_502_rate=0.05)
    async with (
        Sandbox(seed=2, code_delay=(0.01, 0.1), no_code_ratio=0.3, order_ttl=0.25,
                faults=faults) as sb,
        aiohttp.ClientSession() as session,
    ):  # fmt: skip
        api = Caller(session, sb)

        async def customer(i: int) -> None:
            try:
                reply = await api.post("orders", {"service": "whatsapp", "country": "usa"})
            except aiohttp.ClientConnectionError:
                return  # dropped after purchase: charged, unknown to us
            if reply.status != 200:
                return
            if i % 3 == 0:
                await api.post(f"orders/{reply.body['id']}/cancel")
            elif i % 3 == 1:
                await anyio.sleep(0.05)
                await api.post(f"orders/{reply.body['id']}/ban")

        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(customer, i)
        sb.clear_faults()
        rental = await api.rent("US")
        await api.post(f"rentals/{rental['id']}/sms", {"to": "+14155551234", "body": "hi"})
        sb.set_balance(50)
        await anyio.sleep(0.35)  # every order still PENDING expires

        ledger = sb.ledger()
        assert ledger.balanced
        assert ledger.initial - ledger.charged + ledger.refunded == ledger.balance
        assert (
            ledger.balance
            == sb.balance()
            == Decimal(str((await api.get("balance")).body["balance"]))
        )
        assert "PENDING" not in ledger.orders_by_status
        assert sum(ledger.orders_by_status.values()) == len(ledger.orders)
        # One charge per order, at most one refund, never for a RECEIVED one.
        assert set(ledger.charges_by_order) == {o.id for o in ledger.orders}
        for order in ledger.orders:
            assert ledger.charges_by_order[order.id] == order.price
            refund = ledger.refunds_by_order.get(order.id, Decimal(0))
            assert refund == (0 if order.status == "RECEIVED" else order.price)
        assert ledger.adjustments != 0


async def test_same_seed_same_world() -> None:
    async def run(seed: int) -> tuple[str, list[tuple[str, str, str | None]]]:
        async with (
            Sandbox(seed=seed, auto_deliver=False) as sb,
            aiohttp.ClientSession() as session,
        ):
            api = Caller(session, sb)
            orders = [await api.buy() for _ in range(3)]
            sb.deliver_code(orders[1]["id"])
            result = [(o["id"], o["phoneNumber"], sb.order(o["id"]).sms_code) for o in orders]
            return sb.api_key, result

    first = await run(42)
    assert first == await run(42)
    assert first != await run(43)
