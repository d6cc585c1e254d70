"""
The OpenTelemetry exporter's counters across resets, and its refusal of bad arguments.

An OpenTelemetry monotonic sum never goes down (a delta point of one is never
negative), so the observable counters must not follow the collector's counts
back to zero when ``reset_node_metrics()`` forgets a node.
"""

from __future__ import annotations

import threading

from collections.abc import Callable, Iterator

import pytest

from _hostile import RaisingClass, masquerade
from _internals import lock_of
from opentelemetry.sdk.metrics import MeterProvider, ObservableCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.otel import OpenTelemetryExporter


#: Each counter, with a recording that adds one to it and the attributes of
#: the point it adds to (the node's own attribute, "node", left out).
COUNTERS: dict[str, tuple[str, Callable[[NodeMetricsCollector, str], None], dict[str, str]]] = {
    "success": (
        "nodemetrics.node.executions",
        lambda c, n: c.record_success(n, 1.0),
        {"outcome": "success"},
    ),
    "failure": (
        "nodemetrics.node.executions",
        lambda c, n: c.record_failure(n, 1.0, TimeoutError()),
        {"outcome": "failure"},
    ),
    "timeout": (
        "nodemetrics.node.failures",
        lambda c, n: c.record_failure(n, 1.0, TimeoutError()),
        {"error.type": "timeout"},
    ),
    "retry": ("nodemetrics.node.retries", lambda c, n: c.record_retry(n), {}),
    "cancellation": ("nodemetrics.node.cancellations", lambda c, n: c.record_cancellation(n), {}),
    "interruption": ("nodemetrics.node.interruptions", lambda c, n: c.record_interruption(n), {}),
}


def reader_for(temporality: AggregationTemporality) -> InMemoryMetricReader:
    return InMemoryMetricReader(preferred_temporality={ObservableCounter: temporality})


@pytest.fixture
def exported() -> Iterator[
    Callable[[AggregationTemporality], tuple[NodeMetricsCollector, InMemoryMetricReader]]
]:
    """A collector exported to a real SDK provider whose reader asks for the given temporality."""
    providers: list[MeterProvider] = []

    def make(
        temporality: AggregationTemporality,
    ) -> tuple[NodeMetricsCollector, InMemoryMetricReader]:
        reader = reader_for(temporality)
        provider = MeterProvider(metric_readers=[reader])
        providers.append(provider)
        c = NodeMetricsCollector()
        OpenTelemetryExporter(c, meter_provider=provider)
        return c, reader

    yield make
    for provider in providers:
        provider.shutdown()


def point(reader: InMemoryMetricReader, kind: str, node: str = "n") -> tuple[int, int] | None:
    """The value and start time of *kind*'s point for *node* in one real collection, or None."""
    name, _record, extra = COUNTERS[kind]
    wanted = {"node": node, **extra}
    data = reader.get_metrics_data()
    if data is None:
        return None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != name:
                    continue
                assert metric.data.is_monotonic
                for p in metric.data.data_points:
                    if dict(p.attributes) == wanted:
                        return p.value, p.start_time_unix_nano
    return None


def record(c: NodeMetricsCollector, kind: str, times: int, node: str = "n") -> None:
    for _ in range(times):
        COUNTERS[kind][1](c, node)


KINDS = list(COUNTERS)


