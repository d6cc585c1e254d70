"""The OTel exporter through the real OTLP/HTTP exporter, to a receiver decoding the protobuf."""

from __future__ import annotations

import gzip
import math
import threading

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.otel import OpenTelemetryExporter


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP metrics endpoint on 127.0.0.1 that keeps every decoded request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[ExportMetricsServiceRequest] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/metrics"

    def metrics(self) -> dict[str, Metric]:
        """The metrics of the latest request, by name."""
        with self.lock:
            request = self.requests[-1]
        out = {}
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                assert "nodemetrics" == sm.scope.name
                for metric in sm.metrics:
                    out[metric.name] = metric
        return out


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        with self.server.lock:
            self.server.requests.append(request)
            self.server.paths.append(self.path)
        reply = ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 -- the stdlib's name
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def exported(receiver: Receiver, compression: Compression = Compression.NoCompression):
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment between us and 127.0.0.1
    exporter = OTLPMetricExporter(
        endpoint=receiver.endpoint, session=session, compression=compression, timeout=10
    )
    # An infinite interval: nothing is exported but by force_flush().
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    provider = MeterProvider(metric_readers=[reader])
    c = NodeMetricsCollector(buckets=(1, 10, 100))
    OpenTelemetryExporter(c, meter_provider=provider)
    return c, provider


def node_of(point) -> str:
    (kv,) = point.attributes
    assert "node" == kv.key
    return kv.value.string_value


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_histogram_over_otlp_http(receiver, compression):
    """The receiver decodes exact histogram points, cumulative, with the buckets in seconds."""
    c, provider = exported(receiver, compression)
    try:
        for d in [0.5, 1.0, 5.0, 100.0, 250.0]:
            c.record_success("fetch", d)
        c.record_failure("fetch", 20.0, TimeoutError())
        c.record_success("parse", 0.25)
        assert provider.force_flush()
        first = receiver.metrics()

        c.record_success("fetch", 2.0)
        assert provider.force_flush()
        second = receiver.metrics()
    finally:
        provider.shutdown()

    assert {"/v1/metrics"} == set(receiver.paths)
    duration = first["nodemetrics.node.duration"]
    assert "s" == duration.unit
    assert AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE == (
        duration.histogram.aggregation_temporality
    )
    points = {node_of(p): p for p in duration.histogram.data_points}
    fetch = points["fetch"]
    assert [0.001, 0.01, 0.1] == list(fetch.explicit_bounds)
    assert [2, 1, 2, 1] == list(fetch.bucket_counts)
    assert 6 == fetch.count
    assert (0.5 + 1.0 + 5.0 + 100.0 + 250.0 + 20.0) / 1000 == pytest.approx(fetch.sum, rel=1e-12)
    assert 0.0005 == fetch.min
    assert 0.25 == fetch.max
    assert [1, 0, 0, 0] == list(points["parse"].bucket_counts)

    later = {node_of(p): p for p in second["nodemetrics.node.duration"].histogram.data_points}
    assert 7 == later["fetch"].count
    assert [2, 2, 2, 1] == list(later["fetch"].bucket_counts)
    assert later["fetch"].start_time_unix_nano == fetch.start_time_unix_nano

    # The observable instruments travel in the same request.
    executions = {
        tuple((kv.key, kv.value.string_value) for kv in p.attributes): p.as_int
        for p in first["nodemetrics.node.executions"].sum.data_points
    }
    assert 5 == executions[("node", "fetch"), ("outcome", "success")]
    assert 1 == executions[("node", "fetch"), ("outcome", "failure")]
    window = first["nodemetrics.node.window.duration"].gauge.data_points
    assert {"0.5", "0.9", "0.99"} == {
        kv.value.string_value for p in window for kv in p.attributes if kv.key == "quantile"
    }
