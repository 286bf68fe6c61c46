"""gsim-async: an asyncio-first SDK for the gsim API.

```python
async with gsim_async.Client() as gsim:
    order = await gsim.orders.create("telegram", "russia")
    code = await gsim_async.wait_for_code(order)
```
"""

from __future__ import annotations

from . import _logging
from ._attempts import (
    Activations,
    AttemptsExhaustedError,
    BudgetExceededError,
    NoNumberAvailableError,
    Skipped,
)
from ._client import Client
from ._codes import extract_code
from ._enums import Direction, NumberType, OrderStatus, RentalStatus
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    ClientClosedError,
    CodeTimeoutError,
    ConflictError,
    ForbiddenError,
    GsimError,
    InsufficientBalanceError,
    InvalidArgumentError,
    JournalError,
    JournalInUseError,
    MessageTimeoutError,
    NoCodeError,
    NotFoundError,
    OutcomeUnknownError,
    PriceTooHighError,
    ProviderError,
    RateLimitedError,
    UnauthorizedError,
    ValidationError,
)
from ._journal import Journal
from ._models import (
    AvailableNumber,
    Balance,
    Call,
    Capabilities,
    Country,
    Dispatched,
    Message,
    Operator,
    Order,
    OrderStats,
    Page,
    PlacedCall,
    Refund,
    Rental,
    RentalUpdate,
    SentMessage,
    Service,
    StatsProgress,
)
from ._resources._orders import wait_for_code
from ._retry import RetryEvent
from ._run import run
from ._sync import SyncActivation, SyncActivations, SyncClient
from ._types import NOT_GIVEN, NotGiven
from ._version import __version__
from ._waiting import Activation, WaitResult

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APITimeoutError",
    "Activation",
    "Activations",
    "AttemptsExhaustedError",
    "AvailableNumber",
    "Balance",
    "BudgetExceededError",
    "Call",
    "Capabilities",
    "Client",
    "ClientClosedError",
    "CodeTimeoutError",
    "ConflictError",
    "Country",
    "Direction",
    "Dispatched",
    "ForbiddenError",
    "GsimError",
    "InsufficientBalanceError",
    "InvalidArgumentError",
    "Journal",
    "JournalError",
    "JournalInUseError",
    "Message",
    "MessageTimeoutError",
    "NoCodeError",
    "NoNumberAvailableError",
    "NotFoundError",
    "NotGiven",
    "NumberType",
    "Operator",
    "Order",
    "OrderStats",
    "OrderStatus",
    "OutcomeUnknownError",
    "Page",
    "PlacedCall",
    "PriceTooHighError",
    "ProviderError",
    "RateLimitedError",
    "Refund",
    "Rental",
    "RentalStatus",
    "RentalUpdate",
    "RetryEvent",
    "SentMessage",
    "Service",
    "Skipped",
    "StatsProgress",
    "SyncActivation",
    "SyncActivations",
    "SyncClient",
    "UnauthorizedError",
    "ValidationError",
    "WaitResult",
    "__version__",
    "extract_code",
    "run",
    "wait_for_code",
]

# A library stays silent unless the application configures logging (or GSIM_LOG is set).
_logging.setup()

# Public names report the package as their home (gsim_async.Client, not _client.Client).
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("gsim_async._"):
        _obj.__module__ = __name__
del _name, _obj
