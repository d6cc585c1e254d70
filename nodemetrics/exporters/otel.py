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
protocol (``nodemetrics._sync``): taken only with ``with``, so that no
exception can leave it held, and renewed in a forked child. The fork hook
takes it before ``os.fork()`` as it takes a collector's (waiting a second at
most), so no other thread is inside this exporter's ``record()``, holding
the SDK's locks, when the process forks. Each collection records what is
still queued before it reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from nodemetrics._collector import NodeMetricsCollector
from nodemetrics._metrics import FAILURE_FIELDS, QUANTILE_FIELDS, NodeMetrics
from nodemetrics._sync import Guard


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

    The observable instruments read the collector at each collection.

    Thread safety: any number of threads may record while the SDK collects.
    Feeding the histogram costs each execution about one SDK
    ``Histogram.record()`` (see README "Exporting").

    Args:
        collector: The collector to report.
        meter_provider: Where to register the instruments.

    Raises:
        TypeError: *collector* is not a collector.
    """

    def __init__(
        self, collector: NodeMetricsCollector, *, meter_provider: MeterProvider | None = None
    ) -> None:
        if not isinstance(collector, NodeMetricsCollector):
            msg = f"collector must be a NodeMetricsCollector, got {type(collector).__name__}"
            raise TypeError(msg)
        self._collector = collector
        self._closed = False
        # The exporter's lock and queue, with the collector's protocol (see
        # nodemetrics._sync): taken only by `with`, renewed in a forked child.
        self._guard = Guard()
        self._queue: deque[tuple[str, float]] = deque()
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter("nodemetrics")
        self._record = meter.create_histogram(
            "nodemetrics.node.duration",
            unit="s",
            description="Durations of a node's executions.",
            explicit_bucket_boundaries_advisory=[bound / 1000 for bound in collector.buckets],
        ).record
        for name, observe, unit, description in _COUNTERS:
            meter.create_observable_counter(
                name, callbacks=[self._reader(observe)], unit=unit, description=description
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
        # Another thread holds the lock for one record() at most: wait.
        with guard.lock:
            self._record(duration_ms / 1000, {"node": node})
            if self._queue:
                self._drain_held()

    def _drain(self) -> None:
        guard = self._guard
        if guard.owned():
            return
        with guard.lock:
            self._drain_held()

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


def _executions(node: str, m: NodeMetrics) -> Iterable[Observation]:
    yield Observation(m.success_count, {"node": node, "outcome": "success"})
    yield Observation(m.failure_count, {"node": node, "outcome": "failure"})


def _failures(node: str, m: NodeMetrics) -> Iterable[Observation]:
    for category, field in FAILURE_FIELDS:
        yield Observation(getattr(m, field), {"node": node, "error.type": category})


def _retries(node: str, m: NodeMetrics) -> Iterable[Observation]:
    yield Observation(m.retry_count, {"node": node})


def _cancellations(node: str, m: NodeMetrics) -> Iterable[Observation]:
    yield Observation(m.cancelled_count, {"node": node})


def _interruptions(node: str, m: NodeMetrics) -> Iterable[Observation]:
    yield Observation(m.interrupted_count, {"node": node})


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
