"""
The OpenTelemetry exporter: names that are not UTF-8, resets told by a node's
incarnation, refused meter providers, and one exporter per meter provider.
"""

from __future__ import annotations

import gc
import threading

from collections.abc import Callable, Iterator

import pytest

from _internals import holding_lock, lock_of, queue, raising_after_release
from exporters.test_otel import collect, histograms, read
from exporters.test_otel_reset_and_input import COUNTERS, FakeProvider, point, reader_for, record
from opentelemetry import metrics
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

from nodemetrics import NodeMetricsCollector
from nodemetrics._node import SUCCESS
from nodemetrics.exporters import otel
from nodemetrics.exporters.otel import OpenTelemetryExporter


CUMULATIVE = AggregationTemporality.CUMULATIVE
DELTA = AggregationTemporality.DELTA

#: Names that cannot be UTF-8 (a lone surrogate, as os.fsdecode() makes of
#: b"\xff"), and how they must be written.
BAD = {"bad\udcff": "bad\\udcff", "other\udcfe": "other\\udcfe"}


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[int, object]:
    """A fresh registry of meter providers, so that no other test's exporter is live in it."""
    fresh: dict[int, object] = {}
    monkeypatch.setattr(otel, "_PROVIDERS", fresh)
    return fresh


@pytest.fixture
def providers() -> Iterator[Callable[..., tuple[MeterProvider, InMemoryMetricReader]]]:
    """Real SDK providers, each with an in-memory reader, shut down afterwards."""
    made: list[MeterProvider] = []

    def make(
        temporality: AggregationTemporality = CUMULATIVE,
    ) -> tuple[MeterProvider, InMemoryMetricReader]:
        reader = reader_for(temporality)
        provider = MeterProvider(metric_readers=[reader])
        made.append(provider)
        return provider, reader

    yield make
    for provider in made:
        provider.shutdown()


def exported(
    providers: Callable[..., tuple[MeterProvider, InMemoryMetricReader]],
    temporality: AggregationTemporality = CUMULATIVE,
) -> tuple[NodeMetricsCollector, InMemoryMetricReader]:
    provider, reader = providers(temporality)
    c = NodeMetricsCollector()
    OpenTelemetryExporter(c, meter_provider=provider)
    return c, reader


def the_exporter(c: NodeMetricsCollector) -> OpenTelemetryExporter:
    (listener,) = c._listeners
    return listener.__self__  # type: ignore[no-any-return]


def every_node(reader: InMemoryMetricReader) -> dict[str, set[str | None]]:
    """The node attribute of every point of one collection, by metric (None: no node)."""
    return {
        name: {dict(p.attributes).get("node") for p in metric.data.data_points}
        for name, metric in collect(reader).items()
    }


def counts(reader: InMemoryMetricReader, kinds: list[str], node: str = "n") -> list[int]:
    """The points of *kinds* (see COUNTERS) for *node*, all from one real collection."""
    data = read(reader)
    out = []
    for kind in kinds:
        name, _record, extra = COUNTERS[kind]
        out.append(data[name][frozenset({"node": node, **extra}.items())])
    return out


