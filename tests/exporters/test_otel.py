from __future__ import annotations

import pytest

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.otel import OpenTelemetryExporter


def read(reader: InMemoryMetricReader) -> dict[str, dict[frozenset, float]]:
    """Every metric's data points, by attributes, from one real SDK collection."""
    data = reader.get_metrics_data()
    out: dict[str, dict[frozenset, float]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert "nodemetrics" == sm.scope.name
            for metric in sm.metrics:
                out[metric.name] = {
                    frozenset(p.attributes.items()): p.value for p in metric.data.data_points
                }
    return out


def attrs(**kw: str) -> frozenset:
    return frozenset({k.replace("error_type", "error.type"): v for k, v in kw.items()}.items())


@pytest.fixture
def setup():
    c = NodeMetricsCollector()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    OpenTelemetryExporter(c, meter_provider=provider)
    yield c, reader
    provider.shutdown()


class TestOpenTelemetryExporter:
    def test_values(self, setup):
        """Every instrument reports the collector's values, point by point."""
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
        } == data["nodemetrics.node.duration"]

    def test_instrument_kinds_and_units(self, setup):
        """Counters are monotonic cumulative sums; the duration is a gauge in seconds."""
        c, reader = setup
        c.record_success("n", 1.0)
        metrics = {
            m.name: m
            for rm in reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
        for name in ["executions", "failures", "retries", "cancellations", "interruptions"]:
            data = metrics[f"nodemetrics.node.{name}"].data
            assert data.is_monotonic
            assert "Sum" == type(data).__name__
        assert "Gauge" == type(metrics["nodemetrics.node.duration"].data).__name__
        assert "s" == metrics["nodemetrics.node.duration"].unit

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
        """A node that only retried has counters but no duration points."""
        c, reader = setup
        c.record_retry("r")
        data = read(reader)
        assert {attrs(node="r"): 1} == data["nodemetrics.node.retries"]
        assert "nodemetrics.node.duration" not in data

    def test_global_provider(self, monkeypatch):
        """Without meter_provider the global provider's meter is used."""
        from opentelemetry import metrics

        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        monkeypatch.setattr(metrics, "get_meter_provider", lambda: provider)
        c = NodeMetricsCollector()
        exporter = OpenTelemetryExporter(c)
        c.record_success("n", 1.0)
        assert "nodemetrics.node.executions" in read(reader)
        assert repr(exporter).startswith("<OpenTelemetryExporter(")
        provider.shutdown()

    def test_bad_collector(self):
        """A collector that is not one is refused."""
        with pytest.raises(TypeError, match="collector"):
            OpenTelemetryExporter(object())  # type: ignore[arg-type]
