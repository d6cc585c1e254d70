"""
Issue 10, items 3 and 4: recordings keep their order, and a read of all nodes is one instant.
"""

from __future__ import annotations

import sys
import threading
import time

from _internals import holding_lock_between_changes, pending_count

from nodemetrics import NodeMetricsCollector, _collector


NODES = [f"n{i:02}" for i in range(40)]


def test_timed_success_never_overtakes_a_queued_failure():
    """A failure queued while this thread held the lock (a signal handler's) stays ahead
    of the timed success that follows it: with window_size=1 the success is the latest."""
    c = NodeMetricsCollector(window_size=1)
    c.record_success("n", 1.0)  # the node exists: timed successes would batch
    with holding_lock_between_changes(c):  # what a signal handler interrupting a recording sees
        c.record_failure("n", 50.0)
        assert 1 == pending_count(c)
    with c.track("n"):
        pass
    m = c.get_node_metrics("n")
    assert (3, 1) == (m.total_executions, m.failure_count)
    assert m.last_execution_ms < 50.0
    assert m.p50 == m.last_execution_ms  # the window holds the success, not the failure


def test_reading_all_nodes_is_one_instant():
    """A thread times n00..n39 in that order, over and over; no snapshot of all nodes shows
    a later node ahead of an earlier one, nor more than one round apart."""
    c = NodeMetricsCollector()
    for node in NODES:  # every node exists, so timed successes batch
        c.record_success(node, 1.0)
    stop = threading.Event()

    def time_in_order():
        track = c.track
        while not stop.is_set():
            for node in NODES:
                with track(node):
                    pass

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    writer = threading.Thread(target=time_in_order)
    writer.start()
    torn = []
    try:
        deadline = time.monotonic() + 5
        reads = 0
        while reads < 3_000 and time.monotonic() < deadline:
            snapshot = c.get_all_node_metrics()
            counts = [snapshot[node].success_count for node in NODES]
            if counts != sorted(counts, reverse=True) or counts[0] - counts[-1] > 1:
                torn.append(counts)
            reads += 1
    finally:
        stop.set()
        writer.join(10)
        sys.setswitchinterval(previous)
    assert not writer.is_alive()
    assert reads >= 100
    assert [] == torn[:3]


def test_reading_all_nodes_from_inside_the_collector_is_one_instant(monkeypatch, interrupted):
    """
    A read of all nodes from a signal handler (its thread inside the collector) is one
    instant too: another thread that times "a" then "b" between the read's snapshots of
    "a" and of "b" waits for the lock, so the read never shows the success on "b"
    without the earlier one on "a". (Batched without the lock, the two once went in
    between, and the read showed the later one alone.)
    """
    c = NodeMetricsCollector()
    for node in ("a", "b"):
        c.record_success(node, 1.0)
    c.get_all_node_metrics()  # nothing left to fold: each node's batch is empty
    timed = threading.Event()

    def time_a_then_b() -> None:
        with c.track("a"):
            pass
        with c.track("b"):
            pass
        timed.set()

    writer = threading.Thread(target=time_a_then_b)
    real = _collector._read_aside

    def read_aside(guard, state, read):
        result = real(guard, state, read)
        if state is c._nodes["a"] and not writer.is_alive() and not timed.is_set():
            # Between the snapshots of "a" and "b": the writer's two successes
            # must wait for this thread's call (0.5 s is ample for them to land,
            # were they not waiting).
            writer.start()
            timed.wait(0.5)
        return result

    monkeypatch.setattr(_collector, "_read_aside", read_aside)
    with interrupted(c):
        snapshot = c.get_all_node_metrics()
    writer.join(10)
    assert not writer.is_alive()
    counts = (snapshot["a"].success_count, snapshot["b"].success_count)
    assert counts in {(1, 1), (2, 1), (2, 2)}, counts
    assert (2, 2) == (c.get_node_metrics("a").success_count, c.get_node_metrics("b").success_count)
