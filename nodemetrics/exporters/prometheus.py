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
from functools import partial
from itertools import accumulate, repeat
from typing import Any, NamedTuple

from prometheus_client.core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from nodemetrics._collector import NodeMetricsCollector
from nodemetrics._histogram import NodeHistogram
from nodemetrics._metrics import NodeMetrics
from nodemetrics.exporters._names import label_value


__all__ = ["PrometheusExporter"]

# Sample's own __new__ is a Python function; tuple's builds the same tuple
# (with no timestamp, exemplar or native histogram) in two thirds the time.
_sample: Callable[[tuple[Any, ...]], Sample] = partial(tuple.__new__, Sample)
_NONES = repeat(None)
_go_float: Callable[[float], str] = floatToGoString
_CATEGORIES = ("timeout", "validation", "network", "other")
_QUANTILES = ("0.5", "0.9", "0.99")

#: One node's label sets, values and samples, by family (a tuple of 8).
_Labels = tuple[tuple[dict[str, str], ...], ...]
_Values = tuple[tuple[float, ...], ...]
#: One node's snapshot and histogram, and its label sets, samples and values.
_Entry = tuple[NodeMetrics, NodeHistogram, _Labels, tuple[tuple[Sample, ...], ...], _Values]
#: A new node's "last scrape": no family's values match.
_NONE_YET: Any = (None,) * 8


class _Names(NamedTuple):
    """The sample names, with the namespace, written once per exporter."""

    executions: tuple[str, ...]
    failures: tuple[str, ...]
    retries: tuple[str, ...]
    cancellations: tuple[str, ...]
    interruptions: tuple[str, ...]
    duration: tuple[str, ...]
    window: tuple[str, ...]
    last: tuple[str, ...]


