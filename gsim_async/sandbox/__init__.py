"""An embedded gsim API server for tests, demos and benchmarks.

```python
async with Sandbox(seed=1, code_delay=(0.1, 0.5)) as sb:
    client = gsim_async.Client(sb.api_key, base_url=sb.base_url)
```

It implements every endpoint of the gsim REST API with real state (balances
in Decimal, stock, the order lifecycle with expiry and refunds, rentals with
messages and calls), switchable faults, request counters and a ledger.
``python -m gsim_async.sandbox --port 8080`` runs it standalone; the
``/_sandbox/`` control API drives it from another process.
"""

from __future__ import annotations

from ._clock import Clock
from ._errors import StateError
from ._faults import Faults
from ._records import Ledger, LedgerEntry, OrderRecord, RentalRecord, Stats
from ._sandbox import Sandbox

__all__ = [
    "Clock",
    "Faults",
    "Ledger",
    "LedgerEntry",
    "OrderRecord",
    "RentalRecord",
    "Sandbox",
    "StateError",
    "Stats",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