class TestNamesThatAreNotUtf8:
    def test_every_instrument_writes_the_escape(self, providers):
        """Every point of every instrument, queued recordings included, carries the
        node's name with a lone surrogate written as its escape."""
        c, reader = exported(providers)
        for node in BAD:
            c.record_success(node, 1.0)
            c.record_failure(node, 2.0, TimeoutError())
            c.record_retry(node)
            c.record_cancellation(node)
            c.record_interruption(node)
        exporter = the_exporter(c)
        done = threading.Event()

        def interrupted_holder() -> None:
            # As a signal handler that records while the SDK records: queued.
            with lock_of(exporter):
                c.record_success("bad\udcff", 3.0)
            done.set()

        worker = threading.Thread(target=interrupted_holder)
        worker.start()
        worker.join(10)
        assert done.is_set()
        assert exporter._queue

        expected = set(BAD.values())
        nodes = every_node(reader)
        assert {
            "nodemetrics.node.duration",
            "nodemetrics.node.window.duration",
            "nodemetrics.node.executions",
            "nodemetrics.node.failures",
            "nodemetrics.node.retries",
            "nodemetrics.node.cancellations",
            "nodemetrics.node.interruptions",
        } == set(nodes)
        assert dict.fromkeys(nodes, expected) == nodes
        assert 3 == histograms(reader)["bad\\udcff"].count
        data = read(reader)["nodemetrics.node.executions"]
        assert 2 == data[frozenset({("node", "bad\\udcff"), ("outcome", "success")})]

    def test_over_otlp_http(self):
        """Through the real OTLP/HTTP exporter every point keeps its node attribute, so
        two such nodes stay two series."""
        otlp = pytest.importorskip("exporters.test_otel_otlp")
        receiver = otlp.Receiver()
        thread = threading.Thread(target=receiver.serve_forever, daemon=True)
        thread.start()
        try:
            c, provider = otlp.exported(receiver)
            try:
                c.record_success("good", 5.0)
                for node in BAD:
                    c.record_success(node, 5.0)
                    c.record_retry(node)
                assert provider.force_flush()
                sent = receiver.metrics()
            finally:
                provider.shutdown()
        finally:
            receiver.shutdown()
            receiver.server_close()
            thread.join()
        expected = {"good", *BAD.values()}
        for name in ["nodemetrics.node.duration", "nodemetrics.node.retries"]:
            metric = sent[name]
            data = metric.histogram if name.endswith("duration") else metric.sum
            assert expected == {otlp.node_of(p) for p in data.data_points}, name
        executions = sent["nodemetrics.node.executions"].sum.data_points
        assert {(n, o) for n in expected for o in ["success", "failure"]} == {
            tuple(kv.value.string_value for kv in p.attributes) for p in executions
        }

    def test_two_names_with_one_escape_add_up(self, providers):
        """A name with a surrogate and a name that is its escape written out share one
        attribute set, in which their counts add up (as their histograms do)."""
        c, reader = exported(providers)
        record(c, "success", 2, node="bad\udcff")
        record(c, "success", 3, node="bad\\udcff")
        assert 5 == point(reader, "success", node="bad\\udcff")[0]
        assert 5 == histograms(reader)["bad\\udcff"].count


class TestResetsToldByIncarnation:
    @pytest.mark.parametrize("temporality", [CUMULATIVE, DELTA])
    @pytest.mark.parametrize("everything", [False, True], ids=["node", "all"])
    def test_fewer_executions_but_more_failures(self, providers, temporality, everything):
        """8 successes, 2 failures, 3 retries; reset; 1, 3, 4: the counters read 9, 5
        and 7 (cumulative), or 1, 3 and 4 (delta), though failures and retries grew."""
        c, reader = exported(providers, temporality)
        record(c, "success", 8)
        record(c, "failure", 2)
        record(c, "retry", 3)
        kinds = ["success", "failure", "timeout", "retry"]
        assert [8, 2, 2, 3] == counts(reader, kinds)
        c.reset_node_metrics(None if everything else "n")
        record(c, "success", 1)
        record(c, "failure", 3)
        record(c, "retry", 4)
        expected = [9, 5, 5, 7] if temporality is CUMULATIVE else [1, 3, 3, 4]
        assert expected == counts(reader, kinds)

    @pytest.mark.parametrize(
        "kind", ["success", "failure", "retry", "cancellation", "interruption"]
    )
    def test_as_many_as_before_or_more(self, providers, kind):
        """Reset and then counting more than before, all between two collections: 3,
        reset, 3 reads 6, and 6, reset, 10 reads 16."""
        c, reader = exported(providers)
        record(c, kind, 3)
        assert 3 == point(reader, kind)[0]
        c.reset_node_metrics("n")
        record(c, kind, 3)
        assert 6 == point(reader, kind)[0]
        c.reset_node_metrics()
        record(c, kind, 10)
        assert 16 == point(reader, kind)[0]
        record(c, kind, 1)
        assert 17 == point(reader, kind)[0]

    def test_from_a_handler_that_interrupted_the_collector(self, providers):
        """A collection made in a thread that holds the collector's lock (a signal
        handler that interrupted a recording) returns at once and tells the reset."""
        c, reader = exported(providers)
        record(c, "success", 3)
        assert 3 == point(reader, "success")[0]
        c.reset_node_metrics("n")
        record(c, "success", 5)
        with holding_lock(c):
            assert 8 == point(reader, "success")[0]
        assert 8 == point(reader, "success")[0]

    def test_the_collector_reads_incarnations_at_one_instant(self):
        """Each node's serial is the same until it is reset; its snapshot is the
        collector's; from inside a call of the same thread it returns at once."""
        c = NodeMetricsCollector()
        c.record_success("a", 1.0)
        c.record_retry("b")
        first = c._read_incarnations()
        assert {k: m for k, (_, m) in first.items()} == c.get_all_node_metrics()
        again = c._read_incarnations()
        assert {k: s for k, (s, _) in first.items()} == {k: s for k, (s, _) in again.items()}
        c.reset_node_metrics("a")
        c.record_success("a", 1.0)
        later = c._read_incarnations()
        assert first["a"][0] != later["a"][0]
        assert first["b"][0] == later["b"][0]
        with holding_lock(c):
            inside = c._read_incarnations()
        assert {k: s for k, (s, _) in later.items()} == {k: s for k, (s, _) in inside.items()}


