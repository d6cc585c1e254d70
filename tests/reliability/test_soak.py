"""Guarantee 8: 5,000,000 executions from 4 threads: exact totals, flat memory."""

from __future__ import annotations

import contextlib
import os
import sys
import threading

from pathlib import Path

import pytest

from nodemetrics import NodeMetricsCollector


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status"),
]

THREADS = 4
NODES = [f"node-{i}" for i in range(100)]
DURATIONS = [float(i % 50) + 0.5 for i in range(997)]


def execute(k: int) -> None:
    """A node that times out on 2 of every 7 calls."""
    if k % 7 < 2:
        raise TimeoutError


def rss_bytes() -> int:
    with Path("/proc/self/status").open() as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    msg = "no VmRSS in /proc/self/status"
    raise RuntimeError(msg)


@pytest.mark.parametrize("timed", [False, True], ids=["recorded", "timed"])
def test_soak(timed):
    """
    5M executions over 100 nodes, recorded with thresholds on, or timed by
    track() and batched: exact totals, RSS growth < 5 MB.
    """
    total = int(os.environ.get("NODEMETRICS_SOAK_EXECUTIONS", "5000000"))
    fired = {"rate": 0, "latency": 0}
    c = (
        NodeMetricsCollector()
        if timed
        else NodeMetricsCollector(
            min_samples=10,
            failure_rate_threshold=0.3,
            on_failure_rate_threshold=lambda node, rate: fired.__setitem__(
                "rate", fired["rate"] + 1
            ),
            latency_threshold_ms=48.0,
            on_latency_threshold=lambda node, p99: fired.__setitem__(
                "latency", fired["latency"] + 1
            ),
        )
    )
    per_thread = total // THREADS
    warm_up = per_thread // 10
    warmed = threading.Barrier(THREADS + 1)
    go = threading.Event()

    def work(t: int) -> None:
        success, failure = c.record_success, c.record_failure
        for i in range(per_thread):
            if i == warm_up:
                warmed.wait()
                go.wait()
            k = t * per_thread + i
            node = NODES[k % 100]
            if timed:
                with contextlib.suppress(TimeoutError), c.track(node):
                    execute(k)
            elif k % 7 < 2:
                failure(node, DURATIONS[k % 997], category="timeout")
            else:
                success(node, DURATIONS[k % 997])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    warmed.wait()
    baseline = rss_bytes()
    go.set()
    for t in threads:
        t.join()
    growth = rss_bytes() - baseline

    metrics = c.get_all_node_metrics()
    done = per_thread * THREADS
    assert 100 == len(metrics)
    assert done == sum(m.total_executions for m in metrics.values())
    expected_failures = sum(1 for k in range(done) if k % 7 < 2)
    assert expected_failures == sum(m.timeout_errors for m in metrics.values())
    assert timed or fired["rate"] + fired["latency"] > 0
    assert growth < 5 * 1024 * 1024, f"RSS grew {growth / 1e6:.1f} MB after warm-up"
