from __future__ import annotations

import gc
import os
import signal
import sys
import threading

import pytest

from _internals import fork_hooks, lock_of, locks_held_for_fork, owns_lock
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from nodemetrics import NodeMetricsCollector, metered
from nodemetrics.exporters.otel import OpenTelemetryExporter


def collect(reader: InMemoryMetricReader) -> dict[str, Metric]:
    """Every metric from one real SDK collection, by name."""
    data = reader.get_metrics_data()
    out: dict[str, Metric] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert "nodemetrics" == sm.scope.name
            for metric in sm.metrics:
                out[metric.name] = metric
    return out


def points(metric: Metric) -> dict[frozenset, object]:
    return {frozenset(p.attributes.items()): p for p in metric.data.data_points}


def read(reader: InMemoryMetricReader) -> dict[str, dict[frozenset, float]]:
    """The number-valued data points of one collection, by metric and attributes."""
    return {
        name: {key: p.value for key, p in points(metric).items()}
        for name, metric in collect(reader).items()
        if name != "nodemetrics.node.duration"
    }


def histograms(reader: InMemoryMetricReader) -> dict[str, HistogramDataPoint]:
    """The duration histogram's data points of one collection, by node."""
    metric = collect(reader).get("nodemetrics.node.duration")
    if metric is None:
        return {}
    return {dict(p.attributes)["node"]: p for p in metric.data.data_points}


def the_exporter(c: NodeMetricsCollector) -> OpenTelemetryExporter:
    """The one exporter listening to *c*."""
    (listener,) = c._listeners
    return listener.__self__


def attrs(**kw: str) -> frozenset:
    return frozenset({k.replace("error_type", "error.type"): v for k, v in kw.items()}.items())


def seconds_sum(durations_ms: list[float]) -> float:
    """The SDK's sum: the durations in seconds, added in the order they were recorded."""
    total = 0
    for d in durations_ms:
        total += d / 1000
    return total


def bucket_counts(bounds_ms: tuple[float, ...], durations_ms: list[float]) -> list[int]:
    """An independent oracle: count each duration in the first bucket whose bound holds it."""
    counts = [0] * (len(bounds_ms) + 1)
    for d in durations_ms:
        counts[next((i for i, b in enumerate(bounds_ms) if d <= b), len(bounds_ms))] += 1
    return counts


class Deadlock(BaseException):  # not swallowed by the collector's "log and go on"
    """Raised in the main thread by the watchdog of ``deadline``."""


@pytest.fixture
def deadline():
    """
    Fail the test with Deadlock if it still runs after 30 s: a signal breaks
    the main thread out of a blocked lock acquire (POSIX), so a deadlock is a
    failure within seconds rather than a hang.
    """
    if not hasattr(signal, "pthread_kill"):
        pytest.skip("needs signal.pthread_kill")

    def alarm(signum, frame):
        raise Deadlock("still running after 30 s: deadlocked?")

    previous = signal.signal(signal.SIGUSR1, alarm)
    done = threading.Event()
    main = threading.main_thread().ident

    def watch():
        if not done.wait(30):
            signal.pthread_kill(main, signal.SIGUSR1)

    watchdog = threading.Thread(target=watch, daemon=True)
    watchdog.start()
    yield
    done.set()
    watchdog.join()
    signal.signal(signal.SIGUSR1, previous)


@pytest.fixture
def provider_reader():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


@pytest.fixture
def setup(provider_reader):
    provider, reader = provider_reader
    c = NodeMetricsCollector()
    OpenTelemetryExporter(c, meter_provider=provider)
    return c, reader


