"""The collector: where every node's numbers are recorded and read."""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import threading
import weakref

from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from time import perf_counter_ns
from types import TracebackType
from typing import TYPE_CHECKING, Any, final

import attrs

from ._classify import ErrorCategory, classify_error
from ._histogram import DEFAULT_BUCKETS_MS, NodeHistogram, _trusted, check_buckets
from ._log import log, log_record_failed
from ._metrics import EMPTY, NodeMetrics, unfrozen_metrics
from ._window import RollingWindow


if TYPE_CHECKING:
    import tenacity

#: The node that recordings for new names are folded into past ``max_nodes``.
OVERFLOW_NODE = "__overflow__"

Classifier = Callable[[BaseException], "ErrorCategory | str | None"]
ThresholdCallback = Callable[[str, float], object]
# Called as (node, duration_ms) after each execution is applied; see _add_listener.
Listener = Callable[[str, float], object]

# What a recording does, as stored in the pending queue: -1 is a success,
# 0-3 a failure of that category, then a retry and a cancellation.
_SUCCESS = -1
_RETRY = 4
_CANCEL = 5
_CATEGORIES = (
    ErrorCategory.TIMEOUT,
    ErrorCategory.VALIDATION,
    ErrorCategory.NETWORK,
    ErrorCategory.OTHER,
)
_CATEGORY_INDEX: dict[str, int] = {c.value: i for i, c in enumerate(_CATEGORIES)}
_OTHER = _CATEGORY_INDEX["other"]
_INF = math.inf

# Queueing a recording is cheaper than applying one, so a recorder that finds
# the lock held could outrun its holder forever. Past this many queued
# recordings (about 1.5 MB) a recorder waits for the lock instead, and then
# helps drain. Waiting hands the GIL back and forth between threads, which
# costs far more than queueing, so the bound is set above what one thread
# queues in one GIL switch interval (5 ms) while another holds the lock.
_BACKLOG = 16_384
# ...but never longer than this: a recorder that waits this long is almost
# surely a signal handler or finalizer that interrupted the holder in its own
# thread, and waiting on would deadlock. It leaves its recording queued.
_BACKLOG_WAIT_S = 0.05
# A drainer takes at most this many batches, then leaves what is left to the
# next recording or read (a read always applies the queue first). Without a
# bound, code that records whenever a recording runs (a GC callback, with the
# GC collecting on every allocation) would keep one thread draining forever.
_DRAIN_ROUNDS = 16
# track() and metered() append a success to its node's batch, a list that
# needs no lock, and fold the batch into the node once it holds this many
# (or sooner, when anything reads or records to the node another way).
# Folding 32 costs about what 4 record_success() calls do; a batch holds at
# most about 1 KB while it waits.
_BATCH = 32


def check_node(node: object, argument: str = "node") -> str:
    """
    Return *node* if it is a valid node name, else raise naming *argument*.

    Raises:
        TypeError: *node* is not a str.
        ValueError: *node* is empty.
    """
    if not isinstance(node, str):
        msg = f"{argument} must be a str, got {type(node).__name__}"
        raise TypeError(msg)
    if not node:
        msg = f"{argument} must be a non-empty str"
        raise ValueError(msg)
    # A str subclass could run user code in __hash__ or __eq__ under the
    # collector's lock; a plain copy of it cannot.
    return str.__str__(node)


def _to_duration(node: str, value: object) -> float:
    if type(value) is bool or not isinstance(value, numbers.Real):
        msg = f"duration_ms must be a real number, got {type(value).__name__}"
        raise TypeError(msg)
    try:
        duration = float(value)
    except (OverflowError, ValueError):
        msg = f"duration_ms must be finite, got {value!r}"
        raise ValueError(msg) from None
    if not math.isfinite(duration):
        msg = f"duration_ms must be finite, got {value!r}"
        raise ValueError(msg)
    if duration < 0.0:
        log(
            "WARNING",
            "nodemetrics.negative_duration: node {name!r} got duration_ms={value!r}; "
            "recorded as 0.0",
            node=node,
            name=node,
            value=value,
        )
        return 0.0
    # The fast paths send 0.0 here too: +0.0 turns a -0.0 into 0.0, so that
    # no snapshot shows "-0.0".
    return duration + 0.0


