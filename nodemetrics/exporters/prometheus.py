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
from operator import add
from typing import Any, NamedTuple, cast

from prometheus_client.core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from nodemetrics._collector import NodeMetricsCollector
from nodemetrics._histogram import NodeHistogram
from nodemetrics._metrics import NodeMetrics
from nodemetrics._sync import Events, Guard, fire, under_lock
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
_Samples = tuple[tuple[Sample, ...], ...]
#: One node's snapshot, histogram, label sets, samples and values (as
#: exported), its serial, and what is added to its counts (None: nothing)
#: for its resets. A node reset and not recorded since has no snapshot,
#: histogram or serial, and keeps its last values.
_Entry = tuple[
    NodeMetrics | None, NodeHistogram | None, _Labels, _Samples, _Values, int | None, _Values | None
]
#: A new node's "last scrape": no family's values match.
_NONE_YET: Any = (None,) * 8
#: The reading of a node reset and not recorded since.
_GONE: Any = (None, None, None)


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
    r"""
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

    Counts, buckets, ``_count`` and ``_sum`` only grow, also across
    :meth:`~nodemetrics.NodeMetricsCollector.reset_node_metrics`: the
    exporter tells a reset node for certain at its next scrape (the
    collector reads each node's serial with its snapshot), and adds what it
    last exported for the node to the node's later values. What the node
    recorded between the previous scrape and its reset is not in them. A
    node reset and not recorded since keeps its last values (but no window
    quantiles or last duration), so the exporter remembers every node it
    ever exported. The window's quantiles and the last duration are the
    collector's.

    Two names written as one ``node`` label (a lone surrogate and its
    escape spelled out, ``"a\udcff"`` and ``"a\\udcff"``) add up to one
    set of series: their counters and histograms are summed, and the window
    quantiles and last duration are those of the first of them, in code
    point order, that has executed since its reset.

    The exporter keeps each node's samples from one scrape to the next
    (about 11 KB a node) and hands the same ones out again while the node
    is unchanged; a changed node gets new samples for the families whose
    values changed. Scrapes from several threads at once are safe: they
    take turns, under the exporter's lock (taken as the collector takes its
    own, see ``nodemetrics._sync``); a scrape from a signal handler or
    finalizer that interrupted one in its own thread writes the samples of
    the last scrape.

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
        # The nodes reset and not recorded since (maybe some recorded since:
        # a scrape cut short between the two changes), whose entries stay.
        self._gone: set[str] = set()
        # The names written as a label other than themselves, by name: only
        # they can collide with another name.
        self._escaped: dict[str, str] = {}
        # Taken by each scrape around its read and its update of the above.
        self._guard = Guard()

    def __repr__(self) -> str:
        return f"<PrometheusExporter(namespace={self._prefix[: -len('_node_')]!r})>"

    def describe(self) -> Iterator[Metric]:
        """Yield the metric families, without samples, for registry checks."""
        yield from self._empty_families()

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families with the collector's current values."""
        yield from self._collect()

    def _collect(self) -> tuple[Metric, ...]:
        guard = self._guard
        if guard.owned():
            # A scrape from a signal handler or finalizer that interrupted
            # one in this thread, which may be updating the entries: the
            # entries as they are, each of them whole.
            nodes = sorted(self._cache)
            return self._merged_families(nodes, self._collisions() if self._escaped else {})
        # Under the lock, taken as the collector's (see nodemetrics._sync),
        # so that two scrapes never apply their readings out of order.
        # The threshold callbacks (and listeners) of the recordings the read
        # applies: user code, run once the lock is released, whatever happens.
        events: Events = []
        try:
            # One read for all families, so that they agree, and with each
            # node's serial, which tells a reset node (see _node_samples).
            families = under_lock(
                guard.lock,
                lambda: self._families(self._collector._read_all_incarnations(events)),  # noqa: SLF001
            )
        finally:
            if events:
                fire(events)
        return families

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

    def _families(self, read: dict[str, tuple[Any, Any, Any]]) -> tuple[Metric, ...]:
        """Update the entries from one reading of the collector; return the families."""
        gone = self._gone
        if gone:
            # Their entries hold their last values; a reading of the collector wins.
            read = dict.fromkeys(gone, _GONE) | read
        families = self._empty_families()
        adds = [family.samples.extend for family in families]
        cache = self._cache
        build = self._node_samples
        for node in sorted(read):
            m, h, serial = read[node]
            entry = cache.get(node)
            # The collector hands out the same snapshot and histogram objects
            # until a node changes, and the entry holds them, so identity
            # cannot be fooled by a reused id.
            if entry is None or entry[0] is not m or entry[1] is not h:
                entry = build(node, m, h, serial, entry)
                # Replaced in place, so that the old samples are freed as the
                # new ones come: the garbage collector's count stays level
                # (at 10,000 changed nodes, a new dict tripled the scrape).
                cache[node] = entry
            for add_samples, node_samples in zip(adds, entry[3], strict=True):
                add_samples(node_samples)
        if len(cache) > len(read):
            # Nodes reset and not recorded since the last scrape: listed as
            # such first, then written, in order, with their last values.
            # list() copies the keys in one step.
            gone.update([node for node in list(cache) if node not in read])
            return self._families(read)
        if self._escaped:
            groups = self._collisions()
            if groups:
                return self._merged_families(sorted(read), groups)
        return families

    def _node_samples(
        self,
        node: str,
        m: NodeMetrics | None,
        h: NodeHistogram | None,
        serial: int | None,
        old: _Entry | None,
    ) -> _Entry:
        """
        Build one node's samples, family by family.

        A family whose values are those of *old* (the node's entry at the
        last scrape) keeps its samples: a scrape allocates only what changed.
        A node read with a serial other than *old*'s was reset since: what
        *old* exported is added to its values from now on.
        """
        if m is None or h is None:
            # Reset, and not recorded since: its last values, which later
            # ones of the node go on from.
            return _gone(cast("_Entry", old))
        if old is None:
            base = None
            labels = self._labels(node)
            old_samples: _Samples = _NONE_YET
            old_values: _Values = _NONE_YET
        else:
            labels, old_samples, old_values, base = old[2], old[3], old[4], old[6]
            if old[5] != serial:
                # Reset since the last scrape (a node that is gone has no
                # serial): its counts go on from what was exported then.
                base = _based_on(old_values)
                self._gone.discard(node)
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
        if base is not None:
            values = _plus(values, base)
        samples = []
        for names, family_labels, family_values, was, had in zip(
            self._names, labels, values, old_values, old_samples, strict=True
        ):
            if family_values == was:
                samples.append(had)
            else:
                samples.append(_family_samples(names, family_labels, family_values))
        return m, h, labels, tuple(samples), values, serial, base

    def _labels(self, node: str) -> _Labels:
        """Build one node's label sets by family, kept in its entry for later scrapes."""
        label = label_value(node)
        if label is not node:
            self._escaped[node] = label
        one = {"node": label}
        return (
            ({"node": label, "outcome": "success"}, {"node": label, "outcome": "failure"}),
            tuple({"node": label, "category": c} for c in _CATEGORIES),
            (one,),
            (one,),
            (one,),
            (*({"node": label, "le": le} for le in self._le), one, one),
            (*({"node": label, "quantile": q} for q in _QUANTILES), one, one),
            (one,),
        )

    def _collisions(self) -> dict[str, list[str]]:
        """Return each name that shares its label with another, and all of those, sorted."""
        cache = self._cache
        by_label: dict[str, list[str]] = {}
        for node, label in list(self._escaped.items()):
            # Only names with an entry: a scrape cut short (a signal
            # handler's exception) may have listed a name it never cached.
            if node in cache:
                by_label.setdefault(label, []).append(node)
        groups: dict[str, list[str]] = {}
        for label, nodes in by_label.items():
            if label in cache:
                # A name that is its own label, the escape spelled out.
                nodes.append(label)
            if len(nodes) > 1:
                nodes.sort()
                groups.update(dict.fromkeys(nodes, nodes))
        return groups

    def _merged_families(
        self, nodes: list[str], groups: dict[str, list[str]]
    ) -> tuple[Metric, ...]:
        """Write every entry of *nodes*, those of one label of *groups* as one."""
        families = self._empty_families()
        adds = [family.samples.extend for family in families]
        cache = self._cache
        for node in nodes:
            group = groups.get(node)
            if group is None:
                samples = cache[node][3]
            elif node == group[0]:
                samples = self._merged_samples([cache[member] for member in group])
            else:
                continue
            for add_samples, node_samples in zip(adds, samples, strict=True):
                add_samples(node_samples)
        return families

    def _merged_samples(self, entries: list[_Entry]) -> _Samples:
        """
        Build the samples of names written as one label: their counts summed.

        The window's quantiles and the last duration are the first entry's
        that has them (the names are in code point order).
        """
        first = entries[0]
        values = first[4]
        for entry in entries[1:]:
            values = _plus(values, _based_on(entry[4]))
        values = _based_on(values)
        for entry in entries:
            if entry[4][7]:
                values = (*values[:6], (*entry[4][6][:-2], *values[6]), entry[4][7])
                break
        return tuple(
            _family_samples(names, family_labels, family_values)
            for names, family_labels, family_values in zip(
                self._names, first[2], values, strict=True
            )
        )


