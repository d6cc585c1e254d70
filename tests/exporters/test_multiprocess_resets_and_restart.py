"""MultiProcessSync across node resets (told by serial), and restarted with a new interval."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.prometheus_multiprocess import MultiProcessSync


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset(labels.items()))


SUCCESSES = key("nodemetrics_node_executions_total", node="n", outcome="success")
COUNT = key("nodemetrics_node_duration_seconds_count", node="n")


class TestResets:
    def test_as_many_after_a_reset_are_all_mirrored(self):
        """5 executions, a sync, a reset and 5 more: the mirror counts 10, not 5."""
        c = NodeMetricsCollector()
        registry = CollectorRegistry()
        sync = MultiProcessSync(c, registry=registry)
        for _ in range(5):
            c.record_success("n", 2.0)
        sync.sync()
        c.reset_node_metrics("n")
        for _ in range(5):
            c.record_success("n", 2.0)
        sync.sync()
        s = samples(registry)
        assert (10, 10) == (s[SUCCESSES], s[COUNT])

    def test_more_after_a_reset_are_all_mirrored(self):
        """3 executions, a sync, a reset and 4 more: 7, not 4."""
        c = NodeMetricsCollector()
        registry = CollectorRegistry()
        sync = MultiProcessSync(c, registry=registry)
        for _ in range(3):
            c.record_success("n", 2.0)
        sync.sync()
        c.reset_node_metrics()
        for _ in range(4):
            c.record_success("n", 2.0)
        sync.sync()
        assert 7 == samples(registry)[SUCCESSES]


class TestRestart:
    def test_a_new_interval_applies_at_once(self):
        """Started with 600 s, then again with 0.01 s: the thread syncs within seconds."""
        c = NodeMetricsCollector()
        sync = MultiProcessSync(c, registry=CollectorRegistry())
        synced = threading.Event()
        original = sync._sync

        def spy(*args) -> None:
            original(*args)
            synced.set()

        sync._sync = spy  # type: ignore[method-assign]
        try:
            sync.start(600)
            sync.start(0.01)
            c.record_success("n", 1.0)
            assert synced.wait(30), "the thread still waits out its old interval"
        finally:
            sync.stop()
        assert sync._thread is not None
        assert not sync._thread.is_alive()

    def test_stop_while_another_thread_starts(self, monkeypatch):
        """
        stop() lands while start() in another thread has made its thread but
        not started it yet: stop() neither raises nor misses its last sync,
        and no thread is left running.
        """
        c = NodeMetricsCollector()
        sync = MultiProcessSync(c, registry=CollectorRegistry())
        real_start = threading.Thread.start
        making = threading.Event()
        stopped = threading.Event()

        def held_start(thread: threading.Thread) -> None:
            if thread.name == "nodemetrics-multiprocess-sync":
                making.set()
                assert stopped.wait(30)
            real_start(thread)

        monkeypatch.setattr(threading.Thread, "start", held_start)
        starter = threading.Thread(target=sync.start, args=(600,))
        real_start(starter)
        try:
            assert making.wait(30)
            c.record_success("n", 1.0)
            sync.stop()  # raised "cannot join thread before it is started"
            assert "n" in sync._seen  # its last sync ran
        finally:
            stopped.set()
            starter.join(30)
            monkeypatch.undo()
            sync.stop()
        assert sync._thread is not None
        assert not sync._thread.is_alive()
