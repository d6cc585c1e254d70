"""Several processes, each with its own exporter, aggregated by a real Prometheus."""

from __future__ import annotations

import bisect
import json
import math
import random
import subprocess
import sys

import pytest

from nodemetrics import NodeMetricsCollector


# One process: records the durations it is given, serves them, waits for stdin to close.
WORKER = """
import json, sys
from prometheus_client import CollectorRegistry, start_http_server
from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters.prometheus import PrometheusExporter

plan = json.loads(sys.argv[1])
c = NodeMetricsCollector()
for node, successes, failures in plan:
    for d in successes:
        c.record_success(node, d)
    for d in failures:
        c.record_failure(node, d, TimeoutError())
registry = CollectorRegistry()
registry.register(PrometheusExporter(c))
server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
print(server.server_port, flush=True)
sys.stdin.read()
"""


def plan(seed: int) -> list[tuple[str, list[float], list[float]]]:
    """Durations in ms for two nodes: log-normal, from 0.05 ms to minutes."""
    rng = random.Random(seed)  # noqa: S311 -- repeatable test data
    return [
        (
            node,
            [rng.lognormvariate(mu, 2.0) for _ in range(n)],
            [rng.lognormvariate(mu, 1.0) for _ in range(n // 10)],
        )
        for node, mu, n in (("fetch", 4.0, 700 + 100 * seed), ("parse", 0.0, 300))
    ]


@pytest.fixture
def workers():
    """Two separate worker processes, each serving its own exporter; yields targets and plans."""
    processes = []
    plans = [plan(1), plan(2)]
    try:
        for p in plans:
            process = subprocess.Popen(  # noqa: S603 -- our own interpreter and script
                [sys.executable, "-c", WORKER, json.dumps(p)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            processes.append(process)
        targets = [f"127.0.0.1:{int(p.stdout.readline())}" for p in processes]
        yield targets, plans
    finally:
        for process in processes:
            process.stdin.close()
            process.wait(timeout=30)
            process.stdout.close()


def test_two_processes_aggregate_exactly(workers, prometheus):
    """Counters sum exactly, and histogram_quantile lands in the bucket of the exact p99."""
    targets, plans = workers
    server = prometheus(targets)
    bounds_s = [b / 1000 for b in NodeMetricsCollector().buckets]
    for node in ("fetch", "parse"):
        successes = [d for p in plans for n, s, _ in p if n == node for d in s]
        failures = [d for p in plans for n, _, f in p if n == node for d in f]
        everything = successes + failures
        server.wait_for(
            f'sum by (node) (nodemetrics_node_executions_total{{node="{node}"}})', len(everything)
        )
        server.wait_for(
            f'sum by (node) (nodemetrics_node_failures_total{{node="{node}",category="timeout"}})',
            len(failures),
        )
        server.wait_for(
            f'sum by (node) (nodemetrics_node_duration_seconds_count{{node="{node}"}})',
            len(everything),
        )
        total_s = float(
            server.query(f'sum by (node) (nodemetrics_node_duration_seconds_sum{{node="{node}"}})')[
                0
            ]["value"][1]
        )
        assert math.fsum(everything) / 1000 == pytest.approx(total_s, rel=1e-9)
        # The exact p99 of both processes' samples, and the bucket holding it.
        exact_s = sorted(everything)[math.ceil(0.99 * len(everything)) - 1] / 1000
        i = bisect.bisect_left(bounds_s, exact_s)
        lower = bounds_s[i - 1] if i else 0.0
        upper = bounds_s[i] if i < len(bounds_s) else bounds_s[-1]
        estimate = float(
            server.query(
                "histogram_quantile(0.99, sum by (le, node) "
                f'(nodemetrics_node_duration_seconds_bucket{{node="{node}"}}))'
            )[0]["value"][1]
        )
        assert lower * (1 - 1e-9) <= estimate <= upper * (1 + 1e-9), (lower, estimate, upper)
