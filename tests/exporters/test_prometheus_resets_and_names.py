"""
The Prometheus exporter across node resets, and names written as one label.

A reset node's counters, buckets, ``_count`` and ``_sum`` go on from what
the exporter last wrote (Prometheus' ``rate()`` must not lose what the
node counts after a reset); two names escaped to one ``node`` label add up
to one set of series.
"""

from __future__ import annotations

import random
import subprocess
import threading

import pytest

from _internals import holding_lock
from exporters.conftest import find_binary, http_get
from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway
from prometheus_client.parser import text_string_to_metric_families

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters import prometheus as prometheus_exporter
from nodemetrics.exporters.prometheus import PrometheusExporter


Key = tuple[str, frozenset[tuple[str, str]]]


def samples(registry: CollectorRegistry) -> dict[Key, float]:
    """Parse one scrape; fails on a series written twice."""
    found: dict[Key, float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            k = (s.name, frozenset(s.labels.items()))
            assert k not in found, f"series written twice: {k}"
            found[k] = s.value
    return found


def key(name: str, **labels: str) -> Key:
    return (name, frozenset(labels.items()))


def exported(c: NodeMetricsCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(PrometheusExporter(c))
    return registry


P = "nodemetrics_node_"
SUCCESSES = key(f"{P}executions_total", node="n", outcome="success")
COUNT = key(f"{P}duration_seconds_count", node="n")
SUM = key(f"{P}duration_seconds_sum", node="n")
FAST = key(f"{P}duration_seconds_bucket", node="n", le="0.005")
INF = key(f"{P}duration_seconds_bucket", node="n", le="+Inf")
WINDOW_COUNT = key(f"{P}window_duration_seconds_count", node="n")
WINDOW_SUM = key(f"{P}window_duration_seconds_sum", node="n")
P50 = key(f"{P}window_duration_seconds", node="n", quantile="0.5")
LAST = key(f"{P}last_duration_seconds", node="n")


#: Keys whose value is not carried across a reset: the window's quantiles and the last duration.
def carried(k: Key) -> bool:
    return not (k[0] == f"{P}last_duration_seconds" or ("quantile" in dict(k[1])))


class TestResets:
    def test_counts_go_on_after_a_reset(self):
        """5 executions, a scrape, a reset and 7 more: every count goes on from 5, none down."""
        c = NodeMetricsCollector()
        registry = exported(c)
        for _ in range(5):
            c.record_success("n", 1.0)
        before = samples(registry)
        c.reset_node_metrics("n")
        for _ in range(7):
            c.record_success("n", 800.0)
        after = samples(registry)
        assert (5, 12) == (before[SUCCESSES], after[SUCCESSES])
        assert (5, 12) == (before[COUNT], after[COUNT])
        assert (5, 5) == (before[FAST], after[FAST])
        assert (5, 12) == (before[INF], after[INF])
        assert pytest.approx(0.005 + 7 * 0.8) == after[SUM]
        assert (after[COUNT], after[SUM]) == (after[WINDOW_COUNT], after[WINDOW_SUM])
        # The window's quantiles and the last duration are the collector's own.
        assert (0.8, 0.8) == (after[P50], after[LAST])
        assert all(after[k] >= v for k, v in before.items() if carried(k))

    def test_prometheus_counts_the_executions_after_a_reset(self, tmp_path):
        """Prometheus' own engine (promtool) sees no counter reset, and 7 more executions."""
        promtool = find_binary("promtool", "prometheus")
        c = NodeMetricsCollector()
        registry = exported(c)
        for _ in range(5):
            c.record_success("n", 1.0)
        first = samples(registry)
        c.reset_node_metrics("n")
        for _ in range(7):
            c.record_success("n", 800.0)
        second = samples(registry)
        series = "\n".join(
            f'      - series: \'{name}{{node="n",le="{le}"}}\'\n'
            f"        values: '{first[k]:g} {second[k]:g}'"
            for name, le, k in [
                (f"{P}duration_seconds_bucket", "0.005", FAST),
                (f"{P}duration_seconds_bucket", "+Inf", INF),
            ]
        )
        (tmp_path / "rules.yml").write_text("groups: []\n")
        (tmp_path / "test.yml").write_text(
            f"""rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
{series}
    promql_expr_test:
      - expr: sum(resets({P}duration_seconds_bucket[2m]))
        eval_time: 1m
        exp_samples:
          - value: 0
      - expr: idelta({P}duration_seconds_bucket{{le="+Inf"}}[2m])
        eval_time: 1m
        exp_samples:
          - labels: '{{node="n",le="+Inf"}}'
            value: 7
"""
        )
        result = subprocess.run(  # noqa: S603 -- promtool from PATH, our own input
            [promtool, "test", "rules", "test.yml"],
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert 0 == result.returncode, result.stdout + result.stderr

    def test_a_reset_node_keeps_its_last_values(self):
        """A node reset and not recorded since keeps its counts, not its quantiles or last."""
        c = NodeMetricsCollector()
        registry = exported(c)
        c.record_success("n", 2.0)
        c.record_retry("n")
        before = samples(registry)
        c.reset_node_metrics()
        gone = samples(registry)
        assert {k: v for k, v in before.items() if carried(k)} == gone
        assert gone == samples(registry)
        c.record_success("n", 3.0)
        back = samples(registry)
        assert 2 == back[SUCCESSES]
        assert 1 == back[key(f"{P}retries_total", node="n")]
        assert (0.003, 0.003) == (back[P50], back[LAST])

    def test_what_came_between_scrape_and_reset_is_lost(self):
        """Executions between the last scrape and a reset are not counted: the documented loss."""
        c = NodeMetricsCollector()
        registry = exported(c)
        c.record_success("n", 1.0)
        samples(registry)
        c.record_success("n", 1.0)  # never scraped
        c.reset_node_metrics("n")
        c.record_success("n", 1.0)
        assert 2 == samples(registry)[SUCCESSES]

    def test_against_a_model_over_random_changes(self):
        """After each of 600 random changes and resets, a scrape writes what a plain model says."""
        rng = random.Random(12)  # noqa: S311 -- a reproducible sequence, not a secret
        c = NodeMetricsCollector(window_size=5, buckets=(1, 10, 100))
        long_lived = exported(c)
        nodes = ["a", "b", 'c"\\n', "d"]
        base: dict[Key, float] = {}  # what the counts of each series go on from
        last: dict[Key, float] = {}  # each series' count (since its reset) at the last scrape
        reset: set[str] = set()
        for step in range(600):
            node = rng.choice(nodes)
            action = rng.randrange(8)
            if action < 3:
                c.record_success(node, rng.choice([0.0, 0.5, 1.0, 7.0, 99.0, 1e4]))
            elif action == 3:
                c.record_failure(node, 3.0, rng.choice([TimeoutError(), ValueError(), OSError()]))
            elif action == 4:
                c.record_retry(node)
            elif action == 5:
                c.record_cancellation(node)
            elif action == 6:
                c.record_interruption(node)
            elif rng.random() < 0.5:
                gone = nodes if rng.random() < 0.2 else [node]
                c.reset_node_metrics(None if gone is nodes else node)
                reset.update(gone)
            if rng.random() < 0.5:
                for k in [k for k in last if dict(k[1])["node"] in reset]:
                    base[k] = base.get(k, 0) + last.pop(k)
                reset.clear()
                fresh = samples(exported(c))  # the collector's own numbers
                expected = dict(base)
                for k, v in fresh.items():
                    if carried(k):
                        expected[k] = base.get(k, 0) + v
                        last[k] = v
                    else:
                        expected[k] = v
                assert expected == samples(long_lived), step

    def test_concurrent_scrapes_never_go_down(self):
        """3 threads scrape while nodes are reset and recorded: none sees a count go down."""
        c = NodeMetricsCollector()
        registry = exported(c)
        stop = threading.Event()
        scraped = threading.Semaphore(0)
        failures: list[str] = []

        def scrape() -> None:
            seen: dict[Key, float] = {}
            while not stop.is_set():
                for k, v in samples(registry).items():
                    if carried(k) and v < seen.get(k, 0):
                        failures.append(f"{k}: {seen[k]} -> {v}")
                    seen[k] = v
                scraped.release()

        threads = [threading.Thread(target=scrape, daemon=True) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            for i in range(300):
                for j in range(i % 4 + 1):
                    c.record_success(f"n{j}", float(i % 50))
                # Some scrapes between two resets, so that each thread sees counts drop if they do.
                for _ in range(3):
                    assert scraped.acquire(timeout=60)
                c.reset_node_metrics(f"n{i % 4}" if i % 3 else None)
                if failures:
                    break
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert [] == failures


#: Two names written as the one label "bad\\udcff": a lone surrogate, and its escape spelled out.
SURROGATE, SPELLED = "bad\udcff", "bad\\udcff"


class TestCollidingNames:
    def test_one_set_of_series_with_the_sums(self):
        """Both names' counters and histograms are summed into one set of series."""
        c = NodeMetricsCollector()
        registry = exported(c)
        c.record_success(SURROGATE, 1.0)
        c.record_success(SPELLED, 300.0)
        c.record_success(SPELLED, 300.0)
        c.record_failure(SPELLED, 5.0, TimeoutError())
        c.record_retry(SURROGATE)
        s = samples(registry)
        label = "bad\\udcff"
        assert 3 == s[key(f"{P}executions_total", node=label, outcome="success")]
        assert 1 == s[key(f"{P}failures_total", node=label, category="timeout")]
        assert 1 == s[key(f"{P}retries_total", node=label)]
        assert 4 == s[key(f"{P}duration_seconds_count", node=label)]
        assert 1 == s[key(f"{P}duration_seconds_bucket", node=label, le="0.001")]
        assert (
            s[key(f"{P}duration_seconds_sum", node=label)]
            == s[key(f"{P}window_duration_seconds_sum", node=label)]
        )
        # The quantiles and last duration of the first name in code point order.
        assert SPELLED < SURROGATE
        assert 0.3 == s[key(f"{P}window_duration_seconds", node=label, quantile="0.5")]
        assert 0.005 == s[key(f"{P}last_duration_seconds", node=label)]
        assert 1 == len({dict(k[1])["node"] for k in s})

    def test_quantiles_of_the_first_name_that_has_executed(self):
        """A first name with no execution leaves the quantiles and last duration to the next."""
        c = NodeMetricsCollector()
        registry = exported(c)
        c.record_retry(SPELLED)
        c.record_success(SURROGATE, 2.0)
        s = samples(registry)
        assert 0.002 == s[key(f"{P}last_duration_seconds", node=SPELLED)]
        assert 0.002 == s[key(f"{P}window_duration_seconds", node=SPELLED, quantile="0.99")]

    def test_names_that_do_not_collide_are_written_as_themselves(self):
        """A lone escaped name, a backslash, and plain names: one set of series each."""
        c = NodeMetricsCollector()
        registry = exported(c)
        for node in ["other\udcfe", "back\\slash", "a", SURROGATE]:
            c.record_success(node, 1.0)
        s = samples(registry)
        written = {dict(k[1])["node"] for k in s}
        assert {"other\\udcfe", "back\\slash", "a", "bad\\udcff"} == written

    def test_promtool_takes_it(self, promtool):
        """The real promtool lints the scrape of colliding names clean."""
        c = NodeMetricsCollector()
        c.record_success(SURROGATE, 1.0)
        c.record_success(SPELLED, 2.0)
        promtool(generate_latest(exported(c)))

    def test_a_batch_job_pushes_them(self, pushgateway):
        """push_to_gateway() of colliding names succeeds, and the Pushgateway holds the sum."""
        c = NodeMetricsCollector()
        c.record_success(SURROGATE, 1.0)
        c.record_success(SPELLED, 2.0)
        push_to_gateway(pushgateway, job="collide", registry=exported(c))
        text = http_get(f"http://{pushgateway}/metrics").decode()
        values = {
            (s.name, s.labels.get("node")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.labels.get("job") == "collide"
        }
        assert 2 == values[(f"{P}duration_seconds_count", "bad\\udcff")]


class TestScrapeFromInside:
    def test_a_scrape_interrupting_one_writes_the_last_scrapes_samples(self):
        """
        A scrape from a signal handler or finalizer that interrupted a scrape
        in its own thread (which holds the exporter's lock) waits for nothing
        and writes what the last scrape wrote, whole, collisions summed.
        """
        c = NodeMetricsCollector()
        exporter = PrometheusExporter(c)
        registry = CollectorRegistry()
        registry.register(exporter)
        for name in ("n", "bad\udcff", "bad\\udcff"):
            c.record_success(name, 1.0)
        first = samples(registry)
        c.record_success("n", 2.0)
        with exporter._guard.lock:
            inside = samples(registry)
        assert first == inside
        assert 2 == inside[key(f"{P}executions_total", node="bad\\udcff", outcome="success")]
        assert 2 == samples(registry)[SUCCESSES]

    def test_a_scrape_while_this_thread_holds_the_collectors_lock(self):
        """
        A scrape from a signal handler that interrupted a recording of its own
        thread reads the collector aside, at once, with every node's serial:
        a reset node still goes on from what was written.
        """
        c = NodeMetricsCollector()
        registry = exported(c)
        for _ in range(5):
            c.record_success("n", 1.0)
        samples(registry)
        c.reset_node_metrics("n")
        c.record_success("n", 1.0)
        with holding_lock(c):
            inside = samples(registry)
        assert 6 == inside[SUCCESSES]


class TestCutShort:
    """A scrape cut short (by a signal handler's exception) while it builds a new escaped name."""

    @staticmethod
    def arm(monkeypatch, action):
        """Run *action* once, on entering the next family's samples to build."""
        real = prometheus_exporter._family_samples
        armed = [True]

        def wrapped(*args):
            if armed[0]:
                armed[0] = False
                action()
            return real(*args)

        monkeypatch.setattr(prometheus_exporter, "_family_samples", wrapped)

    def test_later_scrapes_still_work(self, monkeypatch):
        """
        The name, listed as escaped but never cached, then reset: later
        scrapes write every other name, and the name once it records again.
        """
        c = NodeMetricsCollector()
        registry = exported(c)
        c.record_success("bad\\udcff", 5.0)
        samples(registry)
        c.record_success("bad\udcff", 5.0)

        def interrupt():
            raise KeyboardInterrupt

        self.arm(monkeypatch, interrupt)
        with pytest.raises(KeyboardInterrupt):
            samples(registry)
        c.reset_node_metrics("bad\udcff")
        label = key(f"{P}executions_total", node="bad\\udcff", outcome="success")
        assert 1 == samples(registry)[label]
        c.record_success("bad\udcff", 5.0)
        assert 2 == samples(registry)[label]

    def test_a_scrape_nested_at_that_point_writes_the_last_scrape(self, monkeypatch):
        c = NodeMetricsCollector()
        registry = exported(c)
        c.record_success("bad\\udcff", 5.0)
        first = samples(registry)
        c.record_success("bad\udcff", 5.0)
        nested = []
        self.arm(monkeypatch, lambda: nested.append(samples(registry)))
        samples(registry)
        assert [first] == nested
