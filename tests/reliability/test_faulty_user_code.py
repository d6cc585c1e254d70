"""Guarantee 7: a raising or slow classifier, callback or log sink never breaks a node."""

from __future__ import annotations

import threading
import time
import traceback

import pytest

from loguru import logger

from nodemetrics import NodeMetricsCollector, metered


class NodeError(Exception):
    pass


def deep_failure():
    raise NodeError("the node's own failure")


def run_nodes(c: NodeMetricsCollector) -> None:
    """Run one succeeding and one failing node of each kind; check they are untouched."""

    @metered("ok", collector=c)
    def ok(x):
        return x * 2

    @metered("bad", collector=c)
    def bad():
        deep_failure()

    assert 42 == ok(21)
    with pytest.raises(NodeError) as info:
        bad()
    assert "deep_failure" == traceback.extract_tb(info.value.__traceback__)[-1].name
    assert "the node's own failure" == str(info.value)
    assert info.value.__context__ is None
    with pytest.raises(NodeError) as info, c.track("tracked"):
        deep_failure()
    assert "deep_failure" == traceback.extract_tb(info.value.__traceback__)[-1].name


def check_counts(c: NodeMetricsCollector) -> None:
    assert 1 == c.get_node_metrics("ok").success_count
    assert 1 == c.get_node_metrics("bad").failure_count
    assert 1 == c.get_node_metrics("tracked").failure_count


def raising_classifier(exc):
    raise RuntimeError("classifier bug")


def raising_callback(node, value):
    raise RuntimeError("callback bug")


def thresholds(callback):
    return {
        "min_samples": 1,
        "failure_rate_threshold": 0.0,
        "on_failure_rate_threshold": callback,
        "latency_threshold_ms": 0.0,
        "on_latency_threshold": callback,
    }


class TestRaising:
    def test_classifier(self, logs):
        """A raising classifier: nodes untouched, failures counted, the bug logged."""
        c = NodeMetricsCollector(classifier=raising_classifier)
        run_nodes(c)
        check_counts(c)
        assert c.get_node_metrics("bad").other_errors == 1
        assert 2 == sum("nodemetrics.classifier_failed" in m for m in logs.messages)

    def test_threshold_callbacks(self, logs):
        """Raising threshold callbacks: nodes untouched, counts kept, the bugs logged."""
        c = NodeMetricsCollector(**thresholds(raising_callback))
        run_nodes(c)
        check_counts(c)
        assert any("nodemetrics.callback_failed" in m for m in logs.messages)

    def test_log_sink_that_raises(self):
        """A loguru sink that raises (catch=False) cannot reach the node."""

        def sink(message):
            raise OSError("disk full")

        sink_id = logger.add(sink, catch=False)
        try:
            c = NodeMetricsCollector(
                classifier=raising_classifier, max_nodes=2, **thresholds(raising_callback)
            )
            run_nodes(c)
            c.record_success("negative", -1.0)  # logs a warning
        finally:
            logger.remove(sink_id)
        assert 1 == c.get_node_metrics("ok").success_count
        assert 1 == c.get_node_metrics("bad").failure_count
        # "tracked" and "negative" went to the overflow node (max_nodes=2): nothing lost.
        assert 2 == c.get_node_metrics("__overflow__").total_executions


class TestSlow:
    def test_slow_classifier_callback_and_sink(self):
        """Slow user code slows recording down but loses no count from any thread."""

        def slow_classifier(exc):
            time.sleep(0.001)  # the slowness is what is under test

        def slow_callback(node, value):
            time.sleep(0.001)

        def slow_sink(message):
            time.sleep(0.001)

        sink_id = logger.add(slow_sink)
        try:
            c = NodeMetricsCollector(classifier=slow_classifier, **thresholds(slow_callback))

            def work():
                for i in range(50):
                    c.record_failure("n", -1.0 if i % 10 == 0 else 1.0, KeyError())
                    c.record_success("n", 1.0)

            threads = [threading.Thread(target=work) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            run_nodes(c)
        finally:
            logger.remove(sink_id)
        m = c.get_node_metrics("n")
        assert (300, 150, 150) == (m.total_executions, m.success_count, m.other_errors)
        check_counts(c)
