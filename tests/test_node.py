"""One node's state (``_Node``): what repair() makes of a change cut short."""

from __future__ import annotations

from bisect import bisect_left

import pytest

from _internals import (
    cut_add_after_window,
    empty_window,
    fake_clock,
    fold_batch,
    window_failures,
    window_of,
    window_samples,
)

from nodemetrics import NodeMetricsCollector
from nodemetrics._histogram import DEFAULT_BUCKETS_MS
from nodemetrics._node import _Node
from nodemetrics._window import RollingWindow


def bucketed(durations: list[float]) -> list[int]:
    """Each duration counted in the bucket a bisect of the default bounds finds."""
    counts = [0] * (len(DEFAULT_BUCKETS_MS) + 1)
    for d in durations:
        counts[bisect_left(DEFAULT_BUCKETS_MS, d)] += 1
    return counts


def fold_cut_after_extend(monkeypatch, c: NodeMetricsCollector) -> None:
    """Fold node "n"'s batch, cut short (KeyboardInterrupt) once its window took the batch."""

    def cut(self, values):
        real(self, values)
        raise KeyboardInterrupt

    real = RollingWindow.extend
    monkeypatch.setattr(RollingWindow, "extend", cut)
    with pytest.raises(KeyboardInterrupt):
        fold_batch(c, "n")
    monkeypatch.setattr(RollingWindow, "extend", real)


