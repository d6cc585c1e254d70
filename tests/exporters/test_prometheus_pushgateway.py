"""The README's batch-job example, pushed to a real Prometheus Pushgateway."""

from __future__ import annotations

import urllib.request

from pathlib import Path

from prometheus_client import CollectorRegistry, push_to_gateway
from prometheus_client.parser import text_string_to_metric_families

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.prometheus import PrometheusExporter


README = Path(__file__).parents[2] / "README.md"


def readme_block(marker: str) -> str:
    """The first fenced code block after `<!-- test: marker -->` in the README."""
    lines = README.read_text().splitlines()
    start = lines.index(f"<!-- test: {marker} -->")
    assert lines[start + 1].startswith("```")
    end = lines.index("```", start + 2)
    return "\n".join(lines[start + 2 : end])


def gateway_samples(address: str) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("nodemetrics_")
    }


def key(name: str, **labels: str) -> tuple[str, frozenset]:
    return (name, frozenset({"job": "nightly-etl", "instance": "", **labels}.items()))


def test_readme_example_pushes(pushgateway):
    """The README's example, run as written against a real Pushgateway, lands there intact."""
    code = readme_block("pushgateway")
    assert '"localhost:9091"' in code
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(code.replace("localhost:9091", pushgateway), "README.md", "exec"), namespace)  # noqa: S102 -- our own README
    collector = namespace["collector"]
    assert isinstance(collector, NodeMetricsCollector)
    h = collector.get_node_histogram("transform")
    s = gateway_samples(pushgateway)
    assert 1000 == s[key("nodemetrics_node_executions_total", node="transform", outcome="success")]
    assert 1000 == s[key("nodemetrics_node_duration_seconds_count", node="transform")]
    assert 1000 == s[key("nodemetrics_node_duration_seconds_bucket", node="transform", le="+Inf")]
    assert h.sum_ms / 1000 == s[key("nodemetrics_node_duration_seconds_sum", node="transform")]
    assert (
        h.cumulative()[0]
        == s[key("nodemetrics_node_duration_seconds_bucket", node="transform", le="0.0001")]
    )
    m = collector.get_node_metrics("transform")
    assert m.p99 is not None
    assert (
        m.p99 / 1000
        == s[key("nodemetrics_node_window_duration_seconds", node="transform", quantile="0.99")]
    )


def test_a_push_replaces_the_last(pushgateway):
    """A second run's push replaces the first's numbers, and nodes it lacks are gone."""
    for nodes in (["a", "b"], ["a"]):
        c = NodeMetricsCollector()
        for node in nodes:
            c.record_success(node, 5.0)
        registry = CollectorRegistry()
        registry.register(PrometheusExporter(c))
        push_to_gateway(pushgateway, job="nightly-etl", registry=registry)
    s = gateway_samples(pushgateway)
    assert 1 == s[key("nodemetrics_node_duration_seconds_count", node="a")]
    assert key("nodemetrics_node_duration_seconds_count", node="b") not in s
