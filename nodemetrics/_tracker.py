"""
The timed path: :class:`Tracker` (``collector.track()``) and the success path of ``@metered``.

Every instrumented call ends here, so it is written for speed: a timed
success is appended to its node's batch, which needs no lock, whenever the
node exists, no threshold is watched and the collector's guard does not ask
for the lock (``_sync`` says when it does).
"""

from __future__ import annotations

from time import perf_counter_ns
from types import TracebackType
from typing import TYPE_CHECKING, final

from ._control import INTERRUPTION, control_flow_kind
from ._log import log_record_failed
from ._sync import take, unheld


if TYPE_CHECKING:
    from ._collector import NodeMetricsCollector
    from ._node import _Node


# A batch is folded into its node once it holds this many successes (or
# sooner, when anything reads or records to the node another way). A fold
# costs about 1.6 µs before the first success it counts (the lock, the calls,
# the histogram's walk), so that 64 costs each timed success about 25 ns
# where 32 cost 50 (with track(): 0.43 of prometheus_client's with .time()
# against 0.45); a batch holds at most about 2 KB while it waits.
BATCH = 64


def fold_batch(collector: NodeMetricsCollector, state: _Node) -> None:
    """Fold *state*'s batch into it, under the lock (see ``_sync``)."""
    guard = collector._guard
    lock = guard.lock
    if guard.owned():
        # This thread is inside the collector already (a signal handler or
        # finalizer timed a block): the batch waits for the next fold.
        return
    try:
        if not lock.acquire(False):
            take(guard)
        events = collector._settle() if guard.current is not None or guard.pending else None
        guard.current = state
        state.fold()
        guard.current = None
    finally:
        try:
            lock.release()
        except RuntimeError as exc:
            if not unheld(exc):
                raise
    if events:
        collector._fire(events)


def record_timed(collector: NodeMetricsCollector, node: str, elapsed_ms: float) -> None:
    """
    Record a success timed by :func:`metered` (see :meth:`Tracker.__exit__`).

    *node* is already checked and *elapsed_ms* is a float >= 0.
    """
    state = collector._nodes.get(node)
    if state is None or collector._watching or collector._guard.hold:
        collector.record_success(node, elapsed_ms)
        return
    batch = state.batch
    batch.append(elapsed_ms)
    if len(batch) >= BATCH:
        fold_batch(collector, state)


def record_raised(
    collector: NodeMetricsCollector, node: str, elapsed_ms: float, exc: Exception
) -> None:
    """
    Record an execution of *node* left by *exc*.

    A failure, but for LangGraph's control flow (see ``_control``): its
    ``GraphInterrupt`` is an interruption, its other ``GraphBubbleUp`` a
    success.
    """
    kind = control_flow_kind(exc)
    if kind is None:
        collector.record_failure(node, elapsed_ms, exc)
    elif kind is INTERRUPTION:
        collector.record_interruption(node)
    else:
        collector.record_success(node, elapsed_ms)


#: How a tracker is made: ``NodeMetricsCollector.track()`` sets its
#: ``_collector`` and ``_node`` on a bare instance, without ``__init__``.
_new = object.__new__


@final
class Tracker:
    """
    Times one execution of a node, as ``with`` or ``async with``.

    Made only by :meth:`NodeMetricsCollector.track`, fresh for each use. The
    block is timed with :func:`time.perf_counter_ns`; on exit it records a
    success, a classified failure (for an :class:`Exception`) or a
    cancellation (for any other :class:`BaseException`), with LangGraph's
    control flow recognised as :meth:`NodeMetricsCollector.track` says. The
    exception itself
    always propagates unchanged: the tracker never suppresses, replaces or
    adds to it, and anything that goes wrong while recording is logged, not
    raised (but a ``KeyboardInterrupt`` or ``SystemExit`` raised by a
    classifier or threshold callback, which propagates once the execution is
    counted).
    """

    __slots__ = ("_collector", "_node", "_start")

    # Set by NodeMetricsCollector.track(), which skips __init__: calling it
    # costs a tenth of a tracked block.
    _collector: NodeMetricsCollector
    _node: str
    _start: int

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
        collector = self._collector
        node = self._node
        try:
            if exc is None:
                # record_timed(), written out: every tracked block pays this.
                state = collector._nodes.get(node)
                if state is None or collector._watching or collector._guard.hold:
                    collector.record_success(node, elapsed_ms)
                else:
                    batch = state.batch
                    batch.append(elapsed_ms)
                    if len(batch) >= BATCH:
                        fold_batch(collector, state)
            elif isinstance(exc, Exception):
                record_raised(collector, node, elapsed_ms, exc)
            else:
                collector.record_cancellation(node)
        except Exception:  # noqa: BLE001 -- recording must never break the node
            try:  # noqa: SIM105 -- suppress() needs a frame (see _instrument)
                log_record_failed(node)
            except Exception:  # noqa: BLE001, S110 -- the recursion limit
                pass

    async def __aenter__(self) -> Tracker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