class TestRepair:
    def test_a_node_that_counted_nothing_starts_afresh(self):
        """A first recording cut short after the window took it leaves no trace once repaired."""
        c = NodeMetricsCollector()
        c.record_retry("n")  # the node exists, with no execution yet
        cut_add_after_window(c, "n", 3.0)
        c.record_success("n", 5.0)  # repairs the node first
        m = c.get_node_metrics("n")
        h = c.get_node_histogram("n")
        assert (1, 5.0, 5.0, 5.0) == (m.total_executions, m.avg_execution_ms, m.p50, m.p99)
        assert (1, 5.0, bucketed([5.0])) == (h.count, h.sum_ms, list(h.counts))

    # 1.0 is in the bucket of bound 1.0; 1.5 in the next one, just past those
    # used so far; 1e7 ms past the top bound.
    @pytest.mark.parametrize("lost", [1.5, 1e7])
    def test_a_fold_cut_short_before_counting_loses_its_batch_and_nothing_else(
        self, monkeypatch, lost
    ):
        """
        A fold cut short after its window took the batch, before counting it,
        leaves exactly the executions counted: in the snapshot, the window and
        the histogram's buckets.
        """
        c = NodeMetricsCollector()
        c.record_success("n", 1.0)
        c.get_node_histogram("n")  # 1.0 is bucketed: only its bucket is kept
        with fake_clock([int(lost * 1e6)]), c.track("n"):
            pass

        fold_cut_after_extend(monkeypatch, c)
        h = c.get_node_histogram("n")  # repairs the node first
        m = c.get_node_metrics("n")
        assert (1, 1.0, 1.0, 1.0) == (m.total_executions, m.last_execution_ms, m.p50, m.p99)
        assert (1, bucketed([1.0])) == (h.count, list(h.counts))

    @pytest.mark.parametrize("lost", [1.5, 1e7])
    def test_a_fold_cut_short_while_bucketing_counts_none_of_its_batch(self, monkeypatch, lost):
        """
        A fold cut short while it buckets its batch (into a copy of the
        histogram) has counted none of it: all or nothing.
        """
        c = NodeMetricsCollector()
        c.record_success("n", 1.0)
        c.get_node_histogram("n")
        with fake_clock([int(lost * 1e6)]), c.track("n"):
            pass

        def cut(self, values):
            real(self, values)
            raise KeyboardInterrupt

        real = _Node.bucketed
        monkeypatch.setattr(_Node, "bucketed", cut)
        with pytest.raises(KeyboardInterrupt):
            fold_batch(c, "n")
        monkeypatch.setattr(_Node, "bucketed", real)
        h = c.get_node_histogram("n")
        m = c.get_node_metrics("n")
        assert (1, 1.0) == (m.total_executions, m.last_execution_ms)
        assert (1, bucketed([1.0])) == (h.count, list(h.counts))
        assert [1.0] == window_samples(c, "n")

    @pytest.mark.parametrize("failures", [False, True])
    def test_an_uncounted_sample_leaves_a_ring_not_yet_full(self, failures):
        """
        After an add cut short once its window took a sample, before it was
        counted, the window and the histogram hold the durations counted, not
        the sample no count includes.
        """
        c = NodeMetricsCollector(
            failure_rate_threshold=0.5 if failures else None,
            # The window counts failures only when their rate is watched.
            on_failure_rate_threshold=(lambda node, rate: None) if failures else None,
        )
        c.record_success("n", 1.0)  # waits in the window, not yet bucketed
        c.record_failure("n", 2.0, ValueError())
        cut_add_after_window(c, "n", 500.0, failed=failures)
        h = c.get_node_histogram("n")  # repairs the node first
        m = c.get_node_metrics("n")
        assert (2, 3.0, bucketed([1.0, 2.0])) == (h.count, h.sum_ms, list(h.counts))
        assert (2, 2.0) == (m.total_executions, m.last_execution_ms)
        assert m.p99 <= 2.0
        c.record_success("n", 3.0)
        assert [1.0, 2.0, 3.0] == window_samples(c, "n")
        if failures:  # the disowned failure's flag went with it: 1 failure in 3
            assert window_failures(c, "n") == 1

    @pytest.mark.parametrize("recorded", [2, 3, 4, 7])
    def test_an_uncounted_sample_becomes_a_full_rings_oldest(self, recorded):
        """
        In a full ring the uncounted sample took the oldest's slot: repaired,
        it is the oldest, the next to go, and the newest are the counted ones,
        which the histogram holds; the recording after it evicts it.
        """
        c = NodeMetricsCollector(window_size=3)
        durations = [float(10 * (i + 1)) for i in range(recorded)]
        for d in durations:
            c.record_success("n", d)
        cut_add_after_window(c, "n", 5000.0)
        h = c.get_node_histogram("n")
        assert (recorded, bucketed(durations)) == (h.count, list(h.counts))
        assert durations[-1] == c.get_node_metrics("n").last_execution_ms
        kept = durations[-2:] if recorded >= 3 else durations
        assert sorted([5000.0, *kept]) == sorted(window_samples(c, "n"))
        c.record_success("n", 1.0)
        assert sorted([*kept, 1.0]) == sorted(window_samples(c, "n"))
        assert bucketed([*durations, 1.0]) == list(c.get_node_histogram("n").counts)

    def test_a_made_up_sample_is_not_taken_for_an_uncounted_one(self):
        """
        Once repair has had to make a sample up (its window lost every one),
        the window holds fewer samples than executions; a later add cut short
        is still told apart from the counted ones.
        """
        c = NodeMetricsCollector(window_size=4)
        for d in (1.0, 2.0, 3.0):
            c.record_success("n", d)
        empty_window(c, "n")
        assert 3 == c.get_node_metrics("n").total_executions  # repaired: [3.0]
        for d in (20.0, 30.0, 40.0):  # the ring is full: [3.0, 20.0, 30.0, 40.0]
            c.record_success("n", d)
        cut_add_after_window(c, "n", 5000.0)
        c.get_node_histogram("n")
        c.record_success("n", 50.0)
        assert [20.0, 30.0, 40.0, 50.0] == sorted(window_samples(c, "n"))

    def test_a_fresh_start_still_tells_a_later_uncounted_sample_apart(self):
        """After a node that counted nothing starts afresh, a later cut add is dropped alone."""
        c = NodeMetricsCollector()
        c.record_retry("n")
        cut_add_after_window(c, "n", 3.0)
        c.record_success("n", 5.0)  # repairs the node first: it starts afresh
        c.record_success("n", 6.0)
        cut_add_after_window(c, "n", 7.0)
        assert 6.0 == c.get_node_metrics("n").last_execution_ms
        assert [5.0, 6.0] == window_samples(c, "n")

    def test_an_uncounted_sample_after_a_made_up_one_leaves_a_ring_not_yet_full(self):
        """
        Once repair has made a sample up in a ring not yet full, the window
        holds fewer samples than executions: a later add cut short is still
        the one dropped.
        """
        c = NodeMetricsCollector(window_size=10)
        for d in (1.0, 2.0, 3.0):
            c.record_success("n", d)
        empty_window(c, "n")
        c.get_node_metrics("n")  # repaired: [3.0]
        for d in (20.0, 30.0):
            c.record_success("n", d)
        cut_add_after_window(c, "n", 5000.0)
        assert 30.0 == c.get_node_metrics("n").last_execution_ms
        assert [3.0, 20.0, 30.0] == window_samples(c, "n")

    def test_a_made_up_sample_is_the_last_duration_and_a_success(self):
        """The sample made up for an emptied window is the last duration, even 0.0, a success."""
        # With a callback the window counts failures.
        c = NodeMetricsCollector(
            failure_rate_threshold=0.5, on_failure_rate_threshold=lambda *_: None
        )
        c.record_failure("n", 2.0, ValueError())
        c.record_success("n", 0.0)
        empty_window(c, "n")
        m = c.get_node_metrics("n")  # repaired: [0.0]
        assert (2, 0.0, 0.0, 0.0) == (m.total_executions, m.last_execution_ms, m.p50, m.p99)
        assert ([0.0], 0) == (window_samples(c, "n"), window_of(c, "n").failures)

    def test_the_durations_a_window_lost_are_made_up_in_the_latest_ones_bucket(self):
        """
        Durations counted but not yet bucketed when the window lost them are
        bucketed with the latest duration: the histogram still counts every
        execution once.
        """
        c = NodeMetricsCollector()
        for d in (300.0, 300.0):
            c.record_success("n", d)
        c.get_node_histogram("n")  # bucketed
        for d in (1.0, 2.0, 300.0):  # counted, waiting in the window
            c.record_success("n", d)
        empty_window(c, "n")
        h = c.get_node_histogram("n")  # repaired: [300.0]
        assert (5, 903.0, bucketed([300.0] * 5)) == (h.count, h.sum_ms, list(h.counts))

    # The batch's middle duration ends up the window's newest: in the bucket
    # just past those used so far, or past the top bound.
    @pytest.mark.parametrize("lost", [1.5, 1e7])
    def test_a_fold_cut_short_that_overran_a_full_window_leaves_the_counted_histogram(
        self, monkeypatch, lost
    ):
        """
        A fold cut short after its batch, longer than the window, replaced
        every sample, before counting it: the histogram keeps exactly the
        executions counted.
        """
        c = NodeMetricsCollector(window_size=2)
        c.record_success("n", 1.0)
        c.get_node_histogram("n")  # 1.0 is bucketed: only its bucket is kept
        with fake_clock([int(d * 1e6) for d in (0.5, lost, 0.5)]):
            for _ in range(3):
                with c.track("n"):
                    pass

        fold_cut_after_extend(monkeypatch, c)
        h = c.get_node_histogram("n")  # repairs the node first
        assert (1, 1.0, bucketed([1.0])) == (h.count, h.sum_ms, list(h.counts))

    def test_a_fold_cut_short_that_overran_a_full_window_keeps_the_last_counted_duration(
        self, monkeypatch
    ):
        """The last duration after such a fold is still the last counted one, not a lost one."""
        c = NodeMetricsCollector(window_size=2)
        c.record_success("n", 1.0)
        with fake_clock([int(d * 1e6) for d in (1.5, 1e7, 2.5)]):
            for _ in range(3):
                with c.track("n"):
                    pass

        fold_cut_after_extend(monkeypatch, c)
        m = c.get_node_metrics("n")  # repairs the node first
        assert (1, 1.0, 1.0) == (m.total_executions, m.avg_execution_ms, m.last_execution_ms)