def _category_index(category: object) -> int:
    try:
        return _CATEGORY_INDEX[category]  # type: ignore[index]
    except (KeyError, TypeError):
        names = ", ".join(repr(c.value) for c in _CATEGORIES)
        msg = f"category must be an ErrorCategory or one of {names}, got {category!r}"
        raise ValueError(msg) from None


def _non_negative_int(name: str, value: object, minimum: int) -> None:
    if type(value) is bool or not isinstance(value, int):
        msg = f"{name} must be an int, got {value!r}"
        raise TypeError(msg)
    if value < minimum:
        msg = f"{name} must be >= {minimum}, got {value!r}"
        raise ValueError(msg)


def _int_at_least(minimum: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def validate(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and attribute.name == "max_nodes":
            return
        _non_negative_int(attribute.name, value, minimum)

    return validate


def _optional_real(upper: float) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def validate(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if type(value) is bool or not isinstance(value, numbers.Real):
            msg = f"{attribute.name} must be a real number or None, got {value!r}"
            raise TypeError(msg)
        bound = f"in [0, {upper:g}]" if upper != _INF else "finite and >= 0"
        msg = f"{attribute.name} must be {bound}, got {value!r}"
        try:
            number = float(value)
        except (OverflowError, ValueError):
            raise ValueError(msg) from None
        if not 0.0 <= number <= upper or not math.isfinite(number):
            raise ValueError(msg)

    return validate


def _optional_callable(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not callable(value):
        msg = f"{attribute.name} must be callable or None, got {value!r}"
        raise TypeError(msg)


class _Node:
    """The mutable state of one node; only touched under the collector's lock, but for its batch."""

    __slots__ = (
        "batch",
        "bounds",
        "cancelled",
        "errors",
        "failure",
        "hist",
        "hist_cache",
        "last",
        "latency_armed",
        "rate_armed",
        "retries",
        "snapshot_cache",
        "success",
        "total_ms",
        "window",
    )

    def __init__(
        self, window_size: int, count_failures: bool, bounds: tuple[float, ...] = DEFAULT_BUCKETS_MS
    ) -> None:
        self.success = 0
        self.failure = 0
        self.retries = 0
        self.cancelled = 0
        self.errors = [0, 0, 0, 0]
        self.last: float | None = None
        self.total_ms = 0.0
        self.window = RollingWindow(window_size, count_failures=count_failures)
        self.rate_armed = True
        self.latency_armed = True
        self.snapshot_cache: NodeMetrics | None = None
        # Executions per duration bucket (see NodeHistogram), and the last
        # histogram read with the snapshot it was read with.
        self.bounds = bounds
        self.hist = [0] * (len(bounds) + 1)
        self.hist_cache: tuple[NodeMetrics, NodeHistogram] | None = None
        # Successes timed by track() and metered() that are not yet counted:
        # appended to without the lock, folded in under it.
        self.batch: list[float] = []

    def fold(self) -> None:
        """Count the batched successes, in the order they came."""
        batch = self.batch
        values = batch[:]
        if not values:
            # Another thread folded it between a caller's check and its lock.
            return
        # Other threads may append meanwhile: delete only what was taken.
        del batch[: len(values)]
        self.snapshot_cache = None
        self.success += len(values)
        self.total_ms = sum(values, self.total_ms)
        self.last = values[-1]
        self.window.extend(values)
        hist = self.hist
        bounds = self.bounds
        for value in values:
            hist[bisect_left(bounds, value)] += 1

    def histogram(self, snapshot: NodeMetrics) -> NodeHistogram:
        """Return the histogram that goes with *snapshot*, this node's current one."""
        # A node's snapshot is the same object until the node changes.
        cached = self.hist_cache
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        histogram = _trusted(
            self.bounds, tuple(self.hist), self.success + self.failure, self.total_ms
        )
        self.hist_cache = (snapshot, histogram)
        return histogram

    def snapshot(self) -> NodeMetrics:
        if self.batch:
            self.fold()
        # Between two recordings a node's snapshot cannot change; scrapes
        # read idle nodes over and over.
        if self.snapshot_cache is not None:
            return self.snapshot_cache
        # Built without validation: every value here was validated when it
        # was recorded (see unfrozen_metrics).
        snapshot = unfrozen_metrics()
        snapshot.total_executions = executions = self.success + self.failure
        snapshot.success_count = self.success
        snapshot.failure_count = self.failure
        snapshot.retry_count = self.retries
        snapshot.last_execution_ms = self.last
        snapshot.avg_execution_ms = self.total_ms / executions if executions else 0.0
        snapshot.p50, snapshot.p90, snapshot.p99 = self.window.p50_p90_p99()
        (
            snapshot.timeout_errors,
            snapshot.validation_errors,
            snapshot.network_errors,
            snapshot.other_errors,
        ) = self.errors
        snapshot.cancelled_count = self.cancelled
        snapshot.__class__ = NodeMetrics
        self.snapshot_cache = snapshot
        return snapshot  # type: ignore[no-any-return]


_Events = list[tuple[Callable[..., object], tuple[Any, ...]]]

_frozen = attrs.setters.frozen


@attrs.define(kw_only=True, repr=False, eq=False)
class NodeMetricsCollector:
    """
    Records per-node executions, failures, retries and durations.

    Recording is thread-safe and task-safe: many threads and asyncio tasks may
    record into one collector at once and no count is lost. Reads return
    immutable :class:`NodeMetrics` snapshots that are consistent (never torn
    by a concurrent recording).

    Args:
        window_size: How many of a node's most recent executions the rolling
            window holds; percentiles and thresholds are computed over it.
        classifier: Sorts a failure's exception into an
            :class:`ErrorCategory` (or its string). Returning ``None`` falls
            back to :func:`classify_error`, as does a classifier that raises
            or returns something else (logged).
        failure_rate_threshold: A failure rate in [0, 1] over the window.
        latency_threshold_ms: A p99 over the window, in milliseconds.
        on_failure_rate_threshold: Called as ``(node, rate)`` when a node's
            failure rate goes from at most *failure_rate_threshold* to above
            it; once per crossing.
        on_latency_threshold: Called as ``(node, p99)`` when a node's p99 goes
            from at most *latency_threshold_ms* to above it; once per
            crossing.
        min_samples: Thresholds are evaluated once the window holds at least
            this many executions.
        max_nodes: The most distinct node names kept; recordings for further
            names are folded into the node ``"__overflow__"`` (a warning is
            logged once). ``None`` keeps every name.
        buckets: The upper bounds of every node's duration histogram, in
            milliseconds (see :meth:`get_node_histogram`): a non-empty
            sequence of finite reals > 0, strictly increasing, at most
            1,000. The default is a 1-2.5-5
            series from 0.1 ms to 100 s (19 bounds).

    Raises:
        TypeError: An option has the wrong type; the message names it.
        ValueError: An option is out of range; the message names it.
    """

    window_size: int = attrs.field(default=100, validator=_int_at_least(1), on_setattr=_frozen)
    classifier: Classifier | None = attrs.field(
        default=None, validator=_optional_callable, on_setattr=_frozen
    )
    failure_rate_threshold: float | None = attrs.field(
        default=None, validator=_optional_real(1.0), on_setattr=_frozen
    )
    latency_threshold_ms: float | None = attrs.field(
        default=None, validator=_optional_real(_INF), on_setattr=_frozen
    )
    on_failure_rate_threshold: ThresholdCallback | None = attrs.field(
        default=None, validator=_optional_callable, on_setattr=_frozen
    )
    on_latency_threshold: ThresholdCallback | None = attrs.field(
        default=None, validator=_optional_callable, on_setattr=_frozen
    )
    min_samples: int = attrs.field(default=10, validator=_int_at_least(1), on_setattr=_frozen)
    max_nodes: int | None = attrs.field(
        default=10_000, validator=_int_at_least(1), on_setattr=_frozen
    )
    buckets: tuple[float, ...] = attrs.field(
        default=DEFAULT_BUCKETS_MS, converter=check_buckets, on_setattr=_frozen
    )

    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _pending: deque[tuple[str, float, int]] = attrs.field(init=False, factory=deque)
    _nodes: dict[str, _Node] = attrs.field(init=False, factory=dict)
    _watch_rate: bool = attrs.field(init=False, default=False)
    _watch_latency: bool = attrs.field(init=False, default=False)
    # Something must see each execution as it is applied (a threshold with
    # its callback, or a listener): then nothing is batched.
    _watching: bool = attrs.field(init=False, default=False)
    _listeners: tuple[Listener, ...] = attrs.field(init=False, default=())
    _overflow_warned: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        # A threshold without its callback would be work with no result.
        self._watch_rate = (
            self.failure_rate_threshold is not None and self.on_failure_rate_threshold is not None
        )
        self._watch_latency = (
            self.latency_threshold_ms is not None and self.on_latency_threshold is not None
        )
        self._watching = self._watch_rate or self._watch_latency
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"<NodeMetricsCollector(nodes={len(self._nodes)}, window_size={self.window_size})>"

    # -- recording -----------------------------------------------------------

    def record_success(self, node: str, duration_ms: float) -> None:
        """
        Record a successful execution of *node* that took *duration_ms*.

        A negative duration is recorded as 0.0 and logged as a warning.

        Raises:
            TypeError: *node* is not a str or *duration_ms* not a real number.
            ValueError: *node* is empty or *duration_ms* is NaN or infinite.
        """
        if type(node) is not str or not node:
            node = check_node(node)
        if type(duration_ms) is not float or not 0.0 < duration_ms < _INF:
            duration_ms = _to_duration(node, duration_ms)
        # Every instrumented call ends here, so the common case (the lock is
        # free, the node known) is _submit and _apply written out in line.
        lock = self._lock
        if not lock.acquire(False):
            self._enqueue((node, duration_ms, _SUCCESS))
            return
        try:
            state = self._nodes.get(node)
            if state is None:
                events = self._apply(node, duration_ms, _SUCCESS)
            else:
                if state.batch:
                    state.fold()
                state.snapshot_cache = None
                state.success += 1
                state.last = duration_ms
                state.total_ms += duration_ms
                state.hist[bisect_left(self.buckets, duration_ms)] += 1
                state.window.add(duration_ms, False)
                events = self._observe(node, state, duration_ms) if self._watching else None
        finally:
            lock.release()
        if self._pending:
            self._drain()
        if events:
            _fire(events)

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
        *error*, else under ``other``.

        Raises:
            TypeError: *node* is not a str, *duration_ms* not a real number,
                or *error* not an exception.
            ValueError: *node* is empty, *duration_ms* NaN or infinite, or
                *category* not a category.
        """
        if type(node) is not str or not node:
            node = check_node(node)
        if type(duration_ms) is not float or not 0.0 < duration_ms < _INF:
            duration_ms = _to_duration(node, duration_ms)
        if error is not None and not isinstance(error, BaseException):
            msg = f"error must be an exception or None, got {type(error).__name__}"
            raise TypeError(msg)
        if category is not None:
            kind = _category_index(category)
        elif error is not None:
            kind = self._classify(node, error)
        else:
            kind = _OTHER
        self._submit(node, duration_ms, kind)

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
            _non_negative_int("attempt_number", attempt_number, 1)
        self._submit(node, 0.0, _RETRY)

    def record_cancellation(self, node: str) -> None:
        """
        Record that an execution of *node* was cancelled or interrupted.

        :meth:`track` and :func:`metered` call this when the node is left by a
        :class:`BaseException` that is not an :class:`Exception`
        (:class:`asyncio.CancelledError`, :class:`KeyboardInterrupt`, ...). It
        is not an execution.

        Raises:
            TypeError: *node* is not a str.
            ValueError: *node* is empty.
        """
        node = check_node(node)
        self._submit(node, 0.0, _CANCEL)

    def _classify(self, node: str, error: BaseException) -> int:
        if self.classifier is not None:
            try:
                result = self.classifier(error)
            except Exception:  # noqa: BLE001 -- user code must not break a node
                log(
                    "ERROR",
                    "nodemetrics.classifier_failed: the classifier raised on {error!r}",
                    node=node,
                    exception=True,
                    error=error,
                )
                result = None
            if result is not None:
                try:
                    return _category_index(result)
                except ValueError:
                    log(
                        "WARNING",
                        "nodemetrics.classifier_result: the classifier returned {result!r}, "
                        "not a category; using classify_error()",
                        node=node,
                        result=result,
                    )
        return _CATEGORY_INDEX[classify_error(error).value]

    # The heart of thread safety. A recorder never waits for the lock: it
    # either takes it at once or queues the recording for the holder, which
    # drains the queue before and after letting go. So a recording from a
    # signal handler, a finalizer or a GC callback that interrupts a holder in
    # the same thread cannot deadlock, and threads never convoy on the lock.

    def _submit(self, node: str, value: float, kind: int) -> None:
        lock = self._lock
        if lock.acquire(False):
            try:
                events = self._apply(node, value, kind)
            finally:
                lock.release()
            self._drain()
            if events:
                _fire(events)
        else:
            self._enqueue((node, value, kind))

    def _enqueue(self, item: tuple[str, float, int]) -> None:
        pending = self._pending
        pending.append(item)
        lock = self._lock
        if len(pending) > _BACKLOG and lock.acquire(timeout=_BACKLOG_WAIT_S):
            try:
                events = self._apply_pending()
            finally:
                lock.release()
            if events:
                _fire(events)
        self._drain()

    def _drain(self) -> None:
        pending = self._pending
        lock = self._lock
        for _ in range(_DRAIN_ROUNDS):
            if not pending or not lock.acquire(False):
                return
            try:
                events = self._apply_pending()
            finally:
                lock.release()
            if events:
                _fire(events)

    def _apply_pending(self) -> _Events | None:
        # Only what is queued now: recorders in other threads may go on
        # queueing meanwhile, and a holder that chased them would never leave.
        pending = self._pending
        events: _Events | None = None
        for _ in range(len(pending)):
            more = self._apply(*pending.popleft())
            if more:
                events = more if events is None else events + more
        return events

    def _apply(self, node: str, value: float, kind: int) -> _Events | None:
        state = self._nodes.get(node)
        events = None
        if state is None:
            node, state, events = self._add_node(node)
        elif state.batch:
            state.fold()
        state.snapshot_cache = None
        if kind < _RETRY:
            if kind < 0:
                state.success += 1
            else:
                state.failure += 1
                state.errors[kind] += 1
            state.last = value
            state.total_ms += value
            state.hist[bisect_left(self.buckets, value)] += 1
            state.window.add(value, kind >= 0)
            if self._watching:
                crossed = self._observe(node, state, value)
                if crossed:
                    events = crossed if events is None else events + crossed
        elif kind == _RETRY:
            state.retries += 1
        else:
            state.cancelled += 1
        return events

    def _add_node(self, node: str) -> tuple[str, _Node, _Events | None]:
        nodes = self._nodes
        limit = self.max_nodes
        if limit is None or len(nodes) < limit + (OVERFLOW_NODE in nodes):
            state = nodes[node] = _Node(self.window_size, self._watch_rate, self.buckets)
            return node, state, None
        overflow = nodes.get(OVERFLOW_NODE)
        if overflow is None:
            overflow = nodes[OVERFLOW_NODE] = _Node(
                self.window_size, self._watch_rate, self.buckets
            )
        if self._overflow_warned:
            return OVERFLOW_NODE, overflow, None
        self._overflow_warned = True
        # Logged through _fire, after the lock is released, so that a slow
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

    def _observe(self, node: str, state: _Node, value: float) -> _Events | None:
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
        with self._lock:
            self._listeners = (*self._listeners, listener)
            self._watching = True

    def _remove_listener(self, listener: Listener) -> None:
        """Stop calling *listener*; one that was never added is no error."""
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x is not listener)
            self._watching = self._watch_rate or self._watch_latency or bool(self._listeners)

    def _check(self, node: str, state: _Node) -> _Events | None:
        window = state.window
        n = len(window)
        if n < self.min_samples:
            return None
        events: _Events | None = None
        if self._watch_rate:
            rate = window.failures / n
            if rate > self.failure_rate_threshold:  # type: ignore[operator]
                if state.rate_armed:
                    state.rate_armed = False
                    events = [(self.on_failure_rate_threshold, (node, rate))]  # type: ignore[list-item]
            else:
                state.rate_armed = True
        if self._watch_latency:
            p99 = window.p50_p90_p99()[2]
            if p99 > self.latency_threshold_ms:  # type: ignore[operator]
                if state.latency_armed:
                    state.latency_armed = False
                    event = (self.on_latency_threshold, (node, p99))
                    events = [event] if events is None else [*events, event]  # type: ignore[list-item]
            else:
                state.latency_armed = True
        return events

    # -- reading -------------------------------------------------------------

    def get_node_metrics(self, node: str) -> NodeMetrics:
        """
        Return a snapshot of *node*'s metrics.

        An unknown node gives the empty snapshot: zero counts, ``None``
        percentiles and last duration, ``avg_execution_ms`` 0.0.

        Raises:
            TypeError: *node* is not a str.
            ValueError: *node* is empty.
        """
        if type(node) is not str or not node:
            node = check_node(node)
        lock = self._lock
        lock.acquire()
        try:
            events = self._apply_pending() if self._pending else None
            state = self._nodes.get(node)
            snapshot = EMPTY if state is None else state.snapshot()
        finally:
            lock.release()
        # Scrapes read every node often: skip the calls when there is nothing to do.
        if events or self._pending:
            self._after_read(events)
        return snapshot

    def get_node_histogram(self, node: str) -> NodeHistogram:
        """
        Return *node*'s cumulative duration histogram.

        It counts every execution (success or failure) since the node's last
        reset, exactly, in the collector's :attr:`buckets`; an unknown node
        gives the empty histogram. Its ``count`` and ``sum_ms`` agree with
        the node's :meth:`get_node_metrics` read at the same instant.

        Raises:
            TypeError: *node* is not a str.
            ValueError: *node* is empty.
        """
        node = check_node(node)
        with self._lock:
            events = self._apply_pending() if self._pending else None
            state = self._nodes.get(node)
            if state is None:
                bounds = self.buckets
                histogram = _trusted(bounds, (0,) * (len(bounds) + 1), 0, 0.0)
            else:
                histogram = state.histogram(state.snapshot())
        self._after_read(events)
        return histogram

    def get_all_node_histograms(self) -> dict[str, NodeHistogram]:
        """
        Return a fresh dict of every recorded node's histogram, by name.

        All histograms are taken at one instant, under one lock.
        """
        return {node: hist for node, (_, hist) in self._read_all().items()}

    def _read_all(self) -> dict[str, tuple[NodeMetrics, NodeHistogram]]:
        """
        Return every node's snapshot and histogram, all taken at one instant.

        For exporters: one call per scrape, so that a node's counters and its
        histogram agree.
        """
        with self._lock:
            events = self._apply_pending() if self._pending else None
            read = {}
            for node, state in self._nodes.items():
                snapshot = state.snapshot()
                read[node] = (snapshot, state.histogram(snapshot))
        self._after_read(events)
        return read

    def get_all_node_metrics(self) -> dict[str, NodeMetrics]:
        """
        Return a fresh dict of every recorded node's snapshot, by name.

        All snapshots are taken at one instant, under one lock.
        """
        with self._lock:
            events = self._apply_pending() if self._pending else None
            snapshots = {node: state.snapshot() for node, state in self._nodes.items()}
        self._after_read(events)
        return snapshots

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
        with self._lock:
            events = self._apply_pending() if self._pending else None
            if node is None:
                self._nodes.clear()
            else:
                self._nodes.pop(node, None)
        self._after_read(events)

    def _after_read(self, events: _Events | None) -> None:
        self._drain()
        if events:
            _fire(events)

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
        propagates and records a cancellation. Each call returns a fresh
        tracker.

        Raises:
            TypeError: *node* is not a str.
            ValueError: *node* is empty.
        """
        if type(node) is not str or not node:
            node = check_node(node)
        tracker = _new(Tracker)
        tracker._collector = self
        tracker._node = node
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
            record_retry(node, retry_state.attempt_number)

        return before_sleep_record_retry


def _fold_batch(collector: NodeMetricsCollector, state: _Node) -> None:
    # If the lock is busy, the next timed success or any read folds instead.
    lock = collector._lock
    if lock.acquire(False):
        try:
            state.fold()
        finally:
            lock.release()
        if collector._pending:
            collector._drain()


def record_timed(collector: NodeMetricsCollector, node: str, elapsed_ms: float) -> None:
    """
    Record a success timed by :func:`metered` (see :meth:`Tracker.__exit__`).

    *node* is already checked and *elapsed_ms* is a float >= 0. A node that
    exists and has no thresholds to watch takes the success into its batch.
    """
    state = collector._nodes.get(node)
    if state is None or collector._watching:
        collector.record_success(node, elapsed_ms)
        return
    batch = state.batch
    batch.append(elapsed_ms)
    if len(batch) >= _BATCH:
        _fold_batch(collector, state)


_new = object.__new__


@final
class Tracker:
    """
    Times one execution of a node, as ``with`` or ``async with``.

    Made only by :meth:`NodeMetricsCollector.track`, fresh for each use. The
    block is timed with :func:`time.perf_counter_ns`; on exit it records a
    success, a classified failure (for an :class:`Exception`) or a
    cancellation (for any other :class:`BaseException`). The exception itself
    always propagates unchanged: the tracker never suppresses, replaces or
    adds to it, and anything that goes wrong while recording is logged, not
    raised.
    """

    __slots__ = ("_collector", "_node", "_start")

    # Set by track(), which skips __init__: calling it costs a tenth of a
    # tracked block.
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
                if state is None or collector._watching:
                    collector.record_success(node, elapsed_ms)
                else:
                    batch = state.batch
                    batch.append(elapsed_ms)
                    if len(batch) >= _BATCH:
                        _fold_batch(collector, state)
            elif isinstance(exc, Exception):
                collector.record_failure(node, elapsed_ms, exc)
            else:
                collector.record_cancellation(node)
        except Exception:  # noqa: BLE001 -- recording must never break the node
            log_record_failed(node)

    async def __aenter__(self) -> Tracker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def _fire(events: _Events) -> None:
    for callback, args in events:
        try:
            callback(*args)
        except Exception:  # noqa: BLE001, PERF203 -- a callback must never reach the node
            log(
                "ERROR",
                "nodemetrics.callback_failed: {callback!r} raised",
                exception=True,
                callback=callback,
            )


# -- fork safety ---------------------------------------------------------------

_LIVE: weakref.WeakSet[NodeMetricsCollector] = weakref.WeakSet()
_HELD_FOR_FORK: list[NodeMetricsCollector] = []
# A thread holding a lock releases it within microseconds; the bound only
# matters if fork() is called from code that interrupted the holder itself.
_FORK_WAIT_S = 1.0


def _before_fork() -> None:
    _HELD_FOR_FORK.extend(c for c in list(_LIVE) if c._lock.acquire(timeout=_FORK_WAIT_S))


def _after_fork_in_parent() -> None:
    held = list(_HELD_FOR_FORK)
    _HELD_FOR_FORK.clear()
    for collector in held:
        collector._lock.release()
    for collector in held:
        collector._drain()


def _after_fork_in_child() -> None:
    _HELD_FOR_FORK.clear()
    for collector in list(_LIVE):
        collector._lock = threading.Lock()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


_default: NodeMetricsCollector | None = None
_default_lock = threading.Lock()


def get_default_collector() -> NodeMetricsCollector:
    """
    Return the process-wide default collector, creating it on first use.

    :func:`metered` records into it when given no ``collector=``. It has the
    default options; applications that want others create their own
    collector and pass it explicitly.
    """
    global _default  # noqa: PLW0603 -- the one documented piece of global state
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = NodeMetricsCollector()
    return _default
