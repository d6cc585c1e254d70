"""The collector: where every node's numbers are recorded and read."""

from __future__ import annotations

import functools
import itertools
import json

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs

from . import _sync
from ._classify import ErrorCategory, classify_error
from ._histogram import DEFAULT_BUCKETS_MS, NodeHistogram, _trusted, check_buckets
from ._log import log, log_record_failed
from ._metrics import EMPTY, NodeMetrics
from ._node import CANCEL, INTERRUPT, RESET, RETRY, SUCCESS, _Node
from ._sync import BUSY, Events, Guard, fire, make_way, take, unheld, wait_for
from ._tracker import Tracker, _new
from ._validate import (
    CATEGORY_INDEX,
    MAX_DURATION_MS,
    OTHER,
    category_index,
    check_int,
    check_node,
    optional_callable,
    optional_real,
    to_duration,
    type_name,
)
from ._window import STRETCH


if TYPE_CHECKING:
    import tenacity

#: The node that recordings for new names are folded into past ``max_nodes``.
OVERFLOW_NODE = "__overflow__"

Classifier = Callable[[BaseException], "ErrorCategory | str | None"]
ThresholdCallback = Callable[[str, float], object]
# Called as (node, duration_ms) after each execution is applied; see _add_listener.
Listener = Callable[[str, float], object]

# A recording that takes the lock applies at most this many queued
# recordings, then leaves the rest to the next call. Without a bound, code
# that records whenever a recording runs (a GC callback, with the GC
# collecting on every allocation) would keep one thread applying forever. A
# read applies everything queued when it settles, and only that (see _settle).
_DRAIN_MAX = 512

_frozen = attrs.setters.frozen


# Options are converted to exact ints and floats (see _validate).
def _window_size(value: object) -> int:
    return check_int("window_size", value, 1)


def _min_samples(value: object) -> int:
    return check_int("min_samples", value, 1)


def _max_nodes(value: object) -> int | None:
    return None if value is None else check_int("max_nodes", value, 1)


def _failure_rate_threshold(value: object) -> float | None:
    return optional_real("failure_rate_threshold", value, 1.0)


def _latency_threshold_ms(value: object) -> float | None:
    return optional_real("latency_threshold_ms", value, MAX_DURATION_MS)


_T = TypeVar("_T")


#: Numbers the collectors, for the serials of their nodes (_read_incarnations).
_COLLECTORS = itertools.count()


def _snapshot_and_histogram(state: _Node) -> tuple[NodeMetrics, NodeHistogram]:
    snapshot = state.snapshot()
    return snapshot, state.histogram(snapshot)


def _read_aside(guard: Guard, state: _Node, read: Callable[[_Node], _T]) -> _T:
    """
    Read *state* from inside a call of this thread (a signal handler's read).

    The node is in ``guard.reading`` meanwhile, so that a read nested in this
    one leaves it alone. Between changes (``guard.current`` None), it is
    also marked as the node being changed, as a read of the lock's holder
    marks it: a recording nested in this read (a second handler's) then
    waits in the queue, where it would otherwise go ahead and change the
    window this read is catching up. Cut short, the read may leave the node
    half caught up, with nothing to mark it for repair: it is repaired here
    and then.
    """
    reading = guard.reading
    mark = guard.current is None
    try:
        reading.append(state)
        if mark:
            guard.current = state
        return read(state)
    except BaseException:
        state.repair()
        raise
    finally:
        if mark and guard.current is state:
            guard.current = None
        if reading and reading[-1] is state:
            reading.pop()