class TestOpenTelemetryExporter:
    def test_values(self, setup):
        """Every observable instrument reports the collector's values, point by point."""
        c, reader = setup
        for d in [10.0, 20.0, 30.0]:
            c.record_success("fetch", d)
        c.record_failure("fetch", 40.0, TimeoutError())
        c.record_retry("fetch")
        c.record_cancellation("fetch")
        c.record_interruption("fetch")
        c.record_interruption("fetch")
        m = c.get_node_metrics("fetch")
        data = read(reader)

        assert {
            attrs(node="fetch", outcome="success"): 3,
            attrs(node="fetch", outcome="failure"): 1,
        } == data["nodemetrics.node.executions"]
        assert {
            attrs(node="fetch", error_type="timeout"): 1,
            attrs(node="fetch", error_type="validation"): 0,
            attrs(node="fetch", error_type="network"): 0,
            attrs(node="fetch", error_type="other"): 0,
        } == data["nodemetrics.node.failures"]
        assert {attrs(node="fetch"): 1} == data["nodemetrics.node.retries"]
        assert {attrs(node="fetch"): 1} == data["nodemetrics.node.cancellations"]
        assert {attrs(node="fetch"): 2} == data["nodemetrics.node.interruptions"]
        assert m.p50 is not None
        assert m.p90 is not None
        assert m.p99 is not None
        assert {
            attrs(node="fetch", quantile="0.5"): pytest.approx(m.p50 / 1000),
            attrs(node="fetch", quantile="0.9"): pytest.approx(m.p90 / 1000),
            attrs(node="fetch", quantile="0.99"): pytest.approx(m.p99 / 1000),
        } == data["nodemetrics.node.window.duration"]

    def test_instrument_kinds_and_units(self, setup):
        """Counters are cumulative monotonic sums; window and duration are in seconds."""
        c, reader = setup
        c.record_success("n", 1.0)
        metrics = collect(reader)
        for name in ["executions", "failures", "retries", "cancellations", "interruptions"]:
            data = metrics[f"nodemetrics.node.{name}"].data
            assert data.is_monotonic
            assert AggregationTemporality.CUMULATIVE == data.aggregation_temporality
            assert "Sum" == type(data).__name__
        window = metrics["nodemetrics.node.window.duration"]
        assert "Gauge" == type(window.data).__name__
        assert "s" == window.unit
        duration = metrics["nodemetrics.node.duration"]
        assert "Histogram" == type(duration.data).__name__
        assert AggregationTemporality.CUMULATIVE == duration.data.aggregation_temporality
        assert "s" == duration.unit

    def test_each_collection_reads_current_state(self, setup):
        """A later collection sees later recordings."""
        c, reader = setup
        c.record_success("n", 1.0)
        assert 1 == read(reader)["nodemetrics.node.executions"][attrs(node="n", outcome="success")]
        c.record_success("n", 1.0)
        c.record_success("m", 1.0)
        data = read(reader)["nodemetrics.node.executions"]
        assert 2 == data[attrs(node="n", outcome="success")]
        assert 1 == data[attrs(node="m", outcome="success")]

    def test_no_duration_without_executions(self, setup):
        """A node that only retried or was cancelled has counters but no duration points."""
        c, reader = setup
        c.record_retry("r")
        c.record_cancellation("r")
        metrics = collect(reader)
        assert {attrs(node="r"): 1} == {
            k: p.value for k, p in points(metrics["nodemetrics.node.retries"]).items()
        }
        assert "nodemetrics.node.window.duration" not in metrics
        assert "nodemetrics.node.duration" not in metrics

    def test_global_provider(self, monkeypatch):
        """Without meter_provider the global provider's meter is used."""
        from opentelemetry import metrics

        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        monkeypatch.setattr(metrics, "get_meter_provider", lambda: provider)
        c = NodeMetricsCollector()
        exporter = OpenTelemetryExporter(c)
        c.record_success("n", 1.0)
        data = collect(reader)
        assert "nodemetrics.node.executions" in data
        assert "nodemetrics.node.duration" in data
        assert repr(exporter).startswith("<OpenTelemetryExporter(")
        provider.shutdown()

    def test_bad_collector(self):
        """A collector that is not one is refused."""
        with pytest.raises(TypeError, match="collector"):
            OpenTelemetryExporter(object())  # type: ignore[arg-type]


