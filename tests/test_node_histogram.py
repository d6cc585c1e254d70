"""A node's histogram: durations wait in the window, then are bucketed all at once, exactly."""

from __future__ import annotations

from bisect import bisect_left

import pytest

from _internals import BATCH_BOUND, fake_clock, waiting_count
from hypothesis import given, settings
from hypothesis import strategies as st

from nodemetrics import NodeMetricsCollector
from nodemetrics._histogram import DEFAULT_BUCKETS_MS


BOUNDS = DEFAULT_BUCKETS_MS
# Durations on, just above and between the bounds, and past the top one.
DURATIONS = st.one_of(
    st.sampled_from(BOUNDS),
    st.sampled_from([b * (1 + 1e-9) for b in BOUNDS]),
    st.floats(0.0, 2e5),
)


def oracle(durations: list[float]) -> list[int]:
    counts = [0] * (len(BOUNDS) + 1)
    for d in durations:
        counts[bisect_left(BOUNDS, d)] += 1
    return counts


@settings(max_examples=200, deadline=None)
@given(st.lists(DURATIONS, max_size=300), st.integers(0, 300))
@pytest.mark.parametrize("window_size", [1, 2, 8, 100])
def test_counts_match_a_bisect_per_duration(window_size, durations, read_at):
    """Whenever it is read, the histogram counts every duration in the bucket a bisect finds,
    at any window size (durations wait in the window until bucketed)."""
    c = NodeMetricsCollector(window_size=window_size)
    for i, d in enumerate(durations):
        if i % 3:
            c.record_success("n", d)
        else:
            c.record_failure("n", d)
        if i == read_at:
            assert oracle(durations[: i + 1]) == list(c.get_node_histogram("n").counts)
    h = c.get_node_histogram("n")
    assert oracle(durations) == list(h.counts)
    assert len(durations) == h.count == c.get_node_metrics("n").total_executions


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["record", "fail", "track"]), DURATIONS), max_size=2600),
    st.sampled_from([700, 1024, 1500, 2048, 2500]),
)
def test_counts_are_exact_across_stretches_of_a_big_window(steps, window_size):
    """In a window of more than 1,024 slots, durations recorded, failed and timed in any mix
    are each counted once, in their bucket, however they fall across the ring's stretches."""
    c = NodeMetricsCollector(window_size=window_size)
    # Each timed block takes as long as its step says, to the nanosecond.
    timed = [round(d * 1e6) for how, d in steps if how == "track"]
    with fake_clock(timed):
        for how, d in steps:
            if how == "record":
                c.record_success("n", d)
            elif how == "fail":
                c.record_failure("n", d)
            else:
                with c.track("n"):
                    pass
    expected = [round(d * 1e6) / 1e6 if how == "track" else d for how, d in steps]
    if not steps:
        return
    assert oracle(expected) == list(c.get_node_histogram("n").counts)


@pytest.mark.parametrize("window_size", [100, 1024, 3000])
def test_waiting_durations_are_bounded_and_read_empties_them(window_size):
    """No more durations wait than the window holds, nor more than 1,024; a histogram read
    leaves none waiting."""
    c = NodeMetricsCollector(window_size=window_size)
    most = 0
    for i in range(4 * window_size + 5):
        c.record_success("n", float(i % 300))
        most = max(most, waiting_count(c, "n"))
    assert 0 < most <= min(window_size, 1024)
    c.get_node_histogram("n")
    assert 0 == waiting_count(c, "n")


@pytest.mark.parametrize("window_size", [1, 5, 40, 100, 1030])
def test_timed_successes_are_bucketed_too(window_size):
    """Batched successes reach the histogram when their batch is folded, even a batch
    larger than the window or one that ends a stretch of the ring."""
    c = NodeMetricsCollector(window_size=window_size)
    c.record_success("n", 1.0)
    for _ in range(40 * BATCH_BOUND + 3):
        with c.track("n"):
            pass
    h = c.get_node_histogram("n")
    assert 40 * BATCH_BOUND + 4 == h.count == sum(h.counts)
    assert h.counts[0] > 0  # an empty block takes about a microsecond