@attrs.define(kw_only=True, repr=False, eq=False)
class NodeMetricsCollector:
    """
    Records per-node executions, failures, retries and durations.

    Recording is thread-safe and task-safe: many threads and asyncio tasks may
    record into one collector at once and no count is lost. Reads return
    immutable :class:`NodeMetrics` snapshots that are consistent (never torn
    by a concurrent recording). Any call may be made from a signal handler,
    a finalizer or a GC callback, and never waits for itself; the module
    ``nodemetrics._sync`` states the protocol.

    Args:
        window_size: How many of a node's most recent executions the rolling
            window holds; percentiles and thresholds are computed over it.
        classifier: Sorts a failure's exception into an
            :class:`ErrorCategory` (or its string). Returning ``None`` falls
            back to :func:`classify_error`, as does a classifier that raises
            or returns something else (logged).
        failure_rate_threshold: A failure rate in [0, 1) over the window.
        latency_threshold_ms: A p99 over the window, in milliseconds, below
            ``1e15`` (the longest duration recorded).
        on_failure_rate_threshold: Called as ``(node, rate)`` when a node's
            failure rate goes from at most *failure_rate_threshold* to above
            it; once per crossing.
        on_latency_threshold: Called as ``(node, p99)`` when a node's p99 goes
            from at most *latency_threshold_ms* to above it; once per
            crossing.
        min_samples: Thresholds are evaluated once the window holds at least
            this many executions; at most *window_size* when a threshold is
            set (with its callback).
        max_nodes: The most distinct node names kept; recordings for further
            names are folded into the node ``"__overflow__"`` (a warning is
            logged once). ``None`` keeps every name.
        buckets: The upper bounds of every node's duration histogram, in
            milliseconds (see :meth:`get_node_histogram`): a non-empty
            sequence of finite reals > 0, strictly increasing, at most
            1,000. The default is a 1-2.5-5 series from 0.1 ms to 100 s (19
            bounds).

    Integer options are stored as exact ints and thresholds as floats,
    whatever numeric type was passed.

    Raises:
        TypeError: An option has the wrong type; the message names it.
        ValueError: An option is out of range; the message names it.
    """

    window_size: int = attrs.field(default=100, converter=_window_size, on_setattr=_frozen)
    classifier: Classifier | None = attrs.field(
        default=None, validator=optional_callable, on_setattr=_frozen
    )
    failure_rate_threshold: float | None = attrs.field(
        default=None, converter=_failure_rate_threshold, on_setattr=_frozen
    )
    latency_threshold_ms: float | None = attrs.field(
        default=None, converter=_latency_threshold_ms, on_setattr=_frozen
    )
    on_failure_rate_threshold: ThresholdCallback | None = attrs.field(
        default=None, validator=optional_callable, on_setattr=_frozen
    )
    on_latency_threshold: ThresholdCallback | None = attrs.field(
        default=None, validator=optional_callable, on_setattr=_frozen
    )
    min_samples: int = attrs.field(default=10, converter=_min_samples, on_setattr=_frozen)
    max_nodes: int | None = attrs.field(default=10_000, converter=_max_nodes, on_setattr=_frozen)
    buckets: tuple[float, ...] = attrs.field(
        default=DEFAULT_BUCKETS_MS, converter=check_buckets, on_setattr=_frozen
    )

    _guard: Guard = attrs.field(init=False, factory=Guard)
    _nodes: dict[str, _Node] = attrs.field(init=False, factory=dict)
    _watch_rate: bool = attrs.field(init=False, default=False)
    _watch_latency: bool = attrs.field(init=False, default=False)
    # Something must see each execution as it is applied (a threshold with
    # its callback, or a listener): then nothing is batched.
    _watching: bool = attrs.field(init=False, default=False)
    _listeners: tuple[Listener, ...] = attrs.field(init=False, default=())
    _overflow_warned: bool = attrs.field(init=False, default=False)
    # Resets made so far: a node made after one is a new incarnation (_Node.serial).
    _resets: int = attrs.field(init=False, default=0)
    # Added to a node's serial to make it unique across collectors.
    _serials: int = attrs.field(init=False, factory=lambda: next(_COLLECTORS) << 32)

    def __attrs_post_init__(self) -> None:
        # A threshold without its callback would be work with no result.
        self._watch_rate = (
            self.failure_rate_threshold is not None and self.on_failure_rate_threshold is not None
        )
        self._watch_latency = (
            self.latency_threshold_ms is not None and self.on_latency_threshold is not None
        )
        self._watching = self._watch_rate or self._watch_latency
        if self._watching and self.min_samples > self.window_size:
            # The window could never hold enough executions: the thresholds
            # would never be evaluated, and nothing would say so.
            msg = (
                f"min_samples must be at most window_size when a threshold is set, got "
                f"min_samples={self.min_samples} and window_size={self.window_size}"
            )
            raise ValueError(msg)

    def __repr__(self) -> str:
        return f"<NodeMetricsCollector(nodes={len(self._nodes)}, window_size={self.window_size})>"

    # -- recording -----------------------------------------------------------

    def record_success(self, node: str, duration_ms: float) -> None:  # noqa: C901, PLR0912, PLR0915 -- the hot path, in line
        """
        Record a successful execution of *node* that took *duration_ms*.

        A negative duration is recorded as 0.0 and logged as a warning.

        Raises:
            TypeError: *node* is not a str or *duration_ms* not a real number.
            ValueError: *node* is empty or *duration_ms* is NaN, infinite or
                above ``1e15`` (about 31,700 years).
        """
        if type(node) is not str or not node:
            node = check_node(node)
        if (
            type(duration_ms) is not float
            or not duration_ms > 0.0
            or not duration_ms <= MAX_DURATION_MS
        ):
            duration_ms, notes = to_duration(node, duration_ms)
            if notes:
                self._submit(node, duration_ms, SUCCESS, notes)
                return
        # Every instrumented call ends here, so the common case (the node
        # known, nothing to settle) is _submit and _apply written out in line.
        guard = self._guard
        if guard.current is not None or guard.pending:
            # Something to settle first, or this thread is inside the
            # collector already, changing a node (see _sync).
            self._submit(node, duration_ms, SUCCESS)
            return
        lock = guard.lock
        # Not `with lock:`: the same guarantee for half the cost (see _sync).
        try:
            if not lock.acquire(False):
                take(guard)
            if guard.current is not None:
                # Another thread's call was cut short while we waited.
                events = self._settle()
                if guard.pending:
                    # More were queued than one call applies: after them.
                    guard.defer((node, duration_ms, SUCCESS))
                else:
                    more = self._apply(node, duration_ms, SUCCESS)
                    if more:
                        events = more if events is None else events + more
            else:
                state = self._nodes.get(node)
                if state is None:
                    events = self._apply(node, duration_ms, SUCCESS)
                else:
                    guard.current = state
                    if state.batch:
                        state.fold()
                    # _Node.add(), written out, and RollingWindow.add() too
                    # for a full ring that keeps no failure flags (notes or
                    # not): the window's _full is that ring, else None.
                    window = state.window
                    ring = window._full  # noqa: SLF001
                    if ring is not None:
                        head = window._head  # noqa: SLF001
                        if window._notes:  # noqa: SLF001
                            window._gone.append(ring[head])  # noqa: SLF001
                            ring[head] = duration_ms
                            new = window._new  # noqa: SLF001
                            new.append(duration_ms)
                            if len(new) > window._cap:  # noqa: SLF001
                                window._go_stale()  # noqa: SLF001
                        else:
                            # Stale, or a large window that saves its
                            # leavers a stretch at a time (see below).
                            ring[head] = duration_ms
                        head += 1
                        # Comparisons written where a jump follows them, which
                        # the interpreter specializes (3.11+); `%` it does not.
                        if head < window._size:  # noqa: SLF001
                            window._head = head  # noqa: SLF001
                            ended = False if head < STRETCH else not head % STRETCH
                        else:
                            window._head = 0  # noqa: SLF001
                            ended = True
                        if ended and window._saving:  # noqa: SLF001
                            window._turn()  # noqa: SLF001
                    else:
                        ended = window.add(duration_ms, False)
                    state.snapshot_cache = None
                    state.success += 1
                    state.last = duration_ms
                    state.total_ms += duration_ms
                    if ended:
                        state.bucket()
                    guard.current = None
                    events = self._observe(node, state, duration_ms) if self._watching else None
        finally:
            try:
                lock.release()
            except RuntimeError as exc:
                if not unheld(exc):
                    raise
        if events:
            fire(events)

    def record_failure(
        self,
        node: str,
        duration_ms: float,
        error: BaseException | None = None,
        category: ErrorCategory | str | None = None,
    ) -> None:
        """
        Record a failed execution of *node* that took *duration_ms*.

        The failure is counted under *category* when given, else under what
        the collector's classifier (or :func:`classify_error`) makes of
        *error*, else under ``other``. A ``KeyboardInterrupt`` or
        ``SystemExit`` raised by the classifier is re-raised once the failure
        is counted (as :func:`classify_error` sorts it).

        Raises:
            TypeError: *node* is not a str, *duration_ms* not a real number,
                or *error* not an exception.
            ValueError: *node* is empty, *duration_ms* NaN, infinite or above
                ``1e15``, or *category* not a category.
        """
        if type(node) is not str or not node:
            node = check_node(node)
        notes = None
        if type(duration_ms) is not float or not 0.0 < duration_ms <= MAX_DURATION_MS:
            duration_ms, notes = to_duration(node, duration_ms)
        # type(), not isinstance(), which would ask a __class__ property.
        if error is not None and not issubclass(type(error), BaseException):
            msg = f"error must be an exception or None, got {type_name(error)}"
            raise TypeError(msg)
        stop = None
        if category is not None:
            kind = category_index(category)
        elif error is not None:
            kind, stop, more = self._classify(node, error)
            if more:
                notes = more if notes is None else notes + more
        else:
            kind = OTHER
        try:
            self._submit(node, duration_ms, kind, notes)
        finally:
            # Counted: now the classifier's KeyboardInterrupt, first of all.
            if stop is not None:
                raise stop

    def record_retry(self, node: str, attempt_number: int | None = None) -> None:
        """
        Record that *node* is being retried; a retry is not an execution.

        Args:
            node: The node's name.
            attempt_number: The attempt that failed (1 for the first), as
                tenacity numbers them; checked, not stored.

        Raises:
            TypeError: *node* is not a str or *attempt_number* not an int.
            ValueError: *node* is empty or *attempt_number* < 1.
        """
        node = check_node(node)
        if attempt_number is not None:
            check_int("attempt_number", attempt_number, 1)
        self._submit(node, 0.0, RETRY)

    def record_cancellation(self, node: str) -> None:
        """
        Record that an execution of *node* was cancelled.

        :meth:`track` and :func:`metered` call this when the node is left by a
        :class:`BaseException` that is not an :class:`Exception`
        (:class:`asyncio.CancelledError`, :class:`KeyboardInterrupt`, ...). It
        is not an execution.

        Raises:
            TypeError: *node* is not a str.
            ValueError: *node* is empty.
        """
        node = check_node(node)
        self._submit(node, 0.0, CANCEL)

    def record_interruption(self, node: str) -> None:
        """
        Record that an execution of *node* paused, neither succeeding nor failing.

        :meth:`track`, :func:`metered` and the LangGraph integration call this
        when a node is left by LangGraph's ``GraphInterrupt`` (the node called
        ``interrupt()``). It is not an execution: the run that resumes the node
        is one.

        Raises:
            TypeError: *node* is not a str.
            ValueError: *node* is empty.
        """
        node = check_node(node)
        self._submit(node, 0.0, INTERRUPT)

    def _classify(
        self, node: str, error: BaseException
    ) -> tuple[int, BaseException | None, Events | None]:
        # Returns the category's index, a KeyboardInterrupt or other
        # BaseException the classifier raised, to re-raise once counted, and
        # what to log once counted.
        stop = None
        notes: Events | None = None
        if self.classifier is not None:
            try:
                result = self.classifier(error)
            except Exception as exc:  # noqa: BLE001 -- user code must not break a node
                failed = functools.partial(
                    log,
                    "ERROR",
                    "nodemetrics.classifier_failed: the classifier raised on {error!r}",
                    node=node,
                    exception=exc,
                    error=error,
                )
                notes = [(failed, ())]
                result = None
            except BaseException as exc:  # noqa: BLE001 -- re-raised once counted
                stop = exc
                result = None
            if result is not None:
                try:
                    return category_index(result), stop, notes
                except ValueError:
                    wrong = functools.partial(
                        log,
                        "WARNING",
                        "nodemetrics.classifier_result: the classifier returned {result!r}, "
                        "not a category; using classify_error()",
                        node=node,
                        result=result,
                    )
                    notes = [(wrong, ())]
        return CATEGORY_INDEX[classify_error(error).value], stop, notes

    # -- applying, under the lock (the protocol is in _sync's docstring) ------

    def _submit(
        self, node: str | None, value: float, kind: int, notes: Events | None = None
    ) -> None:
        # *notes*: what to log once the recording is counted (or queued).
        guard = self._guard
        lock = guard.lock
        if guard.owned():
            guard.defer((node, value, kind))
            if notes:
                fire(notes)
            return
        try:
            if not lock.acquire(False):
                take(guard)
            events = self._settle() if guard.current is not None or guard.pending else None
            if guard.pending:
                # More were queued than one call applies (_DRAIN_MAX): this
                # one goes after them, never ahead.
                guard.defer((node, value, kind))
                more = None
            else:
                more = self._apply(node, value, kind)
        finally:
            try:
                lock.release()
            except RuntimeError as exc:
                if not unheld(exc):
                    raise
        if more:
            events = more if events is None else events + more
        if notes:
            events = notes if events is None else events + notes
        if events:
            fire(events)

    def _settle(self, *, reading: bool = False) -> Events | None:
        """
        Repair a node a call left half-changed, then apply the queue (under the lock).

        A recording applies at most :data:`_DRAIN_MAX` queued recordings; a
        read (*reading*) applies every one queued when it began, so that it
        includes every recording that returned before it, however many.
        """
        guard = self._guard
        state = guard.current
        if state is not None:
            state.repair()
            guard.current = None
        pending = guard.pending
        events: Events | None = None
        # Busy throughout, so that a call from this thread (a finalizer's)
        # queues behind what is queued instead of going ahead of it.
        guard.current = BUSY
        # Only so many: recorders in this thread (finalizers, GC callbacks)
        # may go on queueing meanwhile, and chasing them might never end.
        for _ in range(len(pending) if reading else min(len(pending), _DRAIN_MAX)):
            more = self._apply(*pending.popleft())
            if more:
                events = more if events is None else events + more
        guard.current = None
        if not pending:
            guard.hold = False
        return events

    def _apply(self, node: str | None, value: float, kind: int) -> Events | None:
        nodes = self._nodes
        if kind == RESET:
            # Counted first: cut short after it, a reset removes nothing and
            # a later node only gets a higher serial than it needed.
            self._resets += 1
            if node is None:
                nodes.clear()
            else:
                nodes.pop(node, None)
            return None
        state = nodes.get(node)  # type: ignore[arg-type]
        events = None
        guard = self._guard
        previous = guard.current
        if state is None:
            # Busy while the node is built, which allocates: a call of this
            # thread that interrupts it (a gc callback, a finalizer, a signal
            # handler) is queued, instead of adding the same node, which this
            # one would replace, or another past max_nodes.
            guard.current = BUSY
            node, state, events = self._add_node(node)  # type: ignore[arg-type]
        guard.current = state
        if state.batch:
            state.fold()
        if kind < RETRY:
            state.add(value, kind)
            guard.current = previous
            if self._watching:
                crossed = self._observe(node, state, value)  # type: ignore[arg-type]
                if crossed:
                    events = crossed if events is None else events + crossed
            return events
        state.snapshot_cache = None
        if kind == RETRY:
            state.retries += 1
        elif kind == CANCEL:
            state.cancelled += 1
        else:
            state.interrupted += 1
        guard.current = previous
        return events

    def _add_node(self, node: str) -> tuple[str, _Node, Events | None]:
        nodes = self._nodes
        limit = self.max_nodes
        if limit is None or len(nodes) < limit + (OVERFLOW_NODE in nodes):
            state = nodes[node] = _Node(
                self.window_size, self._watch_rate, self.buckets, self._resets
            )
            return node, state, None
        overflow = nodes.get(OVERFLOW_NODE)
        if overflow is None:
            overflow = nodes[OVERFLOW_NODE] = _Node(
                self.window_size, self._watch_rate, self.buckets, self._resets
            )
        if self._overflow_warned:
            return OVERFLOW_NODE, overflow, None
        self._overflow_warned = True
        # Logged through fire(), after the lock is released, so that a slow
        # or re-entrant log sink never runs under it.
        warning = functools.partial(
            log,
            "WARNING",
            "nodemetrics.max_nodes: more than {limit} distinct node names; recordings "
            "for new names (first: {first!r}) go to {overflow!r}",
            node=node,
            limit=limit,
            first=node,
            overflow=OVERFLOW_NODE,
        )
        return OVERFLOW_NODE, overflow, [(warning, ())]

    def _observe(self, node: str, state: _Node, value: float) -> Events | None:
        # What runs once the lock is released, after an execution of *node*
        # that took *value* ms was applied: crossed thresholds, then listeners.
        events = self._check(node, state) if self._watch_rate or self._watch_latency else None
        # A loop, not a comprehension: it is paid by every execution of an
        # exported collector, and on 3.11 a comprehension is a function call.
        for listener in self._listeners:
            notice = (listener, (node, value))
            events = [notice] if events is None else [*events, notice]
        return events

    def _add_listener(self, listener: Listener) -> None:
        """
        Call *listener* as ``(node, duration_ms)`` after every execution.

        For exporters that must see each execution (the OpenTelemetry
        histogram). Every success and failure applied from now on is passed
        on once, with the node it was recorded under (``"__overflow__"`` past
        ``max_nodes``), on the thread that applied it and after the lock is
        released, like a threshold callback; an exception is logged. A
        collector with a listener does not batch timed successes.
        """
        lock = self._guard.lock
        try:
            if not lock.acquire(False):
                wait_for(lock)
            self._listeners = (*self._listeners, listener)
            self._watching = True
        finally:
            try:
                lock.release()
            except RuntimeError as exc:
                if not unheld(exc):
                    raise

    def _remove_listener(self, listener: Listener) -> None:
        """Stop calling *listener*; one that was never added is no error."""
        lock = self._guard.lock
        try:
            if not lock.acquire(False):
                wait_for(lock)
            self._listeners = tuple(x for x in self._listeners if x is not listener)
            self._watching = self._watch_rate or self._watch_latency or bool(self._listeners)
        finally:
            try:
                lock.release()
            except RuntimeError as exc:
                if not unheld(exc):
                    raise

    def _check(self, node: str, state: _Node) -> Events | None:
        window = state.window
        n = len(window)
        if n < self.min_samples:
            return None
        events: Events | None = None
        if self._watch_rate:
            rate = window.failures / n
            if rate > self.failure_rate_threshold:  # type: ignore[operator]
                if state.rate_armed:
                    state.rate_armed = False
                    events = [(self.on_failure_rate_threshold, (node, rate))]  # type: ignore[list-item]
            else:
                state.rate_armed = True
        if self._watch_latency:
            guard = self._guard
            previous = guard.current
            guard.current = state
            p99 = window.p50_p90_p99()[2]
            guard.current = previous
            if p99 > self.latency_threshold_ms:  # type: ignore[operator]
                if state.latency_armed:
                    state.latency_armed = False
                    event = (self.on_latency_threshold, (node, p99))
                    events = [event] if events is None else [*events, event]  # type: ignore[list-item]
            else:
                state.latency_armed = True
        return events

    def _fire(self, events: Events) -> None:
        fire(events)

    # -- reading -------------------------------------------------------------

    def get_node_metrics(self, node: str) -> NodeMetrics:
        """
        Return a snapshot of *node*'s metrics.

        An unknown node gives the empty snapshot: zero counts, ``None``
        percentiles and last duration, ``avg_execution_ms`` 0.0. Called from
        a signal handler or finalizer that interrupted this collector in the
        same thread, it returns at once; the node that the interrupted call
        was changing then reads as it was last read.

        Raises:
            TypeError: *node* is not a str.
            ValueError: *node* is empty.
        """
        if type(node) is not str or not node:
            node = check_node(node)
        guard = self._guard
        lock = guard.lock
        if guard.owned():
            state = self._nodes.get(node)
            return EMPTY if state is None else self._read_interrupted(state)
        if guard.waiting:
            make_way()
        try:
            if not lock.acquire(False):
                wait_for(lock)
            events = (
                self._settle(reading=True) if guard.current is not None or guard.pending else None
            )
            state = self._nodes.get(node)
            if state is None:
                snapshot = EMPTY
            else:
                guard.current = state
                snapshot = state.snapshot()
                guard.current = None
        finally:
            try:
                lock.release()
            except RuntimeError as exc:
                if not unheld(exc):
                    raise
        if events:
            fire(events)
        return snapshot

    def get_all_node_metrics(self) -> dict[str, NodeMetrics]:
        """
        Return a fresh dict of every recorded node's snapshot, by name.

        All snapshots are taken at one instant, under one lock: no recording
        of a thread is in them while an earlier one of the same thread is not.
        From a signal handler or finalizer, as for :meth:`get_node_metrics`.
        """
        return self._read_each(_Node.snapshot, self._read_interrupted)

    def _read_incarnations(
        self, deferred: Events | None = None
    ) -> dict[str, tuple[int, NodeMetrics]]:
        """
        Return every node's serial and snapshot, by name, all taken at one instant.

        For the OpenTelemetry exporter: a node whose serial changed between
        two reads was reset in between (a reset drops the node, and a later
        recording makes a new one), whatever its counts say. Serials are
        unique in the process, across collectors (an exporter may report
        another collector after its predecessor closed), for a collector's
        first 2**32 resets. Read as
        :meth:`get_all_node_metrics` reads, from a signal handler too, but
        the threshold callbacks and listeners of the queued recordings that
        the read applies are added to *deferred*, if given, for the caller to
        :func:`~nodemetrics._sync.fire` once it released its own lock.
        """
        base = self._serials
        read = self._read_interrupted
        return self._read_each(
            lambda state: (base + state.serial, state.snapshot()),
            lambda state: (base + state.serial, read(state)),
            deferred,
        )

    def _read_each(
        self,
        read: Callable[[_Node], _T],
        interrupted: Callable[[_Node], _T],
        deferred: Events | None = None,
    ) -> dict[str, _T]:
        """
        Return *read* of every node, by name, all at one instant, under one lock.

        *interrupted* instead, from a signal handler or finalizer that
        interrupted this collector in its own thread (see ``_sync``). The
        callbacks of the queued recordings the read applies run once the
        lock is released, or are added to *deferred*, for a caller (an
        exporter) that holds a lock of its own.
        """
        guard = self._guard
        if guard.owned():
            # From inside a call of this thread (a signal handler's, a
            # finalizer's): one instant too, as far as other threads go, whose
            # timed successes take the lock meanwhile (and so wait for that call).
            held = guard.hold
            guard.hold = True
            try:
                return {node: interrupted(state) for node, state in list(self._nodes.items())}
            finally:
                guard.hold = held or bool(guard.pending)
        lock = guard.lock
        if guard.waiting:
            make_way()
        try:
            if not lock.acquire(False):
                wait_for(lock)
            events = (
                self._settle(reading=True) if guard.current is not None or guard.pending else None
            )
            # Timed successes take the lock while we read (see _sync).
            guard.hold = True
            readings = {}
            # A copy: a call from this thread (a finalizer's) may add a node.
            for node, state in list(self._nodes.items()):
                guard.current = state
                readings[node] = read(state)
            guard.current = None
            guard.hold = bool(guard.pending)
        finally:
            try:
                lock.release()
            except RuntimeError as exc:
                if not unheld(exc):
                    raise
        if events:
            if deferred is None:
                fire(events)
            else:
                deferred += events
        return readings

    def get_node_histogram(self, node: str) -> NodeHistogram:
        """
        Return *node*'s cumulative duration histogram.

        It counts every execution (success or failure) since the node's last
        reset, exactly, in the collector's :attr:`buckets`; an unknown node
        gives the empty histogram. Its ``count`` and ``sum_ms`` agree with
        the node's :meth:`get_node_metrics` read at the same instant. From a
        signal handler or finalizer, as for :meth:`get_node_metrics`.

        Raises:
            TypeError: *node* is not a str.
            ValueError: *node* is empty.
        """
        node = check_node(node)
        state = None
        guard = self._guard
        if guard.owned():
            state = self._nodes.get(node)
            read = None if state is None else self._read_both_interrupted(state)
        else:
            lock = guard.lock
            if guard.waiting:
                make_way()
            try:
                if not lock.acquire(False):
                    wait_for(lock)
                events = (
                    self._settle(reading=True)
                    if guard.current is not None or guard.pending
                    else None
                )
                state = self._nodes.get(node)
                if state is None:
                    read = None
                else:
                    guard.current = state
                    read = (snapshot := state.snapshot()), state.histogram(snapshot)
                    guard.current = None
            finally:
                try:
                    lock.release()
                except RuntimeError as exc:
                    if not unheld(exc):
                        raise
            if events:
                fire(events)
        if read is None:
            bounds = self.buckets
            return _trusted(bounds, (0,) * (len(bounds) + 1), 0, 0.0)
        return read[1]

    def get_all_node_histograms(self) -> dict[str, NodeHistogram]:
        """
        Return a fresh dict of every recorded node's histogram, by name.

        All histograms are taken at one instant, as by :meth:`get_all_node_metrics`.
        """
        return {node: histogram for node, (_, histogram) in self._read_all().items()}

    def _read_all(self) -> dict[str, tuple[NodeMetrics, NodeHistogram]]:
        """
        Return every node's snapshot and histogram, all taken at one instant.

        For exporters: one call per scrape, so that a node's counters and its
        histogram agree.
        """
        return self._read_each(_snapshot_and_histogram, self._read_both_interrupted)

    def _read_all_incarnations(
        self, deferred: Events | None = None
    ) -> dict[str, tuple[NodeMetrics, NodeHistogram, int]]:
        """
        Return every node's snapshot, histogram and serial, all taken at one instant.

        :meth:`_read_all` with each node's serial, as :meth:`_read_incarnations`
        reads it (unique in the process): for the Prometheus exporters, which
        tell a reset node from its counts going on by it. The callbacks of
        the queued recordings it applies are added to *deferred*, if given,
        as :meth:`_read_incarnations` adds them.
        """
        base = self._serials
        both = self._read_both_interrupted

        def read(state: _Node) -> tuple[NodeMetrics, NodeHistogram, int]:
            snapshot = state.snapshot()
            return snapshot, state.histogram(snapshot), base + state.serial

        def interrupted(state: _Node) -> tuple[NodeMetrics, NodeHistogram, int]:
            snapshot, histogram = both(state)
            return snapshot, histogram, base + state.serial

        return self._read_each(read, interrupted, deferred)

    def _read_both_interrupted(self, state: _Node) -> tuple[NodeMetrics, NodeHistogram]:
        guard = self._guard
        if state is guard.current or state in guard.reading:
            cached: tuple[NodeMetrics, NodeHistogram] | None = state.hist_cache
            if cached is not None and cached[0] is state.published:
                return cached
            bounds = self.buckets
            return EMPTY, _trusted(bounds, (0,) * (len(bounds) + 1), 0, 0.0)
        return _read_aside(guard, state, _snapshot_and_histogram)

    def _read_interrupted(self, state: _Node) -> NodeMetrics:
        # This thread holds the lock in a call that a signal handler or
        # finalizer interrupted: leave alone the node that call is changing,
        # and any node that an interrupted read is reading (handlers nest).
        guard = self._guard
        if state is guard.current or state in guard.reading:
            return state.published or EMPTY
        return _read_aside(guard, state, _Node.snapshot)

    def reset_node_metrics(self, node: str | None = None) -> None:
        """
        Forget *node*'s metrics, or every node's when *node* is ``None``.

        Resetting also re-arms the node's thresholds. An unknown node is no
        error.

        Raises:
            TypeError: *node* is neither a str nor ``None``.
            ValueError: *node* is empty.
        """
        if node is not None:
            node = check_node(node)
        self._submit(node, 0.0, RESET)

    def to_dict(self) -> dict[str, dict[str, int | float | None]]:
        """Return every node's :meth:`NodeMetrics.to_dict`, by node name."""
        return {node: m.to_dict() for node, m in self.get_all_node_metrics().items()}

    def to_json(self, **json_kwargs: Any) -> str:
        """
        Return :meth:`to_dict` as JSON.

        Args:
            json_kwargs: Passed to :func:`json.dumps` (``indent=2``, ...).
        """
        return json.dumps(self.to_dict(), **json_kwargs)

    # -- instrumenting -------------------------------------------------------

    def track(self, node: str) -> Tracker:
        """
        Time a block as one execution of *node*: ``with`` or ``async with``.

        A normal exit records a success; an :class:`Exception` records a
        classified failure and propagates unchanged; any other
        :class:`BaseException` (cancellation, ``KeyboardInterrupt``, ...)
        propagates and records a cancellation. LangGraph's control flow
        propagates too: ``GraphInterrupt`` records an interruption, any other
        ``GraphBubbleUp`` (``ParentCommand``) a success. Each call returns a
        fresh tracker.

        Raises:
            TypeError: *node* is not a str.
            ValueError: *node* is empty.
        """
        if type(node) is not str or not node:
            node = check_node(node)
        # Made here, without __init__ or a helper: either call would cost a
        # twentieth of a tracked block.
        tracker = _new(Tracker)
        tracker._collector = self  # noqa: SLF001
        tracker._node = node  # noqa: SLF001
        return tracker

    def retry_hook(self, node: str) -> Callable[[tenacity.RetryCallState], None]:
        """
        Return a tenacity hook that records a retry of *node*.

        Pass it as ``before_sleep=`` to ``tenacity.retry``, ``Retrying`` or
        ``AsyncRetrying``: it runs once before each new attempt and calls
        :meth:`record_retry` with the attempt number that failed.

        Raises:
            TypeError: *node* is not a str.
            ValueError: *node* is empty.
        """
        node = check_node(node)
        record_retry = self.record_retry

        def before_sleep_record_retry(retry_state: tenacity.RetryCallState) -> None:
            # As @metered's recordings: a failure, or the recursion limit
            # (where even the log can fail), never reaches the retrying.
            try:
                record_retry(node, retry_state.attempt_number)
            except Exception:  # noqa: BLE001 -- recording must never break the node
                try:  # noqa: SIM105 -- suppress() needs a frame
                    log_record_failed(node)
                except Exception:  # noqa: BLE001, S110 -- the recursion limit
                    pass

        return before_sleep_record_retry


_default: NodeMetricsCollector | None = None


def get_default_collector() -> NodeMetricsCollector:
    """
    Return the process-wide default collector, creating it on first use.

    :func:`metered` records into it when given no ``collector=``. It has the
    default options; applications that want others create their own
    collector and pass it explicitly.
    """
    if _default is None:
        _sync.under_registry_lock(_make_default)
    return cast("NodeMetricsCollector", _default)


def _make_default() -> None:
    global _default  # noqa: PLW0603 -- the one documented piece of global state
    if _default is None:
        made = NodeMetricsCollector()
        # Set only if still unset: making it allocates, and a signal handler
        # or finalizer of this thread that ran meanwhile (the registry lock
        # lets it in) may have made one already, and recorded into it.
        if _default is None:
            _default = made
