"""The ``@metered`` decorator."""

from __future__ import annotations

import functools
import inspect
import weakref

from collections.abc import Awaitable, Callable, Coroutine
from time import perf_counter_ns
from types import CoroutineType
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._collector import NodeMetricsCollector, get_default_collector
from ._log import log_record_failed
from ._tracker import record_raised, record_timed
from ._validate import check_node, type_name


P = ParamSpec("P")
T = TypeVar("T")


def _record_failure(collector: NodeMetricsCollector, node: str, start: int, exc: Exception) -> None:
    # Also where LangGraph's control flow ends up: it is raised, but no failure.
    #
    # Near the recursion limit a recording can fail for want of frames, and
    # so can the log call below, or the call into this function: the callers
    # make each inside a try that drops what it raises, so that the node's
    # own result or exception still goes through, and only its recording is
    # lost.
    try:
        record_raised(collector, node, (perf_counter_ns() - start) / 1e6, exc)
    except Exception:  # noqa: BLE001 -- recording must never break the node
        log_record_failed(node)


def _record_cancellation(collector: NodeMetricsCollector, node: str) -> None:
    try:
        collector.record_cancellation(node)
    except Exception:  # noqa: BLE001 -- recording must never break the node
        log_record_failed(node)


async def _metered_await(
    coro: Coroutine[Any, Any, Any], node: str, collector: NodeMetricsCollector
) -> Any:
    # What a sync wrapper returns for a coroutine that its function returned:
    # the node's work runs when that coroutine is awaited, so this times the
    # await and records its outcome, by the rules of the async wrapper.
    start = perf_counter_ns()
    try:
        result = await coro
    except Exception as exc:
        try:  # noqa: SIM105 -- suppress() needs a frame (see _record_failure)
            _record_failure(collector, node, start, exc)
        except Exception:  # noqa: BLE001, S110 -- the recursion limit
            pass
        raise
    except BaseException:
        try:  # noqa: SIM105 -- suppress() needs a frame (see _record_failure)
            _record_cancellation(collector, node)
        except Exception:  # noqa: BLE001, S110 -- the recursion limit
            pass
        raise
    try:
        record_timed(collector, node, (perf_counter_ns() - start) / 1e6)
    except Exception:  # noqa: BLE001 -- recording must never break the node
        try:  # noqa: SIM105 -- suppress() needs a frame (see _record_failure)
            log_record_failed(node)
        except Exception:  # noqa: BLE001, S110 -- the recursion limit
            pass
    return result


def _awaiting(
    coro: CoroutineType[Any, Any, Any], node: str, collector: NodeMetricsCollector
) -> CoroutineType[Any, Any, Any]:
    awaiting = cast("CoroutineType[Any, Any, Any]", _metered_await(coro, node, collector))
    # Named as the node's coroutine, so that "coroutine ... was never
    # awaited" names the function the user called, not this module's.
    awaiting.__name__ = coro.__name__
    awaiting.__qualname__ = coro.__qualname__
    # Closing the returned coroutine before it runs cannot run its code, so
    # close the node's too when it goes: else that one, never started, would
    # warn "was never awaited" after an explicit close(), or warn a second
    # time beside this one's warning when it is simply forgotten.
    weakref.finalize(awaiting, coro.close)
    return awaiting


def _is_async(func: Callable[..., Any]) -> bool:
    # An object whose __call__ is a coroutine function returns a coroutine
    # from every call, like an async def: it gets the async wrapper, so no
    # per-call check (frameworks such as LangGraph call it async too). Not
    # inspect.unwrap(): a function whose __wrapped__ is an async def may be a
    # sync one that runs it (asyncio.run, asgiref's async_to_sync), and the
    # sync wrapper handles a returned coroutine anyway.
    if inspect.iscoroutinefunction(func):
        return True
    try:
        return inspect.iscoroutinefunction(type(func).__call__)
    except Exception:  # noqa: BLE001 -- an odd __call__ is simply not async
        return False


def _wrap_async(func: Callable[P, T], node: str, collector: NodeMetricsCollector) -> Callable[P, T]:
    afunc = cast("Callable[P, Awaitable[Any]]", func)

    @functools.wraps(func)
    async def metered_coroutine(*args: P.args, **kwargs: P.kwargs) -> Any:
        start = perf_counter_ns()
        try:
            result = await afunc(*args, **kwargs)
        except Exception as exc:
            try:  # noqa: SIM105 -- suppress() needs a frame (see _record_failure)
                _record_failure(collector, node, start, exc)
            except Exception:  # noqa: BLE001, S110 -- the recursion limit
                pass
            raise
        except BaseException:
            try:  # noqa: SIM105 -- suppress() needs a frame (see _record_failure)
                _record_cancellation(collector, node)
            except Exception:  # noqa: BLE001, S110 -- the recursion limit
                pass
            raise
        try:
            record_timed(collector, node, (perf_counter_ns() - start) / 1e6)
        except Exception:  # noqa: BLE001 -- recording must never break the node
            try:  # noqa: SIM105 -- suppress() needs a frame (see _record_failure)
                log_record_failed(node)
            except Exception:  # noqa: BLE001, S110 -- the recursion limit
                pass
        return result

    return cast("Callable[P, T]", metered_coroutine)


