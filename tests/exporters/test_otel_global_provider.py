"""One OpenTelemetry exporter per meter provider, given as the global one or by name."""

from __future__ import annotations

import pytest

from opentelemetry.metrics import _internal as metrics_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.util._once import Once

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters import otel
from nodemetrics.exporters.otel import OpenTelemetryExporter


@pytest.fixture
def unset_global(monkeypatch: pytest.MonkeyPatch) -> None:
    """No global meter provider set yet (the API's proxy), as at import time; restored after."""
    monkeypatch.setattr(otel, "_PROVIDERS", {})
    monkeypatch.setattr(metrics_api, "_METER_PROVIDER", None)
    monkeypatch.setattr(metrics_api, "_METER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(metrics_api, "_PROXY_METER_PROVIDER", metrics_api._ProxyMeterProvider())


def executions_nodes(reader: InMemoryMetricReader) -> set[str]:
    data = reader.get_metrics_data()
    return {
        str(p.attributes["node"])
        for rm in (data.resource_metrics if data else [])
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "nodemetrics.node.executions"
        for p in m.data.data_points
    }


@pytest.mark.usefixtures("unset_global")
class TestGlobalAndExplicit:
    def test_global_while_proxy_then_explicit_is_refused(self):
        """An exporter on the proxy, then the provider set, then one on that provider: refused."""
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        try:
            first = OpenTelemetryExporter(NodeMetricsCollector())
            metrics_api.set_meter_provider(provider)
            with pytest.raises(ValueError, match="^meter_provider already has a live exporter"):
                OpenTelemetryExporter(NodeMetricsCollector(), meter_provider=provider)
            first.close()
            # Closed, the next one reports through the same instruments.
            c = NodeMetricsCollector()
            OpenTelemetryExporter(c, meter_provider=provider)
            c.record_success("two", 1.0)
            assert {"two"} == executions_nodes(reader)
        finally:
            provider.shutdown()

    def test_explicit_then_global_is_refused(self):
        """An exporter on a provider, that provider made global, then one on the global: refused."""
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        try:
            c = NodeMetricsCollector()
            OpenTelemetryExporter(c, meter_provider=provider)
            metrics_api.set_meter_provider(provider)
            with pytest.raises(ValueError, match=r"^meter_provider \(None: global\) already has"):
                OpenTelemetryExporter(NodeMetricsCollector())
            c.record_success("one", 1.0)
            assert {"one"} == executions_nodes(reader)
        finally:
            provider.shutdown()
