"""
Report a collector through OpenTelemetry metrics.

Needs the ``otel`` extra: ``pip install 'nodemetrics[otel]'``.

.. code-block:: python

    from nodemetrics.exporters.otel import OpenTelemetryExporter

    OpenTelemetryExporter(collector)  # the global MeterProvider's meter "nodemetrics"
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from nodemetrics._collector import NodeMetricsCollector
from nodemetrics._metrics import FAILURE_FIELDS, QUANTILE_FIELDS, NodeMetrics


__all__ = ["OpenTelemetryExporter"]


class OpenTelemetryExporter:
    """
    Observable OpenTelemetry instruments that read a nodemetrics collector.

    Registers, on the meter ``nodemetrics`` of *meter_provider* (the global
    provider when omitted), instruments whose callbacks read the collector
    at each collection:

    - ``nodemetrics.node.executions``: ObservableCounter, attributes ``node``
      and ``outcome`` (``success`` or ``failure``);
    - ``nodemetrics.node.failures``: ObservableCounter, ``node`` and
      ``error.type`` (the category);
    - ``nodemetrics.node.retries``, ``nodemetrics.node.cancellations``,
      ``nodemetrics.node.interruptions``: ObservableCounters, ``node``;
    - ``nodemetrics.node.duration``: ObservableGauge in seconds, ``node``
      and ``quantile`` (``"0.5"``, ``"0.9"``, ``"0.99"``), over the rolling
      window.

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
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter("nodemetrics")
        for name, observe, unit, description in _COUNTERS:
            meter.create_observable_counter(
                name, callbacks=[self._reader(observe)], unit=unit, description=description
            )
        meter.create_observable_gauge(
            "nodemetrics.node.duration",
            callbacks=[self._reader(_durations)],
            unit="s",
            description="Percentiles of a node's durations over its rolling window.",
        )

    def __repr__(self) -> str:
        return f"<OpenTelemetryExporter(collector={self._collector!r})>"

    def _reader(
        self, observe: Callable[[str, NodeMetrics], Iterable[Observation]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        collector = self._collector

        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            return [
                observation
                for node, m in sorted(collector.get_all_node_metrics().items())
                for observation in observe(node, m)
            ]

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


def _durations(node: str, m: NodeMetrics) -> Iterable[Observation]:
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
