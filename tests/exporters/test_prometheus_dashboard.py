"""The Grafana dashboard's every query, run by a real Prometheus scraping a small app."""

from __future__ import annotations

import json
import math
import threading

from pathlib import Path

import pytest

from prometheus_client import CollectorRegistry, start_http_server

from nodemetrics import ErrorCategory, NodeMetricsCollector
from nodemetrics.exporters.prometheus import PrometheusExporter


DASHBOARD = Path(__file__).parents[2] / "dashboards" / "nodemetrics.json"


def queries() -> list[tuple[str, str]]:
    """Every panel target's (panel title, PromQL), Grafana's variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "15s").replace("$node", ".+")
            assert "$" not in expr, expr
            found.append((panel["title"], expr))
    return found


def test_dashboard_is_importable():
    """The dashboard is Grafana JSON with a data source input and a node variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert "DS_PROMETHEUS" == dashboard["__inputs"][0]["name"]
    assert ["DS_PROMETHEUS", "node"] == [v["name"] for v in dashboard["templating"]["list"]]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert len(queries()) >= 7


@pytest.fixture
def app():
    """A small app: two nodes executing, failing in every category, retried, cancelled, paused."""
    c = NodeMetricsCollector()
    registry = CollectorRegistry()
    registry.register(PrometheusExporter(c))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def run():
        i = 0
        while not stop.wait(0.005):  # the app's own pace
            i += 1
            for node in ("fetch", "parse"):
                c.record_success(node, float(i % 300))
                category = list(ErrorCategory)[i % 4]
                c.record_failure(node, float(i % 50), category=category)
                c.record_retry(node)
                c.record_cancellation(node)
                c.record_interruption(node)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        stop.set()
        worker.join()
        server.shutdown()
        server.server_close()
        thread.join()


def test_every_panel_returns_data(app, prometheus):
    """Each panel's query returns at least one finite value from a real Prometheus."""
    server = prometheus([app])

    def has_finite(result):
        return any(math.isfinite(float(r["value"][1])) for r in result)

    for title, expr in queries():
        result = server.wait_until(expr, has_finite)
        assert result, title
