"""Sorting exceptions into the categories nodemetrics counts."""

from __future__ import annotations

import concurrent.futures
import enum
import socket

import tenacity


class ErrorCategory(str, enum.Enum):
    """
    The category a failed execution is counted under.

    A string-valued enum: ``ErrorCategory.TIMEOUT == "timeout"`` holds, so the
    plain strings work wherever a category is accepted.
    """

    TIMEOUT = "timeout"
    VALIDATION = "validation"
    NETWORK = "network"
    OTHER = "other"

    def __str__(self) -> str:
        return self.value


_TIMEOUT_TYPES = (TimeoutError, concurrent.futures.TimeoutError)
_NETWORK_TYPES = (ConnectionError, socket.gaierror, socket.herror)


# Exception classes are few and long-lived; their category never changes.
_BY_TYPE: dict[type[BaseException], ErrorCategory] = {}
_BY_TYPE_MAX = 1024


def _classify_type(exc_type: type[BaseException]) -> ErrorCategory:
    category = _BY_TYPE.get(exc_type)
    if category is None:
        if len(_BY_TYPE) >= _BY_TYPE_MAX:
            _BY_TYPE.clear()
        category = _BY_TYPE[exc_type] = _category_of(exc_type)
    return category


def _category_of(exc_type: type[BaseException]) -> ErrorCategory:
    names = [cls.__name__ for cls in exc_type.__mro__]
    if issubclass(exc_type, _TIMEOUT_TYPES) or any("Timeout" in n for n in names):
        return ErrorCategory.TIMEOUT
    if issubclass(exc_type, _NETWORK_TYPES) or any(
        "Connection" in n or "Network" in n for n in names
    ):
        return ErrorCategory.NETWORK
    if issubclass(exc_type, ValueError) or any("Validation" in n for n in names):
        return ErrorCategory.VALIDATION
    return ErrorCategory.OTHER


def classify_error(exc: BaseException) -> ErrorCategory:
    """
    Sort an exception into an :class:`ErrorCategory`.

    Checked in this order, by the exception's class and its base classes:

    1. **timeout**: :class:`TimeoutError` (so :class:`asyncio.TimeoutError`
       and :class:`socket.timeout`), :class:`concurrent.futures.TimeoutError`,
       or a class name containing ``Timeout`` (httpx, requests and aiohttp
       timeouts, without importing them);
    2. **network**: :class:`ConnectionError`, :class:`socket.gaierror`,
       :class:`socket.herror`, or a class name containing ``Connection`` or
       ``Network``;
    3. **validation**: :class:`ValueError` (pydantic's ``ValidationError`` is
       one), or a class name containing ``Validation``;
    4. **other**: everything else, and any exception whose class cannot be
       looked at (a metaclass whose ``__mro__`` or ``__name__`` raises, a
       ``__class__`` property that raises).

    A :class:`tenacity.RetryError` is classified by the exception of its last
    attempt (``other`` if that attempt returned instead of raising).

    Args:
        exc: The exception to classify.

    Returns:
        Its category.

    Raises:
        TypeError: *exc* is not an exception.
    """
    if not isinstance(exc, BaseException):
        msg = f"exc must be an exception, got {type(exc).__name__}"
        raise TypeError(msg)
    try:
        # type(), not exc.__class__, which a property could make raise.
        exc_type = type(exc)
        if issubclass(exc_type, tenacity.RetryError):
            last = exc.last_attempt  # type: ignore[attr-defined]
            inner = last.exception() if last.failed else None
            return ErrorCategory.OTHER if inner is None else classify_error(inner)
        return _classify_type(exc_type)
    except Exception:  # noqa: BLE001 -- a hostile exception is still a failure to count
        return ErrorCategory.OTHER
