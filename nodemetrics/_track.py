"""The context manager behind ``collector.track(node)``."""

from __future__ import annotations

from time import perf_counter_ns
from types import TracebackType
from typing import TYPE_CHECKING, final

from ._log import log_record_failed


if TYPE_CHECKING:
    from ._collector import NodeMetricsCollector


@final
class Tracker:
    """
    Times one execution of a node, as ``with`` or ``async with``.

    Made by :meth:`NodeMetricsCollector.track`, fresh for each use. The block
    is timed with :func:`time.perf_counter_ns`; on exit it records a success,
    a classified failure (for an :class:`Exception`) or a cancellation (for
    any other :class:`BaseException`). The exception itself always propagates
    unchanged: the tracker never suppresses, replaces or adds to it, and
    anything that goes wrong while recording is logged, not raised.
    """

    __slots__ = ("_collector", "_node", "_start")

    def __init__(self, collector: NodeMetricsCollector, node: str) -> None:
        self._collector = collector
        self._node = node
        self._start = 0

    def __repr__(self) -> str:
        return f"<Tracker(node={self._node!r})>"

    def __enter__(self) -> Tracker:
        self._start = perf_counter_ns()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed_ms = (perf_counter_ns() - self._start) / 1e6
        try:
            if exc is None:
                self._collector.record_success(self._node, elapsed_ms)
            elif isinstance(exc, Exception):
                self._collector.record_failure(self._node, elapsed_ms, exc)
            else:
                self._collector.record_cancellation(self._node)
        except Exception:  # noqa: BLE001 -- recording must never break the node
            log_record_failed(self._node)

    async def __aenter__(self) -> Tracker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
