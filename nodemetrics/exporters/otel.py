"""
Report a collector through OpenTelemetry metrics.

Needs the ``otel`` extra: ``pip install 'nodemetrics[otel]'``.

.. code-block:: python

    from nodemetrics.exporters.otel import OpenTelemetryExporter

    OpenTelemetryExporter(collector)  # the global MeterProvider's meter "nodemetrics"

The duration histogram is fed one execution at a time. The OpenTelemetry
Python SDK has no way to hand it pre-aggregated data (no ``MetricProducer``:
opentelemetry-python issue #4768), so the exporter registers a listener on
the collector and records every execution, after the collector's lock is
released, into a synchronous ``Histogram``. Recording into the SDK takes
locks of its own; so that a recording made by a signal handler, a finalizer
or a GC callback that interrupted one in the same thread cannot deadlock on
them, only the holder of the exporter's lock calls the SDK, and an execution
made by the thread that holds it already is queued for the holder, which
records the queue before it leaves. The lock follows the collector's
protocol (``nodemetrics._sync``): taken in a ``try`` whose ``finally``
releases it, written out, so that no exception can leave it held, and
renewed in a forked child. The fork hook
takes it before ``os.fork()`` as it takes a collector's (waiting a second at
most), so no other thread is inside this exporter's ``record()``, holding
the SDK's locks, when the process forks. Each collection records what is
still queued before it reads.

The observable counters report the collector's counts, which
``reset_node_metrics()`` sets back to zero; an OpenTelemetry monotonic sum
must never go down, so each counter keeps, per attribute set, the last
count it observed and an offset: a count lower than the last observed, or
a node gone from the collector, means the node was reset, and the last
observed count moves into the offset. Each collection reads the collector
and updates these under the exporter's lock, so that two collections cannot
apply their readings out of order. A recording that finds the lock taken by
such a collection waits about as long as it would have for the collector's
own lock, which the read holds for most of that time anyway; the recording
itself does no more than before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import cast

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from nodemetrics._collector import NodeMetricsCollector
from nodemetrics._metrics import FAILURE_FIELDS, QUANTILE_FIELDS, NodeMetrics
from nodemetrics._sync import Guard, unheld
from nodemetrics._validate import type_name


__all__ = ["OpenTelemetryExporter"]


class OpenTelemetryExporter:
    """
    OpenTelemetry instruments that report a nodemetrics collector.

    Registers, on the meter ``nodemetrics`` of *meter_provider* (the global
    provider when omitted):

    - ``nodemetrics.node.duration``: Histogram in seconds, attribute ``node``,
      with the collector's ``buckets`` (divided by 1000) as its explicit
      bucket boundaries (advisory: a View the application configured for
      this instrument takes precedence). Every success and failure recorded
      after the exporter is created is recorded into it once, with its exact
      duration, so counts, sums, min and max are exact. It is cumulative
      unless the reader asks for delta temporality, and, unlike the
      collector's own numbers, it is not emptied by
      :meth:`~nodemetrics.NodeMetricsCollector.reset_node_metrics`.
    - ``nodemetrics.node.window.duration``: ObservableGauge in seconds,
      ``node`` and ``quantile`` (``"0.5"``, ``"0.9"``, ``"0.99"``), over the
      rolling window.
    - ``nodemetrics.node.executions``: ObservableCounter, attributes ``node``
      and ``outcome`` (``success`` or ``failure``);
    - ``nodemetrics.node.failures``: ObservableCounter, ``node`` and
      ``error.type`` (the category);
    - ``nodemetrics.node.retries``, ``nodemetrics.node.cancellations``,
      ``nodemetrics.node.interruptions``: ObservableCounters, ``node``.

    The observable instruments read the collector at each collection. The
    counters, like the histogram, never go down (an OpenTelemetry monotonic
    sum must not): :meth:`~nodemetrics.NodeMetricsCollector.reset_node_metrics`
    does not lower them, a node's later counts are added to what they
    reported before, and a node reset and never recorded again keeps its
    last values. A reset is noticed at the next collection, as a count
    lower than the one last observed or as a node gone; if, between two
    collections, a node is reset and then counts as many as it had or more,
    nothing tells it from no reset, and what it counted since the previous
    collection before the reset is missing from the counters.

    Thread safety: any number of threads may record while the SDK collects.
    Feeding the histogram costs each execution about one SDK
    ``Histogram.record()`` (see README "Exporting").

    Args:
        collector: The collector to report.
        meter_provider: Where to register the instruments.

    Raises:
        TypeError: *collector* is not a collector, or *meter_provider* is
            neither ``None`` nor a meter provider (an object with a callable
            ``get_meter``). Nothing is registered then.
    """

    def __init__(
        self, collector: NodeMetricsCollector, *, meter_provider: MeterProvider | None = None
    ) -> None:
        # By real type, as nodemetrics._validate checks: an object's
        # __class__ could lie or raise.
        if not issubclass(type(collector), NodeMetricsCollector):
            msg = f"collector must be a NodeMetricsCollector, got {type_name(collector)}"
            raise TypeError(msg)
        get_meter = _get_meter(meter_provider)
        self._collector = collector
        self._closed = False
        # The exporter's lock and queue, with the collector's protocol (see
        # nodemetrics._sync): released by a written-out `finally`, renewed in
        # a forked child.
        self._guard = Guard()
        self._queue: deque[tuple[str, float]] = deque()
        #: Whether one of the counters' callbacks is reading and updating
        #: its totals (under the lock), for a collection nested in it.
        self._observing = False
        meter = get_meter("nodemetrics")
        self._record = meter.create_histogram(
            "nodemetrics.node.duration",
            unit="s",
            description="Durations of a node's executions.",
            explicit_bucket_boundaries_advisory=[bound / 1000 for bound in collector.buckets],
        ).record
        for name, observe, unit, description in _COUNTERS:
            meter.create_observable_counter(
                name, callbacks=[self._counter(observe)], unit=unit, description=description
            )
        meter.create_observable_gauge(
            "nodemetrics.node.window.duration",
            callbacks=[self._reader(_window_durations)],
            unit="s",
            description="Percentiles of a node's durations over its rolling window.",
        )
        # One bound method, so that close() removes the very object added.
        self._listener = self._on_execution
        collector._add_listener(self._listener)  # noqa: SLF001 -- the exporters' hook

    def __repr__(self) -> str:
        return f"<OpenTelemetryExporter(collector={self._collector!r})>"

    def close(self) -> None:
        """
        Stop reporting this collector.

        The histogram takes no more executions and the observable
        instruments observe nothing from now on.

        OpenTelemetry has no way to remove an instrument from its meter;
        closing frees the collector from the exporter's per-execution cost.
        Closing twice is no error.
        """
        self._closed = True
        self._collector._remove_listener(self._listener)  # noqa: SLF001 -- the exporters' hook
        self._drain()

    def _on_execution(self, node: str, duration_ms: float) -> None:
        # Paid by every execution, and nothing here can go: callgrind puts
        # the re-entry check, the lock and the queue check at 3.0k
        # instructions of an exported record_success's 76.0k, over a
        # listener that calls record() bare (73.1k, of which record() is
        # 62.0k). A per-node cache of the attributes dict saved 0.1k (the
        # SDK copies and hashes it anyway); recording in batches under one
        # lock saved 2k but would stamp exemplars, and a node's first point,
        # with the time and context of the batch, not of the execution.
        guard = self._guard
        if guard.owned():
            # This thread is inside the SDK's record() already (a signal
            # handler, finalizer or GC callback recorded): calling it again
            # could wait on the SDK's own locks. The holder records it next.
            self._queue.append((node, duration_ms))
            return
        # Another thread holds the lock for one record(), or for one
        # collection's read of the collector (whose own lock the read holds
        # anyway), at most: wait.
        lock = guard.lock
        try:
            lock.acquire()
            self._record(duration_ms / 1000, {"node": node})
            if self._queue:
                self._drain_held()
        finally:
            try:
                lock.release()
            except RuntimeError as exc:
                if not unheld(exc):
                    raise

    def _drain(self) -> None:
        guard = self._guard
        if guard.owned():
            return
        lock = guard.lock
        try:
            lock.acquire()
            self._drain_held()
        finally:
            try:
                lock.release()
            except RuntimeError as exc:
                if not unheld(exc):
                    raise

    def _drain_held(self) -> None:
        # Only what is queued now; later arrivals wait for the next call.
        queue = self._queue
        record = self._record
        for _ in range(len(queue)):
            node, duration_ms = queue.popleft()
            record(duration_ms / 1000, {"node": node})

    def _reader(
        self, observe: Callable[[str, NodeMetrics], Iterable[Observation]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        collector = self._collector

        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            if self._closed:
                return []
            # Reading applies what the collector has queued; recording what
            # the exporter has queued then makes this collection's histogram
            # hold every execution that returned before it began.
            snapshots = sorted(collector.get_all_node_metrics().items())
            self._drain()
            return [observation for node, m in snapshots for observation in observe(node, m)]

        return callback

    def _counter(
        self, observe: Callable[[str, NodeMetrics], Iterable[tuple[int, dict[str, str]]]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        collector = self._collector
        guard = self._guard
        # Per attribute set (its values, in observe's order): the last count
        # observed, what the counter reported before that count's stream
        # began (the offset), and the attributes. Only under the lock.
        totals: dict[tuple[str, ...], _Total] = {}

        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            if self._closed:
                return []
            reentered = guard.owned()
            if reentered and self._observing:
                # A collection nested in one of these callbacks, in its own
                # thread (a signal handler, with a provider that lets
                # collections nest): the totals may be half updated, and a
                # later reading applied before an earlier one could lower
                # them. Observe nothing this time.
                return []
            lock = guard.lock
            try:
                lock.acquire()
                self._observing = True
                try:
                    # Read under the lock, so that no other collection
                    # updates the totals from a later reading meanwhile.
                    snapshots = sorted(collector.get_all_node_metrics().items())
                    if not reentered:
                        self._drain_held()
                    return _observe_totals(totals, observe, snapshots)
                finally:
                    self._observing = False
            finally:
                try:
                    lock.release()
                except RuntimeError as exc:
                    if not unheld(exc):
                        raise

        return callback


class _Total:
    """One attribute set of one counter: what it reports, across resets."""

    __slots__ = ("attributes", "last", "offset", "seen")

    def __init__(self, attributes: dict[str, str]) -> None:
        self.attributes = attributes
        #: The count last observed in the collector.
        self.last = 0
        #: What was counted before the collector's count last started from zero.
        self.offset = 0
        #: Whether the current collection observed it.
        self.seen = False


def _observe_totals(
    totals: dict[tuple[str, ...], _Total],
    observe: Callable[[str, NodeMetrics], Iterable[tuple[int, dict[str, str]]]],
    snapshots: list[tuple[str, NodeMetrics]],
) -> list[Observation]:
    """
    Update *totals* from one reading of the collector, and report them.

    A count lower than the last one observed, or an attribute set no
    longer observed (its node is gone), means a reset: the last count moves
    into the offset, so that the total never goes down. A node that is gone
    keeps being reported with its total, so that the stream neither drops
    nor, when the node comes back, starts again from zero.
    """
    observations = []
    for node, m in snapshots:
        for count, attributes in observe(node, m):
            key = tuple(attributes.values())
            total = totals.get(key)
            if total is None:
                total = totals[key] = _Total(attributes)
            elif count < total.last:
                total.offset += total.last
            total.last = count
            total.seen = True
            observations.append(Observation(total.offset + count, attributes))
    for total in totals.values():
        if total.seen:
            total.seen = False
        else:
            total.offset += total.last
            total.last = 0
            observations.append(Observation(total.offset, total.attributes))
    return observations


def _get_meter(meter_provider: object) -> Callable[[str], metrics.Meter]:
    """
    Return the ``get_meter`` of *meter_provider*, or of the global provider if ``None``.

    Raises:
        TypeError: *meter_provider* is neither ``None`` nor an object with a
            callable ``get_meter``.
    """
    if meter_provider is None:
        return metrics.get_meter_provider().get_meter
    # By real type, as nodemetrics._validate checks: an object's __class__
    # could lie or raise.
    if issubclass(type(meter_provider), MeterProvider):
        return cast("MeterProvider", meter_provider).get_meter
    # Any other object with a callable get_meter will do: the API's
    # MeterProvider is an interface, which an implementation need not subclass.
    try:
        get_meter: object = getattr(meter_provider, "get_meter", None)
    except Exception:  # noqa: BLE001 -- a hostile attribute must not replace our error
        get_meter = None
    if not callable(get_meter):
        msg = (
            "meter_provider must be a MeterProvider (an object with a callable"
            f" get_meter) or None, got {type_name(meter_provider)}"
        )
        raise TypeError(msg)
    return cast("Callable[[str], metrics.Meter]", get_meter)


def _executions(node: str, m: NodeMetrics) -> Iterable[tuple[int, dict[str, str]]]:
    yield m.success_count, {"node": node, "outcome": "success"}
    yield m.failure_count, {"node": node, "outcome": "failure"}


def _failures(node: str, m: NodeMetrics) -> Iterable[tuple[int, dict[str, str]]]:
    for category, field in FAILURE_FIELDS:
        yield getattr(m, field), {"node": node, "error.type": category}


def _retries(node: str, m: NodeMetrics) -> Iterable[tuple[int, dict[str, str]]]:
    yield m.retry_count, {"node": node}


def _cancellations(node: str, m: NodeMetrics) -> Iterable[tuple[int, dict[str, str]]]:
    yield m.cancelled_count, {"node": node}


def _interruptions(node: str, m: NodeMetrics) -> Iterable[tuple[int, dict[str, str]]]:
    yield m.interrupted_count, {"node": node}


def _window_durations(node: str, m: NodeMetrics) -> Iterable[Observation]:
    for quantile, field in QUANTILE_FIELDS:
        value = getattr(m, field)
        if value is not None:
            yield Observation(value / 1000, {"node": node, "quantile": quantile})


_COUNTERS = (
    (
        "nodemetrics.node.executions",
        _executions,
        "{execution}",
        "Executions of a node, by outcome.",
    ),
    ("nodemetrics.node.failures", _failures, "{execution}", "Failed executions, by category."),
    ("nodemetrics.node.retries", _retries, "{retry}", "Retries of a node."),
    ("nodemetrics.node.cancellations", _cancellations, "{execution}", "Cancelled executions."),
    ("nodemetrics.node.interruptions", _interruptions, "{execution}", "Paused executions."),
)
