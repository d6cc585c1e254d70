from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.prometheus import PrometheusExporter


# .ci/run sets this, so that CI fails rather than skips without the binaries.
REQUIRE = os.environ.get("NODEMETRICS_REQUIRE_PROMETHEUS") == "1"


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if REQUIRE:
            pytest.fail(f"{name} is required (NODEMETRICS_REQUIRE_PROMETHEUS=1) but not on PATH")
        pytest.skip(f"{name} is not installed (Debian package 'prometheus')")
    return path


def populated() -> NodeMetricsCollector:
    c = NodeMetricsCollector()
    for d in [10.0, 20.0, 30.0, 40.0]:
        c.record_success("fetch", d)
    c.record_failure("fetch", 50.0, TimeoutError())
    c.record_failure("fetch", 60.0, ValueError())
    c.record_retry("fetch")
    c.record_retry("fetch")
    c.record_cancellation("fetch")
    c.record_interruption("fetch")
    c.record_interruption("fetch")
    c.record_success('we"ird\\name\nnode', 5.0)
    c.record_retry("only-retried")
    return c


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset]:
    return (name, frozenset(labels.items()))


class TestExposition:
    def test_values(self):
        """Every family, parsed back from the exposition, has the collector's values."""
        c = populated()
        registry = CollectorRegistry()
        registry.register(PrometheusExporter(c))
        s = samples(registry)
        p = "nodemetrics_node_"
        assert 4.0 == s[key(f"{p}executions_total", node="fetch", outcome="success")]
        assert 2.0 == s[key(f"{p}executions_total", node="fetch", outcome="failure")]
        assert 1.0 == s[key(f"{p}failures_total", node="fetch", category="timeout")]
        assert 1.0 == s[key(f"{p}failures_total", node="fetch", category="validation")]
        assert 0.0 == s[key(f"{p}failures_total", node="fetch", category="network")]
        assert 0.0 == s[key(f"{p}failures_total", node="fetch", category="other")]
        assert 2.0 == s[key(f"{p}retries_total", node="fetch")]
        assert 1.0 == s[key(f"{p}cancellations_total", node="fetch")]
        assert 2.0 == s[key(f"{p}interruptions_total", node="fetch")]
        m = c.get_node_metrics("fetch")
        for quantile, value in [("0.5", m.p50), ("0.9", m.p90), ("0.99", m.p99)]:
            assert value is not None
            assert (
                pytest.approx(value / 1000)
                == s[key(f"{p}duration_seconds", node="fetch", quantile=quantile)]
            )
        assert 6.0 == s[key(f"{p}duration_seconds_count", node="fetch")]
        assert pytest.approx(0.21) == s[key(f"{p}duration_seconds_sum", node="fetch")]
        assert 0.06 == s[key(f"{p}last_duration_seconds", node="fetch")]

    def test_escaped_names(self):
        """Node names with quotes, backslashes and newlines come back intact."""
        registry = CollectorRegistry()
        registry.register(PrometheusExporter(populated()))
        s = samples(registry)
        weird = 'we"ird\\name\nnode'
        assert 1.0 == s[key("nodemetrics_node_executions_total", node=weird, outcome="success")]

    def test_node_without_executions(self):
        """A node with no execution has counters and _count 0, and no quantiles or last."""
        registry = CollectorRegistry()
        registry.register(PrometheusExporter(populated()))
        s = samples(registry)
        assert 1.0 == s[key("nodemetrics_node_retries_total", node="only-retried")]
        assert 0.0 == s[key("nodemetrics_node_duration_seconds_count", node="only-retried")]
        assert not [k for k in s if ("node", "only-retried") in k[1] and "quantile" in dict(k[1])]
        assert key("nodemetrics_node_last_duration_seconds", node="only-retried") not in s

    def test_every_scrape_reads_current_state(self):
        """Each collect() sees what was recorded since the last."""
        c = NodeMetricsCollector()
        registry = CollectorRegistry()
        registry.register(PrometheusExporter(c))
        c.record_success("n", 1.0)
        assert 1.0 == samples(registry)[key("nodemetrics_node_duration_seconds_count", node="n")]
        c.record_success("n", 1.0)
        assert 2.0 == samples(registry)[key("nodemetrics_node_duration_seconds_count", node="n")]

    def test_namespace(self):
        """namespace replaces the nodemetrics prefix."""
        c = NodeMetricsCollector()
        c.record_success("n", 1.0)
        registry = CollectorRegistry()
        registry.register(PrometheusExporter(c, namespace="pipeline"))
        names = {name for name, _ in samples(registry)}
        assert "pipeline_node_executions_total" in names
        assert not [n for n in names if n.startswith("nodemetrics")]

    def test_describe_names_every_family(self):
        """describe() lists the families, so a registry can refuse a clash up front."""
        exporter = PrometheusExporter(NodeMetricsCollector())
        assert [
            "nodemetrics_node_executions",
            "nodemetrics_node_failures",
            "nodemetrics_node_retries",
            "nodemetrics_node_cancellations",
            "nodemetrics_node_interruptions",
            "nodemetrics_node_duration_seconds",
            "nodemetrics_node_last_duration_seconds",
        ] == [m.name for m in exporter.describe()]
        registry = CollectorRegistry()
        registry.register(exporter)
        with pytest.raises(ValueError, match="Duplicated"):
            registry.register(PrometheusExporter(NodeMetricsCollector()))

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"collector": {}}, TypeError, "collector"),
            ({"namespace": 3}, TypeError, "namespace"),
            ({"namespace": "bad-name"}, ValueError, "namespace"),
            ({"namespace": ""}, ValueError, "namespace"),
        ],
    )
    def test_bad_arguments(self, kwargs, error, match):
        """Bad arguments are refused, naming them."""
        args = {"collector": NodeMetricsCollector(), **kwargs}
        with pytest.raises(error, match=match):
            PrometheusExporter(args.pop("collector"), **args)

    def test_repr(self):
        """The repr shows the namespace."""
        assert "<PrometheusExporter(namespace='x')>" == repr(
            PrometheusExporter(NodeMetricsCollector(), namespace="x")
        )

    def test_promtool_accepts_it(self):
        """`promtool check metrics` finds nothing wrong with the exposition."""
        promtool = binary("promtool")
        registry = CollectorRegistry()
        registry.register(PrometheusExporter(populated()))
        result = subprocess.run(  # noqa: S603 -- promtool from PATH, our own input
            [promtool, "check", "metrics"],
            input=generate_latest(registry),
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode, result.stdout + result.stderr
        assert b"" == result.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert "success" == body["status"]
    return body["data"]["result"]


@pytest.fixture
def prometheus_server(tmp_path):
    """A real Prometheus on 127.0.0.1, scraping a start_http_server endpoint every second."""
    prometheus = binary("prometheus")
    c = NodeMetricsCollector()
    registry = CollectorRegistry()
    registry.register(PrometheusExporter(c))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    target = server.server_port
    api = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: nodemetrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
    )
    process = subprocess.Popen(  # noqa: S603 -- prometheus from PATH, our own config
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{api}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield c, api, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
        server.shutdown()
        server.server_close()
        thread.join()


def wait_for(port: int, promql: str, expected: float, process, seconds: float = 60.0) -> float:
    """Query until the value is `expected`; scrapes come every second, so allow a minute."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        assert process.poll() is None, "prometheus exited"
        try:
            result = query(port, promql)
        except OSError:
            result = []  # not listening yet
        if result:
            last = float(result[0]["value"][1])
            if math.isclose(last, expected, rel_tol=1e-9):
                return last
        time.sleep(0.2)  # polling an external process, not papering over a race
    pytest.fail(f"{promql} was {last}, not {expected}, after {seconds} s")


def test_real_prometheus_scrapes_it(prometheus_server):
    """A real Prometheus scrapes the endpoint and its query API returns our values."""
    c, api, process = prometheus_server
    for d in [10.0, 20.0, 30.0, 40.0, 50.0]:
        c.record_success("fetch", d)
    c.record_failure("fetch", 100.0, ConnectionResetError())
    c.record_retry("fetch")
    m = c.get_node_metrics("fetch")

    wait_for(api, 'nodemetrics_node_executions_total{node="fetch",outcome="success"}', 5, process)
    wait_for(api, 'nodemetrics_node_executions_total{node="fetch",outcome="failure"}', 1, process)
    wait_for(api, 'nodemetrics_node_failures_total{node="fetch",category="network"}', 1, process)
    wait_for(api, 'nodemetrics_node_retries_total{node="fetch"}', 1, process)
    wait_for(api, 'nodemetrics_node_duration_seconds_count{node="fetch"}', 6, process)
    assert m.p50 is not None
    assert m.p99 is not None
    wait_for(
        api, 'nodemetrics_node_duration_seconds{node="fetch",quantile="0.5"}', m.p50 / 1000, process
    )
    wait_for(
        api,
        'nodemetrics_node_duration_seconds{node="fetch",quantile="0.99"}',
        m.p99 / 1000,
        process,
    )

    # Later recordings show up in later scrapes.
    c.record_success("fetch", 1.0)
    wait_for(api, 'nodemetrics_node_executions_total{node="fetch",outcome="success"}', 6, process)