class TestDurationHistogram:
    def test_exact_points(self, setup):
        """Counts per bucket, count, sum, min and max are exactly those of the executions."""
        c, reader = setup
        # On bounds (which belong to their bucket), between them, under the
        # first and over the last, failures among them.
        durations = [0.0, 0.1, 0.1000001, 0.3, 1.0, 7.5, 10.0, 250.0, 99_999.0, 100_000.0, 3e5]
        for i, d in enumerate(durations):
            if i % 3:
                c.record_success("n", d)
            else:
                c.record_failure("n", d, ValueError())
        point = histograms(reader)["n"]
        bounds = c.buckets
        assert tuple(b / 1000 for b in bounds) == tuple(point.explicit_bounds)
        assert bucket_counts(bounds, durations) == list(point.bucket_counts)
        assert len(durations) == point.count
        assert seconds_sum(durations) == point.sum
        assert 0.0 == point.min
        assert 300.0 == point.max

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.one_of(
                    st.floats(0, 1e6, allow_nan=False),
                    st.sampled_from(NodeMetricsCollector().buckets),
                ),
                st.booleans(),
            ),
            min_size=1,
            max_size=60,
        )
    )
    def test_exact_against_an_oracle(self, executions):
        """Any mix of successes and failures: counts, sum, min and max as the oracle says."""
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        c = NodeMetricsCollector()
        OpenTelemetryExporter(c, meter_provider=provider)
        for d, ok in executions:
            if ok:
                c.record_success("n", d)
            else:
                c.record_failure("n", d)
        point = histograms(reader)["n"]
        provider.shutdown()
        durations = [d for d, _ in executions]
        assert bucket_counts(c.buckets, durations) == list(point.bucket_counts)
        assert len(durations) == point.count
        assert seconds_sum(durations) == point.sum
        assert min(durations) / 1000 == point.min
        assert max(durations) / 1000 == point.max

    def test_agrees_with_the_collectors_histogram(self, setup):
        """The SDK puts every duration in the bucket the collector's own histogram does."""
        c, reader = setup
        durations = [b * f for b in c.buckets for f in (0.5, 1.0, 1.5)]
        for d in durations:
            c.record_success("n", d)
        own = c.get_node_histogram("n")
        point = histograms(reader)["n"]
        assert list(own.counts) == list(point.bucket_counts)
        assert own.count == point.count
        assert own.sum_ms / 1000 == pytest.approx(point.sum, rel=1e-12)

    def test_custom_buckets(self, provider_reader):
        """The collector's buckets, in seconds, are the boundaries."""
        provider, reader = provider_reader
        c = NodeMetricsCollector(buckets=(1, 10, 100))
        OpenTelemetryExporter(c, meter_provider=provider)
        for d in [0.5, 1.0, 5.0, 100.0, 101.0]:
            c.record_success("n", d)
        point = histograms(reader)["n"]
        assert (0.001, 0.01, 0.1) == tuple(point.explicit_bounds)
        assert [2, 1, 1, 1] == list(point.bucket_counts)

    def test_every_way_of_recording(self, setup):
        """track(), async track(), @metered (sync and async) and record_* all count, once."""
        c, reader = setup

        @metered("n", collector=c)
        def sync_node():
            return 1

        @metered("n", collector=c)
        async def async_node():
            return 2

        async def run():
            for _ in range(40):
                assert 2 == await async_node()
                async with c.track("n"):
                    pass

        import asyncio

        for _ in range(40):  # more than a batch's worth: nothing may wait in one
            assert 1 == sync_node()
            with c.track("n"):
                pass
            with pytest.raises(KeyError), c.track("n"):
                raise KeyError
        asyncio.run(run())
        point = histograms(reader)["n"]
        assert 200 == point.count
        assert c.get_node_metrics("n").total_executions == point.count
        assert sum(point.bucket_counts) == point.count

    def test_cumulative_across_collections(self, setup):
        """Each collection holds everything since the exporter was created."""
        c, reader = setup
        c.record_success("n", 1.0)
        assert 1 == histograms(reader)["n"].count
        c.record_success("n", 2.0)
        c.record_success("m", 3.0)
        points = histograms(reader)
        assert 2 == points["n"].count
        assert seconds_sum([1.0, 2.0]) == points["n"].sum
        assert 1 == points["m"].count

    def test_delta_temporality_when_the_reader_asks(self):
        """A reader that prefers delta histograms gets each interval's executions."""
        reader = InMemoryMetricReader(
            preferred_temporality={Histogram: AggregationTemporality.DELTA}
        )
        provider = MeterProvider(metric_readers=[reader])
        c = NodeMetricsCollector()
        OpenTelemetryExporter(c, meter_provider=provider)
        c.record_success("n", 1.0)
        c.record_success("n", 2.0)
        assert 2 == histograms(reader)["n"].count
        c.record_success("n", 3.0)
        point = histograms(reader)["n"]
        assert 1 == point.count
        assert 0.003 == point.sum
        provider.shutdown()

    def test_only_recordings_after_the_exporter_is_created(self, provider_reader):
        """Executions recorded before the exporter exists are not in the histogram."""
        provider, reader = provider_reader
        c = NodeMetricsCollector()
        c.record_success("n", 1.0)
        for _ in range(5):
            with c.track("n"):  # batched: folded in after the exporter exists
                pass
        OpenTelemetryExporter(c, meter_provider=provider)
        c.record_success("n", 2.0)
        assert 7 == c.get_node_metrics("n").total_executions
        point = histograms(reader)["n"]
        assert 1 == point.count
        assert 0.002 == point.sum

    def test_reset_does_not_empty_it(self, setup):
        """OpenTelemetry's cumulative stream goes on across a reset of the collector."""
        c, reader = setup
        c.record_success("n", 1.0)
        c.reset_node_metrics()
        c.record_success("n", 2.0)
        assert 1 == c.get_node_metrics("n").total_executions
        assert 2 == histograms(reader)["n"].count

    def test_overflow_node(self, provider_reader):
        """Past max_nodes, executions are reported under the node they were recorded under."""
        provider, reader = provider_reader
        c = NodeMetricsCollector(max_nodes=1)
        OpenTelemetryExporter(c, meter_provider=provider)
        for name in ["a", "b", "c"]:
            c.record_success(name, 1.0)
        points = histograms(reader)
        assert {"a": 1, "__overflow__": 2} == {node: p.count for node, p in points.items()}

    def test_view_takes_precedence(self):
        """An application's View for the instrument decides its buckets."""
        reader = InMemoryMetricReader()
        view = View(
            instrument_name="nodemetrics.node.duration",
            aggregation=ExplicitBucketHistogramAggregation(boundaries=(0.5,)),
        )
        provider = MeterProvider(metric_readers=[reader], views=[view])
        c = NodeMetricsCollector()
        OpenTelemetryExporter(c, meter_provider=provider)
        c.record_success("n", 1.0)
        c.record_success("n", 1000.0)
        point = histograms(reader)["n"]
        assert (0.5,) == tuple(point.explicit_bounds)
        assert [1, 1] == list(point.bucket_counts)
        provider.shutdown()

    def test_with_thresholds(self, provider_reader):
        """A collector with threshold callbacks feeds the histogram and still calls back."""
        provider, reader = provider_reader
        crossed = []
        c = NodeMetricsCollector(
            min_samples=2,
            latency_threshold_ms=5.0,
            on_latency_threshold=lambda node, p99: crossed.append(node),
        )
        OpenTelemetryExporter(c, meter_provider=provider)
        for d in [1.0, 1.0, 10.0, 10.0]:
            c.record_success("n", d)
        assert ["n"] == crossed
        assert 4 == histograms(reader)["n"].count

    def test_two_exporters_on_one_collector(self):
        """Two providers fed from one collector each count every execution."""
        readers = [InMemoryMetricReader(), InMemoryMetricReader()]
        providers = [MeterProvider(metric_readers=[r]) for r in readers]
        c = NodeMetricsCollector()
        for p in providers:
            OpenTelemetryExporter(c, meter_provider=p)
        c.record_success("n", 1.0)
        c.record_failure("n", 2.0)
        assert [2, 2] == [histograms(r)["n"].count for r in readers]
        for p in providers:
            p.shutdown()

    def test_close(self, setup):
        """After close() nothing more is fed or observed; closing twice is fine."""
        c, reader = setup
        exporter = the_exporter(c)
        c.record_success("n", 1.0)
        assert 1 == histograms(reader)["n"].count
        exporter.close()
        exporter.close()
        assert () == c._listeners
        c.record_success("n", 2.0)
        assert 1 == histograms(reader)["n"].count
        assert "nodemetrics.node.executions" not in collect(reader)
        assert 2 == c.get_node_metrics("n").success_count

    def test_sdk_failure_is_logged_and_never_reaches_the_node(self, setup, logs):
        """If the SDK raises while recording, the node's result is untouched; it is logged."""
        c, _reader = setup
        exporter = the_exporter(c)

        def broken(*args, **kwargs):
            raise RuntimeError("sdk bug")

        exporter._record = broken

        @metered("n", collector=c)
        def node():
            return 42

        assert 42 == node()
        assert 1 == c.get_node_metrics("n").success_count
        assert any("nodemetrics.callback_failed" in m for m in logs.messages)


