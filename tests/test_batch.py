"""Successes timed by track() and metered() wait in a per-node batch."""

from __future__ import annotations

import itertools

import pytest

from nodemetrics import NodeMetricsCollector, _tracker, metered
from nodemetrics._tracker import BATCH as _BATCH


def known(node: str = "n", **options) -> NodeMetricsCollector:
    """A collector that has seen *node* once (1.0 ms), so that it batches."""
    c = NodeMetricsCollector(**options)
    c.record_success(node, 1.0)
    return c


def batch(c: NodeMetricsCollector, node: str = "n") -> list[float]:
    return c._nodes[node].batch


def track(c: NodeMetricsCollector, times: int, node: str = "n") -> None:
    for _ in range(times):
        with c.track(node):
            pass


class TestBatch:
    def test_waits_until_read(self):
        """Timed successes wait in the batch; a read counts them all."""
        c = known()
        track(c, 5)
        assert 5 == len(batch(c))
        assert 6 == c.get_node_metrics("n").success_count
        assert [] == batch(c)

    def test_first_timed_success_creates_the_node(self):
        """A node's first timed success is recorded at once, not batched."""
        c = NodeMetricsCollector()
        track(c, 1)
        assert [] == batch(c)
        assert 1 == c.get_node_metrics("n").success_count

    def test_folds_when_full(self):
        """A full batch is folded by the success that fills it, without a read."""
        c = known()
        track(c, _BATCH - 1)
        assert _BATCH - 1 == len(batch(c))
        track(c, 1)
        assert [] == batch(c)
        assert 1 + _BATCH == c._nodes["n"].success

    def test_metered_batches_too(self):
        """Calls of a metered function go through the same batch."""
        c = known()
        call = metered("n", collector=c)(lambda: None)
        for _ in range(_BATCH + 3):
            call()
        assert 3 == len(batch(c))
        assert 1 + _BATCH + 3 == c.get_node_metrics("n").success_count

    def test_append_during_fold_is_kept(self):
        """A success appended while a fold takes the batch waits for the next fold."""
        c = known()

        class Racing(list):
            """Appends one more success just after the fold copies it."""

            def __getitem__(self, index):
                taken = super().__getitem__(index)
                self.append(99.0)
                return taken

        c._nodes["n"].batch = Racing([2.0, 3.0])
        m = c.get_node_metrics("n")
        assert (3, 3.0) == (m.success_count, m.last_execution_ms)
        assert [99.0] == list(batch(c))

    def test_fold_of_a_folded_batch_does_nothing(self, logs):
        """
        Two threads can both see a full batch; the one that takes the lock
        second finds it empty, and neither errs nor counts twice.
        """
        c = known()
        track(c, 3)
        state = c._nodes["n"]
        _tracker.fold_batch(c, state)
        _tracker.fold_batch(c, state)
        assert ([], 4) == (batch(c), state.success)
        assert [] == logs.of_level("ERROR")

    def test_held_lock_queues_timed_successes_behind_the_queue(self):
        """
        While its own thread holds the lock (a signal handler's view), a timed
        success queues behind a recording queued before it instead of batching
        ahead of it; the next call applies them all, in order; nothing is lost.
        """
        c = known()
        with c._guard.lock:  # as if interrupted while holding it
            c.record_success("n", 5.0)
            track(c, _BATCH + 10)
        assert 1 + _BATCH + 10 == len(c._guard.pending)
        assert [] == batch(c)
        track(c, 1)  # applies the queue, then its own
        assert ([], 0) == (batch(c), len(c._guard.pending))
        assert 1 + 1 + _BATCH + 11 == c._nodes["n"].success
        assert not c._guard.hold

    def test_batch_appended_by_an_interrupting_block_waits_for_the_next_fold(self):
        """A fold asked for while this thread holds the lock leaves the batch for later."""
        c = known()
        track(c, _BATCH - 1)
        with c._guard.lock:
            state = c._nodes["n"]
            _tracker.fold_batch(c, state)
            assert _BATCH - 1 == len(batch(c))
        assert 1 + _BATCH - 1 == c.get_node_metrics("n").success_count

    @pytest.mark.parametrize("failed", [False, True], ids=["success", "failure"])
    def test_order_with_direct_recordings(self, monkeypatch, failed):
        """
        A direct recording lands after the successes already batched, so
        last_execution_ms and the window keep arrival order.
        """
        c = known(window_size=2)
        ticks = itertools.chain.from_iterable((0, ms * 1_000_000) for ms in (10, 20))
        monkeypatch.setattr(_tracker, "perf_counter_ns", ticks.__next__)
        track(c, 2)  # 10 and 20 ms
        if failed:
            c.record_failure("n", 7.0, category="network")
        else:
            c.record_success("n", 7.0)
        m = c.get_node_metrics("n")
        assert (7.0, 4, 9.5) == (m.last_execution_ms, m.total_executions, m.avg_execution_ms)
        assert 13.5 == m.p50  # the window holds 20 and 7: 10 was evicted

    def test_reads_of_every_node_fold_every_batch(self):
        """get_all_node_metrics() (and so every exporter) counts every batch."""
        c = known("a")
        c.record_success("b", 1.0)
        track(c, 4, "a")
        track(c, 2, "b")
        counts = {n: m.success_count for n, m in c.get_all_node_metrics().items()}
        assert {"a": 5, "b": 3} == counts

    def test_reset_drops_the_batch(self):
        """Successes batched before a reset are forgotten with the node."""
        c = known()
        track(c, 3)
        c.reset_node_metrics("n")
        assert 0 == c.get_node_metrics("n").total_executions

    def test_thresholds_fire_at_the_crossing_block(self, monkeypatch):
        """A collector that watches thresholds records every timed success at once."""
        fired = []
        c = known(
            latency_threshold_ms=50.0,
            on_latency_threshold=lambda node, p99: fired.append((node, p99)),
            min_samples=1,
        )
        ticks = itertools.chain.from_iterable((0, ms * 1_000_000) for ms in (5, 80))
        monkeypatch.setattr(_tracker, "perf_counter_ns", ticks.__next__)
        track(c, 1)
        assert ([], []) == (fired, batch(c))
        track(c, 1)
        assert 1 == len(fired)
        assert [] == batch(c)