def _based_on(values: _Values) -> _Values:
    """Return what a node's later values add to go on from its exported *values*."""
    return (*values[:6], values[6][-2:], ())


def _gone(entry: _Entry) -> _Entry:
    """Return the entry of a node reset since *entry*, and not recorded since."""
    samples, base = entry[3], _based_on(entry[4])
    return None, None, entry[2], (*samples[:6], samples[6][-2:], ()), base, None, base


def _plus(values: _Values, base: _Values) -> _Values:
    """Return *values* with *base* added: to every count, and to the window's count and sum."""
    window = values[6]
    count, sum_s = base[6]
    return (
        *(tuple(map(add, family, more)) for family, more in zip(values[:6], base, strict=False)),
        (*window[:-2], window[-2] + count, window[-1] + sum_s),
        values[7],
    )


def _family_samples(
    names: tuple[str, ...], labels: tuple[dict[str, str], ...], values: tuple[float, ...]
) -> tuple[Sample, ...]:
    """Build one family's samples of one node."""
    # The window's quantiles (first) and the last duration are absent
    # before a node's first execution.
    skip = len(names) - len(values)
    return tuple(
        map(
            _sample,
            zip(names[skip:], labels[skip:], values, _NONES, _NONES, _NONES, strict=False),
        )
    )
