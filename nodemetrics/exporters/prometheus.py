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

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from nodemetrics._collector import NodeMetricsCollector
from nodemetrics._histogram import NodeHistogram
from nodemetrics._metrics import NodeMetrics


__all__ = ["PrometheusExporter"]

# Sample's own __new__ is a Python function; tuple's builds the same tuple
# (with no timestamp, exemplar or native histogram) in two thirds the time.
_new: Any = tuple.__new__
_go_float: Callable[[float], str] = floatToGoString


def _check_args(collector: object, namespace: object) -> None:
    """
    Check an exporter's *collector* and *namespace* arguments.

    Raises:
        TypeError: *collector* is not a collector, or *namespace* not a str.
        ValueError: *namespace* is not a valid metric name prefix.
    """
    if not isinstance(collector, NodeMetricsCollector):
        msg = f"collector must be a NodeMetricsCollector, got {type(collector).__name__}"
        raise TypeError(msg)
    if not isinstance(namespace, str):
        msg = f"namespace must be a str, got {type(namespace).__name__}"
        raise TypeError(msg)
    if not namespace.isidentifier() or not namespace.isascii():
        msg = f"namespace must be a valid metric name prefix, got {namespace!r}"
        raise ValueError(msg)


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
    - ``<ns>_node_duration_seconds{node, le}``: histogram of every
      execution's duration, with the collector's ``buckets`` converted to
      seconds as ``le`` (written as prometheus_client writes them);
    - ``<ns>_node_window_duration_seconds{node, quantile}``: summary with
      quantiles 0.5, 0.9 and 0.99 over the rolling window (absent while the
      window is empty); its ``_count`` and ``_sum`` are the histogram's
      (cumulative, as the Go client does for summaries);
    - ``<ns>_node_last_duration_seconds{node}``: gauge.

    Counts, ``_count`` and ``_sum`` only grow, and restart from zero when a
    node is reset, which Prometheus' ``rate()`` reads as a counter reset.

    Args:
        collector: The collector to expose.
        namespace: The prefix of every metric name.

    Raises:
        TypeError: *collector* is not a collector, or *namespace* not a str.
        ValueError: *namespace* is not a valid metric name prefix.
    """

    def __init__(self, collector: NodeMetricsCollector, *, namespace: str = "nodemetrics") -> None:
        _check_args(collector, namespace)
        self._collector = collector
        self._prefix = f"{namespace}_node_"
        # The le labels, written once: every scrape writes them for every node.
        self._le: tuple[str, ...] = (*(_go_float(b / 1000) for b in collector.buckets), "+Inf")

    def __repr__(self) -> str:
        return f"<PrometheusExporter(namespace={self._prefix[: -len('_node_')]!r})>"

    def describe(self) -> Iterator[Metric]:
        """Yield the metric families, without samples, for registry checks."""
        yield from self._families({})

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families with the collector's current values."""
        # One read for all families, so that they agree (see _read_all).
        yield from self._families(self._collector._read_all())  # noqa: SLF001

    def _empty_families(self) -> tuple[Metric, ...]:
        p = self._prefix
        executions = Metric(f"{p}executions", "Executions of a node, by outcome.", "counter")
        failures = Metric(f"{p}failures", "Failed executions of a node, by category.", "counter")
        retries = Metric(f"{p}retries", "Retries of a node.", "counter")
        cancellations = Metric(f"{p}cancellations", "Cancelled executions of a node.", "counter")
        interruptions = Metric(
            f"{p}interruptions", "Executions of a node that paused (interrupted).", "counter"
        )
        duration = Metric(
            f"{p}duration_seconds",
            "Durations of a node's executions since its last reset.",
            "histogram",
            unit="seconds",
        )
        window = Metric(
            f"{p}window_duration_seconds",
            "Durations of a node's executions; quantiles over its rolling window, "
            "count and sum since its last reset.",
            "summary",
            unit="seconds",
        )
        last = Metric(
            f"{p}last_duration_seconds",
            "Duration of a node's latest execution.",
            "gauge",
            unit="seconds",
        )
        return (
            executions,
            failures,
            retries,
            cancellations,
            interruptions,
            duration,
            window,
            last,
        )

    def _families(self, read: dict[str, tuple[NodeMetrics, NodeHistogram]]) -> Iterator[Metric]:
        p = self._prefix
        families = self._empty_families()
        executions, failures, retries, cancellations, interruptions, duration, window, last = (
            families
        )
        # Samples are built as plain tuples, not through add_metric() nor even
        # Sample(): a scrape of 10,000 nodes builds 360,000 of them. Even so,
        # prometheus_client's formatting is 93% of a scrape (callgrind, 1,000
        # nodes: 1.35M of 1.45M instructions per node, GC off).
        ex_name = f"{p}executions_total"
        fail_name = f"{p}failures_total"
        retry_name = f"{p}retries_total"
        cancel_name = f"{p}cancellations_total"
        interrupt_name = f"{p}interruptions_total"
        bucket_name = f"{p}duration_seconds_bucket"
        count_name = f"{p}duration_seconds_count"
        sum_name = f"{p}duration_seconds_sum"
        window_name = window.name
        window_count_name = f"{window_name}_count"
        window_sum_name = f"{window_name}_sum"
        last_name = last.name
        le_values = self._le
        ex = executions.samples.append
        fail = failures.samples.append
        retry = retries.samples.append
        cancel = cancellations.samples.append
        interrupt = interruptions.samples.append
        hist = duration.samples.append
        win = window.samples.append
        for node in sorted(read):
            m, h = read[node]
            labels = {"node": node}
            ex(
                _new(
                    Sample,
                    (
                        ex_name,
                        {"node": node, "outcome": "success"},
                        m.success_count,
                        None,
                        None,
                        None,
                    ),
                )
            )
            ex(
                _new(
                    Sample,
                    (
                        ex_name,
                        {"node": node, "outcome": "failure"},
                        m.failure_count,
                        None,
                        None,
                        None,
                    ),
                )
            )
            for category, value in (
                ("timeout", m.timeout_errors),
                ("validation", m.validation_errors),
                ("network", m.network_errors),
                ("other", m.other_errors),
            ):
                fail(
                    _new(
                        Sample,
                        (fail_name, {"node": node, "category": category}, value, None, None, None),
                    )
                )
            retry(_new(Sample, (retry_name, labels, m.retry_count, None, None, None)))
            cancel(_new(Sample, (cancel_name, labels, m.cancelled_count, None, None, None)))
            interrupt(_new(Sample, (interrupt_name, labels, m.interrupted_count, None, None, None)))
            total = 0
            counts = h.counts
            for i, le in enumerate(le_values):
                total += counts[i]
                hist(_new(Sample, (bucket_name, {"node": node, "le": le}, total, None, None, None)))
            sum_s = h.sum_ms / 1000
            hist(_new(Sample, (count_name, labels, total, None, None, None)))
            hist(_new(Sample, (sum_name, labels, sum_s, None, None, None)))
            for quantile, p_ms in (("0.5", m.p50), ("0.9", m.p90), ("0.99", m.p99)):
                if p_ms is not None:
                    win(
                        _new(
                            Sample,
                            (
                                window_name,
                                {"node": node, "quantile": quantile},
                                p_ms / 1000,
                                None,
                                None,
                                None,
                            ),
                        )
                    )
            win(_new(Sample, (window_count_name, labels, total, None, None, None)))
            win(_new(Sample, (window_sum_name, labels, sum_s, None, None, None)))
            if m.last_execution_ms is not None:
                last.samples.append(
                    _new(Sample, (last_name, labels, m.last_execution_ms / 1000, None, None, None))
                )
        yield from families
