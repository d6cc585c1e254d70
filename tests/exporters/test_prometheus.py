from __future__ import annotations

import random
import threading

import pytest

from prometheus_client import CollectorRegistry, Histogram, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.prometheus import PrometheusExporter


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


def single(c: NodeMetricsCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(PrometheusExporter(c))
    return registry


def les(registry: CollectorRegistry) -> list[str]:
    """The le labels of the duration histogram's buckets, in order."""
    text = generate_latest(registry).decode()
    return [
        s.labels["le"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "nodemetrics_node_duration_seconds_bucket"
    ]


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
                == s[key(f"{p}window_duration_seconds", node="fetch", quantile=quantile)]
            )
        for family in ("duration_seconds", "window_duration_seconds"):
            assert 6.0 == s[key(f"{p}{family}_count", node="fetch")]
            assert pytest.approx(0.21) == s[key(f"{p}{family}_sum", node="fetch")]
        assert 0.06 == s[key(f"{p}last_duration_seconds", node="fetch")]
        # 10, 20, 30, 40, 50 and 60 ms: cumulative le buckets in seconds.
        expected = {"0.005": 0, "0.01": 1, "0.025": 2, "0.05": 5, "0.1": 6, "+Inf": 6}
        for le, count in expected.items():
            assert count == s[key(f"{p}duration_seconds_bucket", node="fetch", le=le)]

    def test_escaped_names(self):
        """Node names with quotes, backslashes and newlines come back intact."""
        registry = CollectorRegistry()
        registry.register(PrometheusExporter(populated()))
        s = samples(registry)
        weird = 'we"ird\\name\nnode'
        assert 1.0 == s[key("nodemetrics_node_executions_total", node=weird, outcome="success")]

    def test_a_name_that_is_not_utf8_does_not_fail_the_scrape(self):
        """A lone surrogate (os.fsdecode() of bytes that are not UTF-8) is written as
        its escape, and every other node is still exported: it failed the whole page."""
        c = NodeMetricsCollector()
        c.record_success("good", 1.0)
        bad = b"report-\xff.csv".decode("utf-8", "surrogateescape")
        c.record_success(bad, 2.0)
        c.record_success("caf\u00e9", 3.0)  # UTF-8 that is not ASCII stays as it is
        registry = CollectorRegistry()
        registry.register(PrometheusExporter(c))
        s = samples(registry)
        for node in ("good", "report-\\udcff.csv", "caf\u00e9"):
            assert 1.0 == s[key("nodemetrics_node_executions_total", node=node, outcome="success")]

    def test_node_without_executions(self):
        """A node with no execution has counters and _count 0, and no quantiles or last."""
        registry = CollectorRegistry()
        registry.register(PrometheusExporter(populated()))
        s = samples(registry)
        assert 1.0 == s[key("nodemetrics_node_retries_total", node="only-retried")]
        assert 0.0 == s[key("nodemetrics_node_duration_seconds_count", node="only-retried")]
        assert 0.0 == s[key("nodemetrics_node_window_duration_seconds_count", node="only-retried")]
        assert (
            0.0
            == s[key("nodemetrics_node_duration_seconds_bucket", node="only-retried", le="+Inf")]
        )
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
            "nodemetrics_node_window_duration_seconds",
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

    def test_le_is_written_as_prometheus_client_writes_it(self):
        """The le labels are those of a prometheus_client Histogram with the same buckets."""
        for buckets in [None, (1, 2.5, 10, 1e6), (0.001, 0.5, 123.456)]:
            c = NodeMetricsCollector() if buckets is None else NodeMetricsCollector(buckets=buckets)
            c.record_success("n", 1.0)
            ours = CollectorRegistry()
            ours.register(PrometheusExporter(c))
            theirs = CollectorRegistry()
            h = Histogram(
                "nodemetrics_node_duration_seconds",
                "h",
                ["node"],
                registry=theirs,
                buckets=[b / 1000 for b in c.buckets],
            )
            h.labels("n").observe(0.001)
            assert les(theirs) == les(ours)
            assert len(c.buckets) + 1 == len(les(ours))

    def test_histogram_matches_the_collector(self):
        """_bucket, _count and _sum are get_node_histogram()'s, in seconds, cumulative."""
        c = NodeMetricsCollector(buckets=(1, 10, 100))
        for d in [0.5, 1.0, 7.0, 10.0, 99.0, 250.0, 1e4]:
            c.record_success("n", d)
        c.record_failure("n", 3.0)
        h = c.get_node_histogram("n")
        s = samples(single(c))
        got = [
            s[key("nodemetrics_node_duration_seconds_bucket", node="n", le=le)]
            for le in ("0.001", "0.01", "0.1", "+Inf")
        ]
        assert list(h.cumulative()) == got
        assert h.count == s[key("nodemetrics_node_duration_seconds_count", node="n")]
        assert h.sum_ms / 1000 == s[key("nodemetrics_node_duration_seconds_sum", node="n")]

    def test_sum_never_decreases(self):
        """The issue's sequence: 1.1 ms, 2.2 ms and ten 0.0 ms; _sum never goes down."""
        c = NodeMetricsCollector()
        registry = single(c)
        sums = []
        for d in [1.1, 2.2] + [0.0] * 10:
            c.record_success("n", d)
            s = samples(registry)
            sums.append(s[key("nodemetrics_node_duration_seconds_sum", node="n")])
            window_sum = s[key("nodemetrics_node_window_duration_seconds_sum", node="n")]
            assert sums[-1] == window_sum
        assert sums == sorted(sums)

    def test_a_scrape_is_one_instant(self):
        """While threads record, every scrape's counters, _count and +Inf bucket agree."""
        c = NodeMetricsCollector()
        registry = single(c)
        stop = threading.Event()

        def record():
            i = 0
            while not stop.is_set():
                i += 1
                c.record_success("n", float(i % 50))
                if i % 7 == 0:
                    c.record_failure("n", 1.0)
                with c.track("n"):
                    pass

        threads = [threading.Thread(target=record) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for _ in range(50):
                s = samples(registry)
                executions = sum(
                    s.get(key("nodemetrics_node_executions_total", node="n", outcome=o), 0)
                    for o in ("success", "failure")
                )
                count = s.get(key("nodemetrics_node_duration_seconds_count", node="n"), 0)
                inf = s.get(key("nodemetrics_node_duration_seconds_bucket", node="n", le="+Inf"), 0)
                assert executions == count == inf
        finally:
            stop.set()
            for t in threads:
                t.join()

    def test_promtool_accepts_it(self, promtool):
        """`promtool check metrics` finds nothing wrong with the exposition."""
        registry = CollectorRegistry()
        registry.register(PrometheusExporter(populated()))
        promtool(generate_latest(registry))


def node_samples(exporter: PrometheusExporter, node: str) -> dict[tuple[str, frozenset], object]:
    """One collect()'s Sample objects of *node*, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s
        for family in exporter.collect()
        for s in family.samples
        if s.labels["node"] == node
    }


class TestReuse:
    """Samples are kept between scrapes, and never stand for values that changed."""

    def test_an_idle_node_keeps_its_samples(self):
        """A second scrape of an unchanged node hands out the very same Sample objects."""
        c = populated()
        exporter = PrometheusExporter(c)
        first = node_samples(exporter, "fetch")
        second = node_samples(exporter, "fetch")
        assert first.keys() == second.keys()
        assert all(first[k] is second[k] for k in first)

    def test_a_changed_node_renews_only_what_changed(self):
        """A retry renews the retries sample; the histogram's samples stay the same objects."""
        c = populated()
        exporter = PrometheusExporter(c)
        first = node_samples(exporter, "fetch")
        c.record_retry("fetch")
        second = node_samples(exporter, "fetch")
        retries = key("nodemetrics_node_retries_total", node="fetch")
        assert 3 == second[retries].value  # type: ignore[attr-defined]
        assert first[retries] is not second[retries]
        buckets = [k for k in first if k[0] == "nodemetrics_node_duration_seconds_bucket"]
        assert 20 == len(buckets)
        assert all(first[k] is second[k] for k in buckets)

    def test_a_node_gains_quantiles_and_last(self):
        """A node first seen without executions gets its quantiles and last duration later."""
        c = NodeMetricsCollector()
        c.record_retry("n")
        registry = single(c)
        assert key("nodemetrics_node_last_duration_seconds", node="n") not in samples(registry)
        c.record_success("n", 250.0)
        s = samples(registry)
        assert 0.25 == s[key("nodemetrics_node_last_duration_seconds", node="n")]
        assert 0.25 == s[key("nodemetrics_node_window_duration_seconds", node="n", quantile="0.5")]
        assert 1.0 == s[key("nodemetrics_node_window_duration_seconds_count", node="n")]

    def test_same_exposition_as_a_fresh_exporter(self):
        """After each of 400 random changes, a long-lived exporter writes what a new one writes.

        No resets here: across one, a long-lived exporter's counts go on from
        what it wrote (test_prometheus_resets_and_names.py).
        """
        rng = random.Random(12)  # noqa: S311 -- a reproducible sequence, not a secret
        c = NodeMetricsCollector(window_size=5, buckets=(1, 10, 100))
        long_lived = single(c)
        nodes = ["a", "b", 'c"\\n', "d"]
        for step in range(400):
            node = rng.choice(nodes)
            action = rng.randrange(7)
            if action < 3:
                c.record_success(node, rng.choice([0.0, 0.5, 1.0, 7.0, 99.0, 1e4]))
            elif action == 3:
                c.record_failure(node, 3.0, rng.choice([TimeoutError(), ValueError(), OSError()]))
            elif action == 4:
                c.record_retry(node)
            elif action == 5:
                c.record_cancellation(node)
            else:
                c.record_interruption(node)
            if rng.random() < 0.7:
                assert generate_latest(single(c)) == generate_latest(long_lived), step


@pytest.fixture
def served():
    """A collector exposed by start_http_server on a free loopback port."""
    c = NodeMetricsCollector()
    registry = CollectorRegistry()
    registry.register(PrometheusExporter(c))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield c, f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_real_prometheus_scrapes_it(served, prometheus):
    """A real Prometheus scrapes the endpoint and its query API returns our values."""
    c, target = served
    server = prometheus([target])
    for d in [10.0, 20.0, 30.0, 40.0, 50.0]:
        c.record_success("fetch", d)
    c.record_failure("fetch", 100.0, ConnectionResetError())
    c.record_retry("fetch")
    m = c.get_node_metrics("fetch")

    server.wait_for('nodemetrics_node_executions_total{node="fetch",outcome="success"}', 5)
    server.wait_for('nodemetrics_node_executions_total{node="fetch",outcome="failure"}', 1)
    server.wait_for('nodemetrics_node_failures_total{node="fetch",category="network"}', 1)
    server.wait_for('nodemetrics_node_retries_total{node="fetch"}', 1)
    server.wait_for('nodemetrics_node_duration_seconds_count{node="fetch"}', 6)
    server.wait_for('nodemetrics_node_duration_seconds_bucket{node="fetch",le="0.025"}', 2)
    server.wait_for('nodemetrics_node_window_duration_seconds_count{node="fetch"}', 6)
    assert m.p50 is not None
    assert m.p99 is not None
    server.wait_for(
        'nodemetrics_node_window_duration_seconds{node="fetch",quantile="0.5"}', m.p50 / 1000
    )
    server.wait_for(
        'nodemetrics_node_window_duration_seconds{node="fetch",quantile="0.99"}', m.p99 / 1000
    )

    # Later recordings show up in later scrapes.
    c.record_success("fetch", 1.0)
    server.wait_for('nodemetrics_node_executions_total{node="fetch",outcome="success"}', 6)