class TestCountersAcrossResets:
    @pytest.mark.parametrize("kind", KINDS)
    @pytest.mark.parametrize("everything", [False, True], ids=["node", "all"])
    def test_cumulative_goes_on_from_where_it_was(self, exported, kind, everything):
        """5, reset, 1: the cumulative stream reads 6 with its start time unchanged."""
        c, reader = exported(AggregationTemporality.CUMULATIVE)
        record(c, kind, 5)
        before = point(reader, kind)
        assert before is not None
        assert 5 == before[0]
        c.reset_node_metrics(None if everything else "n")
        record(c, kind, 1)
        after = point(reader, kind)
        assert (6, before[1]) == after
        assert (
            1
            == c.get_node_metrics("n").to_dict()[
                {
                    "success": "success_count",
                    "failure": "failure_count",
                    "timeout": "timeout_errors",
                    "retry": "retry_count",
                    "cancellation": "cancelled_count",
                    "interruption": "interrupted_count",
                }[kind]
            ]
        ), "the collector's own count restarts; only the exported stream goes on"

    @pytest.mark.parametrize("kind", KINDS)
    def test_delta_is_never_negative(self, exported, kind):
        """5, reset, 1: a delta reader gets 5, then 1 (not -4)."""
        c, reader = exported(AggregationTemporality.DELTA)
        record(c, kind, 5)
        assert 5 == point(reader, kind)[0]
        c.reset_node_metrics("n")
        record(c, kind, 1)
        assert 1 == point(reader, kind)[0]
        record(c, kind, 2)
        assert 2 == point(reader, kind)[0]

    @pytest.mark.parametrize("kind", KINDS)
    def test_a_node_reset_and_not_recorded_again_keeps_its_total(self, exported, kind):
        """A node gone from the collector keeps its last total, and later counts add to it."""
        c, reader = exported(AggregationTemporality.CUMULATIVE)
        record(c, kind, 5)
        record(c, "success", 1, node="other")
        assert 5 == point(reader, kind)[0]
        c.reset_node_metrics("n")
        assert "n" not in c.get_all_node_metrics()
        assert 5 == point(reader, kind)[0]
        assert 5 == point(reader, kind)[0]
        # More than the node had before its reset: a count higher than the
        # last observed, which the node's new serial tells from no reset.
        record(c, kind, 7)
        assert 12 == point(reader, kind)[0]

    def test_a_node_gone_reads_as_zero_in_a_delta_stream(self, exported):
        """A delta reader gets 0, never a negative point, for a node reset and not
        recorded again."""
        c, reader = exported(AggregationTemporality.DELTA)
        record(c, "success", 3)
        assert 3 == point(reader, "success")[0]
        c.reset_node_metrics()
        assert 0 == point(reader, "success")[0]
        record(c, "success", 4)
        assert 4 == point(reader, "success")[0]

    def test_many_resets(self, exported):
        """Every reset adds what came before it: 3, 2, 1 executions between resets read 6."""
        c, reader = exported(AggregationTemporality.CUMULATIVE)
        seen = []
        for n in [3, 2, 1]:
            record(c, "success", n)
            seen.append(point(reader, "success")[0])
            c.reset_node_metrics("n")
        seen.append(point(reader, "success")[0])
        assert [3, 5, 6, 6] == seen

    def test_other_nodes_are_not_touched(self, exported):
        """A reset of one node leaves the others' streams as they are."""
        c, reader = exported(AggregationTemporality.CUMULATIVE)
        record(c, "success", 2, node="a")
        record(c, "success", 3, node="b")
        point(reader, "success")
        c.reset_node_metrics("a")
        record(c, "success", 1, node="a")
        record(c, "success", 1, node="b")
        assert 3 == point(reader, "success", node="a")[0]
        assert 4 == point(reader, "success", node="b")[0]

    def test_collection_while_this_thread_holds_the_exporters_lock(self, exported):
        """A collection by a thread that holds the exporter's lock (a signal handler
        interrupting a recording) still reads the collector and goes on counting."""
        c, reader = exported(AggregationTemporality.CUMULATIVE)
        exporter = c._listeners[0].__self__
        record(c, "success", 5)
        assert 5 == point(reader, "success")[0]
        c.reset_node_metrics("n")
        record(c, "success", 1)
        with lock_of(exporter):
            assert 6 == point(reader, "success")[0]
        assert 6 == point(reader, "success")[0]


class FakeMeter:
    """Just enough of a meter to keep the callbacks the exporter registers."""

    def __init__(self) -> None:
        self.callbacks: dict[str, Callable[..., object]] = {}

    def create_histogram(self, name: str, **_kw: object) -> object:
        return type("H", (), {"record": staticmethod(lambda value, attributes: None)})()

    def create_observable_counter(self, name: str, callbacks: list, **_kw: object) -> None:
        (self.callbacks[name],) = callbacks

    def create_observable_gauge(self, name: str, callbacks: list, **_kw: object) -> None:
        (self.callbacks[name],) = callbacks


class FakeProvider:
    """A meter provider that is no subclass of the API's: any object with get_meter will do."""

    def __init__(self) -> None:
        self.meters: list[str] = []
        self.meter = FakeMeter()

    def get_meter(self, name: str) -> FakeMeter:
        self.meters.append(name)
        return self.meter


def values(observations) -> dict[frozenset, float]:
    return {frozenset(o.attributes.items()): o.value for o in observations}