def _check_args(collector: object, namespace: object) -> str:
    """
    Check an exporter's *collector* and *namespace* arguments.

    Returns:
        *namespace* as a plain ``str`` (a subclass's own methods never run).

    Raises:
        TypeError: *collector* is not a collector, or *namespace* not a str.
        ValueError: *namespace* is not a valid metric name prefix.
    """
    # By real type, as nodemetrics._validate checks: an object's __class__
    # could lie or raise.
    if not issubclass(type(collector), NodeMetricsCollector):
        msg = f"collector must be a NodeMetricsCollector, got {type(collector).__name__}"
        raise TypeError(msg)
    if not issubclass(type(namespace), str):
        msg = f"namespace must be a str, got {type(namespace).__name__}"
        raise TypeError(msg)
    namespace = str.__str__(namespace)
    if not namespace.isidentifier() or not namespace.isascii():
        msg = f"namespace must be a valid metric name prefix, got {namespace!r}"
        raise ValueError(msg)
    return namespace


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

    The exporter keeps each node's samples from one scrape to the next
    (about 11 KB a node) and hands the same ones out again while the node
    is unchanged; a changed node gets new samples for the families whose
    values changed. Scrapes from several threads at once are safe.

    Args:
        collector: The collector to expose.
        namespace: The prefix of every metric name.

    Raises:
        TypeError: *collector* is not a collector, or *namespace* not a str.
        ValueError: *namespace* is not a valid metric name prefix.
    """

    def __init__(self, collector: NodeMetricsCollector, *, namespace: str = "nodemetrics") -> None:
        namespace = _check_args(collector, namespace)
        self._collector = collector
        self._prefix = f"{namespace}_node_"
        # The le labels, written once: every scrape writes them for every node.
        self._le: tuple[str, ...] = (*(_go_float(b / 1000) for b in collector.buckets), "+Inf")
        p = self._prefix
        window = f"{p}window_duration_seconds"
        self._names = _Names(
            (f"{p}executions_total",) * 2,
            (f"{p}failures_total",) * len(_CATEGORIES),
            (f"{p}retries_total",),
            (f"{p}cancellations_total",),
            (f"{p}interruptions_total",),
            (
                *(f"{p}duration_seconds_bucket",) * len(self._le),
                f"{p}duration_seconds_count",
                f"{p}duration_seconds_sum",
            ),
            (*(window,) * len(_QUANTILES), f"{window}_count", f"{window}_sum"),
            (f"{p}last_duration_seconds",),
        )
        # Each node's samples as of the last scrape, reused while it is idle.
        self._cache: dict[str, _Entry] = {}

    def __repr__(self) -> str:
        return f"<PrometheusExporter(namespace={self._prefix[: -len('_node_')]!r})>"

    def describe(self) -> Iterator[Metric]:
        """Yield the metric families, without samples, for registry checks."""
        yield from self._empty_families()

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
        families = self._empty_families()
        adds = [family.samples.extend for family in families]
        cache = self._cache
        build = self._node_samples
        for node in sorted(read):
            m, h = read[node]
            entry = cache.get(node)
            # The collector hands out the same snapshot and histogram objects
            # until a node changes, and the entry holds them, so identity
            # cannot be fooled by a reused id.
            if entry is None or entry[0] is not m or entry[1] is not h:
                entry = build(node, m, h, entry)
                # Replaced in place, so that the old samples are freed as the
                # new ones come: the garbage collector's count stays level
                # (at 10,000 changed nodes, a new dict tripled the scrape).
                cache[node] = entry
            for add, node_samples in zip(adds, entry[3], strict=True):
                add(node_samples)
        if len(cache) > len(read):
            # Nodes reset since the last scrape. list() copies the keys in one
            # step, which a concurrent scrape adding an entry cannot break.
            for node in [node for node in list(cache) if node not in read]:
                cache.pop(node, None)
        yield from families

    def _node_samples(
        self, node: str, m: NodeMetrics, h: NodeHistogram, old: _Entry | None
    ) -> _Entry:
        """
        Build one node's samples, family by family.

        A family whose values are those of *old* (the node's entry at the
        last scrape) keeps its samples: a scrape allocates only what changed.
        """
        cumulative = (*accumulate(h.counts),)
        total = cumulative[-1]
        sum_s = h.sum_ms / 1000
        p50, p90, p99, last = m.p50, m.p90, m.p99, m.last_execution_ms
        values: _Values = (
            (m.success_count, m.failure_count),
            (m.timeout_errors, m.validation_errors, m.network_errors, m.other_errors),
            (m.retry_count,),
            (m.cancelled_count,),
            (m.interrupted_count,),
            (*cumulative, total, sum_s),
            (total, sum_s)
            if p50 is None or p90 is None or p99 is None
            else (p50 / 1000, p90 / 1000, p99 / 1000, total, sum_s),
            () if last is None else (last / 1000,),
        )
        if old is None:
            labels = self._labels(node)
            old_samples: tuple[tuple[Sample, ...], ...] = _NONE_YET
            old_values: _Values = _NONE_YET
        else:
            labels, old_samples, old_values = old[2], old[3], old[4]
        samples = []
        for names, family_labels, family_values, was, had in zip(
            self._names, labels, values, old_values, old_samples, strict=True
        ):
            if family_values == was:
                samples.append(had)
                continue
            # The window's quantiles (first) and the last duration are absent
            # before a node's first execution.
            skip = len(names) - len(family_values)
            samples.append(
                tuple(
                    map(
                        _sample,
                        zip(
                            names[skip:],
                            family_labels[skip:],
                            family_values,
                            _NONES,
                            _NONES,
                            _NONES,
                            strict=False,
                        ),
                    )
                )
            )
        return m, h, labels, tuple(samples), values

    def _labels(self, node: str) -> _Labels:
        """Build one node's label sets by family, kept in its entry for later scrapes."""
        node = label_value(node)
        one = {"node": node}
        return (
            ({"node": node, "outcome": "success"}, {"node": node, "outcome": "failure"}),
            tuple({"node": node, "category": c} for c in _CATEGORIES),
            (one,),
            (one,),
            (one,),
            (*({"node": node, "le": le} for le in self._le), one, one),
            (*({"node": node, "quantile": q} for q in _QUANTILES), one, one),
            (one,),
        )
