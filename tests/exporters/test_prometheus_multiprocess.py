"""prometheus_client's multiprocess mode, fed by MultiProcessSync in each worker."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import urllib.request

import pytest

from _internals import mirror_lock
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nodemetrics import NodeMetricsCollector
from nodemetrics.exporters import prometheus_multiprocess
from nodemetrics.exporters.prometheus_multiprocess import (
    MultiProcessSync,
    start_multiprocess_sync,
)


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def key(name: str, **labels: str) -> tuple[str, frozenset]:
    return (name, frozenset(labels.items()))


def mirrored(c: NodeMetricsCollector) -> tuple[MultiProcessSync, CollectorRegistry]:
    registry = CollectorRegistry()
    return MultiProcessSync(c, registry=registry), registry


class TestMirror:
    def test_mirrors_counters_and_histogram(self):
        """A sync copies every counter and the histogram, with the exporter's names."""
        c = NodeMetricsCollector(buckets=(1, 10))
        sync, registry = mirrored(c)
        for d in (0.5, 5.0, 50.0):
            c.record_success("n", d)
        c.record_failure("n", 5.0, TimeoutError())
        c.record_retry("n")
        c.record_cancellation("n")
        c.record_interruption("n")
        c.record_interruption("n")
        sync.sync()
        s = samples(registry)
        p = "nodemetrics_node_"
        assert 3 == s[key(f"{p}executions_total", node="n", outcome="success")]
        assert 1 == s[key(f"{p}executions_total", node="n", outcome="failure")]
        assert 1 == s[key(f"{p}failures_total", node="n", category="timeout")]
        assert 0 == s[key(f"{p}failures_total", node="n", category="other")]
        assert 1 == s[key(f"{p}retries_total", node="n")]
        assert 1 == s[key(f"{p}cancellations_total", node="n")]
        assert 2 == s[key(f"{p}interruptions_total", node="n")]
        assert 1 == s[key(f"{p}duration_seconds_bucket", node="n", le="0.001")]
        assert 3 == s[key(f"{p}duration_seconds_bucket", node="n", le="0.01")]
        assert 4 == s[key(f"{p}duration_seconds_bucket", node="n", le="+Inf")]
        assert 4 == s[key(f"{p}duration_seconds_count", node="n")]
        assert pytest.approx(0.0605) == s[key(f"{p}duration_seconds_sum", node="n")]

    def test_syncs_add_only_what_is_new(self):
        """Repeated syncs add each node's growth once."""
        c = NodeMetricsCollector()
        sync, registry = mirrored(c)
        expected = 0
        for round_ in range(5):
            for _ in range(round_):
                c.record_success("n", 1.0)
                expected += 1
            c.record_success("m", 1.0)
            sync.sync()
            sync.sync()
            s = samples(registry)
            assert expected == s.get(
                key("nodemetrics_node_executions_total", node="n", outcome="success"), 0
            )
            assert round_ + 1 == s[key("nodemetrics_node_duration_seconds_count", node="m")]

    def test_reset_goes_on_counting(self):
        """After a node reset, the mirrored series keep growing from where they were."""
        c = NodeMetricsCollector()
        sync, registry = mirrored(c)
        for _ in range(3):
            c.record_success("n", 2.0)
        sync.sync()
        c.reset_node_metrics("n")
        sync.sync()  # the node is gone: it starts again from zero
        c.record_success("n", 2.0)
        c.record_success("n", 2.0)
        sync.sync()
        c.reset_node_metrics("n")
        c.record_success("n", 2.0)  # reset, and fewer since, between two syncs
        sync.sync()
        s = samples(registry)
        assert 6 == s[key("nodemetrics_node_executions_total", node="n", outcome="success")]
        assert pytest.approx(0.012) == s[key("nodemetrics_node_duration_seconds_sum", node="n")]

    def test_thread_syncs_and_stop_syncs_last(self):
        """start() syncs in the background; stop() ends the thread and syncs once more."""
        c = NodeMetricsCollector()
        sync, registry = mirrored(c)
        synced = threading.Event()
        original = sync._sync

        def spy(*args):
            original(*args)
            synced.set()

        sync._sync = spy
        sync.start(0.01)
        sync.start(0.01)  # a second start changes nothing else
        c.record_success("n", 1.0)
        assert synced.wait(10), "the background thread never synced"
        assert "running=True" in repr(sync)
        c.record_success("n", 1.0)
        sync.stop()
        assert "running=False" in repr(sync)
        assert 2 == samples(registry)[key("nodemetrics_node_duration_seconds_count", node="n")]

    def test_retry_only_changes(self):
        """A node that only gained retries mirrors them, and nothing else."""
        c = NodeMetricsCollector()
        sync, registry = mirrored(c)
        c.record_success("n", 4.0)
        sync.sync()
        c.record_retry("n")
        sync.sync()
        s = samples(registry)
        assert 1 == s[key("nodemetrics_node_retries_total", node="n")]
        assert 1 == s[key("nodemetrics_node_duration_seconds_count", node="n")]
        assert pytest.approx(0.004) == s[key("nodemetrics_node_duration_seconds_sum", node="n")]

    def test_stop_without_start_syncs(self):
        """stop() on a sync that never started still syncs once."""
        c = NodeMetricsCollector()
        sync, registry = mirrored(c)
        c.record_success("n", 1.0)
        sync.stop()
        assert 1 == samples(registry)[key("nodemetrics_node_duration_seconds_count", node="n")]

    def test_restart_after_stop(self):
        """start() after stop() runs a new thread."""
        sync, _ = mirrored(NodeMetricsCollector())
        sync.start(3600)
        sync.stop()
        assert "running=False" in repr(sync)
        sync.start(3600)
        assert "running=True" in repr(sync)
        sync.stop()

    def test_after_fork_baselines_and_restarts(self):
        """The fork hook takes the collector's state as mirrored, and restarts a running thread."""
        c = NodeMetricsCollector()
        running, registry = mirrored(c)
        stopped = MultiProcessSync(c, namespace="other")
        running.start(3600)
        stopped.start(3600)
        stopped.stop()
        c.record_success("n", 1.0)
        old_thread = running._thread
        running._after_fork_in_child()
        stopped._after_fork_in_child()
        assert running._thread is not old_thread
        assert "running=True" in repr(running)
        assert "running=False" in repr(stopped)
        running.sync()
        assert key("nodemetrics_node_duration_seconds_count", node="n") not in samples(registry)
        c.record_success("n", 1.0)
        running.stop()
        old_thread.join(5)
        assert 1 == samples(registry)[key("nodemetrics_node_duration_seconds_count", node="n")]

    def test_start_multiprocess_sync_starts(self, monkeypatch):
        """In multiprocess mode, start_multiprocess_sync() returns a running sync."""
        from prometheus_client import values

        monkeypatch.setattr(values.ValueClass, "_multiprocess", True, raising=False)
        sync = start_multiprocess_sync(NodeMetricsCollector(), interval_s=3600, namespace="mp")
        try:
            assert "running=True" in repr(sync)
        finally:
            sync.stop()

    def test_failure_is_logged_not_raised(self, logs):
        """A sync that fails logs the error and returns."""
        c = NodeMetricsCollector()
        sync, _ = mirrored(c)

        def broken(*_args):
            raise RuntimeError("boom")

        sync._sync = broken
        sync.sync()
        assert [m for m in logs.of_level("ERROR") if "multiprocess_sync_failed" in m]

    def test_busy_lock_gives_up(self, monkeypatch):
        """A sync that cannot get the lock (a re-entrant one) leaves the work to the next."""
        monkeypatch.setattr("nodemetrics.exporters.prometheus_multiprocess._LOCK_WAIT_S", 0.01)
        c = NodeMetricsCollector()
        sync, registry = mirrored(c)
        c.record_success("n", 1.0)
        with mirror_lock(sync):
            sync.sync()
        assert key("nodemetrics_node_duration_seconds_count", node="n") not in samples(registry)
        sync.sync()
        assert 1 == samples(registry)[key("nodemetrics_node_duration_seconds_count", node="n")]

    @pytest.mark.parametrize(
        ("interval", "error"),
        [
            (0, ValueError),
            (-1, ValueError),
            (math.inf, ValueError),
            ("1", TypeError),
            (True, TypeError),
        ],
    )
    def test_bad_interval(self, interval, error):
        """start() refuses a bad interval, naming it."""
        sync, _ = mirrored(NodeMetricsCollector())
        with pytest.raises(error, match="interval_s"):
            sync.start(interval)

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"collector": {}}, TypeError, "collector"),
            ({"namespace": "a-b"}, ValueError, "namespace"),
        ],
    )
    def test_bad_arguments(self, kwargs, error, match):
        """Bad arguments are refused, naming them."""
        args = {"collector": NodeMetricsCollector(), **kwargs}
        with pytest.raises(error, match=match):
            MultiProcessSync(args.pop("collector"), **args)

    def test_not_in_multiprocess_mode(self):
        """Without PROMETHEUS_MULTIPROC_DIR at import, start_multiprocess_sync() says so."""
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
            start_multiprocess_sync(NodeMetricsCollector())

    def test_fork_child_mirrors_only_its_own(self):
        """After os.fork(), the child mirrors what it records, not what its parent had."""
        c = NodeMetricsCollector()
        sync, registry = mirrored(c)
        sync.start(3600)
        c.record_success("n", 1.0)  # the parent's, never synced by the parent
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child reports through the pipe
            try:
                c.record_success("n", 1.0)
                sync.sync()
                s = samples(registry)
                result = [
                    s.get(key("nodemetrics_node_duration_seconds_count", node="n"), 0),
                    sync._thread is not None and sync._thread.is_alive(),
                ]
                os.write(write, json.dumps(result).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            result = json.loads(pipe.read())
        os.waitpid(pid, 0)
        sync.stop()
        assert [1, True] == result


# The endpoint and its workers: prometheus_client chooses multiprocess mode
# when first imported, so this runs in a fresh interpreter, as a file (spawn
# re-imports it in each worker).
DRIVER = """
import json, multiprocessing, os, sys

def work(plan, ready, done):
    from nodemetrics import NodeMetricsCollector
    from nodemetrics.exporters.prometheus_multiprocess import start_multiprocess_sync

    c = NodeMetricsCollector()
    start_multiprocess_sync(c, interval_s=0.2)
    for node, successes, failures, retries in plan:
        for d in successes:
            c.record_success(node, d)
        for d in failures:
            c.record_failure(node, d, ConnectionError())
        for _ in range(retries):
            c.record_retry(node)
    ready.set()
    done.wait()
    # More after the last periodic sync: only the exit sync carries these.
    for node, successes, failures, retries in plan:
        c.record_success(node, 1.0)

if __name__ == "__main__":
    method, directory, plans = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

    ctx = multiprocessing.get_context(method)
    done = ctx.Event()
    workers = []
    for plan in plans:
        ready = ctx.Event()
        process = ctx.Process(target=work, args=(plan, ready, done))
        process.start()
        workers.append((process, ready))
    for process, ready in workers:
        assert ready.wait(120), "a worker never got ready"
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    print(server.server_port, flush=True)
    sys.stdin.readline()  # the test has seen the live workers' numbers
    done.set()
    for process, _ in workers:
        process.join(60)
        assert process.exitcode == 0, process.exitcode
        mark_process_dead(process.pid)
    print("exited", flush=True)
    sys.stdin.readline()
"""


def worker_plan(i: int) -> list:
    return [
        ["fetch", [0.5 * (j % 40) * (i + 1) for j in range(50 + 10 * i)], [300.0] * i, i + 1],
        [f"only-{i}", [2000.0], [], 0],
    ]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_four_workers_summed_by_a_real_prometheus(method, tmp_path, prometheus, promtool):
    """Four worker processes' counters and histograms are summed in the multiprocess scrape."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    directory = tmp_path / "multiproc"
    directory.mkdir()
    plans = [worker_plan(i) for i in range(4)]
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    process = subprocess.Popen(  # noqa: S603 -- our own interpreter and script
        [sys.executable, str(driver), method, str(directory), json.dumps(plans)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        port = int(process.stdout.readline())
        server = prometheus([f"127.0.0.1:{port}"])
        fetch = [p[0] for p in plans]
        successes = sum(len(f[1]) for f in fetch)
        failures = sum(len(f[2]) for f in fetch)
        everything = [d for f in fetch for d in f[1] + f[2]]

        def check_fetch(extra: int) -> None:
            q = 'nodemetrics_node_executions_total{node="fetch",outcome="%s"}'
            server.wait_for(q % "success", successes + extra)
            server.wait_for(q % "failure", failures)
            server.wait_for(
                'nodemetrics_node_failures_total{node="fetch",category="network"}', failures
            )
            server.wait_for('nodemetrics_node_retries_total{node="fetch"}', 1 + 2 + 3 + 4)
            server.wait_for(
                'nodemetrics_node_duration_seconds_count{node="fetch"}', len(everything) + extra
            )
            server.wait_for(
                'nodemetrics_node_duration_seconds_bucket{node="fetch",le="0.01"}',
                sum(1 for d in everything if d <= 10.0) + extra,
            )
            server.wait_for(
                'nodemetrics_node_duration_seconds_sum{node="fetch"}',
                (math.fsum(everything) + extra * 1.0) / 1000,
            )

        # While the workers live: what the periodic syncs carried.
        check_fetch(0)
        for i in range(4):
            server.wait_for(f'nodemetrics_node_duration_seconds_count{{node="only-{i}"}}', 1)
        # After they exit (and are marked dead): nothing lost, the exit syncs added.
        process.stdin.write("go\n")
        process.stdin.flush()
        assert "exited" == process.stdout.readline().strip()
        check_fetch(4)
        server.wait_for("count(nodemetrics_node_duration_seconds_count)", 5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            promtool(response.read())
    finally:
        process.stdin.close()
        process.wait(timeout=60)
        process.stdout.close()


def test_a_child_forked_inside_prometheus_client_mirrors_nothing(monkeypatch, logs):
    """What a child forked from inside a sync's prometheus_client call gets (the fork
    hook tells the sync's client guard there; tests/reliability/test_interrupts.py forks
    for real): no sync of the child enters prometheus_client, and each says so once."""
    monkeypatch.setattr(prometheus_multiprocess, "_INSIDE_AT_FORK", False)
    c, other = NodeMetricsCollector(), NodeMetricsCollector()
    registry, other_registry = CollectorRegistry(), CollectorRegistry()
    sync = MultiProcessSync(c, registry=registry)
    other_sync = MultiProcessSync(other, registry=other_registry)
    sync._client.after_fork_mid_call()
    for collector in (c, other):
        collector.record_success("n", 1.0)
    for _ in range(2):
        sync.sync()
        other_sync.sync()
    for reg in (registry, other_registry):
        labels = {"node": "n", "outcome": "success"}
        assert reg.get_sample_value("nodemetrics_node_executions_total", labels) is None
    said = [m for m in logs.of_level("WARNING") if "multiprocess_sync_off" in m]
    assert 2 == len(said)
