"""A node's histogram: durations wait unbucketed, then are bucketed all at once, exactly."""

from __future__ import annotations

from bisect import bisect_left

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from nodemetrics import NodeMetricsCollector
from nodemetrics._histogram import DEFAULT_BUCKETS_MS
from nodemetrics._node import UNBUCKETED


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
@given(st.lists(DURATIONS, max_size=3 * UNBUCKETED), st.integers(0, 3 * UNBUCKETED))
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


def test_waiting_durations_are_bounded_and_read_empties_them():
    """A node holds fewer than UNBUCKETED durations unbucketed; a histogram read none."""
    c = NodeMetricsCollector()
    for i in range(10 * UNBUCKETED + 5):
        c.record_success("n", float(i % 300))
        assert c._nodes["n"].unbucketed < UNBUCKETED
    c.get_node_histogram("n")
    assert 0 == c._nodes["n"].unbucketed


@pytest.mark.parametrize("window_size", [1, 5, 40, 100])
def test_timed_successes_are_bucketed_too(window_size):
    """Batched successes reach the histogram when their batch is folded, even a batch
    larger than the window."""
    c = NodeMetricsCollector(window_size=window_size)
    for _ in range(3 * UNBUCKETED):
        with c.track("n"):
            pass
    h = c.get_node_histogram("n")
    assert 3 * UNBUCKETED == h.count == sum(h.counts)
    assert h.counts[0] > 0  # an empty block takes about a microsecond