class TestConcurrentCollections:
    def test_collections_from_many_threads_never_go_down(self):
        """Threads collecting at once while nodes are recorded and reset: each
        thread's readings of every attribute set never decrease."""
        provider = FakeProvider()
        c = NodeMetricsCollector()
        OpenTelemetryExporter(c, meter_provider=provider)
        counter = provider.meter.callbacks["nodemetrics.node.executions"]
        stop = threading.Event()
        errors: list[str] = []
        progress = threading.Condition()
        collections = [0] * 4

        def collect(index: int) -> None:
            last: dict[frozenset, float] = {}
            while not stop.is_set():
                for key, value in values(counter(None)).items():
                    if value < last.get(key, 0):
                        errors.append(f"{sorted(key)}: {last[key]} -> {value}")
                    last[key] = value
                with progress:
                    collections[index] += 1
                    progress.notify_all()

        def everyone_collected() -> None:
            """Wait until every thread has begun and ended a collection since now."""
            with progress:
                target = [n + 2 for n in collections]
                done = progress.wait_for(
                    lambda: all(n >= t for n, t in zip(collections, target, strict=True)),
                    timeout=10,
                )
            assert done, "the collecting threads made no progress within 10 s"

        threads = [
            threading.Thread(target=collect, args=(i,), daemon=True)
            for i in range(len(collections))
        ]
        for t in threads:
            t.start()
        try:
            for i in range(40):
                for _ in range(i % 7 + 2):  # more than the 1 after a reset
                    c.record_success("n", 1.0)
                    c.record_failure("m", 1.0)
                everyone_collected()
                c.reset_node_metrics("n" if i % 2 else None)
                c.record_success("n", 1.0)
                # Collected before "n" counts past its count before the reset
                # (which its new serial tells apart anyway).
                everyone_collected()
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert not any(t.is_alive() for t in threads), "a collecting thread still runs after 10 s"
        assert [] == errors
        # What the threads' readings add up to, read once more: every reset
        # was seen, so nothing was missed (40 batches and 40 single executions of "n").
        final = values(counter(None))
        assert (
            sum(i % 7 + 2 for i in range(40)) + 40
            == final[frozenset({("node", "n"), ("outcome", "success")})]
        )

    def test_a_collection_nested_in_a_collection_observes_nothing(self):
        """A collection made inside a counter's callback, in its thread (possible with a
        provider that lets collections nest), observes no counters rather than
        half-updated totals; the outer one reports them right."""
        nested: list[list] = []

        class Collector(NodeMetricsCollector):
            def _read_incarnations(self, deferred=None):  # type: ignore[override]
                if callbacks and not nested:
                    nested.append(list(callbacks["nodemetrics.node.retries"](None)))
                return super()._read_incarnations(deferred)

        callbacks: dict[str, Callable[..., object]] = {}
        provider = FakeProvider()
        c = Collector()
        OpenTelemetryExporter(c, meter_provider=provider)
        c.record_retry("n")
        callbacks.update(provider.meter.callbacks)
        outer = values(callbacks["nodemetrics.node.executions"](None))
        assert [[]] == nested
        assert {frozenset({("node", "n"), ("outcome", "success")}): 0} == {
            k: v for k, v in outer.items() if ("outcome", "success") in k
        }
        assert {frozenset({("node", "n")}): 1} == values(
            callbacks["nodemetrics.node.retries"](None)
        )


class UnreadableGetMeter:
    @property
    def get_meter(self):
        raise ZeroDivisionError("get_meter raised")


class TestArguments:
    @pytest.mark.parametrize(
        "make",
        [RaisingClass, lambda: masquerade(NodeMetricsCollector)],
        ids=["raising __class__", "lying __class__"],
    )
    def test_bad_collector(self, make):
        """Anything but a collector, by its real type, is refused naming collector;
        no meter is asked for."""
        collector = make()
        provider = FakeProvider()
        with pytest.raises(TypeError, match=r"^collector must be a NodeMetricsCollector"):
            OpenTelemetryExporter(collector, meter_provider=provider)
        assert [] == provider.meters

    @pytest.mark.parametrize(
        "make",
        [
            lambda: "otlp",
            object,
            RaisingClass,
            UnreadableGetMeter,
            type("NotCallable", (), {"get_meter": 5}),
            lambda: masquerade(MeterProvider),
        ],
        ids=[
            "str",
            "object",
            "raising __class__",
            "raising get_meter",
            "get_meter not callable",
            "lying __class__",
        ],
    )
    def test_bad_meter_provider(self, make):
        """A meter provider without a callable get_meter is refused naming meter_provider;
        nothing is attached to the collector."""
        meter_provider = make()
        c = NodeMetricsCollector()
        with pytest.raises(TypeError, match=r"^meter_provider must be a MeterProvider"):
            OpenTelemetryExporter(c, meter_provider=meter_provider)
        assert () == c._listeners
        c.record_success("n", 1.0)
        assert 1 == c.get_node_metrics("n").success_count