def _wrap(func: Callable[P, T], node: str, collector: NodeMetricsCollector) -> Callable[P, T]:  # noqa: C901 -- every fallback in line (see _record_failure)
    if _is_async(func):
        return _wrap_async(func, node, collector)

    @functools.wraps(func)
    def metered_call(*args: P.args, **kwargs: P.kwargs) -> T:
        start = perf_counter_ns()
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            try:  # noqa: SIM105 -- suppress() needs a frame (see _record_failure)
                _record_failure(collector, node, start, exc)
            except Exception:  # noqa: BLE001, S110 -- the recursion limit
                pass
            raise
        except BaseException:
            try:  # noqa: SIM105 -- suppress() needs a frame (see _record_failure)
                _record_cancellation(collector, node)
            except Exception:  # noqa: BLE001, S110 -- the recursion limit
                pass
            raise
        # A sync function that returns a coroutine (an async def under a sync
        # pass-through decorator) has done none of its work yet: record
        # nothing now, and time the await instead. The exact type, as the
        # cheapest check on the hottest path.
        if type(result) is CoroutineType:
            coro = cast("CoroutineType[Any, Any, Any]", result)
            try:
                return cast("T", _awaiting(coro, node, collector))
            except Exception:  # noqa: BLE001 -- the recursion limit: the coroutine, untimed
                return result
        try:
            record_timed(collector, node, (perf_counter_ns() - start) / 1e6)
        except Exception:  # noqa: BLE001 -- recording must never break the node
            try:  # noqa: SIM105 -- suppress() needs a frame (see _record_failure)
                log_record_failed(node)
            except Exception:  # noqa: BLE001, S110 -- the recursion limit
                pass
        return result

    return metered_call


def _decorate(
    func: Callable[P, T], name: str | None, collector: NodeMetricsCollector | None, arg: str
) -> Callable[P, T]:
    # *arg* is the name of the argument that brought *func*: "name" for bare
    # `@metered`, "func" for the decorator that `metered(...)` returns.
    kind = type(func)
    if issubclass(kind, (staticmethod, classmethod)):
        # Wrapping the descriptor itself would give a plain function, which
        # binds the instance (a static method then gets one argument too
        # many); a classmethod is not even callable. Wrap the function, so
        # that the async and generator checks see it too, and rewrap it.
        inner = cast("Callable[P, T]", func.__func__)  # type: ignore[attr-defined]
        wrapped = _decorate(inner, name, collector, arg)
        if issubclass(kind, staticmethod):
            return cast("Callable[P, T]", staticmethod(wrapped))
        return cast("Callable[P, T]", classmethod(wrapped))
    if not callable(func):
        msg = f"{arg} must be callable (metered() decorates callables), got {type_name(func)}"
        raise TypeError(msg)
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        # Calling a generator function only creates the generator; timing
        # that would record a success for work that has not run yet.
        msg = (
            f"{arg} must not be a generator function: metered() cannot time "
            f"{func.__qualname__}; wrap its body in `with collector.track(...)` instead"
        )
        raise TypeError(msg)
    if name is None:
        name = _own_name(func)
        if name is None:
            msg = (
                f"name must be given for {func!r}, which has no __qualname__: "
                "metered() needs a name"
            )
            raise TypeError(msg)
    return _wrap(func, name, collector or get_default_collector())


def _own_name(func: object) -> str | None:
    """Return *func*'s ``__qualname__`` (else ``__name__``) as a plain ``str``, if non-empty."""
    for attribute in ("__qualname__", "__name__"):
        name = getattr(func, attribute, None)
        # By real type, and copied with the base type's own slots, as
        # check_node() copies a name: a str subclass set as a __qualname__
        # runs none of its code, nor an object whose __class__ lies.
        if issubclass(type(name), str) and str.__len__(cast("str", name)):
            return str.__str__(cast("str", name))
    return None


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

    A call that returns a coroutine has not done its work yet, so it records
    nothing: the await of that coroutine is what is timed and recorded, as
    for an ``async def``. This covers an ``async def`` under a sync
    pass-through decorator, any function that returns a coroutine, and an
    object with an ``async def __call__`` (whose wrapper is itself a
    coroutine function). A coroutine that is never awaited records nothing.
    Above ``@staticmethod`` or ``@classmethod``, it decorates the function
    inside and returns a static or class method again.

    Usable bare (``@metered``) or called (``@metered("fetch",
    collector=c)``).

    Args:
        name: The node's name; the function's ``__qualname__`` when omitted.
        collector: Where to record; :func:`get_default_collector` when
            omitted (resolved once, when decorating).

    Raises:
        TypeError: *name* is not a str, *collector* not a
            :class:`NodeMetricsCollector`, or the decorated object is not
            callable, is a generator function (time its body with ``track``
            instead) or has no ``__qualname__`` and no *name* was given.
        ValueError: *name* is empty.
    """
    # type(), not isinstance(), which would ask a __class__ property.
    if collector is not None and not issubclass(type(collector), NodeMetricsCollector):
        msg = f"collector must be a NodeMetricsCollector or None, got {type_name(collector)}"
        raise TypeError(msg)
    # A classmethod is not callable, but is decorated like a function.
    if callable(name) or issubclass(type(name), classmethod):
        return _decorate(cast("Callable[P, T]", name), None, collector, "name")
    node = None if name is None else check_node(name, "name")

    def decorator(func: Callable[P, T]) -> Callable[P, T]:
        return _decorate(func, node, collector, "func")

    return decorator