class TestReadIncarnationsFollowsTheProtocol:
    def test_applies_the_queue_and_fires_after_the_release(self):
        """A recording queued for the lock's holder is applied first, its threshold
        callback run after the lock is released."""
        crossed: list[bool] = []
        c = NodeMetricsCollector(
            min_samples=1,
            latency_threshold_ms=1.0,
            on_latency_threshold=lambda node, p99: crossed.append(c._guard.owned()),
        )
        queue(c, "n", 10.0, SUCCESS)
        readings = c._read_incarnations()
        assert 1 == readings["n"][1].success_count
        assert [False] == crossed

    def test_makes_way_for_a_sleeping_recording(self):
        """With a recording asleep on the lock, the read still reads (after its pause)."""
        c = NodeMetricsCollector()
        c.record_success("n", 1.0)
        c._guard.waiting.append(None)
        try:
            assert 1 == c._read_incarnations()["n"][1].success_count
        finally:
            c._guard.waiting.pop()

    def test_an_exception_after_the_release_propagates(self):
        """A RuntimeError raised just after the release (by a signal handler) is not
        taken for the lock's own refusal: it propagates, and the lock is free."""
        c = NodeMetricsCollector()
        c.record_success("n", 1.0)
        with (
            raising_after_release(c, RuntimeError("from a handler")),
            pytest.raises(RuntimeError, match="from a handler"),
        ):
            c._read_incarnations()
        assert not c._guard.owned()
        assert 1 == c._read_incarnations()["n"][1].success_count


class HostileMeter:
    @property
    def create_histogram(self) -> object:
        raise ZeroDivisionError("create_histogram raised")


class GetMeterNone:
    def get_meter(self, name: str) -> None:
        return None


class GetMeterRaises:
    def get_meter(self, *args: object, **kwargs: object) -> object:
        raise RuntimeError("boom")


class GetMeterWrongSignature:
    def get_meter(self) -> object:
        return NoOpMeterProvider().get_meter("x")


class ProviderClass:
    def get_meter(self, name: str) -> object:
        return NoOpMeterProvider().get_meter(name)


class RecordingMeter:
    """A meter that records what is created on it; *broken* names a method that raises."""

    def __init__(self, broken: str | None = None, missing: str | None = None) -> None:
        self.created: list[str] = []
        self.broken = broken
        if missing is not None:
            setattr(self, missing, None)

    def _create(self, kind: str, name: str) -> object:
        if kind == self.broken:
            raise TypeError(f"no {kind} here")
        self.created.append(name)
        return NoOpMeterProvider().get_meter("x").create_histogram(name)

    def create_histogram(self, name: str, **_kw: object) -> object:
        return self._create("create_histogram", name)

    def create_observable_counter(self, name: str, **_kw: object) -> object:
        return self._create("create_observable_counter", name)

    def create_observable_gauge(self, name: str, **_kw: object) -> object:
        return self._create("create_observable_gauge", name)


