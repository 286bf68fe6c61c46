"""The sandbox's world: accounts and their money, orders and rentals, on one catalogue.

Everything runs on the event loop thread without awaits, so each method of
the books is atomic with respect to concurrent requests. Methods the HTTP API
uses raise ``ApiError``; the control methods raise ``KeyError`` (unknown
id) and ``StateError`` (not allowed in the current state).
"""

from __future__ import annotations

from ._accounts import Account, Accounts
from ._catalogue import Catalogue
from ._clock import Clock, Scheduler
from ._ids import Ids
from ._orders import Orders
from ._records import Ledger
from ._rentals import Rentals


class State:
    """One sandbox's books, sharing its ids, clock and catalogue."""

    def __init__(
        self,
        *,
        seed: int,
        clock: Clock,
        scheduler: Scheduler,
        catalogue: Catalogue,
        code_delay: tuple[float, float],
        no_code_ratio: float,
        order_ttl: float,
        auto_deliver: bool,
    ) -> None:
        self.clock = clock
        self.catalogue = catalogue
        self.ids = Ids(seed)
        self.accounts = Accounts(self.ids, clock)
        self.orders = Orders(
            seed=seed,
            ids=self.ids,
            accounts=self.accounts,
            catalogue=catalogue,
            clock=clock,
            scheduler=scheduler,
            code_delay=code_delay,
            no_code_ratio=no_code_ratio,
            order_ttl=order_ttl,
            auto_deliver=auto_deliver,
        )
        self.rentals = Rentals(seed=seed, ids=self.ids, accounts=self.accounts, clock=clock)

    def ledger(self, account: Account) -> Ledger:
        """A snapshot of the account's money, with its orders as they stand."""
        orders = self.orders
        return self.accounts.ledger(
            account, orders.records(account), orders.count_by_status(account)
        )
