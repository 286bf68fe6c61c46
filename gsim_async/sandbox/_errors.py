"""The one exception the API handlers raise; the middleware turns it into the error body."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class ApiError(Exception):
    """An error answer of the gsim API: ``{"error": message, "code": code}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def validation(message: str) -> ApiError:
    """400 VALIDATION_ERROR; ``message`` names the bad field."""
    return ApiError(400, "VALIDATION_ERROR", message)


def not_found(message: str) -> ApiError:
    """404 NOT_FOUND."""
    return ApiError(404, "NOT_FOUND", message)


def conflict(message: str) -> ApiError:
    """409 CONFLICT."""
    return ApiError(409, "CONFLICT", message)


def insufficient_balance(needed: object, balance: object) -> ApiError:
    """402 INSUFFICIENT_BALANCE."""
    return ApiError(
        402, "INSUFFICIENT_BALANCE", f"insufficient balance: {balance} USD, {needed} USD needed"
    )


def provider_error(message: str = "upstream SMS provider temporarily unavailable") -> ApiError:
    """503 PROVIDER_ERROR."""
    return ApiError(503, "PROVIDER_ERROR", message)


class StateError(ValueError):
    """A control action the current state forbids (e.g. delivering a code to a CANCELLED order)."""


@contextlib.contextmanager
def python_errors() -> Iterator[None]:
    """API rules broken from the Python API: 400 raises ValueError, any other StateError."""
    try:
        yield
    except ApiError as exc:
        if exc.status == 400:
            raise ValueError(exc.message) from None
        raise StateError(f"{exc.message} ({exc.code})") from None