class RecordingProvider:
    def __init__(self, meter: RecordingMeter) -> None:
        self.meter = meter

    def get_meter(self, name: str) -> RecordingMeter:
        return self.meter


class TestRefusedMeterProviders:
    @pytest.mark.parametrize(
        "make",
        [
            lambda: MeterProvider,
            lambda: ProviderClass,
            GetMeterNone,
            GetMeterRaises,
            GetMeterWrongSignature,
            lambda: RecordingProvider(RecordingMeter(missing="create_observable_counter")),
            lambda: RecordingProvider(RecordingMeter(missing="create_histogram")),
            lambda: RecordingProvider(HostileMeter()),  # type: ignore[arg-type]
        ],
        ids=[
            "the MeterProvider class",
            "a provider class",
            "get_meter returns None",
            "get_meter raises",
            "get_meter takes no name",
            "a meter without create_observable_counter",
            "a meter without create_histogram",
            "a meter whose attribute raises",
        ],
    )
    def test_refused_before_anything_is_created(self, make, registry):
        """A TypeError naming meter_provider, before any instrument is created; nothing is
        attached to the collector or remembered, and the collector works on."""
        meter_provider = make()
        c = NodeMetricsCollector()
        with pytest.raises(TypeError, match=r"^meter_provider") as raised:
            OpenTelemetryExporter(c, meter_provider=meter_provider)
        assert type(raised.value) is TypeError
        meter = getattr(meter_provider, "meter", None)
        assert [] == getattr(meter, "created", [])
        assert () == c._listeners
        assert {} == registry
        c.record_success("n", 1.0)
        assert 1 == c.get_node_metrics("n").success_count

    def test_the_users_exception_is_chained(self, registry):
        """What get_meter raised is the refusal's cause."""
        with pytest.raises(TypeError, match=r"^meter_provider\.get_meter") as raised:
            OpenTelemetryExporter(NodeMetricsCollector(), meter_provider=GetMeterRaises())
        assert isinstance(raised.value.__cause__, RuntimeError)

    @pytest.mark.parametrize("broken", ["create_observable_counter", "create_observable_gauge"])
    def test_a_meter_that_fails_half_way(self, broken, registry):
        """A meter that raises while the instruments are created: a TypeError naming
        meter_provider; what was created observes nothing; nothing is attached, and a
        working meter on the same provider is taken afterwards."""
        meter = RecordingMeter(broken=broken)
        provider = RecordingProvider(meter)
        c = NodeMetricsCollector()
        c.record_success("n", 1.0)
        with pytest.raises(TypeError, match=r"^meter_provider") as raised:
            OpenTelemetryExporter(c, meter_provider=provider)
        assert type(raised.value) is TypeError
        assert isinstance(raised.value.__cause__, TypeError)
        assert () == c._listeners
        assert {} == registry
        fake = FakeProvider()
        provider.meter = fake.meter  # type: ignore[assignment]
        OpenTelemetryExporter(c, meter_provider=provider)
        assert 1 == len(c._listeners)


