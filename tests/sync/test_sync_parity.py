"""Every public async method of the client has a blocking twin with the same parameters.

(``SyncClient.__init__`` against ``Client.__init__``: ``test_sync_client.py``.)

A method added to ``Client``, ``client.orders``, ``client.rentals``, an ``Activation``
or an ``Activations`` loop without its twin in ``SyncClient`` fails here.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import gsim_async
from gsim_async import Activation, Activations, Client
from gsim_async._guard import SpendGuard
from gsim_async._resources._orders import Orders
from gsim_async._resources._rentals import Rentals
from gsim_async._sync import (
    SyncActivation,
    SyncActivations,
    SyncClient,
    SyncOrders,
    SyncRentals,
    SyncSpendGuard,
)

PAIRS = [
    (Client, SyncClient),
    (Orders, SyncOrders),
    (Rentals, SyncRentals),
    (Activation, SyncActivation),
    (Activations, SyncActivations),
    (SpendGuard, SyncSpendGuard),
]
#: Async names whose blocking twin is spelled otherwise.
RENAMED = {
    "aclose": "close",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
}
#: Not for users: the client's own hook into open activations as it closes.
INTERNAL = {(Activation, "closing")}


def public(cls: type) -> dict[str, Any]:
    """The class's public names and its (async) protocol methods, through its bases."""
    protocol = set(RENAMED) | set(RENAMED.values())
    return {
        name: value
        for base in reversed(cls.__mro__[:-1])
        for name, value in vars(base).items()
        if (not name.startswith("_") or name in protocol) and (cls, name) not in INTERNAL
    }


def twins() -> list[tuple[type, type, str]]:
    return [(a, s, name) for a, s in PAIRS for name in public(a)]


@pytest.mark.parametrize(("async_cls", "sync_cls", "name"), twins())
def test_every_async_name_has_a_blocking_twin(async_cls: type, sync_cls: type, name: str) -> None:
    theirs = public(async_cls)[name]
    ours = public(sync_cls).get(RENAMED.get(name, name))
    assert ours is not None, f"{sync_cls.__name__} has no twin of {async_cls.__name__}.{name}"
    if isinstance(theirs, property):
        assert isinstance(ours, property), name
        return
    assert callable(theirs) and callable(ours)
    assert not inspect.iscoroutinefunction(ours) and not inspect.isasyncgenfunction(ours)
    mine = inspect.signature(ours).parameters.values()
    their = inspect.signature(theirs).parameters.values()
    assert [(p.name, p.kind, p.default) for p in mine] == [
        (p.name, p.kind, p.default) for p in their
    ]
    for p, q in zip(mine, their, strict=True):
        assert p.annotation == q.annotation, (name, p.name)


def test_attributes_have_twins() -> None:
    client = Client("2s_" + "a" * 40)
    attributes = {n for n in vars(client) if not n.startswith("_")}
    assert attributes == {"poll_interval", "orders", "rentals", "guard"}
    with SyncClient("2s_" + "a" * 40) as gsim:
        assert {n for n in vars(gsim) if not n.startswith("_")} == attributes
    activation = client.orders.activation("telegram", "russia")
    for name in (n for n in vars(activation) if not n.startswith("_")):
        assert isinstance(getattr(SyncActivation, name), property), name


def test_the_blocking_names_are_public() -> None:
    for cls in (SyncClient, SyncActivation, SyncActivations):
        assert cls.__name__ in gsim_async.__all__
        assert cls.__module__ == "gsim_async"
