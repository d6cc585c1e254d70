"""Guarantee 5: memory is bounded, whatever the number of names or executions."""

from __future__ import annotations

import json
import textwrap
import tracemalloc

from pathlib import Path

from _internals import window_notes, window_of

from nodemetrics import NodeMetricsCollector


# 10,001 nodes (10,000 names and the overflow node) with full windows of 100
# take about 28 MB by tracemalloc (see the benchmarks' P7); the bound leaves
# room for the Python version and allocator, not for a leak: without
# max_nodes, 50,000 nodes would take about 140 MB.
BOUND_MB = 40

# Run in a fresh interpreter, so that tracemalloc sees only this (and not
# the test session's heap), and coverage's tracer does not slow a million
# recordings tenfold.
MILLION_OVER_FIFTY_THOUSAND = textwrap.dedent(
    """
    import json, sys, tracemalloc
    from loguru import logger
    from nodemetrics import NodeMetricsCollector
    sys.path.insert(0, TESTS_DIR)
    from _internals import node_names, window_of

    warnings = []
    logger.remove()
    logger.add(lambda m: warnings.append(str(m)), level="WARNING")
    names = [f"node-{i}" for i in range(50_000)]
    durations = [float(i) for i in range(97)]
    tracemalloc.start()
    c = NodeMetricsCollector()
    record = c.record_success
    for i in range(1_000_000):
        record(names[i % 50_000], durations[i % 97])
    snapshots = c.get_all_node_metrics()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({
        "nodes": len(snapshots),
        "executions": sum(m.total_executions for m in snapshots.values()),
        "overflow": snapshots["__overflow__"].total_executions,
        "largest_window": max(len(window_of(c, n)) for n in node_names(c)),
        "traced_mb": current / 1e6,
        "max_nodes_warnings": sum("nodemetrics.max_nodes" in w for w in warnings),
    }))
    """
).replace("TESTS_DIR", repr(str(Path(__file__).parents[1])))


def test_a_million_executions_over_fifty_thousand_names(fresh_python):
    """1,000,000 executions over 50,000 names keep 10,001 nodes in a bounded footprint."""
    result = fresh_python(MILLION_OVER_FIFTY_THOUSAND)
    assert 0 == result.returncode, result.stderr
    r = json.loads(result.stdout)
    assert 10_001 == r["nodes"]
    assert 1_000_000 == r["executions"]
    assert 40_000 * 20 == r["overflow"]
    assert r["largest_window"] <= 100
    assert r["traced_mb"] < BOUND_MB
    assert 1 == r["max_nodes_warnings"]


def test_window_never_exceeds_its_size():
    """However many samples arrive, the window holds window_size of them."""
    c = NodeMetricsCollector(window_size=7)
    for i in range(1_000):
        c.record_success("n", float(i))
        assert len(window_of(c, "n")) == min(i + 1, 7)
    m = c.get_node_metrics("n")
    assert (996.0, 998.4) == (m.p50, m.p90)  # the last 7 samples, 993 to 999


def test_unread_window_notes_stay_bounded():
    """
    Guards the notes' bound: 100,000 records into a window of 100 that nobody
    reads keep at most a quarter of the window noted as come and as gone
    (README "Bounded"), and the collector's memory does not grow with them.
    """
    c = NodeMetricsCollector(window_size=100)
    c.record_success("n", 0.0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100_000):
            c.record_success("n", float(i % 997))
            if i % 1_000 == 0:
                assert window_notes(window_of(c, "n")) <= 2 * 25
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 200_000, f"{grown:,} bytes kept by 100,000 unread records"
    assert 100_001 == c.get_node_metrics("n").total_executions
