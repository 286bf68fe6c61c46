"""``SyncClient``'s spend guard: the same limit, breaker and errors as ``Client``'s."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sync_helpers import ThreadedSandbox

from gsim_async import Breaker, BreakerOpenError, SpendLimit, SpendLimitError

PRICE = Decimal("0.18")


class SignUpError(Exception):
    """The step after the code failed."""


def sign_up(gsim: object, sandbox: ThreadedSandbox) -> None:
    with gsim.orders.activation("telegram", "russia") as act:  # type: ignore[attr-defined]
        sandbox.deliver_code(act.order.id)
        act.wait_for_code(timeout=5)
        raise SignUpError


def test_the_limit_and_the_breaker_hold_a_sync_client(sandbox: ThreadedSandbox) -> None:
    with sandbox.client(spend_limit=SpendLimit(PRICE * 2), breaker=Breaker(1)) as gsim:
        assert gsim.guard.spend_limit == SpendLimit(PRICE * 2)
        gsim.orders.create("telegram", "kazakhstan")
        with pytest.raises(SignUpError):
            sign_up(gsim, sandbox)
        with pytest.raises(BreakerOpenError):
            gsim.orders.create("telegram", "russia")
        status = gsim.guard.status()
        assert status.spend is not None and status.spend.available > 0
        assert [b.open for b in status.breakers] == [True]
        assert gsim.guard.reset() == 1
        with pytest.raises(SpendLimitError):  # 0.12 + 0.18 spent, 0.06 left
            gsim.orders.create("telegram", "russia")
    assert len(sandbox.ledger().charges_by_order) == 2
