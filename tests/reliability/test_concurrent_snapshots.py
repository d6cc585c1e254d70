"""Guarantee 2: snapshots read under concurrent recording are never torn."""

from __future__ import annotations

import asyncio
import sys
import threading

from collections.abc import Iterator

import pytest

from _internals import batch_of

from nodemetrics import NodeMetrics, NodeMetricsCollector, metered


NODES = ["alpha", "beta", "gamma"]
DURATIONS = [0.5, 1.0, 2.5, 7.0, 40.0]  # every recorded value is one of these
THREADS, PER_THREAD = 4, 4_000
TASKS, PER_TASK = 500, 20
ERRORS = [TimeoutError(), ValueError(), ConnectionResetError(), KeyError()]


def check(m: NodeMetrics) -> None:
    assert m.success_count + m.failure_count == m.total_executions
    assert (
        m.timeout_errors + m.validation_errors + m.network_errors + m.other_errors
        == m.failure_count
    )
    if m.total_executions == 0:
        assert m.p50 is None
        return
    assert m.p50 is not None
    assert m.p90 is not None
    assert m.p99 is not None
    assert min(DURATIONS) <= m.p50 <= m.p90 <= m.p99 <= max(DURATIONS)
    assert min(DURATIONS) <= m.avg_execution_ms <= max(DURATIONS)
    assert m.last_execution_ms in DURATIONS


# A deadlock must fail the test within seconds, not hang the run.
DEADLINE_S = 60.0


@pytest.fixture(autouse=True)
def switch_threads_often() -> Iterator[None]:
    """
    Switch threads as often as CPython will (every bytecode boundary it checks).

    At the default 5 ms a reader rarely lands inside a recording, and a
    reader that took no lock at all would pass.
    """
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def run(
    workers: list[threading.Thread], watchers: list[threading.Thread], done: threading.Event
) -> None:
    """Start all; once the workers have finished, set *done* and wait for the watchers."""
    for t in watchers + workers:
        t.daemon = True  # a deadlocked one must not keep the test process alive
        t.start()
    for t in workers:
        t.join(DEADLINE_S)
    done.set()
    for t in watchers:
        t.join(DEADLINE_S)
    stuck = [t.name for t in workers + watchers if t.is_alive()]
    assert [] == stuck, f"still running after {DEADLINE_S} s: deadlocked?"


def record(c: NodeMetricsCollector, i: int) -> None:
    node = NODES[i % len(NODES)]
    duration = DURATIONS[i % len(DURATIONS)]
    if i % 4 == 0:
        c.record_failure(node, duration, ERRORS[i % len(ERRORS)])
    else:
        c.record_success(node, duration)
    if i % 10 == 0:
        c.record_retry(node)


def test_readers_never_see_a_torn_snapshot():
    """4 threads and 500 tasks record while 2 readers check every snapshot; totals exact."""
    c = NodeMetricsCollector(window_size=64)
    recorders_done = threading.Event()
    reads = [0, 0]
    failures: list[BaseException] = []

    def thread_recorder(t: int) -> None:
        for i in range(PER_THREAD):
            record(c, t * PER_THREAD + i)

    def asyncio_recorders() -> None:
        async def task(k: int) -> None:
            for i in range(PER_TASK):
                record(c, k * PER_TASK + i)
                await asyncio.sleep(0)

        async def main() -> None:
            await asyncio.gather(*(task(k) for k in range(TASKS)))

        asyncio.run(main())

    def reader(r: int) -> None:
        try:
            while not recorders_done.is_set():
                if r == 0:
                    for node in NODES:
                        check(c.get_node_metrics(node))
                else:
                    for m in c.get_all_node_metrics().values():
                        check(m)
                    for d in c.to_dict().values():
                        check(NodeMetrics.from_dict(d))
                reads[r] += 1
        except BaseException as e:
            failures.append(e)
            raise

    readers = [threading.Thread(target=reader, args=(r,)) for r in range(2)]
    recorders = [threading.Thread(target=thread_recorder, args=(t,)) for t in range(THREADS)]
    recorders.append(threading.Thread(target=asyncio_recorders))
    run(recorders, readers, recorders_done)

    assert [] == failures
    assert all(r > 0 for r in reads)
    total = THREADS * PER_THREAD + TASKS * PER_TASK
    metrics = c.get_all_node_metrics()
    assert total == sum(m.total_executions for m in metrics.values())
    assert total // 4 == sum(m.failure_count for m in metrics.values())
    assert total // 10 == sum(m.retry_count for m in metrics.values())
    for m in metrics.values():
        check(m)


def test_timed_successes_are_never_lost(logs):
    """
    4 threads time blocks and calls into one node, whose batch other threads
    fold at once (readers, direct recordings); every success is counted.
    """
    c = NodeMetricsCollector(window_size=64)
    c.record_success("shared", 1.0)  # known nodes batch timed successes
    per_thread = 5_000
    done = threading.Event()
    failures: list[BaseException] = []

    @metered("shared", collector=c)
    def call() -> None:
        pass

    def timer(t: int) -> None:
        for i in range(per_thread):
            if (t + i) % 2:
                call()
            else:
                with c.track("shared"):
                    pass

    def disturber() -> None:
        try:
            while not done.is_set():
                m = c.get_node_metrics("shared")
                assert m.success_count + m.failure_count == m.total_executions
                c.record_failure("shared", 1.0, category="other")
        except BaseException as e:
            failures.append(e)
            raise

    others = [threading.Thread(target=disturber) for _ in range(2)]
    timers = [threading.Thread(target=timer, args=(t,)) for t in range(4)]
    run(timers, others, done)

    assert [] == failures
    assert [] == logs.of_level("ERROR")
    m = c.get_node_metrics("shared")
    assert 1 + 4 * per_thread == m.success_count
    assert m.success_count + m.failure_count == m.total_executions
    assert [] == batch_of(c, "shared")


PER_RECORDER = 30_000  # a multiple of 3 and 50, as the counts below assume


def test_a_read_never_lands_inside_a_recording():
    """
    Guards against readers that skip the lock: 3 threads read while 2 record
    failures into one node and add new nodes; every snapshot's categories sum
    to its failures, and reading every node never trips over a new one.
    """
    c = NodeMetricsCollector(window_size=8, max_nodes=None)
    done = threading.Event()
    failures: list[BaseException] = []
    reads = [0]
    categories = ["timeout", "validation", "network", "other"]

    def recorder(t: int) -> None:
        for i in range(PER_RECORDER):
            if i % 3:
                c.record_failure("n", DURATIONS[i % 5], category=categories[(t + i) % 4])
            else:
                c.record_success("n", DURATIONS[i % 5])
            if i % 50 == 0:
                c.record_retry(f"new-{t}-{i}")

    def reader() -> None:
        try:
            while not done.is_set():
                check(c.get_node_metrics("n"))
                for m in c.get_all_node_metrics().values():
                    check(m)
                reads[0] += 1
        except BaseException as e:
            failures.append(e)
            raise

    readers = [threading.Thread(target=reader) for _ in range(3)]
    recorders = [threading.Thread(target=recorder, args=(t,)) for t in range(2)]
    run(recorders, readers, done)

    assert [] == failures
    assert reads[0] > 100
    assert 1 + 2 * PER_RECORDER // 50 == len(c.get_all_node_metrics())
    m = c.get_node_metrics("n")
    assert (2 * PER_RECORDER, 2 * (PER_RECORDER - PER_RECORDER // 3)) == (
        m.total_executions,
        m.failure_count,
    )
