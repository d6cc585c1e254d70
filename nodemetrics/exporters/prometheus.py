"""
Expose a collector to Prometheus, through prometheus_client.

Needs the ``prometheus`` extra: ``pip install 'nodemetrics[prometheus]'``.

.. code-block:: python

    from prometheus_client import REGISTRY, start_http_server
    from nodemetrics.exporters.prometheus import PrometheusExporter

    REGISTRY.register(PrometheusExporter(collector))
    start_http_server(9464)
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from nodemetrics._collector import NodeMetricsCollector
from nodemetrics._metrics import FAILURE_FIELDS, QUANTILE_FIELDS, NodeMetrics


__all__ = ["PrometheusExporter"]


class PrometheusExporter:
    """
    A prometheus_client custom collector that reads a nodemetrics collector.

    Register it with any ``CollectorRegistry``; every scrape (or
    ``generate_latest``) reads the collector's state at that moment, all
    nodes at one instant. The families, with *namespace* as their prefix:

    - ``<ns>_node_executions_total{node, outcome}``: counter, ``outcome`` is
      ``success`` or ``failure``;
    - ``<ns>_node_failures_total{node, category}``: counter, one series for
      each of ``timeout``, ``validation``, ``network`` and ``other``;
    - ``<ns>_node_retries_total{node}``, ``<ns>_node_cancellations_total{node}``,
      ``<ns>_node_interruptions_total{node}``: counters;
    - ``<ns>_node_duration_seconds{node, quantile}``: summary with quantiles
      0.5, 0.9 and 0.99 over the rolling window (absent while a node has no
      execution), ``_count`` the executions and ``_sum`` their total seconds
      since the node's last reset;
    - ``<ns>_node_last_duration_seconds{node}``: gauge.

    The counters restart from zero when a node is reset, which Prometheus'
    ``rate()`` reads as a counter reset.

    Args:
        collector: The collector to expose.
        namespace: The prefix of every metric name.

    Raises:
        TypeError: *collector* is not a collector, or *namespace* not a str.
        ValueError: *namespace* is not a valid metric name prefix.
    """

    def __init__(self, collector: NodeMetricsCollector, *, namespace: str = "nodemetrics") -> None:
        if not isinstance(collector, NodeMetricsCollector):
            msg = f"collector must be a NodeMetricsCollector, got {type(collector).__name__}"
            raise TypeError(msg)
        if not isinstance(namespace, str):
            msg = f"namespace must be a str, got {type(namespace).__name__}"
            raise TypeError(msg)
        if not namespace.isidentifier() or not namespace.isascii():
            msg = f"namespace must be a valid metric name prefix, got {namespace!r}"
            raise ValueError(msg)
        self._collector = collector
        self._prefix = f"{namespace}_node_"

    def __repr__(self) -> str:
        return f"<PrometheusExporter(namespace={self._prefix[: -len('_node_')]!r})>"

    def describe(self) -> Iterator[Metric]:
        """Yield the metric families, without samples, for registry checks."""
        yield from self._families({})

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families with the collector's current values."""
        yield from self._families(self._collector.get_all_node_metrics())

    def _families(self, snapshots: dict[str, NodeMetrics]) -> Iterator[Metric]:
        p = self._prefix
        executions = CounterMetricFamily(
            f"{p}executions", "Executions of a node, by outcome.", labels=["node", "outcome"]
        )
        failures = CounterMetricFamily(
            f"{p}failures", "Failed executions of a node, by category.", labels=["node", "category"]
        )
        retries = CounterMetricFamily(f"{p}retries", "Retries of a node.", labels=["node"])
        cancellations = CounterMetricFamily(
            f"{p}cancellations", "Cancelled executions of a node.", labels=["node"]
        )
        interruptions = CounterMetricFamily(
            f"{p}interruptions", "Executions of a node that paused (interrupted).", labels=["node"]
        )
        duration = SummaryMetricFamily(
            f"{p}duration_seconds",
            "Durations of a node's executions; quantiles over its rolling window.",
            labels=["node"],
            unit="seconds",
        )
        last = GaugeMetricFamily(
            f"{p}last_duration_seconds",
            "Duration of a node's latest execution.",
            labels=["node"],
            unit="seconds",
        )
        for node, m in sorted(snapshots.items()):
            executions.add_metric([node, "success"], m.success_count)
            executions.add_metric([node, "failure"], m.failure_count)
            for category, field in FAILURE_FIELDS:
                failures.add_metric([node, category], getattr(m, field))
            retries.add_metric([node], m.retry_count)
            cancellations.add_metric([node], m.cancelled_count)
            interruptions.add_metric([node], m.interrupted_count)
            for quantile, field in QUANTILE_FIELDS:
                value = getattr(m, field)
                if value is not None:
                    duration.add_sample(
                        duration.name, {"node": node, "quantile": quantile}, value / 1000
                    )
            total_s = m.avg_execution_ms * m.total_executions / 1000
            duration.add_metric([node], m.total_executions, total_s)
            if m.last_execution_ms is not None:
                last.add_metric([node], m.last_execution_ms / 1000)
        yield from (executions, failures, retries, cancellations, interruptions, duration, last)