class TestReentrancy:
    def test_queued_while_the_lock_is_held(self, setup):
        """
        An execution applied while its own thread holds the exporter's lock
        (as a signal handler interrupting a drain would) is queued, not
        waited for, and recorded by the next drain.
        """
        c, reader = setup
        exporter = the_exporter(c)
        done = threading.Event()

        def interrupted_holder():
            with lock_of(exporter):
                c.record_success("n", 1.0)
            done.set()

        worker = threading.Thread(target=interrupted_holder, daemon=True)
        worker.start()
        worker.join(10)
        assert done.is_set(), "recording waited for a lock its own thread held"
        assert 1 == len(exporter._queue)
        assert 1 == histograms(reader)["n"].count
        assert not exporter._queue

    @pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
    @pytest.mark.skipif(sys.platform == "win32", reason="needs SIGALRM")
    def test_recording_from_a_signal_handler(self, setup, deadline):
        """SIGALRM handlers record while the main thread records: exact counts in the histogram."""
        c, reader = setup
        exporter = the_exporter(c)
        handled = []

        def handler(signum, frame):
            handled.append(owns_lock(exporter))
            c.record_success("from-signal", 2.0)

        previous = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
        try:
            n = 0
            while n < 200_000 and (n < 5_000 or sum(handled) < 20):
                c.record_success("main", 1.0)
                n += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

        assert any(handled), "no signal arrived while the exporter's lock was held"
        points = histograms(reader)
        assert n == points["main"].count
        assert len(handled) == points["from-signal"].count

    def test_recording_from_gc_callbacks(self, setup, deadline):
        """A GC callback that records, run while the SDK records an execution, loses no count."""
        c, reader = setup
        exporter = the_exporter(c)
        held = []

        def on_gc(phase, info):
            # Bounded: every recording into the SDK allocates enough to
            # trigger collections here, each of which would record again.
            if phase == "stop" and len(held) < 500:
                held.append(owns_lock(exporter))
                c.record_success("from-gc", 1.0)

        old = gc.get_threshold()
        gc.set_threshold(1, 100_000, 100_000)
        gc.callbacks.append(on_gc)
        try:
            for _ in range(2_000):
                c.record_success("main", 1.0)
        finally:
            gc.callbacks.remove(on_gc)
            gc.set_threshold(*old)
        assert any(held), "no collection ran while the exporter's lock was held"
        points = histograms(reader)
        assert 2_000 == points["main"].count
        assert len(held) == points["from-gc"].count

    def test_threads(self, setup, deadline):
        """Four threads recording while another collects: exact final counts and sums."""
        c, reader = setup
        stop = threading.Event()
        seen = []

        def collector_loop():
            while not stop.is_set():
                point = histograms(reader).get("n")
                seen.append(0 if point is None else point.count)

        def worker(k):
            for i in range(5_000):
                if i % 2:
                    c.record_success("n", float(k))
                else:
                    with c.track("n"):
                        pass

        reading = threading.Thread(target=collector_loop)
        reading.start()
        workers = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        stop.set()
        reading.join()
        point = histograms(reader)["n"]
        assert 20_000 == point.count
        assert seen == sorted(seen), "a cumulative count went down"
        assert c.get_node_metrics("n").total_executions == point.count

    def test_a_drainer_stops_after_its_rounds(self, setup):
        """
        A recording that keeps finding more queued (each SDK record causing
        another execution) returns after a bounded number of rounds; the next
        collection records the rest.
        """
        c, reader = setup
        exporter = the_exporter(c)
        real = exporter._record
        more = [100]

        def record_and_cause_another(*args, **kwargs):
            real(*args, **kwargs)
            if more[0]:
                more[0] -= 1
                c.record_success("n", 1.0)

        exporter._record = record_and_cause_another
        c.record_success("n", 1.0)
        assert exporter._queue, "the drainer chased the queue to the end"
        assert 0 < more[0] < 100
        more[0] = 0
        total = c.get_node_metrics("n").total_executions
        assert total == histograms(reader)["n"].count
        assert not exporter._queue

    def test_the_fork_hook_takes_the_lock(self, setup):
        """Before a fork the hook holds the exporter's lock, so no recording is inside the SDK."""
        c, _reader = setup
        exporter = the_exporter(c)
        before, after_in_parent, _ = fork_hooks()
        before()
        try:
            assert any(lock is lock_of(exporter) for lock in locks_held_for_fork())
            assert owns_lock(exporter)
        finally:
            after_in_parent()
        assert not owns_lock(exporter)

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_child_gets_a_fresh_lock(self, setup):
        """An exporter lock that another thread (gone in the child) holds at fork time
        is free in the child: its recordings reach the SDK at once."""
        c, reader = setup
        exporter = the_exporter(c)
        holding = threading.Event()
        release = threading.Event()

        def holder() -> None:
            with lock_of(exporter):
                holding.set()
                release.wait(30)

        thread = threading.Thread(target=holder, daemon=True)
        thread.start()
        assert holding.wait(5)
        try:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    c.record_success("n", 1.0)
                    ok = not exporter._queue and 1 == histograms(reader)["n"].count
                    code = 0 if ok else 1
                finally:
                    os._exit(code)
        finally:
            release.set()
            thread.join(5)
        _, status = os.waitpid(pid, 0)
        assert 0 == os.waitstatus_to_exitcode(status)

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_forked_by_the_lock_holder_the_child_never_calls_the_sdk(self, setup):
        """Forked by the thread that holds the exporter's lock (a signal handler inside
        the SDK's record(), whose own locks may then be held for ever in the child): the
        lock is free in the child, which counts its executions but never calls the SDK."""
        c, reader = setup
        exporter = the_exporter(c)
        c.record_success("n", 1.0)
        with lock_of(exporter):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    c.record_success("n", 2.0)
                    exported = histograms(reader)["n"].count
                    ok = (c.get_node_metrics("n").total_executions, exported) == (2, 1)
                    code = 0 if ok else 1
                finally:
                    os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert 0 == os.waitstatus_to_exitcode(status)
        c.record_success("n", 3.0)
        assert 2 == histograms(reader)["n"].count  # the parent exports on


class TestAfterAForkMidRecord:
    """What a child forked from inside the SDK's record() gets (the fork hook calls
    forked_mid_record() there; tests/reliability/test_interrupts.py forks for real):
    executions counted, never sent to the SDK, whose own locks may be held there."""

    def test_the_open_exporter_stops_calling_the_sdk(self, setup):
        c, reader = setup
        exporter = the_exporter(c)
        c.record_success("n", 1.0)
        exporter._instruments.forked_mid_record()
        c.record_success("n", 2.0)
        with c.track("n"):
            pass
        assert 3 == c.get_node_metrics("n").total_executions
        assert 1 == histograms(reader)["n"].count

    def test_an_exporter_made_later_on_the_provider_never_calls_it_either(self, provider_reader):
        provider, reader = provider_reader
        c = NodeMetricsCollector()
        OpenTelemetryExporter(c, meter_provider=provider).close()
        instruments = OpenTelemetryExporter(c, meter_provider=provider)._instruments
        instruments.owner.close()
        instruments.forked_mid_record()  # no open exporter then
        OpenTelemetryExporter(c, meter_provider=provider)
        c.record_success("n", 1.0)
        assert 1 == c.get_node_metrics("n").total_executions
        assert "n" not in histograms(reader)
