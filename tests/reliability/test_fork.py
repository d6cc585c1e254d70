"""Guarantee 4: a forked child can record and read at once; the parent is untouched."""

from __future__ import annotations

import os
import textwrap

import pytest

from nodemetrics import NodeMetricsCollector


pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def run_in_child(fn) -> int:
    """Run fn in a forked child; return its exit status (0 when fn returns True)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if fn() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


# Run in a fresh interpreter: coverage's tracer, which traces the threads of
# this test process, can itself deadlock a child forked mid-trace (seen on
# Python 3.10), and that is not what this test is about.
FORK_AMID_THREADS = textwrap.dedent(
    """
    import os, threading, warnings
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
    from nodemetrics import NodeMetricsCollector

    c = NodeMetricsCollector()
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            c.record_success("busy", 1.0)
            c.record_failure("busy", 2.0)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    bad = 0
    for _ in range(20):
        pid = os.fork()
        if pid == 0:
            before = c.get_node_metrics("busy")
            c.record_success("child", 2.0)
            c.record_success("busy", 1.0)
            after = c.get_node_metrics("busy")
            ok = (
                after.total_executions == before.total_executions + 1
                and after.success_count + after.failure_count == after.total_executions
                and c.get_node_metrics("child").success_count == 1
            )
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        bad += os.waitstatus_to_exitcode(status) != 0
    stop.set()
    for t in threads:
        t.join()
    m = c.get_node_metrics("busy")
    assert m.success_count == m.failure_count, m
    assert c.get_node_metrics("child").total_executions == 0
    print(f"children failed: {bad}")
    """
)


class TestFork:
    def test_child_records_while_parent_threads_record(self, fresh_python):
        """20 forks amid 3 recording threads: every child records and reads at once."""
        result = fresh_python(FORK_AMID_THREADS)
        assert 0 == result.returncode, result.stderr
        assert "children failed: 0" == result.stdout.strip()

    def test_parent_untouched_and_keeps_recording(self):
        """The child's recordings never reach the parent, which goes on recording."""
        c = NodeMetricsCollector()
        c.record_success("n", 1.0)

        def child():
            for _ in range(10):
                c.record_failure("n", 1.0)
            return c.get_node_metrics("n").failure_count == 10

        assert 0 == run_in_child(child)
        c.record_success("n", 1.0)
        m = c.get_node_metrics("n")
        assert (2, 0) == (m.total_executions, m.failure_count)
        assert not c._guard.lock._is_owned()

    def test_child_gets_a_fresh_lock(self):
        """A lock held at fork time (by a thread that does not exist in the child) is replaced."""
        c = NodeMetricsCollector()

        def child():
            c.record_success("n", 1.0)
            return c.get_node_metrics("n").total_executions == 1

        assert 0 == run_in_child(child)
