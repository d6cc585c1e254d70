from __future__ import annotations

import asyncio
import concurrent.futures
import socket

import pytest
import tenacity

from nodemetrics import ErrorCategory, classify_error


class ReadTimeout(Exception):
    """Named like httpx's timeout, without importing httpx."""


class ConnectTimeoutError(OSError):
    """A timeout that is also an OSError: timeout wins."""


class RemoteDisconnectedConnectionError(Exception):
    pass


class NetworkUnreachable(Exception):
    pass


class ValidationError(Exception):
    """Named like pydantic's; not a ValueError."""


class SchemaValidationFailure(RuntimeError):
    pass


class Base(Exception):
    pass


# Exceptions that match two categories at once, as real libraries raise them:
# the documented order (timeout, network, validation) decides.
class RequestException(OSError):
    """Shaped like requests' base exception."""


class RequestsConnectionError(RequestException):
    pass


RequestsConnectionError.__name__ = "ConnectionError"  # requests names it so


class RequestsTimeout(RequestException):
    pass


RequestsTimeout.__name__ = "Timeout"


class ConnectTimeout(RequestsConnectionError, RequestsTimeout):
    """Shaped like requests.exceptions.ConnectTimeout: a ConnectionError and a Timeout."""


class SocketConnectTimeout(ConnectionError, TimeoutError):
    """A builtin ConnectionError that is also a builtin TimeoutError."""


class TimeoutValidation(TimeoutError, ValueError):
    pass


class NetworkValueError(ConnectionError, ValueError):
    """A network error that is also a ValueError: network comes before validation."""


class ConnectionValidationError(Exception):
    """Named for network and validation at once; network comes first."""


class FetchTimeoutBase(Exception):
    pass


class Derived(FetchTimeoutBase):
    """Its own name says nothing, its base's does."""


class TestErrorCategory:
    def test_values(self):
        """The members are string-valued and compare equal to their strings."""
        assert ErrorCategory.TIMEOUT == "timeout"
        assert ["timeout", "validation", "network", "other"] == [c.value for c in ErrorCategory]
        assert "network" == str(ErrorCategory.NETWORK)
        assert ErrorCategory("validation") is ErrorCategory.VALIDATION


class TestClassifyError:
    @pytest.mark.parametrize(
        ("exc", "expected"),
        [
            (TimeoutError(), ErrorCategory.TIMEOUT),
            (asyncio.TimeoutError(), ErrorCategory.TIMEOUT),
            (socket.timeout(), ErrorCategory.TIMEOUT),  # noqa: UP041 -- the alias is the point
            (concurrent.futures.TimeoutError(), ErrorCategory.TIMEOUT),
            (ReadTimeout(), ErrorCategory.TIMEOUT),
            (ConnectTimeoutError(), ErrorCategory.TIMEOUT),
            (Derived(), ErrorCategory.TIMEOUT),
            (ConnectionError(), ErrorCategory.NETWORK),
            (ConnectionResetError(), ErrorCategory.NETWORK),
            (BrokenPipeError(), ErrorCategory.NETWORK),
            (socket.gaierror(), ErrorCategory.NETWORK),
            (socket.herror(), ErrorCategory.NETWORK),
            (RemoteDisconnectedConnectionError(), ErrorCategory.NETWORK),
            (NetworkUnreachable(), ErrorCategory.NETWORK),
            (ValueError(), ErrorCategory.VALIDATION),
            (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), ErrorCategory.VALIDATION),
            (ValidationError(), ErrorCategory.VALIDATION),
            (SchemaValidationFailure(), ErrorCategory.VALIDATION),
            (KeyError("k"), ErrorCategory.OTHER),
            (RuntimeError(), ErrorCategory.OTHER),
            (Base(), ErrorCategory.OTHER),
            (OSError(), ErrorCategory.OTHER),
            (asyncio.CancelledError(), ErrorCategory.OTHER),
        ],
    )
    def test_categories(self, exc, expected):
        """Each exception lands in the category the documented order gives."""
        assert expected is classify_error(exc)

    @pytest.mark.parametrize(
        ("exc", "expected"),
        [
            (ConnectTimeout(), ErrorCategory.TIMEOUT),
            (SocketConnectTimeout(), ErrorCategory.TIMEOUT),
            (TimeoutValidation(), ErrorCategory.TIMEOUT),
            (NetworkValueError(), ErrorCategory.NETWORK),
            (ConnectionValidationError(), ErrorCategory.NETWORK),
        ],
        ids=[
            "requests-connect-timeout",
            "connection-and-timeout-error",
            "timeout-and-value-error",
            "connection-and-value-error",
            "named-connection-and-validation",
        ],
    )
    def test_order_decides_between_two_categories(self, exc, expected):
        """An exception of two categories gets the first of: timeout, network, validation."""
        assert expected is classify_error(exc)

    def test_retry_error_uses_last_attempt(self):
        """A tenacity RetryError is classified by its last attempt's exception."""

        @tenacity.retry(stop=tenacity.stop_after_attempt(2), wait=tenacity.wait_none())
        def always_times_out():
            raise TimeoutError

        with pytest.raises(tenacity.RetryError) as info:
            always_times_out()
        assert ErrorCategory.TIMEOUT is classify_error(info.value)

    def test_retry_error_on_result(self):
        """A RetryError whose last attempt returned is 'other'."""

        @tenacity.retry(
            stop=tenacity.stop_after_attempt(2),
            wait=tenacity.wait_none(),
            retry=tenacity.retry_if_result(lambda r: r is None),
        )
        def returns_none():
            return None

        with pytest.raises(tenacity.RetryError) as info:
            returns_none()
        assert ErrorCategory.OTHER is classify_error(info.value)

    def test_cache_is_bounded(self, monkeypatch):
        """The per-class cache is cleared when full and still answers right."""
        from nodemetrics import _classify

        monkeypatch.setattr(_classify, "_BY_TYPE_MAX", 2)
        monkeypatch.setattr(_classify, "_BY_TYPE", {})
        for exc in [KeyError(), TimeoutError(), ValueError(), ConnectionError()]:
            classify_error(exc)
            assert len(_classify._BY_TYPE) <= 2  # never more, not even for a moment
        assert ErrorCategory.NETWORK is classify_error(ConnectionError())

    def test_not_an_exception(self):
        """Classifying something that is not an exception is a TypeError."""
        with pytest.raises(TypeError, match="^exc must be an exception, got str$"):
            classify_error("boom")  # type: ignore[arg-type]
