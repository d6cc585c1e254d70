"""
No user code runs under an exporter's lock.

An exporter reads the collector under a lock of its own (the OpenTelemetry
exporter's, which every exported recording needs; a Prometheus scrape's; a
multiprocess sync's). That read applies the recordings queued from inside
the collector (a signal handler's, a finalizer's) and so may cross a
threshold: the callback must run once the exporter's lock is released, as
the collector runs it once its own is. (Found by review: run under the
OpenTelemetry exporter's lock, a callback that waited for another thread's
recording waited for ever.)
"""

from __future__ import annotations

import contextlib
import threading

from collections.abc import Callable

import pytest

from _internals import queue
from prometheus_client import CollectorRegistry, generate_latest

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.prometheus import PrometheusExporter
from nodemetrics.exporters.prometheus_multiprocess import MultiProcessSync


TIMEOUT = 0  # the category index that queue() takes for a timed-out failure


def free_in_another_thread(lock: threading.RLock | threading.Lock) -> bool:
    """Whether another thread gets *lock* within 5 s (a lock held for ever fails in 5 s)."""
    got: list[bool] = []

    def take() -> None:
        ok = lock.acquire(timeout=5)
        got.append(ok)
        if ok:
            lock.release()

    thread = threading.Thread(target=take)
    thread.start()
    thread.join(10)
    return got == [True]


def otel(c: NodeMetricsCollector) -> tuple[object, Callable[[], object]]:
    sdk = pytest.importorskip("opentelemetry.sdk.metrics")
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from nodemetrics.exporters.otel import OpenTelemetryExporter

    reader = InMemoryMetricReader()
    exporter = OpenTelemetryExporter(c, meter_provider=sdk.MeterProvider(metric_readers=[reader]))
    return exporter._guard.lock, reader.get_metrics_data


def prometheus(c: NodeMetricsCollector) -> tuple[object, Callable[[], object]]:
    registry = CollectorRegistry()
    exporter = PrometheusExporter(c)
    registry.register(exporter)
    return exporter._guard.lock, lambda: generate_latest(registry)


def multiprocess(c: NodeMetricsCollector) -> tuple[object, Callable[[], object]]:
    sync = MultiProcessSync(c, registry=CollectorRegistry())
    return sync._lock, sync.sync


@pytest.mark.parametrize("export", [otel, prometheus, multiprocess])
def test_a_threshold_crossed_by_an_exporters_read_fires_outside_its_lock(export):
    seen: list[bool] = []
    c = NodeMetricsCollector(
        failure_rate_threshold=0.5,
        on_failure_rate_threshold=lambda node, rate: seen.append(free_in_another_thread(lock)),
        min_samples=1,
    )
    lock, read = export(c)
    c.record_success("n", 1.0)
    read()
    # Two failures recorded from a signal handler, queued for the next call:
    # the exporter's read, which applies them and so crosses the threshold
    # (2 failures of 3 executions, above 0.5).
    queue(c, "n", 5.0, TIMEOUT)
    queue(c, "n", 5.0, TIMEOUT)
    read()
    assert [True] == seen
    assert 2 == c.get_node_metrics("n").failure_count


def broken(*_args: object) -> None:
    raise RuntimeError("the exporter's own work failed")


def otel_module() -> object:
    pytest.importorskip("opentelemetry.sdk.metrics")
    from nodemetrics.exporters import otel as module

    return module


#: For each exporter, where its own work goes on after the read: made to raise.
AFTER_THE_READ = {
    "otel": (otel, otel_module, "_observe_totals"),
    "prometheus": (prometheus, lambda: PrometheusExporter, "_families"),
    "multiprocess": (multiprocess, lambda: MultiProcessSync, "_series_of"),
}


@pytest.mark.parametrize("exporter", list(AFTER_THE_READ))
def test_a_threshold_crossed_by_an_exporters_read_fires_even_if_the_export_fails(
    monkeypatch, exporter
):
    """The read applied the queued recordings: their callbacks fire, whatever the
    exporter's own work does next (here it raises)."""
    export, owner, attribute = AFTER_THE_READ[exporter]
    seen: list[tuple[str, float]] = []
    c = NodeMetricsCollector(
        failure_rate_threshold=0.5,
        on_failure_rate_threshold=lambda node, rate: seen.append((node, rate)),
        min_samples=1,
    )
    _, read = export(c)
    queue(c, "n", 5.0, TIMEOUT)
    monkeypatch.setattr(owner(), attribute, broken)
    with contextlib.suppress(RuntimeError):  # what the scrape makes of it is its own
        read()
    assert [("n", 1.0)] == seen
