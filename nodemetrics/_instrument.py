"""The ``@metered`` decorator."""

from __future__ import annotations

import functools
import inspect

from collections.abc import Awaitable, Callable
from time import perf_counter_ns
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._collector import NodeMetricsCollector, get_default_collector
from ._log import log_record_failed
from ._tracker import record_raised, record_timed
from ._validate import check_node


P = ParamSpec("P")
T = TypeVar("T")


def _record_failure(collector: NodeMetricsCollector, node: str, start: int, exc: Exception) -> None:
    # Also where LangGraph's control flow ends up: it is raised, but no failure.
    try:
        record_raised(collector, node, (perf_counter_ns() - start) / 1e6, exc)
    except Exception:  # noqa: BLE001 -- recording must never break the node
        log_record_failed(node)


def _record_cancellation(collector: NodeMetricsCollector, node: str) -> None:
    try:
        collector.record_cancellation(node)
    except Exception:  # noqa: BLE001 -- recording must never break the node
        log_record_failed(node)


def _wrap(func: Callable[P, T], node: str, collector: NodeMetricsCollector) -> Callable[P, T]:
    if inspect.iscoroutinefunction(func):
        afunc = cast("Callable[P, Awaitable[Any]]", func)

        @functools.wraps(func)
        async def metered_coroutine(*args: P.args, **kwargs: P.kwargs) -> Any:
            start = perf_counter_ns()
            try:
                result = await afunc(*args, **kwargs)
            except Exception as exc:
                _record_failure(collector, node, start, exc)
                raise
            except BaseException:
                _record_cancellation(collector, node)
                raise
            try:
                record_timed(collector, node, (perf_counter_ns() - start) / 1e6)
            except Exception:  # noqa: BLE001 -- recording must never break the node
                log_record_failed(node)
            return result

        return cast("Callable[P, T]", metered_coroutine)

    @functools.wraps(func)
    def metered_call(*args: P.args, **kwargs: P.kwargs) -> T:
        start = perf_counter_ns()
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            _record_failure(collector, node, start, exc)
            raise
        except BaseException:
            _record_cancellation(collector, node)
            raise
        try:
            record_timed(collector, node, (perf_counter_ns() - start) / 1e6)
        except Exception:  # noqa: BLE001 -- recording must never break the node
            log_record_failed(node)
        return result

    return metered_call


def _decorate(
    func: Callable[P, T], name: str | None, collector: NodeMetricsCollector | None
) -> Callable[P, T]:
    if not callable(func):
        msg = f"metered() decorates callables, got {type(func).__name__}"
        raise TypeError(msg)
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        # Calling a generator function only creates the generator; timing
        # that would record a success for work that has not run yet.
        msg = (
            f"metered() cannot time generator function {func.__qualname__}: wrap its "
            "body in `with collector.track(...)` instead"
        )
        raise TypeError(msg)
    if name is None:
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
        if not isinstance(name, str) or not name:
            msg = f"metered() needs a name for {func!r}, which has no __qualname__"
            raise TypeError(msg)
    return _wrap(func, name, collector or get_default_collector())


# Bare `@metered` on a function: the function arrives as the first argument.
@overload
def metered(name: Callable[P, T], /) -> Callable[P, T]: ...


# `@metered()`, `@metered("fetch")`, `@metered(collector=c)`: returns a decorator.
@overload
def metered(
    name: str | None = None, *, collector: NodeMetricsCollector | None = None
) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


def metered(
    name: str | Callable[P, T] | None = None, *, collector: NodeMetricsCollector | None = None
) -> Callable[P, T] | Callable[[Callable[P, T]], Callable[P, T]]:
    """
    Record every call of the decorated function as an execution of a node.

    Works on sync and ``async`` functions and methods, with the rules of
    :meth:`NodeMetricsCollector.track`: a return records a success, an
    :class:`Exception` a classified failure, any other
    :class:`BaseException` (such as :class:`asyncio.CancelledError`) a
    cancellation, LangGraph's ``GraphInterrupt`` an interruption and its
    other ``GraphBubbleUp`` exceptions a success; the result or exception
    passes through untouched. The
    wrapper keeps ``__name__``, ``__doc__``, ``__wrapped__``, the signature
    and :func:`inspect.iscoroutinefunction` of the function, so frameworks
    that inspect it (LangGraph) see the original.

    Usable bare (``@metered``) or called (``@metered("fetch",
    collector=c)``).

    Args:
        name: The node's name; the function's ``__qualname__`` when omitted.
        collector: Where to record; :func:`get_default_collector` when
            omitted (resolved once, when decorating).

    Raises:
        TypeError: *name* is not a str, *collector* not a
            :class:`NodeMetricsCollector`, or the decorated function is a
            generator function (time its body with ``track`` instead).
        ValueError: *name* is empty.
    """
    # type(), not isinstance(), which would ask a __class__ property.
    if collector is not None and not issubclass(type(collector), NodeMetricsCollector):
        msg = f"collector must be a NodeMetricsCollector or None, got {type(collector).__name__}"
        raise TypeError(msg)
    if callable(name):
        return _decorate(name, None, collector)
    node = None if name is None else check_node(name, "name")

    def decorator(func: Callable[P, T]) -> Callable[P, T]:
        return _decorate(func, node, collector)

    return decorator
