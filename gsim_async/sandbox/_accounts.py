"""Accounts: API keys, their balances and the ledger of every movement of money.

Money moves only through ``Accounts``, which books each movement as a
``LedgerEntry``, so ``initial - charged + refunded == balance`` holds at
all times.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import attrs

from . import _errors
from ._clock import Clock
from ._errors import ApiError
from ._ids import Ids
from ._records import Ledger, LedgerEntry, OrderRecord

ZERO = Decimal(0)
#: An amount as the Python and control APIs take it (floats via their shortest repr).
Money = Decimal | str | int | float


@attrs.define(slots=True, eq=False)
class Account:
    """One API key and its money."""

    key: str
    balance: Decimal
    opening: Decimal
    revoked: bool = False
    adjustments: Decimal = ZERO
    charged: Decimal = ZERO
    refunded: Decimal = ZERO
    entries: list[LedgerEntry] = attrs.Factory(list)


class Accounts:
    """Every API key of a sandbox, and the only place balances change."""

    def __init__(self, ids: Ids, clock: Clock) -> None:
        self._ids = ids
        self._clock = clock
        self.by_key: dict[str, Account] = {}

    def add(self, key: str | None, balance: Decimal) -> Account:
        """Create an API key with an opening balance; ``None`` draws a ``2s_...`` key."""
        if key is None:
            key = self._ids.new_key()
            while key in self.by_key:
                key = self._ids.new_key()
        if key in self.by_key:
            raise ValueError(f"API key {key!r} exists already")
        account = Account(key=key, balance=balance, opening=balance)
        self.by_key[key] = account
        return account

    def get(self, key: str) -> Account:
        """The account of ``key`` (KeyError if unknown)."""
        try:
            return self.by_key[key]
        except KeyError:
            raise KeyError(f"unknown API key {key!r}") from None

    def authenticate(self, header: str | None) -> Account:
        """The account named by an ``Authorization: Bearer`` header, or 401/403."""
        if not header:
            raise ApiError(401, "UNAUTHORIZED", "missing API key: send Authorization: Bearer <key>")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, "UNAUTHORIZED", "malformed Authorization header: use Bearer <key>")
        account = self.by_key.get(key.strip())
        if account is None:
            raise ApiError(401, "UNAUTHORIZED", "invalid API key")
        if account.revoked:
            raise ApiError(403, "FORBIDDEN", "API key has been revoked")
        return account

    # -- money --

    @staticmethod
    def check_funds(account: Account, price: Decimal) -> None:
        """402 INSUFFICIENT_BALANCE unless the balance covers ``price``."""
        if account.balance < price:
            raise _errors.insufficient_balance(price, account.balance)

    def charge(self, account: Account, amount: Decimal, kind: str, ref: str) -> None:
        """Take ``amount`` for ``ref`` (an order, rental or message id)."""
        account.balance -= amount
        account.charged += amount
        account.entries.append(LedgerEntry(kind, ref, amount, self._clock.now()))

    def refund(self, account: Account, amount: Decimal, kind: str, ref: str) -> None:
        """Give ``amount`` back for ``ref``; the caller makes sure it happens once."""
        account.balance += amount
        account.refunded += amount
        account.entries.append(LedgerEntry(kind, ref, amount, self._clock.now()))

    def set_balance(self, account: Account, amount: Decimal) -> None:
        """Set the balance; the difference is booked as an adjustment."""
        delta = amount - account.balance
        account.balance = amount
        account.adjustments += delta
        account.entries.append(LedgerEntry("adjustment", account.key, delta, self._clock.now()))

    @staticmethod
    def ledger(
        account: Account, orders: Sequence[OrderRecord], orders_by_status: dict[str, int]
    ) -> Ledger:
        """A snapshot of the account's money movements, with its orders as they stand."""
        charges: dict[str, Decimal] = {}
        refunds: dict[str, Decimal] = {}
        rental_charges: dict[str, Decimal] = {}
        for entry in account.entries:
            if entry.kind == "order":
                charges[entry.ref] = charges.get(entry.ref, ZERO) + entry.amount
            elif entry.kind == "order_refund":
                refunds[entry.ref] = refunds.get(entry.ref, ZERO) + entry.amount
            elif entry.kind == "rental":
                rental_charges[entry.ref] = rental_charges.get(entry.ref, ZERO) + entry.amount
        return Ledger(
            api_key=account.key,
            initial=account.opening + account.adjustments,
            opening=account.opening,
            adjustments=account.adjustments,
            charged=account.charged,
            refunded=account.refunded,
            balance=account.balance,
            orders_by_status=orders_by_status,
            charges_by_order=charges,
            refunds_by_order=refunds,
            charges_by_rental=rental_charges,
            orders=list(orders),
            entries=list(account.entries),
        )
