"""
The cost of a Prometheus scrape of a collector, next to prometheus_client's own.

Run with ``python benchmarks/bench_export.py`` (``--quick`` for a run of a
few seconds that only proves the harness works). Prints a Markdown table;
:func:`export_rows` returns its rows for ``benchmarks/bench.py``.

A figure is the time of one ``generate_latest()`` of a registry holding a
:class:`PrometheusExporter`, divided by the number of nodes; its baseline is
the same for a registry holding one prometheus_client ``Histogram`` with the
same buckets (in seconds), the same name, and one label set per node, each
holding the same observations. Two states are measured: *idle* (nothing
recorded since the last scrape, which the collector serves from its
per-node caches) and *changed* (every node recorded once since the last
scrape, outside the timed call, on both sides). Each round times ours and
the baseline back to back by the thread's CPU clock (so that other jobs on
a shared machine do not count), in alternating order, with the garbage collector
on (a real scrape has it on) and collected before each; a ratio is the
median of the per-round ratios, so a machine whose speed drifts moves both
alike.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys

from collections.abc import Callable
from time import thread_time_ns

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.prometheus import PrometheusExporter


Row = tuple[str, float, str, float, float, str]

#: Durations recorded into every node before the first scrape, in ms: one
#: per decade, so that the buckets' counts differ.
_SEED_MS = (0.07, 0.3, 3.0, 30.0, 300.0, 3_000.0, 30_000.0)


class _Pair:
    """A nodemetrics exporter and its prometheus_client baseline, filled alike."""

    def __init__(self, nodes: int, *, equivalent: bool = False) -> None:
        self.nodes = nodes
        self.names = [f"node-{i:05d}" for i in range(nodes)]
        self.collector = NodeMetricsCollector(max_nodes=None)
        self.ours = CollectorRegistry()
        self.ours.register(PrometheusExporter(self.collector))
        self.base = CollectorRegistry()
        buckets = [b / 1000 for b in self.collector.buckets]
        histogram = Histogram(
            "nodemetrics_node_duration_seconds",
            "Durations.",
            ["node"],
            registry=self.base,
            buckets=buckets,
        )
        self.observers = [histogram.labels(name).observe for name in self.names]
        if equivalent:
            # What a user would write to expose the same series by hand.
            executions = Counter(
                "nodemetrics_node_executions", "E", ["node", "outcome"], registry=self.base
            )
            failures = Counter(
                "nodemetrics_node_failures", "F", ["node", "category"], registry=self.base
            )
            retries = Counter("nodemetrics_node_retries", "R", ["node"], registry=self.base)
            cancellations = Counter(
                "nodemetrics_node_cancellations", "C", ["node"], registry=self.base
            )
            window = Gauge(
                "nodemetrics_node_window_duration_seconds",
                "W",
                ["node", "quantile"],
                registry=self.base,
            )
            last = Gauge(
                "nodemetrics_node_last_duration_seconds", "L", ["node"], registry=self.base
            )
            for name in self.names:
                executions.labels(name, "success")
                executions.labels(name, "failure")
                for category in ("timeout", "validation", "network", "other"):
                    failures.labels(name, category)
                retries.labels(name)
                cancellations.labels(name)
                for quantile in ("0.5", "0.9", "0.99"):
                    window.labels(name, quantile)
                last.labels(name)
        for value in _SEED_MS:
            self.record(value)

    def record(self, value_ms: float = 1.0) -> None:
        """Record one execution of every node, on both sides."""
        record = self.collector.record_success
        for name in self.names:
            record(name, value_ms)
        value_s = value_ms / 1000
        for observe in self.observers:
            observe(value_s)


def _time_scrapes(
    registry: CollectorRegistry, scrapes: int, before: Callable[[], None] | None
) -> float:
    total = 0
    for _ in range(scrapes):
        if before is not None:
            before()
        gc.collect()
        start = thread_time_ns()
        generate_latest(registry)
        total += thread_time_ns() - start
    return total / scrapes


def _measure(pair: _Pair, rounds: int, *, changed: bool) -> tuple[float, float, float]:
    """Return ours and the baseline in ns per node, and the median of per-round ratios."""
    before = pair.record if changed else None
    generate_latest(pair.ours)  # warm up, and fill the idle caches
    generate_latest(pair.base)
    one = _time_scrapes(pair.base, 1, before)
    # Enough scrapes for about 20 ms per timing.
    scrapes = max(1, int(20e6 / one))
    ours: list[float] = []
    base: list[float] = []
    for i in range(rounds):
        order = ((pair.ours, ours), (pair.base, base))
        for registry, times in order if i % 2 == 0 else order[::-1]:
            times.append(_time_scrapes(registry, scrapes, before) / pair.nodes)
    ratio = statistics.median(a / b for a, b in zip(ours, base, strict=True))
    return statistics.median(ours), statistics.median(base), ratio


def export_rows(*, quick: bool = False) -> list[Row]:
    """
    Measure the scrape figures.

    Returns:
        Rows ``(figure, ns, baseline, ns, ratio, target)``: ns per node for
        ours and the baseline, the median of the per-round ratios, and the
        target (``"-"`` for a figure given for context only).
    """
    rounds = 3 if quick else 15
    sizes = (10, 1_000) if quick else (10, 1_000, 10_000)
    rows: list[Row] = []
    for nodes in sizes:
        pair = _Pair(nodes)
        for changed in (False, True):
            state = "every node changed" if changed else "idle"
            ours, base, ratio = _measure(pair, rounds, changed=changed)
            rows.append(
                (
                    f"scrape per node, {nodes:,} nodes, {state}",
                    ours,
                    f"`Histogram`, same buckets, {nodes:,} label sets",
                    base,
                    ratio,
                    "<= 1.0",
                )
            )
    nodes = sizes[-1]
    pair = _Pair(nodes, equivalent=True)
    ours, base, ratio = _measure(pair, rounds, changed=True)
    rows.append(
        (
            f"scrape per node, {nodes:,} nodes, every node changed",
            ours,
            "about the same series by hand: `Counter`s, `Histogram`, `Gauge`s",
            base,
            ratio,
            "-",
        )
    )
    return rows


def main() -> int:
    """Print the scrape figures as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds; proves it runs")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{'quick run, numbers indicative only' if args.quick else 'full run'}\n"
    )
    print("| figure | ns | baseline | ns | ratio | target |")
    print("| --- | ---: | --- | ---: | ---: | --- |")
    for figure, ours, baseline, base, ratio, target in export_rows(quick=args.quick):
        print(f"| {figure} | {ours:,.0f} | {baseline} | {base:,.0f} | {ratio:.2f} | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