class TestOneExporterPerMeterProvider:
    def test_a_second_live_exporter_is_refused(self, providers, registry):
        """A second exporter on a provider that has a live one is refused naming
        meter_provider; the first reports on, the second collector is untouched."""
        provider, reader = providers()
        a, b = NodeMetricsCollector(), NodeMetricsCollector()
        OpenTelemetryExporter(a, meter_provider=provider)
        with pytest.raises(ValueError, match=r"^meter_provider already has a live"):
            OpenTelemetryExporter(b, meter_provider=provider)
        with pytest.raises(ValueError, match=r"^meter_provider already has a live"):
            OpenTelemetryExporter(a, meter_provider=provider)
        assert () == b._listeners
        assert 1 == len(a._listeners)
        a.record_success("n", 1.0)
        b.record_success("n", 1.0)
        assert 1 == point(reader, "success")[0]
        assert 1 == histograms(reader)["n"].count

    def test_after_close_the_next_one_reports_through_the_same_instruments(
        self, providers, registry
    ):
        """Once the first is closed, a second exporter on the provider reports its own
        collector, its counters and gauge included, and no stream goes down."""
        provider, reader = providers()
        a, b = NodeMetricsCollector(), NodeMetricsCollector()
        first = OpenTelemetryExporter(a, meter_provider=provider)
        record(a, "success", 5, node="shared")
        record(a, "retry", 2, node="only-a")
        assert 5 == point(reader, "success", node="shared")[0]
        first.close()
        second = OpenTelemetryExporter(b, meter_provider=provider)
        record(b, "success", 1, node="shared")
        record(b, "retry", 3, node="only-b")
        b.record_success("only-b", 4.0)
        assert 6 == point(reader, "success", node="shared")[0]
        assert 2 == point(reader, "retry", node="only-a")[0]
        assert 3 == point(reader, "retry", node="only-b")[0]
        nodes = every_node(reader)
        assert {"shared", "only-b"} == nodes["nodemetrics.node.window.duration"]
        assert {"shared": 6, "only-b": 1} == {n: p.count for n, p in histograms(reader).items()}
        a.record_success("shared", 1.0)
        assert 6 == point(reader, "success", node="shared")[0]
        second.close()
        assert "nodemetrics.node.executions" not in collect(reader)

    def test_other_buckets_are_refused(self, providers, registry):
        """The SDK keeps the histogram of the first exporter: a collector with other
        buckets is refused naming meter_provider, rather than bucketed wrong."""
        provider, _reader = providers()
        OpenTelemetryExporter(NodeMetricsCollector(), meter_provider=provider).close()
        with pytest.raises(ValueError, match=r"^meter_provider already has"):
            OpenTelemetryExporter(NodeMetricsCollector(buckets=(1, 2)), meter_provider=provider)

    def test_separate_providers_are_independent(self, providers, registry):
        """Exporters on different providers never refuse each other."""
        (p1, r1), (p2, r2) = providers(), providers()
        c = NodeMetricsCollector()
        OpenTelemetryExporter(c, meter_provider=p1)
        OpenTelemetryExporter(c, meter_provider=p2)
        c.record_success("n", 1.0)
        assert [1, 1] == [point(r, "success")[0] for r in (r1, r2)]

    def test_the_global_provider(self, providers, registry, monkeypatch):
        """meter_provider=None is the global provider: a second exporter with None, or
        with that provider, is refused, even once the global provider has been set
        since the first (whose instruments the API forwards to it)."""
        proxy, _ = providers()
        monkeypatch.setattr(metrics, "get_meter_provider", lambda: proxy)
        first = OpenTelemetryExporter(NodeMetricsCollector())
        with pytest.raises(ValueError, match=r"^meter_provider"):
            OpenTelemetryExporter(NodeMetricsCollector(), meter_provider=proxy)
        real, _ = providers()
        monkeypatch.setattr(metrics, "get_meter_provider", lambda: real)
        with pytest.raises(ValueError, match=r"^meter_provider"):
            OpenTelemetryExporter(NodeMetricsCollector())
        first.close()
        OpenTelemetryExporter(NodeMetricsCollector())
        with pytest.raises(ValueError, match=r"^meter_provider"):
            OpenTelemetryExporter(NodeMetricsCollector(), meter_provider=real)

    def test_providers_are_remembered_weakly(self, registry):
        """A provider the application dropped is forgotten; one that cannot be weakly
        referenced is remembered as well."""
        provider = FakeProvider()
        OpenTelemetryExporter(NodeMetricsCollector(), meter_provider=provider)
        assert registry
        del provider
        gc.collect()
        assert {} == registry

        class Slotted:
            __slots__ = ("meter",)

            def __init__(self) -> None:
                self.meter = FakeProvider().meter

            def get_meter(self, name: str) -> object:
                return self.meter

        slotted = Slotted()
        first = OpenTelemetryExporter(NodeMetricsCollector(), meter_provider=slotted)
        with pytest.raises(ValueError, match=r"^meter_provider"):
            OpenTelemetryExporter(NodeMetricsCollector(), meter_provider=slotted)
        first.close()
        OpenTelemetryExporter(NodeMetricsCollector(), meter_provider=slotted)
